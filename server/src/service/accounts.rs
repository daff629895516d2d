//! Accounts: registration, password login, password change and
//! deactivation. Every unauthenticated way to learn about an account (login,
//! name availability, registration tokens) spends the failed-login buckets,
//! so none of them is a free oracle.

use serde_json::Value;
use zeroize::Zeroizing;

use cloister_audit::Action;

use crate::config::{PasswordLoginMode, Registration};
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::ids;
use crate::service::devices::{self, Session};
use crate::service::session::hash_token;
use crate::service::Context;
use crate::service::{audit, erasure, ldap_login, uia};
use crate::store::users;

pub(crate) fn check_login_rate(state: &Context, key: &str) -> ApiResult<()> {
    if state.config.rate_limit.enabled {
        state
            .login_limiter
            .check(key)
            .map_err(ApiError::limit_exceeded)?;
    }
    Ok(())
}

/// The full user id for a new account's localpart, if the server would
/// accept it.
pub fn validate_new_user_id(state: &Context, localpart: &str) -> ApiResult<String> {
    if !ids::is_valid_localpart(localpart) {
        return Err(ApiError::new(
            ErrCode::InvalidUsername,
            "User names may contain only a-z, 0-9 and . _ = - / +",
        ));
    }
    if ids::is_reserved_localpart(localpart) {
        return Err(ApiError::new(
            ErrCode::Exclusive,
            "That user name is reserved by the server",
        ));
    }
    let user_id = state.user_id(localpart);
    if user_id.len() > 255 {
        return Err(ApiError::new(
            ErrCode::InvalidUsername,
            "User id is too long",
        ));
    }
    Ok(user_id)
}

/// The bound keeps one request from buying an arbitrarily long hash.
pub fn validate_password(password: &str) -> ApiResult<()> {
    if password.is_empty() || password.len() > 1024 {
        return Err(ApiError::new(
            ErrCode::WeakPassword,
            "Password must be 1 to 1024 bytes",
        ));
    }
    Ok(())
}

fn taken() -> ApiError {
    ApiError::new(ErrCode::UserInUse, "That user id is taken")
}

/// An erased id stays taken: its pseudonym is in the audit log, and a new
/// account under it would inherit that history.
pub(crate) async fn refuse_taken(state: &Context, user_id: &str) -> ApiResult<()> {
    if users::get(&mut *state.store.read().await?, user_id)
        .await?
        .is_some()
        || erasure::is_erased(state, user_id).await?
    {
        return Err(taken());
    }
    Ok(())
}

fn registration_flows(state: &Context) -> ApiResult<&'static [&'static [&'static str]]> {
    match state.config.registration {
        Registration::Closed => Err(ApiError::forbidden(
            "Registration is disabled on this server",
        )),
        Registration::Open => Ok(&[&[uia::DUMMY]]),
        Registration::Token => Ok(&[&[uia::REGISTRATION_TOKEN]]),
    }
}

/// What a client asks for when it registers.
pub struct NewAccount<'a> {
    /// Anything but a full user account (`kind` other than `user`).
    pub guest: bool,
    /// None picks a random localpart.
    pub username: Option<&'a str>,
    pub password: Option<Zeroizing<String>>,
    /// The user-interactive auth dict, if the client sent one.
    pub uia: Option<&'a Value>,
    pub device_id: Option<&'a str>,
    pub device_display_name: Option<&'a str>,
    /// Create the account without signing in.
    pub inhibit_login: bool,
}

pub struct Registered {
    pub user_id: String,
    /// None when the client asked not to be signed in.
    pub session: Option<Session>,
}

