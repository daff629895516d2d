//! The authorization code grant with PKCE (MSC2964, RFC 6749 section 4.1,
//! RFC 7636) up to the code: the request is checked and stored as a grant
//! bound to the browser that made it (a cookie, stored hashed); the person
//! signs in and consents on pages of that browser only; the code goes to
//! the registered redirect URI.
//!
//! Until the client and its redirect URI are known to match a registration,
//! nothing is redirected anywhere: a forged request must not turn this
//! server into an open redirector.

use cloister_proto::oauth::{parse_scope, ClientMetadata};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{clients, digest, secret, OAuthResult, AUTHORIZE_PATH};
use crate::error::ApiResult;
use crate::service::sso::{self, SsoError};
use crate::service::{accounts, Context};
use crate::store::oauth::{self as store, Grant};
use crate::store::oauth_device::Decider;

/// Time to sign in and consent.
const GRANT_LIFETIME_MS: i64 = 30 * 60 * 1000;
/// A code must be exchanged this soon (RFC 6749 recommends at most 10 min).
const CODE_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// The query of the authorization endpoint.
#[derive(Debug, Default, serde::Deserialize)]
pub struct AuthorizeRequest {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub response_mode: Option<String>,
}

/// Why a page cannot go on. Shown to the person, never redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageError {
    /// No such client, or the redirect URI is not one it registered.
    UnknownClient,
    /// The request is malformed before a redirect is possible.
    BadRequest,
    /// The sign-in expired, finished, or never existed.
    Gone,
    /// Another browser started it (or cookies are off).
    OtherBrowser,
    /// The database failed.
    Internal,
}

impl From<sqlx::Error> for PageError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "oauth: database error");
        PageError::Internal
    }
}

impl From<super::OAuthFailure> for PageError {
    fn from(_: super::OAuthFailure) -> Self {
        PageError::Internal
    }
}

/// Where an authorization request went.
pub enum Started {
    /// On to the sign-in page in this browser.
    Page {
        grant_id: String,
        browser_secret: Zeroizing<String>,
    },
    /// Refused, told to the client at its redirect URI.
    Refused(String),
}

/// `url` with the answer's parameters, as the response mode says.
fn answer_url(redirect_uri: &str, mode: &str, params: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let query = query.finish();
    if mode == "fragment" {
        format!("{redirect_uri}#{query}")
    } else {
        crate::service::sso::append_query(redirect_uri, &query)
    }
}

fn refusal(req: &AuthorizeRequest, uri: &str, mode: &str, error: &str, why: &str) -> Started {
    let mut params = vec![("error", error), ("error_description", why)];
    if let Some(state) = &req.state {
        params.push(("state", state));
    }
    Started::Refused(answer_url(uri, mode, &params))
}

