//! The token endpoint and revocation: codes exchanged once for a device
//! and its tokens, refresh tokens rotated on every use, sessions ended.
//!
//! A code presented twice means it leaked: the session it was exchanged
//! for is ended (RFC 6749 section 4.1.2). A refresh token rotated away is
//! accepted again only for a short grace (a lost answer); later, the same
//! reasoning ends the session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cloister_proto::oauth::{parse_scope, TokenResponse, SCOPE_DEVICE};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{digest, secret, OAuthFailure, OAuthResult};
use crate::service::devices::{self, NewSession};
use crate::service::session::hash_token;
use crate::service::Context;
use crate::store::{oauth as store, users, WriteTx};

/// The token endpoint's form, all grant types.
#[derive(Debug, Default, serde::Deserialize)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub client_id: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
    pub device_code: Option<String>,
}

fn required<'a>(field: &'a Option<String>, name: &str) -> OAuthResult<&'a str> {
    field
        .as_deref()
        .filter(|v| !v.is_empty() && v.len() <= 4096)
        .ok_or_else(|| OAuthFailure::invalid_request(format!("{name} is required")))
}

pub async fn token(state: &Context, req: TokenRequest) -> OAuthResult<TokenResponse> {
    match req.grant_type.as_deref() {
        Some("authorization_code") => exchange_code(state, &req).await,
        Some("refresh_token") => refresh(state, &req).await,
        Some(super::device::GRANT_TYPE) => {
            let device_code = required(&req.device_code, "device_code")?;
            let client_id = required(&req.client_id, "client_id")?;
            super::device::poll(state, device_code, client_id).await
        }
        Some(other) => Err(OAuthFailure::new(
            "unsupported_grant_type",
            format!("grant_type {other} is not offered here"),
        )),
        None => Err(OAuthFailure::invalid_request("grant_type is required")),
    }
}

/// RFC 7636 section 4.6, S256 only; the verifier's form is checked first.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

async fn exchange_code(state: &Context, req: &TokenRequest) -> OAuthResult<TokenResponse> {
    let code = required(&req.code, "code")?;
    let client_id = required(&req.client_id, "client_id")?;
    let redirect_uri = required(&req.redirect_uri, "redirect_uri")?;
    let verifier = required(&req.code_verifier, "code_verifier")?;
    let now = state.now_ms();
    let grant = store::grant_by_code(&mut *state.store.read().await?, &digest(code))
        .await?
        .ok_or_else(|| OAuthFailure::invalid_grant("unknown or expired code"))?;
    if grant.code_used_ts.is_some() {
        end_leaked(state, grant.session_id.as_deref()).await?;
        return Err(OAuthFailure::invalid_grant(
            "this code was already used; the session it opened is ended",
        ));
    }
    if grant.expires_ts <= now {
        return Err(OAuthFailure::invalid_grant("unknown or expired code"));
    }
    if grant.client_id != client_id || grant.redirect_uri != redirect_uri {
        return Err(OAuthFailure::invalid_grant(
            "the code was issued to another client or redirect_uri",
        ));
    }
    if !pkce_matches(verifier, &grant.code_challenge) {
        return Err(OAuthFailure::invalid_grant("code_verifier does not match"));
    }
    let user_id = grant
        .user_id
        .clone()
        .ok_or_else(|| OAuthFailure::invalid_grant("unknown or expired code"))?;
    let session_id = crate::ids::random_string(26);
    let mut tx = state.store.write().await?;
    if !store::use_code(&mut tx, &grant.grant_id, &session_id, now).await? {
        return Err(OAuthFailure::invalid_grant("this code was already used"));
    }
    let granted = Granted {
        session_id,
        user_id: &user_id,
        client_id,
        scope: &grant.scope,
        sso_login: grant.sso_login.as_deref(),
    };
    let answer = issue(state, &mut tx, granted).await?;
    tx.commit().await?;
    tracing::info!(client = %client_id, "oauth: code exchanged for a session");
    Ok(answer)
}

/// What a person allowed an app, for [`issue`].
pub(super) struct Granted<'a> {
    pub session_id: String,
    pub user_id: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    /// The provider identity that signed the person in, if one did.
    pub sso_login: Option<&'a str>,
}