/// Creates an account once user-interactive auth is complete. `ip` is the
/// client's address, for the attempt limit.
pub async fn register(state: &Context, ip: &str, new: NewAccount<'_>) -> ApiResult<Registered> {
    if new.guest {
        return Err(ApiError::forbidden("Guest access is not enabled")
            .with_code(ErrCode::GuestAccessForbidden));
    }
    let flows = registration_flows(state)?;
    let localpart = match new.username {
        Some(name) => name.to_lowercase(),
        None => ids::random_string(12).to_lowercase(),
    };
    let user_id = validate_new_user_id(state, &localpart)?;
    refuse_taken(state, &user_id).await?;
    let password = new
        .password
        .ok_or_else(|| ApiError::missing_param("password is required"))?;
    validate_password(&password)?;
    // Only answers to a challenge guess at a registration token.
    if new.uia.is_some() {
        check_login_rate(state, &format!("register:{ip}"))?;
    }
    uia::check(state, flows, new.uia, None).await?;

    let hash = state.passwords.hash(password).await?;
    let mut tx = state.store.write().await?;
    let created = users::create(
        &mut tx,
        &user_id,
        Some(&hash),
        false,
        &localpart,
        state.now_ms(),
    )
    .await?;
    if !created {
        return Err(taken());
    }
    audit::record(
        &mut tx,
        audit::by_user(state, &user_id, Action::AccountCreated),
    )
    .await?;
    tx.commit().await?;
    tracing::info!("registered a new user");
    if new.inhibit_login {
        return Ok(Registered {
            user_id,
            session: None,
        });
    }
    let session =
        devices::open_session(state, &user_id, new.device_id, new.device_display_name).await?;
    Ok(Registered {
        user_id,
        session: Some(session),
    })
}

/// Succeeds when `username` could be registered. Unauthenticated, so it
/// says which accounts exist: only while anyone may register (as Synapse
/// does), and at the pace of login attempts.
pub async fn check_available(state: &Context, ip: &str, username: Option<&str>) -> ApiResult<()> {
    if state.config.registration == Registration::Closed {
        return Err(ApiError::forbidden(
            "Registration is disabled on this server",
        ));
    }
    check_login_rate(state, &format!("available:{ip}"))?;
    let username = username.ok_or_else(|| ApiError::missing_param("username is required"))?;
    let user_id = validate_new_user_id(state, &username.to_lowercase())?;
    refuse_taken(state, &user_id).await
}

/// Whether a registration token would be accepted, without using it up.
pub async fn registration_token_valid(state: &Context, ip: &str, token: &str) -> ApiResult<bool> {
    check_login_rate(state, &format!("token:{ip}"))?;
    Ok(users::registration_token_valid(
        &mut *state.store.read().await?,
        &hash_token(token),
        state.now_ms(),
    )
    .await?)
}

pub(crate) fn password_login_off() -> ApiError {
    ApiError::forbidden(
        "Password login is switched off here; sign in with your organisation's single sign-on",
    )
}

/// A password login: `user` is a localpart or a full user id.
pub struct PasswordLogin<'a> {
    pub user: &'a str,
    pub password: Zeroizing<String>,
    pub device_id: Option<&'a str>,
    pub device_display_name: Option<&'a str>,
}

/// Signs in with a password. Unknown, deactivated and password-less
/// accounts fail exactly as a wrong password does; with LDAP on, the
/// directory's logins follow `ldap_login`'s rules instead.
pub async fn login_with_password(
    state: &Context,
    ip: &str,
    login: PasswordLogin<'_>,
) -> ApiResult<Session> {
    let checked = check_password(state, ip, login.user, login.password).await?;
    password_login_allowed(state, &checked)?;
    let session = devices::open_session(
        state,
        &checked.user_id,
        login.device_id,
        login.device_display_name,
    )
    .await?;
    tracing::info!(directory = checked.by_directory, "user logged in");
    Ok(session)
}

/// `password_login = "admins"`: only administrators and the directory's
/// own logins (not "password logins" in this sense) may go on.
pub fn password_login_allowed(state: &Context, checked: &CheckedPassword) -> ApiResult<()> {
    if state.config.sso.password_login == PasswordLoginMode::Admins
        && !checked.is_admin
        && !checked.by_directory
    {
        return Err(password_login_off());
    }
    Ok(())
}

/// An account whose password was just checked.
pub struct CheckedPassword {
    pub user_id: String,
    pub is_admin: bool,
    pub by_directory: bool,
}