/// Checks a request and stores it as a grant for this browser.
pub async fn start(state: &Context, req: AuthorizeRequest) -> Result<Started, PageError> {
    let client_id = req.client_id.as_deref().ok_or(PageError::BadRequest)?;
    let uri = req.redirect_uri.as_deref().ok_or(PageError::BadRequest)?;
    let client = clients::get(state, client_id)
        .await?
        .ok_or(PageError::UnknownClient)?;
    if !client.redirect_uris.iter().any(|r| r == uri) {
        return Err(PageError::UnknownClient);
    }
    // From here on, errors go back to the client.
    let mode = match req.response_mode.as_deref() {
        None | Some("query") => "query",
        Some("fragment") => "fragment",
        Some(_) => {
            return Ok(refusal(
                &req,
                uri,
                "query",
                "invalid_request",
                "unknown response_mode",
            ))
        }
    };
    if req.response_type.as_deref() != Some("code") {
        let why = "only response_type=code is offered";
        return Ok(refusal(&req, uri, mode, "unsupported_response_type", why));
    }
    let challenge = req.code_challenge.as_deref().unwrap_or_default();
    if req.code_challenge_method.as_deref() != Some("S256") || !valid_challenge(challenge) {
        let why = "PKCE is required: code_challenge_method=S256 and a 43-character code_challenge";
        return Ok(refusal(&req, uri, mode, "invalid_request", why));
    }
    let scope = req.scope.as_deref().unwrap_or_default();
    match parse_scope(scope) {
        Ok((true, _)) => {}
        Ok((false, _)) => {
            let why = "the scope must include urn:matrix:client:api:*";
            return Ok(refusal(&req, uri, mode, "invalid_scope", why));
        }
        Err(token) => {
            let why = format!("scope {token} is not granted here");
            return Ok(refusal(&req, uri, mode, "invalid_scope", &why));
        }
    }
    if req.state.as_ref().is_some_and(|s| s.len() > 1024) || scope.len() > 2048 {
        return Ok(refusal(
            &req,
            uri,
            mode,
            "invalid_request",
            "state or scope too long",
        ));
    }
    let browser_secret = Zeroizing::new(secret());
    let now = state.now_ms();
    let grant = Grant {
        grant_id: crate::ids::random_string(32),
        client_id: client_id.to_owned(),
        redirect_uri: uri.to_owned(),
        scope: scope.to_owned(),
        state: req.state.clone(),
        code_challenge: challenge.to_owned(),
        response_mode: mode.to_owned(),
        browser_hash: digest(&browser_secret),
        user_id: None,
        code_used_ts: None,
        session_id: None,
        created_ts: now,
        expires_ts: now + GRANT_LIFETIME_MS,
        device_code_hash: None,
        sso_login: None,
    };
    store::insert_grant(&mut state.store.autocommit().await?, &grant).await?;
    Ok(Started::Page {
        grant_id: grant.grant_id,
        browser_secret,
    })
}

/// RFC 7636: BASE64URL(SHA-256(verifier)) is 43 characters.
fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A grant as a page of its browser sees it.
pub struct View {
    pub grant: Grant,
    pub client: ClientMetadata,
    browser_secret: Zeroizing<String>,
}

impl View {
    /// The token forms carry: derived from the browser's cookie and the
    /// grant, so only that browser's pages can know it.
    pub fn csrf_token(&self) -> String {
        csrf(&self.browser_secret, &self.grant.grant_id)
    }

    pub fn check_csrf(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.csrf_token().as_bytes()))
    }
}

