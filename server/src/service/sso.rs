//! Single sign-on, whatever the provider: the sign-in in progress, the
//! account a provider's person is (linked on issuer and subject, created at
//! the first login), the single-use login token the app trades for a
//! session (`m.login.token`), and the provider's logout.
//!
//! The protocol parts live in `service::oidc` and `service::saml`; this
//! module never sees a provider's token or assertion, only the identity it
//! proved.

use cloister_audit::{Action, Details};
use std::sync::atomic::Ordering;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::accounts::validate_new_user_id;
use crate::service::devices::{self, Session};
use crate::service::session::hash_token;
use crate::service::{audit, erasure, oidc, saml, uia, Context};
use crate::store::sso::{self as store, LoginGrant, Pending};
use crate::store::{directory, users};

/// How long the app has to trade a login token for a session.
const LOGIN_TOKEN_LIFETIME_MS: i64 = 2 * 60 * 1000;
const MAX_REDIRECT_LEN: usize = 2048;

/// What a provider proved about the person signing in.
#[derive(Debug)]
pub struct Identity {
    /// The provider's issuer URL (OIDC) or entity id (SAML).
    pub issuer: String,
    /// Its stable, never reassigned id for the person.
    pub subject: String,
    /// The provider's session (OIDC `sid`), for its logout.
    pub session_id: Option<String>,
    /// The localpart a new account gets, before lower-casing.
    pub localpart: Option<String>,
    pub display_name: Option<String>,
    pub mail: Option<String>,
}

/// Why a sign-in failed. Each becomes a page the person reads and an
/// audit entry whose detail names the reason.
#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("There is no identity provider {0:?} on this server.")]
    UnknownProvider(String),
    #[error("The app asked to return to an address that is not a web address.")]
    BadRedirect,
    #[error("This sign-in has expired or was already completed. Start again from the app.")]
    UnknownState,
    #[error("This sign-in response was already used. Start again from the app.")]
    Replayed,
    #[error("The identity provider did not sign you in ({0}).")]
    Provider(String),
    #[error("The identity provider cannot be reached. Try again later.")]
    Unreachable,
    #[error("The identity provider's answer could not be verified ({reason}).")]
    Invalid { reason: &'static str },
    #[error("The identity provider did not say which account name to use.")]
    NoLocalpart,
    #[error(
        "An account {0} already exists and is not linked to this identity provider. \
         Ask the service desk to link it."
    )]
    AccountConflict(String),
    #[error("This account has been deactivated.")]
    Deactivated,
    #[error("You signed in as someone else than the account that asked you to confirm.")]
    WrongAccount,
    #[error("The server could not complete the sign-in. Try again later.")]
    Internal,
}

impl SsoError {
    /// The audit detail naming the reason.
    pub fn detail(&self) -> &'static str {
        match self {
            SsoError::UnknownProvider(_) => "sso_unknown_provider",
            SsoError::BadRedirect => "sso_bad_redirect",
            SsoError::UnknownState => "sso_unsolicited",
            SsoError::Replayed => "sso_replayed",
            SsoError::Provider(_) => "sso_provider_refused",
            SsoError::Unreachable => "sso_provider_unreachable",
            SsoError::Invalid { reason } => reason,
            SsoError::NoLocalpart => "sso_no_localpart",
            SsoError::AccountConflict(_) => "sso_account_conflict",
            SsoError::Deactivated => "sso_deactivated",
            SsoError::WrongAccount => "sso_wrong_account",
            SsoError::Internal => "sso_internal",
        }
    }

    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            SsoError::UnknownProvider(_) => StatusCode::NOT_FOUND,
            SsoError::BadRedirect | SsoError::UnknownState | SsoError::Replayed => {
                StatusCode::BAD_REQUEST
            }
            SsoError::Unreachable => StatusCode::BAD_GATEWAY,
            SsoError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::FORBIDDEN,
        }
    }
}

impl From<sqlx::Error> for SsoError {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "database error during single sign-on");
        SsoError::Internal
    }
}

