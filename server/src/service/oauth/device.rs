//! The device authorization grant (RFC 8628), for signing in on a device
//! without a good browser or by scanning a QR code: the app gets a device
//! code to poll with and a short user code; the person enters the user code
//! on Cloister's page (or opens the complete link), signs in and consents
//! there, in the same pages as the authorization code grant; the app's next
//! poll gets the tokens, once.

use cloister_proto::oauth::{parse_scope, DeviceAuthorization, TokenResponse};
use rand::Rng;
use zeroize::Zeroizing;

use super::authorize::{PageError, Started};
use super::tokens::{issue, Granted};
use super::{clients, digest, secret, OAuthFailure, OAuthResult};
use crate::service::{accounts, Context};
use crate::store::oauth::Grant;
use crate::store::oauth_device::{self as store, Decider, DeviceGrant};

/// The grant type's name at the token endpoint.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Where the person enters the code.
pub const LINK_PATH: &str = "_cloister/oauth2/link";

/// How long the person has to enter the code.
const LIFETIME_MS: i64 = 10 * 60 * 1000;
/// How often the app may poll, in seconds.
const INTERVAL_SECS: u64 = 5;
/// Consonants only: no words, no 0/O or 1/I to confuse.
const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

fn user_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..8)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// As typed: any case, with or without the dash and spaces.
pub fn normalize(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// `ABCD-EFGH`, as shown.
fn shown(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

/// The device authorization endpoint.
pub async fn start(
    state: &Context,
    client_id: &str,
    scope: &str,
) -> OAuthResult<DeviceAuthorization> {
    let client = clients::get(state, client_id)
        .await?
        .ok_or_else(|| OAuthFailure::new("invalid_client", "unknown client_id"))?;
    if !client.grant_types.iter().any(|g| g == GRANT_TYPE) {
        return Err(OAuthFailure::new(
            "unauthorized_client",
            "the client did not register the device_code grant type",
        ));
    }
    match parse_scope(scope) {
        Ok((true, _)) => {}
        Ok((false, _)) => {
            let why = "the scope must include urn:matrix:client:api:*";
            return Err(OAuthFailure::new("invalid_scope", why));
        }
        Err(token) => {
            return Err(OAuthFailure::new(
                "invalid_scope",
                format!("scope {token} is not granted here"),
            ))
        }
    }
    let device_code = Zeroizing::new(secret());
    let now = state.now_ms();
    let mut w = state.store.autocommit().await?;
    let code = loop {
        let grant = DeviceGrant {
            device_code_hash: digest(&device_code),
            user_code: user_code(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            status: "pending".into(),
            user_id: None,
            last_poll_ts: None,
            expires_ts: now + LIFETIME_MS,
            sso_login: None,
        };
        if store::insert(&mut w, &grant, now).await? {
            break grant.user_code;
        }
    };
    let base = state.config.public_baseurl();
    let link = format!("{base}{LINK_PATH}");
    Ok(DeviceAuthorization {
        device_code: device_code.to_string(),
        verification_uri_complete: format!("{link}?code={}", shown(&code)),
        user_code: shown(&code),
        verification_uri: link,
        expires_in: (LIFETIME_MS / 1000) as u64,
        interval: INTERVAL_SECS,
    })
}

/// The person entered `typed`: on to the sign-in and consent pages for
/// that device grant, bound to this browser. Guesses count against the
/// address's login limit.
pub async fn link(state: &Context, ip: &str, typed: &str) -> Result<Started, PageError> {
    accounts::check_login_rate(state, &format!("login:{ip}")).map_err(|_| PageError::Gone)?;
    let code = normalize(typed);
    let now = state.now_ms();
    let grant = store::by_user_code(&mut *state.store.read().await?, &code)
        .await?
        .filter(|g| g.status == "pending" && g.expires_ts > now)
        .ok_or(PageError::Gone)?;
    let browser_secret = Zeroizing::new(secret());
    let browser_grant = Grant {
        grant_id: crate::ids::random_string(32),
        client_id: grant.client_id,
        redirect_uri: String::new(),
        scope: grant.scope,
        state: None,
        code_challenge: String::new(),
        response_mode: "device".into(),
        browser_hash: digest(&browser_secret),
        user_id: None,
        code_used_ts: None,
        session_id: None,
        created_ts: now,
        expires_ts: grant.expires_ts,
        device_code_hash: Some(grant.device_code_hash),
        sso_login: None,
    };
    crate::store::oauth::insert_grant(&mut state.store.autocommit().await?, &browser_grant).await?;
    Ok(Started::Page {
        grant_id: browser_grant.grant_id,
        browser_secret,
    })
}

/// The person's answer for a device grant.
pub async fn decide(
    state: &Context,
    device_code_hash: &[u8],
    by: Decider<'_>,
    allow: bool,
) -> OAuthResult<bool> {
    let to = if allow { "approved" } else { "denied" };
    let mut w = state.store.autocommit().await?;
    Ok(store::transition(&mut w, device_code_hash, "pending", to, Some(by)).await?)
}

/// The app polls: RFC 8628 section 3.5's answers until the person
/// decides; the tokens once.
pub async fn poll(
    state: &Context,
    device_code: &str,
    client_id: &str,
) -> OAuthResult<TokenResponse> {
    let hash = digest(device_code);
    let now = state.now_ms();
    let grant = store::by_device_code(&mut *state.store.read().await?, &hash)
        .await?
        .filter(|g| g.client_id == client_id)
        .ok_or_else(|| OAuthFailure::invalid_grant("unknown device_code"))?;
    if grant.expires_ts <= now {
        return Err(OAuthFailure::new(
            "expired_token",
            "the device code expired; start again",
        ));
    }
    match grant.status.as_str() {
        "pending" => {
            let too_soon = grant
                .last_poll_ts
                .is_some_and(|at| now - at < INTERVAL_SECS as i64 * 1000);
            store::polled(&mut state.store.autocommit().await?, &hash, now).await?;
            return Err(if too_soon {
                OAuthFailure::new("slow_down", format!("poll at most every {INTERVAL_SECS} s"))
            } else {
                OAuthFailure::new("authorization_pending", "the person has not decided yet")
            });
        }
        "denied" => return Err(OAuthFailure::new("access_denied", "the person denied it")),
        "approved" => {}
        _ => {
            return Err(OAuthFailure::invalid_grant(
                "the device code was already used",
            ))
        }
    }
    let user_id = grant
        .user_id
        .ok_or_else(|| OAuthFailure::invalid_grant("unknown device_code"))?;
    let mut tx = state.store.write().await?;
    if !store::transition(&mut tx, &hash, "approved", "used", None).await? {
        return Err(OAuthFailure::invalid_grant(
            "the device code was already used",
        ));
    }
    let granted = Granted {
        session_id: crate::ids::random_string(26),
        user_id: &user_id,
        client_id,
        scope: &grant.scope,
        sso_login: grant.sso_login.as_deref(),
    };
    let answer = issue(state, &mut tx, granted).await?;
    tx.commit().await?;
    tracing::info!(client = %client_id, "oauth: device code exchanged for a session");
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_typed_loosely() {
        let code = user_code();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(normalize(&shown(&code).to_lowercase()), code);
        assert_eq!(normalize(" bcdf - ghjk "), "BCDFGHJK");
    }
}