/// Opens the session a grant allowed, in the caller's transaction (which
/// also marks the grant used): the device the scope names (or a new one),
/// an expiring access token and the first refresh token.
pub(super) async fn issue(
    state: &Context,
    tx: &mut WriteTx,
    granted: Granted<'_>,
) -> OAuthResult<TokenResponse> {
    let now = state.now_ms();
    let (_, device) = parse_scope(granted.scope).map_err(OAuthFailure::invalid_grant)?;
    let device_id = device.unwrap_or_else(crate::ids::new_device_id);
    let mut scope = granted.scope.to_owned();
    if !scope.contains(&device_id) {
        scope.push_str(&format!(" {SCOPE_DEVICE}{device_id}"));
    }
    let refresh_token = secret();
    let expires_in = state.config.oauth.access_token_lifetime_secs;
    let new = NewSession {
        user_id: granted.user_id,
        device_id: Some(&device_id),
        display_name: None,
        expires_ts: Some(now + expires_in as i64 * 1000),
    };
    let opened = devices::open_session_in(state, tx, new).await?;
    // A device signed in again through OAuth has one session, the newest.
    store::delete_device_sessions(tx, granted.user_id, &device_id).await?;
    let session = store::Session {
        session_id: granted.session_id,
        user_id: granted.user_id.to_owned(),
        device_id,
        client_id: granted.client_id.to_owned(),
        scope: scope.clone(),
        refresh_hash: digest(&refresh_token),
        previous_refresh_hash: None,
        rotated_ts: None,
    };
    store::insert_session(tx, &session, now).await?;
    if let Some(json) = granted.sso_login {
        // The provider's logout of this sign-in ends this device too.
        let login: crate::store::sso::LoginGrant = serde_json::from_str(json)
            .map_err(|_| OAuthFailure::new("server_error", "internal error"))?;
        crate::store::sso::record_device(tx, &login.user_id, &session.device_id, &login, now)
            .await?;
    }
    Ok(TokenResponse {
        access_token: opened.access_token,
        token_type: "Bearer".into(),
        expires_in,
        refresh_token,
        scope,
    })
}

/// Ends the session a leaked code or refresh token belongs to.
async fn end_leaked(state: &Context, session_id: Option<&str>) -> OAuthResult<()> {
    let Some(session_id) = session_id else {
        return Ok(());
    };
    let session = store::session_by_id(&mut *state.store.read().await?, session_id).await?;
    if let Some(s) = session {
        tracing::warn!(client = %s.client_id, "oauth: a used code or refresh token came back; ending its session");
        devices::delete_devices(state, &s.user_id, &[s.device_id]).await?;
    }
    Ok(())
}

async fn refresh(state: &Context, req: &TokenRequest) -> OAuthResult<TokenResponse> {
    let presented = required(&req.refresh_token, "refresh_token")?;
    let client_id = required(&req.client_id, "client_id")?;
    let now = state.now_ms();
    let hash = digest(presented);
    let session = store::session_by_refresh(&mut *state.store.read().await?, &hash)
        .await?
        .ok_or_else(|| OAuthFailure::invalid_grant("unknown refresh token"))?;
    if session.client_id != client_id {
        return Err(OAuthFailure::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let is_current = bool::from(session.refresh_hash.ct_eq(&hash));
    if !is_current {
        let grace = state.config.oauth.refresh_reuse_grace_secs as i64 * 1000;
        if session.rotated_ts.is_none_or(|at| now - at > grace) {
            end_leaked(state, Some(&session.session_id)).await?;
            return Err(OAuthFailure::invalid_grant(
                "this refresh token was already used; the session is ended",
            ));
        }
    }
    let next = secret();
    let access_token = format!("clt_{}", crate::ids::random_string(40));
    let expires_in = state.config.oauth.access_token_lifetime_secs;
    let mut tx = state.store.write().await?;
    if !store::rotate(&mut tx, &session.session_id, &hash, &digest(&next), now).await? {
        return Err(OAuthFailure::invalid_grant("unknown refresh token"));
    }
    // Tokens this one replaces stay good until they expire (requests in
    // flight); expired ones go now.
    users::delete_expired_tokens(&mut tx, &session.user_id, &session.device_id, now).await?;
    users::insert_token(
        &mut tx,
        &hash_token(&access_token),
        &session.user_id,
        &session.device_id,
        now,
        Some(now + expires_in as i64 * 1000),
    )
    .await?;
    tx.commit().await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in,
        refresh_token: next,
        scope: session.scope,
    })
}

/// RFC 7009: ends the session an access or refresh token belongs to, if
/// `client_id` is its client. An unknown token is no error.
pub async fn revoke(state: &Context, token: &str, client_id: &str) -> OAuthResult<()> {
    let mut c = state.store.read().await?;
    let session = match store::session_by_refresh(&mut c, &digest(token)).await? {
        Some(s) => Some(s),
        None => match users::user_for_token(&mut c, &hash_token(token)).await? {
            Some(owner) => {
                store::session_by_device(&mut c, &owner.user_id, &owner.device_id).await?
            }
            None => None,
        },
    };
    drop(c);
    let Some(session) = session else {
        return Ok(());
    };
    if session.client_id != client_id {
        return Err(OAuthFailure::new(
            "invalid_client",
            "the token was issued to another client",
        ));
    }
    devices::delete_devices(state, &session.user_id, &[session.device_id]).await?;
    tracing::info!(client = %client_id, "oauth: session revoked");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_as_in_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
        assert!(!pkce_matches("short", challenge));
    }
}
