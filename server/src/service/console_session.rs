//! Web console sessions: sign-in with a password (or the LDAP directory),
//! the session behind the cookie, its CSRF token, and its idle and absolute
//! limits. The cookie is 256 random bits, stored only as its SHA-256
//! digest. The CSRF token is derived from the cookie with a domain-separated
//! hash, so the page can be handed it again after a reload, yet only a
//! holder of the (HttpOnly) cookie can know it; it is compared in constant
//! time.

use cloister_audit::{Action, Target};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::session::hash_token;
use crate::service::staff::{self, Role};
use crate::service::{accounts, audit, Context};
use crate::store::{console, users};

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/_cloister/console/";

/// Only one `last_seen` write per session this often; the idle limit is
/// coarse by as much.
const TOUCH_GRANULARITY_MS: i64 = 15_000;

/// A signed-in staff member, as found from the cookie. Not `Debug`: it
/// carries the CSRF token.
#[derive(Clone)]
pub struct Staff {
    pub user_id: String,
    pub roles: Vec<Role>,
    pub expires_ts: i64,
    pub csrf_token: Zeroizing<String>,
    session_hash: Vec<u8>,
}

impl Staff {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// A change must carry the session's CSRF token.
    pub fn check_csrf(&self, presented: Option<&str>) -> ApiResult<()> {
        let ok =
            presented.is_some_and(|t| bool::from(t.as_bytes().ct_eq(self.csrf_token.as_bytes())));
        if ok {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "This change needs the console's CSRF token (X-CSRF-Token)",
            ))
        }
    }
}

/// What a sign-in hands out: the cookie's value (shown once) and the staff
/// member it signs in.
pub struct SignedIn {
    pub cookie: Zeroizing<String>,
    pub staff: Staff,
}

fn csrf_token_for(cookie: &str) -> Zeroizing<String> {
    let mut digest = Sha256::new();
    digest.update(b"cloister console csrf\0");
    digest.update(cookie.as_bytes());
    Zeroizing::new(
        digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// Signs a staff member in. Wrong credentials fail as at `/login` (same
/// limits, same audit entry); an account with no console role is refused.
/// `password_login = "admins"` lets staff in too: it keeps password logins
/// for the people who run the server, and that is who staff are.
pub async fn sign_in(
    state: &Context,
    ip: &str,
    user: &str,
    password: Zeroizing<String>,
) -> ApiResult<SignedIn> {
    let checked = accounts::check_password(state, ip, user, password).await?;
    open(state, checked.user_id).await
}

/// Signs a staff member in with a login token from single sign-on (the
/// console sent the browser to `/login/sso/redirect` with itself as the
/// redirect).
pub async fn sign_in_with_token(state: &Context, ip: &str, token: &str) -> ApiResult<SignedIn> {
    let grant = crate::service::sso::redeem_login_token(state, ip, token).await?;
    open(state, grant.user_id).await
}

/// Opens a session for `user_id`, whose credentials were just checked,
/// if it holds a console role.
async fn open(state: &Context, user_id: String) -> ApiResult<SignedIn> {
    let roles = staff::roles(state, &user_id).await?;
    if roles.is_empty() {
        audit::record_alone(state, console_entry(state, &user_id, Action::LoginFailed)?).await?;
        return Err(ApiError::forbidden(
            "This account has no console role (operator or dpo)",
        ));
    }
    let cookie = Zeroizing::new(crate::ids::random_string(43));
    let now = state.now_ms();
    let lifetime = state.config.console.session_lifetime_secs as i64 * 1000;
    let session_hash = hash_token(&cookie);
    let mut tx = state.store.write().await?;
    console::purge_sessions(&mut tx, now - idle_ms(state), now).await?;
    console::insert_session(
        &mut tx,
        &console::NewSession {
            session_hash: &session_hash,
            user_id: &user_id,
            now,
            expires_ts: now + lifetime,
        },
    )
    .await?;
    audit::record(&mut tx, console_entry(state, &user_id, Action::Login)?).await?;
    tx.commit().await?;
    tracing::info!("staff member signed in to the console");
    let staff = Staff {
        user_id,
        roles,
        expires_ts: now + lifetime,
        csrf_token: csrf_token_for(&cookie),
        session_hash,
    };
    Ok(SignedIn { cookie, staff })
}

fn console_entry(
    state: &Context,
    user_id: &str,
    action: Action,
) -> ApiResult<cloister_audit::NewEntry> {
    let target = Target::new("console").map_err(|_| ApiError::internal())?;
    Ok(audit::by_user(state, user_id, action).target(target))
}

fn idle_ms(state: &Context) -> i64 {
    state.config.console.idle_timeout_secs as i64 * 1000
}

fn session_ended() -> ApiError {
    ApiError::new(
        ErrCode::UnknownToken,
        "The console session has ended; sign in again",
    )
}

/// The staff member behind a cookie. Expired or idle sessions are deleted
/// and answer `M_UNKNOWN_TOKEN`, as does an account deactivated or left
/// with no role since it signed in.
pub async fn authenticate(state: &Context, cookie: &str) -> ApiResult<Staff> {
    let session_hash = hash_token(cookie);
    let mut conn = state.store.autocommit().await?;
    let Some(found) = console::session(&mut conn, &session_hash).await? else {
        return Err(session_ended());
    };
    let now = state.now_ms();
    let usable = found.expires_ts > now
        && now - found.last_seen_ts <= idle_ms(state)
        && users::get(&mut conn, &found.user_id)
            .await?
            .is_some_and(|u| !u.deactivated);
    let roles = if usable {
        staff::roles(state, &found.user_id).await?
    } else {
        Vec::new()
    };
    if roles.is_empty() {
        console::delete_session(&mut conn, &session_hash).await?;
        return Err(session_ended());
    }
    if now - found.last_seen_ts > TOUCH_GRANULARITY_MS {
        console::touch_session(&mut conn, &session_hash, now).await?;
    }
    Ok(Staff {
        user_id: found.user_id,
        roles,
        expires_ts: found.expires_ts,
        csrf_token: csrf_token_for(cookie),
        session_hash,
    })
}

/// Deletes sessions past their idle or absolute limit (they are refused
/// anyway; this keeps the table to the sessions that can still be used).
pub async fn purge_expired(state: &Context) -> Result<u64, sqlx::Error> {
    let now = state.now_ms();
    let mut conn = state.store.autocommit().await?;
    console::purge_sessions(&mut conn, now - idle_ms(state), now).await
}

/// Ends the session (sign-out).
pub async fn sign_out(state: &Context, staff: &Staff) -> ApiResult<()> {
    let mut conn = state.store.autocommit().await?;
    console::delete_session(&mut conn, &staff.session_hash).await?;
    Ok(())
}
