//! Signing in through the LDAP directory: which logins go to the directory,
//! the account a first login creates, and the refusals the audit log keeps.
//!
//! Local accounts (admins made with `cloister user create`, accounts
//! registered before the directory was switched on) keep their local
//! password and never ask the directory, so they still sign in while it is
//! down. Accounts the directory created have no local password at all.

use cloister_audit::{Action, Details};
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::ldap::{self, Verdict};
use crate::service::accounts::validate_new_user_id;
use crate::service::{audit, erasure, Context};
use crate::store::{directory, ldap as store, users};

/// Whether `user_id` was created by the directory.
pub async fn is_ldap_account(state: &Context, user_id: &str) -> ApiResult<bool> {
    Ok(store::is_ldap_account(&mut *state.store.read().await?, user_id).await?)
}

/// Whether a password login for `user_id` is the directory's to check: the
/// directory is on, and the account is unknown here or the directory's own.
pub async fn decides(state: &Context, user_id: &str) -> ApiResult<bool> {
    if !state.config.ldap.enabled {
        return Ok(false);
    }
    let exists = users::get(&mut *state.store.read().await?, user_id)
        .await?
        .is_some();
    Ok(!exists || is_ldap_account(state, user_id).await?)
}

fn unavailable() -> ApiError {
    ApiError::new(
        ErrCode::Unknown,
        "The login directory cannot be reached; try again later",
    )
    .with_status(axum::http::StatusCode::SERVICE_UNAVAILABLE)
}

fn invalid() -> ApiError {
    ApiError::forbidden("Invalid username or password")
}

/// The name to ask the directory for: the localpart of a full user id of
/// this server, or what the user typed. None for another server's user id,
/// and for anything that is not a valid localpart (once lower-cased): the
/// directory's matching ignores spaces and case, so `alice `, ` Alice` and
/// `alice` would find one person under three rate-limit buckets.
fn directory_name<'a>(state: &Context, typed: &'a str) -> Option<&'a str> {
    let name = match typed.strip_prefix('@') {
        None => typed,
        Some(rest) => {
            let (localpart, server) = rest.split_once(':')?;
            if !server.eq_ignore_ascii_case(state.server_name()) {
                return None;
            }
            localpart
        }
    };
    crate::ids::is_valid_localpart(&name.to_lowercase()).then_some(name)
}

async fn ask(state: &Context, name: &str, password: &str) -> ApiResult<Verdict> {
    ldap::authenticate(
        &state.config.ldap,
        name,
        password,
        &state.metrics.ldap_errors,
    )
    .await
    .map_err(|ldap::Unreachable| {
        tracing::warn!("LDAP login impossible: no directory server answered");
        unavailable()
    })
}

/// Checks `typed`'s password with the directory and returns the user id to
/// sign in, creating the account on its first login. `attempted` is the user
/// id the login named, for the audit entry of a failure.
pub async fn login(
    state: &Context,
    typed: &str,
    attempted: &str,
    password: Zeroizing<String>,
) -> ApiResult<String> {
    let verdict = match directory_name(state, typed) {
        Some(name) => ask(state, name, &password).await?,
        None => Verdict::Rejected,
    };
    drop(password);
    let refusal = match verdict {
        Verdict::Accepted(user) => return admit(state, user).await,
        Verdict::Rejected => {
            tracing::info!("failed login attempt");
            audit::record_alone(state, audit::by_user(state, attempted, Action::LoginFailed))
                .await?;
            return Err(invalid());
        }
        Verdict::Disabled => "ldap_disabled",
        Verdict::NotInGroup => "ldap_not_in_group",
    };
    tracing::info!(reason = refusal, "directory login refused by policy");
    let details = Details::new()
        .with(refusal, 1)
        .expect("a valid detail name");
    audit::record_alone(
        state,
        audit::by_user(state, attempted, Action::LoginFailed).details(details),
    )
    .await?;
    Err(ApiError::forbidden(
        "This directory account may not sign in to this server",
    ))
}

/// Confirms an LDAP account's password (user-interactive auth): the
/// directory must accept it for the same account.
pub async fn confirm(state: &Context, user_id: &str, password: &str) -> ApiResult<bool> {
    let Some(name) = directory_name(state, user_id) else {
        return Ok(false);
    };
    Ok(match ask(state, name, password).await? {
        Verdict::Accepted(user) => state.user_id(&user.login.to_lowercase()) == user_id,
        _ => false,
    })
}

/// The account for a user the directory accepted: found, or created now.
async fn admit(state: &Context, user: ldap::DirectoryUser) -> ApiResult<String> {
    let localpart = user.login.to_lowercase();
    let user_id = validate_new_user_id(state, &localpart).map_err(|_| {
        tracing::warn!("directory login name is not a valid Matrix localpart");
        invalid()
    })?;
    let existing = users::get(&mut *state.store.read().await?, &user_id).await?;
    match existing {
        Some(account) if account.deactivated => {
            return Err(ApiError::new(
                ErrCode::UserDeactivated,
                "This account has been deactivated",
            ))
        }
        Some(_) if is_ldap_account(state, &user_id).await? => {
            // Only where attributes are imported: otherwise every login
            // would take the write lock for nothing (the sync removes rows
            // left from an earlier configuration).
            let ldap = &state.config.ldap;
            if !(ldap.mail_attribute.is_empty() && ldap.department_attribute.is_empty()) {
                let mut tx = state.store.write().await?;
                directory::set_attributes(&mut tx, &user_id, &user.attributes, state.now_ms())
                    .await?;
                tx.commit().await?;
            }
            return Ok(user_id);
        }
        Some(_) => {
            // The directory must not take over a local account (an admin's).
            tracing::warn!("directory login names a local account; refused");
            return Err(invalid());
        }
        None => {}
    }
    if erasure::is_erased(state, &user_id).await? {
        return Err(ApiError::new(
            ErrCode::UserDeactivated,
            "This account has been deactivated",
        ));
    }
    let display_name = user
        .display_name
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| localpart.clone());
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    if users::create(&mut tx, &user_id, None, false, &display_name, now).await? {
        store::mark(&mut tx, &user_id, now).await?;
        directory::set_attributes(&mut tx, &user_id, &user.attributes, now).await?;
        let details = Details::new().with("ldap", 1).expect("a valid detail name");
        audit::record(
            &mut tx,
            audit::by_user(state, &user_id, Action::AccountCreated).details(details),
        )
        .await?;
        tx.commit().await?;
        tracing::info!("created an account from the LDAP directory");
        return Ok(user_id);
    }
    drop(tx);
    // Another login created it first; it is ours only if it is marked so.
    if is_ldap_account(state, &user_id).await? {
        Ok(user_id)
    } else {
        Err(invalid())
    }
}