impl From<ApiError> for SsoError {
    fn from(_: ApiError) -> Self {
        SsoError::Internal
    }
}

/// A provider as `GET /login` shows it.
pub struct ProviderInfo<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub icon: &'a str,
    pub brand: &'a str,
    /// The OIDC issuer or SAML entity id identities are linked on.
    pub issuer: &'a str,
}

/// The configured providers, OIDC first.
pub fn providers(state: &Context) -> Vec<ProviderInfo<'_>> {
    let oidc = state.config.oidc.iter().map(|p| ProviderInfo {
        id: &p.id,
        name: p.display_name(),
        icon: &p.icon,
        brand: &p.brand,
        issuer: &p.issuer,
    });
    let saml = state.config.saml.iter().map(|p| ProviderInfo {
        id: &p.id,
        name: p.display_name(),
        icon: &p.icon,
        brand: &p.brand,
        issuer: &p.idp_entity_id,
    });
    oidc.chain(saml).collect()
}

/// Where to send the browser to begin a sign-in, and what the provider's
/// answer must be checked against.
pub struct ProviderRequest {
    pub url: String,
    /// OIDC `state` / SAML `RelayState`: finds the sign-in again.
    pub state: String,
    /// OIDC nonce / SAML AuthnRequest ID.
    pub nonce: String,
    /// OIDC only; empty for SAML.
    pub pkce_verifier: String,
}

/// The app's `redirectUrl`, checked: an absolute http(s) URL of sane length.
pub fn check_redirect(url: &str) -> Result<(), SsoError> {
    let ok = url.len() <= MAX_REDIRECT_LEN
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(SsoError::BadRedirect)
    }
}

/// What a sign-in in progress is for, kept as its "client redirect": an
/// app's URL, or this prefix and a user-interactive auth session.
const CONFIRMATION: &str = "uia:";

/// Begins a sign-in at provider `idp_id` for an app that wants to get back
/// to `client_redirect`; returns the provider's URL to send the browser to.
pub async fn begin(
    state: &Context,
    idp_id: &str,
    client_redirect: &str,
) -> Result<String, SsoError> {
    check_redirect(client_redirect)?;
    start(state, idp_id, client_redirect.to_owned()).await
}

/// Begins a sign-in that confirms who is behind user-interactive auth
/// session `session_id` (the `m.login.sso` stage).
pub async fn begin_confirmation(
    state: &Context,
    idp_id: &str,
    session_id: &str,
) -> Result<String, SsoError> {
    start(state, idp_id, format!("{CONFIRMATION}{session_id}")).await
}

async fn start(state: &Context, idp_id: &str, target: String) -> Result<String, SsoError> {
    let request = if let Some(provider) = state.config.oidc.iter().find(|p| p.id == idp_id) {
        oidc::authorization_request(state, provider).await?
    } else if let Some(provider) = state.config.saml.iter().find(|p| p.id == idp_id) {
        saml::authn_request(state, provider)
    } else {
        return Err(SsoError::UnknownProvider(idp_id.to_owned()));
    };
    let pending = Pending {
        state: request.state,
        idp_id: idp_id.to_owned(),
        client_redirect: target,
        nonce: request.nonce,
        pkce_verifier: request.pkce_verifier,
        created_ts: state.now_ms(),
    };
    let mut tx = state.store.write().await?;
    store::insert_pending(&mut tx, &pending).await?;
    tx.commit().await?;
    Ok(request.url)
}

/// The providers `user_id` is linked to, to confirm it is them.
pub async fn providers_of<'a>(
    state: &'a Context,
    user_id: &str,
) -> Result<Vec<ProviderInfo<'a>>, SsoError> {
    let links = store::links_of(&mut *state.store.read().await?, user_id).await?;
    Ok(providers(state)
        .into_iter()
        .filter(|p| links.iter().any(|(issuer, _)| issuer == p.issuer))
        .collect())
}