/// Checks `user`'s password (locally or at the LDAP directory) under the
/// login attempt limits, without signing anything in. `password_login =
/// "admins"` is the caller's to apply: who counts as staff differs.
pub async fn check_password(
    state: &Context,
    ip: &str,
    user: &str,
    password: Zeroizing<String>,
) -> ApiResult<CheckedPassword> {
    let user_id = if user.starts_with('@') {
        user.to_lowercase()
    } else {
        state.user_id(&user.to_lowercase())
    };
    check_login_rate(state, &format!("login:{ip}"))?;
    check_login_rate(state, &format!("login:{user_id}"))?;
    if state.config.sso.password_login == PasswordLoginMode::Off {
        return Err(password_login_off());
    }
    if ldap_login::decides(state, &user_id).await? {
        let user_id = ldap_login::login(state, user, &user_id, password).await?;
        let is_admin = users::get(&mut *state.store.read().await?, &user_id)
            .await?
            .is_some_and(|u| u.is_admin);
        return Ok(CheckedPassword {
            user_id,
            is_admin,
            by_directory: true,
        });
    }
    let user = users::get(&mut *state.store.read().await?, &user_id)
        .await?
        .filter(|u| !u.deactivated);
    let is_admin = user.as_ref().is_some_and(|u| u.is_admin);
    let stored = user.and_then(|u| u.password_hash);
    if !state.passwords.check(password, stored).await? {
        tracing::info!("failed login attempt");
        audit::record_alone(state, audit::by_user(state, &user_id, Action::LoginFailed)).await?;
        return Err(ApiError::forbidden("Invalid username or password"));
    }
    Ok(CheckedPassword {
        user_id,
        is_admin,
        by_directory: false,
    })
}

/// Changes the password of `user_id` after it is confirmed again; unless
/// `keep_other_devices`, signs out every device but `device_id`.
pub async fn change_password(
    state: &Context,
    user_id: &str,
    device_id: &str,
    uia: Option<&Value>,
    new_password: Zeroizing<String>,
    keep_other_devices: bool,
) -> ApiResult<()> {
    // A local password would outlive the directory's say over the account.
    if ldap_login::is_ldap_account(state, user_id).await? {
        return Err(ApiError::forbidden(
            "This account's password is managed by the LDAP directory",
        ));
    }
    uia::check(state, &[&[uia::PASSWORD]], uia, Some(user_id)).await?;
    validate_password(&new_password)?;
    let hash = state.passwords.hash(new_password).await?;
    let mut tx = state.store.write().await?;
    users::set_password_hash(&mut tx, user_id, &hash).await?;
    let entry = audit::by_user(state, user_id, Action::PasswordChanged);
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    if !keep_other_devices {
        devices::delete_all_except(state, user_id, Some(device_id)).await?;
    }
    tracing::info!("password changed");
    Ok(())
}

/// Deactivation at the account owner's request, confirmed with the password.
/// Erasing what the user sent is the compliance layer's job.
pub async fn deactivate(state: &Context, user_id: &str, uia: Option<&Value>) -> ApiResult<()> {
    uia::check(state, &[&[uia::PASSWORD]], uia, Some(user_id)).await?;
    let entry = audit::by_user(state, user_id, Action::AccountDeactivated);
    devices::deactivate_user(state, user_id, entry).await
}

/// Deactivation by a server admin (`admin_id`), who must already be admitted.
pub async fn deactivate_by_admin(state: &Context, admin_id: &str, user_id: &str) -> ApiResult<()> {
    match users::get(&mut *state.store.read().await?, user_id).await? {
        Some(user) if !user.deactivated => {}
        Some(_) => {
            return Err(ApiError::invalid_param(
                "That account is already deactivated",
            ))
        }
        None => return Err(ApiError::not_found("Unknown user")),
    }
    let entry = audit::by_user(state, admin_id, Action::AccountDeactivated)
        .target(state.audit.target(user_id));
    devices::deactivate_user(state, user_id, entry).await
}