fn csrf(browser_secret: &str, grant_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"cloister oauth csrf\0");
    h.update(browser_secret.as_bytes());
    h.update(b"\0");
    h.update(grant_id.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The grant `grant_id` if it is live and `browser_secret` (the cookie)
/// is the browser that started it.
pub async fn view(
    state: &Context,
    grant_id: &str,
    browser_secret: Option<&str>,
) -> Result<View, PageError> {
    let grant = store::grant(&mut *state.store.read().await?, grant_id)
        .await?
        .filter(|g| g.expires_ts > state.now_ms())
        .ok_or(PageError::Gone)?;
    let browser_secret = browser_secret.ok_or(PageError::OtherBrowser)?;
    // The digest is compared, so timing tells nothing about the cookie.
    if !bool::from(digest(browser_secret).ct_eq(&grant.browser_hash)) {
        return Err(PageError::OtherBrowser);
    }
    // The account page's grants have no app.
    let client = if grant.response_mode == super::account::ACCOUNT_MODE {
        ClientMetadata::default()
    } else {
        clients::get(state, &grant.client_id)
            .await?
            .ok_or(PageError::Gone)?
    };
    Ok(View {
        grant,
        client,
        browser_secret: Zeroizing::new(browser_secret.to_owned()),
    })
}

/// Signs the person in for this grant (password, or the LDAP directory),
/// under the same limits and audit as `/login`.
pub async fn sign_in(
    state: &Context,
    ip: &str,
    view: &View,
    user: &str,
    password: Zeroizing<String>,
) -> ApiResult<()> {
    let checked = accounts::check_password(state, ip, user, password).await?;
    accounts::password_login_allowed(state, &checked)?;
    store::set_grant_user(
        &mut state.store.autocommit().await?,
        &view.grant.grant_id,
        &checked.user_id,
        None,
    )
    .await?;
    Ok(())
}

/// Where a grant's page sends the browser to sign in at provider `idp_id`;
/// the provider's answer comes back to [`sign_in_with_sso`].
pub async fn sso_start(state: &Context, view: &View, idp_id: &str) -> Result<String, SsoError> {
    let back = format!(
        "{}{AUTHORIZE_PATH}/{}/sso_return",
        state.config.public_baseurl(),
        view.grant.grant_id
    );
    sso::begin(state, idp_id, &back).await
}

/// Signs the person in for this grant with the login token single sign-on
/// handed back, remembering the provider session (its logout ends the
/// device this grant opens).
pub async fn sign_in_with_sso(
    state: &Context,
    ip: &str,
    view: &View,
    token: &str,
) -> ApiResult<()> {
    let login = sso::redeem_login_token(state, ip, token).await?;
    let json = serde_json::to_string(&login).map_err(|_| crate::error::ApiError::internal())?;
    store::set_grant_user(
        &mut state.store.autocommit().await?,
        &view.grant.grant_id,
        &login.user_id,
        Some(&json),
    )
    .await?;
    Ok(())
}

/// Where the person's answer leads.
pub enum Decided {
    /// To the app's redirect URI, with a code or the refusal.
    Redirect(String),
    /// To a page saying the other device has its answer.
    DeviceDone { allowed: bool },
    /// To a page saying the account action is approved (or not).
    AccountDone { allowed: bool },
}

/// The person's answer: a code for the app if they allowed it.
pub async fn decide(state: &Context, view: &View, allow: bool) -> OAuthResult<Decided> {
    let g = &view.grant;
    let Some(user_id) = g.user_id.as_deref() else {
        return Err(super::OAuthFailure::invalid_request("sign in first"));
    };
    if g.response_mode == super::account::ACCOUNT_MODE {
        if allow {
            super::account::approve(state, user_id, &g.scope).await?;
        }
        store::delete_grant(&mut state.store.autocommit().await?, &g.grant_id).await?;
        return Ok(Decided::AccountDone { allowed: allow });
    }
    if let Some(hash) = &g.device_code_hash {
        let by = Decider {
            user_id,
            sso_login: g.sso_login.as_deref(),
        };
        let decided = super::device::decide(state, hash, by, allow).await?;
        store::delete_grant(&mut state.store.autocommit().await?, &g.grant_id).await?;
        if !decided {
            return Err(super::OAuthFailure::invalid_request(
                "the device already has its answer",
            ));
        }
        return Ok(Decided::DeviceDone { allowed: allow });
    }
    let mut params = Vec::new();
    let code = Zeroizing::new(secret());
    if allow {
        let expires = state.now_ms() + CODE_LIFETIME_MS;
        let mut w = state.store.autocommit().await?;
        if !store::set_grant_code(&mut w, &g.grant_id, &digest(&code), expires).await? {
            return Err(super::OAuthFailure::invalid_request(
                "this sign-in already has its answer",
            ));
        }
        params.push(("code", code.as_str()));
    } else {
        store::delete_grant(&mut state.store.autocommit().await?, &g.grant_id).await?;
        params.push(("error", "access_denied"));
    }
    if let Some(s) = &g.state {
        params.push(("state", s));
    }
    Ok(Decided::Redirect(answer_url(
        &g.redirect_uri,
        &g.response_mode,
        &params,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_response_mode() {
        let q = answer_url(
            "https://a.example/cb?x=1",
            "query",
            &[("code", "c d"), ("state", "s")],
        );
        assert_eq!(q, "https://a.example/cb?x=1&code=c+d&state=s");
        let f = answer_url("https://a.example/cb", "fragment", &[("code", "c")]);
        assert_eq!(f, "https://a.example/cb#code=c");
    }

    #[test]
    fn csrf_tokens_depend_on_browser_and_grant() {
        assert_ne!(csrf("a", "g"), csrf("b", "g"));
        assert_ne!(csrf("a", "g"), csrf("a", "h"));
        assert_eq!(csrf("a", "g").len(), 64);
    }
}