/// How a sign-in at a provider ended.
pub enum Finished {
    /// Back to the app with a login token.
    App(Completion),
    /// A user-interactive auth session is confirmed.
    Confirmed,
}

/// Finishes a sign-in the provider vouched for: a login for an app, or the
/// confirmation of a user-interactive auth session.
pub async fn finish(
    state: &Context,
    pending: &Pending,
    identity: Identity,
) -> Result<Finished, SsoError> {
    let Some(session_id) = pending.client_redirect.strip_prefix(CONFIRMATION) else {
        return complete(state, pending, identity).await.map(Finished::App);
    };
    // Only an existing link counts here; nothing is created.
    let linked = store::linked_user(
        &mut *state.store.read().await?,
        &identity.issuer,
        &identity.subject,
    )
    .await?;
    let wanted = uia::session_user(state, session_id).await?;
    match (linked, wanted) {
        (_, None) => Err(SsoError::UnknownState),
        (Some(linked), Some(wanted)) if linked == wanted => {
            if uia::complete_sso(state, session_id, &linked).await? {
                Ok(Finished::Confirmed)
            } else {
                Err(SsoError::UnknownState)
            }
        }
        _ => Err(SsoError::WrongAccount),
    }
}

/// How long a sign-in at a provider may take (`sso.login_timeout`).
fn login_timeout_ms(state: &Context) -> i64 {
    state
        .config
        .sso
        .login_timeout
        .as_millis()
        .unwrap_or(i64::MAX)
}

/// Takes the sign-in a provider's answer names by `state`: once, and only
/// within `sso.login_timeout`; None when there is no such sign-in (any
/// more).
pub async fn take_pending(state: &Context, state_param: &str) -> Result<Option<Pending>, SsoError> {
    let mut tx = state.store.write().await?;
    let pending = store::take_pending(&mut tx, state_param).await?;
    tx.commit().await?;
    let timeout = login_timeout_ms(state);
    Ok(pending.filter(|p| state.now_ms().saturating_sub(p.created_ts) <= timeout))
}

/// Where the browser goes once the provider vouched for `identity`: the
/// app's URL with a fresh login token, and whether the app is on the
/// operator's allow-list (else the person confirms first).
pub struct Completion {
    pub redirect: String,
    pub allowlisted: bool,
    pub user_id: String,
}

/// Finishes a sign-in: finds or creates the account and issues the login
/// token.
async fn complete(
    state: &Context,
    pending: &Pending,
    identity: Identity,
) -> Result<Completion, SsoError> {
    let user_id = account_for(state, &identity).await?;
    let token = format!("clsso_{}", crate::ids::random_string(40));
    let grant = LoginGrant {
        user_id: user_id.clone(),
        issuer: identity.issuer,
        subject: identity.subject,
        session_id: identity.session_id.unwrap_or_default(),
    };
    let mut tx = state.store.write().await?;
    store::insert_login_token(
        &mut tx,
        &hash_token(&token),
        &grant,
        state.now_ms() + LOGIN_TOKEN_LIFETIME_MS,
    )
    .await?;
    tx.commit().await?;
    state.metrics.sso_logins.fetch_add(1, Ordering::Relaxed);
    let redirect = with_login_token(&pending.client_redirect, &token);
    // The console is this server's own page, not a third-party app.
    let console = format!(
        "{}{}",
        state.config.public_baseurl().trim_end_matches('/'),
        crate::service::console_session::CONSOLE_PATH
    );
    // So are the OAuth sign-in pages, which hand the sign-in on to here.
    let oauth = format!(
        "{}/{}/",
        state.config.public_baseurl().trim_end_matches('/'),
        crate::service::oauth::AUTHORIZE_PATH
    );
    let allowlisted = pending.client_redirect.starts_with(&console)
        || pending.client_redirect.starts_with(&oauth)
        || state.config.sso.client_allowlist.iter().any(|prefix| {
            !prefix.is_empty() && pending.client_redirect.starts_with(prefix.as_str())
        });
    Ok(Completion {
        redirect,
        allowlisted,
        user_id,
    })
}

