//! The account management page (MSC2965's `account_management_uri`) as far
//! as apps signed in through the OAuth API need it: approving the
//! replacement of one's cross-signing keys (the `m.oauth` stage of
//! user-interactive auth, MSC4312). Such an app holds no password to
//! confirm with, so the person signs in on Cloister's page (password, LDAP
//! or their provider, as for an app's sign-in) and approves there; the
//! app's next upload within 10 minutes goes through, once.

use zeroize::Zeroizing;

use super::authorize::{PageError, Started};
use super::{digest, secret};
use crate::error::ApiResult;
use crate::service::Context;
use crate::store::oauth::{self as store, Grant};

/// Where the page is, under the base URL.
pub const ACCOUNT_PATH: &str = "_cloister/account/";
/// The one action offered.
pub const CROSS_SIGNING_RESET: &str = "org.matrix.cross_signing_reset";
/// How a grant for the account page is marked (no app, no redirect).
pub const ACCOUNT_MODE: &str = "account";

/// An approval is good for this long.
const APPROVAL_LIFETIME_MS: i64 = 10 * 60 * 1000;
/// Time to sign in and approve.
const PAGE_LIFETIME_MS: i64 = 30 * 60 * 1000;

/// The URL an `m.oauth` challenge sends the person to.
pub fn reset_url(state: &Context) -> String {
    format!(
        "{}{ACCOUNT_PATH}?action={CROSS_SIGNING_RESET}",
        state.config.public_baseurl()
    )
}

/// The page for `action`: a browser-bound sign-in, then the approval.
pub async fn start(state: &Context, action: Option<&str>) -> Result<Started, PageError> {
    if action != Some(CROSS_SIGNING_RESET) {
        return Err(PageError::BadRequest);
    }
    let browser_secret = Zeroizing::new(secret());
    let now = state.now_ms();
    let grant = Grant {
        grant_id: crate::ids::random_string(32),
        client_id: String::new(),
        redirect_uri: String::new(),
        scope: CROSS_SIGNING_RESET.into(),
        state: None,
        code_challenge: String::new(),
        response_mode: ACCOUNT_MODE.into(),
        browser_hash: digest(&browser_secret),
        user_id: None,
        code_used_ts: None,
        session_id: None,
        created_ts: now,
        expires_ts: now + PAGE_LIFETIME_MS,
        device_code_hash: None,
        sso_login: None,
    };
    store::insert_grant(&mut state.store.autocommit().await?, &grant).await?;
    Ok(Started::Page {
        grant_id: grant.grant_id,
        browser_secret,
    })
}

/// The person approved `action` on the page.
pub async fn approve(state: &Context, user_id: &str, action: &str) -> ApiResult<()> {
    let mut w = state.store.autocommit().await?;
    store::approve_action(&mut w, user_id, action, state.now_ms()).await?;
    tracing::info!(action, "account action approved");
    Ok(())
}

/// Whether the caller's device signed in through the OAuth API (and so
/// confirms sensitive actions with `m.oauth`).
pub async fn is_oauth_device(state: &Context, user_id: &str, device_id: &str) -> ApiResult<bool> {
    let mut c = state.store.read().await?;
    Ok(store::session_by_device(&mut c, user_id, device_id)
        .await?
        .is_some())
}

/// Spends a fresh approval of a cross-signing reset, if there is one.
pub async fn take_reset_approval(state: &Context, user_id: &str) -> ApiResult<bool> {
    let since = state.now_ms() - APPROVAL_LIFETIME_MS;
    let mut w = state.store.autocommit().await?;
    Ok(store::take_action(&mut w, user_id, CROSS_SIGNING_RESET, since).await?)
}