/// The account `identity` is: its link, or a new account at the first
/// login. An existing account of the same name is never taken over.
async fn account_for(state: &Context, identity: &Identity) -> Result<String, SsoError> {
    let linked = store::linked_user(
        &mut *state.store.read().await?,
        &identity.issuer,
        &identity.subject,
    )
    .await?;
    if let Some(user_id) = linked {
        let account = users::get(&mut *state.store.read().await?, &user_id).await?;
        return match account {
            Some(a) if !a.deactivated => Ok(user_id),
            _ => Err(SsoError::Deactivated),
        };
    }
    let localpart = identity
        .localpart
        .as_deref()
        .map(str::to_lowercase)
        .filter(|l| !l.is_empty())
        .ok_or(SsoError::NoLocalpart)?;
    let user_id = validate_new_user_id(state, &localpart).map_err(|_| SsoError::NoLocalpart)?;
    if erasure::is_erased(state, &user_id).await? {
        return Err(SsoError::Deactivated);
    }
    let now = state.now_ms();
    let display_name = identity
        .display_name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| localpart.clone());
    let mut tx = state.store.write().await?;
    if !users::create(&mut tx, &user_id, None, false, &display_name, now).await? {
        drop(tx);
        // Deactivation removed the link; the name still says who it was.
        let existing = users::get(&mut *state.store.read().await?, &user_id).await?;
        if existing.is_some_and(|u| u.deactivated) {
            return Err(SsoError::Deactivated);
        }
        return Err(SsoError::AccountConflict(user_id));
    }
    if !store::link(&mut tx, &identity.issuer, &identity.subject, &user_id, now).await? {
        // Another node linked this person a moment ago; its account stands.
        drop(tx);
        return Err(SsoError::Internal);
    }
    if let Some(mail) = identity.mail.as_deref().filter(|m| !m.is_empty()) {
        let attributes = directory::Attributes {
            mail: Some(mail.to_owned()),
            department: None,
        };
        directory::set_attributes(&mut tx, &user_id, &attributes, now).await?;
    }
    let details = Details::new().with("sso", 1).expect("a valid detail name");
    audit::record(
        &mut tx,
        audit::by_user(state, &user_id, Action::AccountCreated).details(details),
    )
    .await?;
    tx.commit().await?;
    tracing::info!("created an account at its first single sign-on");
    Ok(user_id)
}

/// `url` with `loginToken` added to its query: Element Web returns to
/// `https://app/#/room/…` and reads the token from the query string,
/// where the spec puts it.
fn with_login_token(url: &str, token: &str) -> String {
    let token: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
    append_query(url, &format!("loginToken={token}"))
}

/// `url` with the encoded `query` added to its query string, before any
/// fragment (an app's or a provider's address may carry both).
pub fn append_query(url: &str, query: &str) -> String {
    let (base, fragment) = match url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (url, None),
    };
    let separator = match base.find('?') {
        None => "?",
        Some(_) if base.ends_with('?') || base.ends_with('&') => "",
        Some(_) => "&",
    };
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{base}{separator}{query}{fragment}")
}

/// Spends a login token once: the grant it stood for, if the token was
/// valid and its account is still active. For `m.login.token`, and for the
/// web console's single sign-on.
pub async fn redeem_login_token(state: &Context, ip: &str, token: &str) -> ApiResult<LoginGrant> {
    // Tokens are 40 random characters; the limit still keeps guessing loud.
    crate::service::accounts::check_login_rate(state, &format!("login:{ip}"))?;
    let mut tx = state.store.write().await?;
    let grant = store::take_login_token(&mut tx, &hash_token(token), state.now_ms()).await?;
    tx.commit().await?;
    let grant = grant.ok_or_else(|| ApiError::forbidden("Invalid or expired login token"))?;
    let account = users::get(&mut *state.store.read().await?, &grant.user_id).await?;
    if account.is_none_or(|a| a.deactivated) {
        return Err(ApiError::new(
            ErrCode::UserDeactivated,
            "This account has been deactivated",
        ));
    }
    Ok(grant)
}

/// `m.login.token`: spends the token once and opens a session on
/// `device_id` (an existing device keeps its keys: the way back after a
/// soft logout).
pub async fn login_with_token(
    state: &Context,
    ip: &str,
    token: &str,
    device_id: Option<&str>,
    display_name: Option<&str>,
) -> ApiResult<Session> {
    let grant = redeem_login_token(state, ip, token).await?;
    let session = devices::open_session(state, &grant.user_id, device_id, display_name).await?;
    let mut tx = state.store.write().await?;
    store::record_device(
        &mut tx,
        &session.user_id,
        &session.device_id,
        &grant,
        state.now_ms(),
    )
    .await?;
    tx.commit().await?;
    tracing::info!("user logged in through single sign-on");
    Ok(session)
}

/// A provider's logout of a subject or one of its sessions: the devices it
/// opened are logged out softly (they keep their keys; the person signs in
/// again on the same device). Returns how many devices.
pub async fn provider_logout(
    state: &Context,
    issuer: &str,
    subject: Option<&str>,
    session_id: Option<&str>,
) -> Result<u64, SsoError> {
    let targets =
        store::devices_to_log_out(&mut *state.store.read().await?, issuer, subject, session_id)
            .await?;
    let mut ended = 0;
    let mut tx = state.store.write().await?;
    for (user_id, device_id) in &targets {
        // An app signed in through the OAuth API must sign in again too,
        // rather than refresh its way past the logout.
        crate::store::oauth::delete_device_sessions(&mut tx, user_id, device_id).await?;
        if users::soft_logout_device(&mut tx, user_id, device_id).await? > 0 {
            ended += 1;
            let entry = audit::system_on_account(state, user_id, "sso_soft_logout");
            audit::record(&mut tx, entry).await?;
        }
    }
    tx.commit().await?;
    if ended > 0 {
        state
            .metrics
            .sso_soft_logouts
            .fetch_add(ended, Ordering::Relaxed);
        tracing::info!(devices = ended, "identity provider logged devices out");
    }
    Ok(ended)
}

/// Audits a refused sign-in (`user_id` when the account is known).
pub async fn audit_refusal(state: &Context, error: &SsoError, user_id: Option<&str>) {
    tracing::info!(reason = error.detail(), "single sign-on refused");
    state.metrics.sso_refusals.fetch_add(1, Ordering::Relaxed);
    let details = Details::new()
        .with(error.detail(), 1)
        .expect("a valid detail name");
    let entry = match user_id {
        Some(user_id) => audit::by_user(state, user_id, Action::LoginFailed),
        None => audit::by_system(state, Action::LoginFailed),
    };
    if let Err(e) = audit::record_alone(state, entry.details(details)).await {
        tracing::error!(error = %e, "could not audit a refused single sign-on");
    }
}

/// Drops expired sign-ins and login tokens (housekeeping).
pub async fn purge_expired(state: &Context) -> Result<u64, sqlx::Error> {
    let now = state.now_ms();
    let timeout = login_timeout_ms(state);
    let mut tx = state.store.write().await?;
    let n = store::purge_expired(&mut tx, now.saturating_sub(timeout), now).await?;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::with_login_token;

    #[test]
    fn the_login_token_goes_into_the_query_before_the_fragment() {
        assert_eq!(
            with_login_token("https://app/", "t"),
            "https://app/?loginToken=t"
        );
        assert_eq!(
            with_login_token("https://app/#/room/!r:x?via=y", "t"),
            "https://app/?loginToken=t#/room/!r:x?via=y"
        );
        assert_eq!(
            with_login_token("https://app/?a=b#/home", "t"),
            "https://app/?a=b&loginToken=t#/home"
        );
        assert_eq!(
            with_login_token("https://app/?", "t"),
            "https://app/?loginToken=t"
        );
    }
}
