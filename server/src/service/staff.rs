//! What staff do to accounts, from the shell (`cloister user …`,
//! `cloister registration-token …`, `cloister admin role …`) or from the
//! web console: create accounts, reset passwords, registration tokens, and
//! the console roles themselves. One place, so both are held to the same
//! rules and leave the same audit entries.

use cloister_audit::{Action, Actor, NewEntry, Target};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult};
use crate::service::accounts::{refuse_taken, validate_new_user_id, validate_password};
use crate::service::session::hash_token;
use crate::service::{audit, devices as devices_service, Context};
use crate::store::{console, devices, users};

/// A console role. Kept apart from the Matrix admin flag: the operator need
/// not be the data-protection officer, nor the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Accounts, devices, registration tokens, server health.
    Operator,
    /// Retention, legal holds, erasure, exports, the audit log and the
    /// record of processing.
    Dpo,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "dpo" => Some(Role::Dpo),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Dpo => "dpo",
        }
    }
}

/// Who acts: the operator at the server's shell, or a signed-in staff member.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    Shell,
    Staff(&'a str),
}

impl By<'_> {
    pub fn actor(self, state: &Context) -> Actor {
        match self {
            By::Shell => Actor::system(),
            By::Staff(user_id) => state.audit.actor(user_id),
        }
    }

    fn entry(self, state: &Context, action: Action) -> NewEntry {
        audit::by_actor(state, self.actor(state), action)
    }
}

/// Creates an account with a password; `admin` sets the Matrix admin flag.
pub async fn create_account(
    state: &Context,
    by: By<'_>,
    localpart: &str,
    password: Zeroizing<String>,
    admin: bool,
) -> ApiResult<String> {
    let localpart = localpart.to_lowercase();
    let user_id = validate_new_user_id(state, &localpart)?;
    validate_password(&password)?;
    // Staff are told why; public registration only hears "taken".
    if crate::service::erasure::is_erased(state, &user_id).await? {
        return Err(ApiError::new(
            crate::error::ErrCode::UserInUse,
            "That user id belonged to a person who was erased; it cannot be used again",
        ));
    }
    refuse_taken(state, &user_id).await?;
    let hash = state.passwords.hash(password).await?;
    let mut tx = state.store.write().await?;
    if !users::create(
        &mut tx,
        &user_id,
        Some(&hash),
        admin,
        &localpart,
        state.now_ms(),
    )
    .await?
    {
        return Err(ApiError::new(
            crate::error::ErrCode::UserInUse,
            "That user id is taken",
        ));
    }
    let entry = by
        .entry(state, Action::AccountCreated)
        .target(state.audit.target(&user_id));
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(user_id)
}

/// Sets a new password and signs the account out everywhere: every
/// device's token and every console session. Devices (and their keys) stay.
pub async fn reset_password(
    state: &Context,
    by: By<'_>,
    user_id: &str,
    password: Zeroizing<String>,
) -> ApiResult<()> {
    validate_password(&password)?;
    let hash = state.passwords.hash(password).await?;
    let mut tx = state.store.write().await?;
    if !users::set_password_hash(&mut tx, user_id, &hash).await? {
        return Err(ApiError::not_found("Unknown user"));
    }
    for device in devices::list(tx.conn(), user_id).await? {
        users::delete_tokens_for_device(&mut tx, user_id, &device.device_id).await?;
    }
    console::delete_sessions_of(&mut tx, user_id).await?;
    let entry = by
        .entry(state, Action::PasswordChanged)
        .target(state.audit.target(user_id));
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(())
}

/// The console roles `user_id` holds.
pub async fn roles(state: &Context, user_id: &str) -> ApiResult<Vec<Role>> {
    let names = console::roles_of(&mut *state.store.read().await?, user_id).await?;
    Ok(names.iter().filter_map(|r| Role::parse(r)).collect())
}

/// Every account holding a role, with the role; for the shell.
pub async fn all_roles(state: &Context) -> ApiResult<Vec<(String, Role)>> {
    let pairs = console::all_roles(&mut *state.store.read().await?).await?;
    Ok(pairs
        .into_iter()
        .filter_map(|(user, role)| Role::parse(&role).map(|r| (user, r)))
        .collect())
}

/// Grants a role from the shell. Roles are never granted from the console:
/// who may act as DPO is decided on the server, not by another role.
pub async fn grant_role(state: &Context, user_id: &str, role: Role) -> ApiResult<bool> {
    match users::get(&mut *state.store.read().await?, user_id).await? {
        Some(user) if !user.deactivated => {}
        Some(_) => return Err(ApiError::invalid_param("That account is deactivated")),
        None => return Err(ApiError::not_found("Unknown user")),
    }
    let mut tx = state.store.write().await?;
    let new = console::grant_role(&mut tx, user_id, role.as_str(), state.now_ms()).await?;
    if new {
        let detail = format!("console_role_granted_{}", role.as_str());
        audit::record(&mut tx, audit::system_on_account(state, user_id, &detail)).await?;
    }
    tx.commit().await?;
    Ok(new)
}

/// Takes a role away; the account's console sessions end at once.
pub async fn revoke_role(state: &Context, user_id: &str, role: Role) -> ApiResult<bool> {
    let mut tx = state.store.write().await?;
    let had = console::revoke_role(&mut tx, user_id, role.as_str()).await?;
    if had {
        console::delete_sessions_of(&mut tx, user_id).await?;
        let detail = format!("console_role_revoked_{}", role.as_str());
        audit::record(&mut tx, audit::system_on_account(state, user_id, &detail)).await?;
    }
    tx.commit().await?;
    Ok(had)
}

/// A registration token as staff see it: never the token itself (only its
/// digest is stored), but a short handle derived from the digest.
#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub uses_allowed: Option<i64>,
    pub uses: i64,
    pub expiry_ts: Option<i64>,
    pub created_ts: i64,
}

fn token_id(token_hash: &[u8]) -> String {
    token_hash
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new registration token: the token (shown once) and how it is listed.
pub struct NewToken {
    pub token: Zeroizing<String>,
    pub info: TokenInfo,
}

pub async fn create_registration_token(
    state: &Context,
    by: By<'_>,
    uses_allowed: Option<i64>,
    expiry_hours: Option<i64>,
) -> ApiResult<NewToken> {
    if uses_allowed.is_some_and(|n| !(1..=1_000_000).contains(&n)) {
        return Err(ApiError::invalid_param("uses_allowed must be 1 to 1000000"));
    }
    // Ten years bounds the arithmetic and any sensible token.
    if expiry_hours.is_some_and(|h| !(1..=87_600).contains(&h)) {
        return Err(ApiError::invalid_param("expiry_hours must be 1 to 87600"));
    }
    let token = Zeroizing::new(crate::ids::random_string(32));
    let hash = hash_token(&token);
    let now = state.now_ms();
    let expiry_ts = expiry_hours.map(|h| now + h * 3_600_000);
    let mut tx = state.store.write().await?;
    users::create_registration_token(&mut tx, &hash, uses_allowed, expiry_ts, now).await?;
    let entry = by
        .entry(state, Action::AdminCall)
        .target(Target::new("registration_token.create").map_err(|_| ApiError::internal())?);
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(NewToken {
        token,
        info: TokenInfo {
            id: token_id(&hash),
            uses_allowed,
            uses: 0,
            expiry_ts,
            created_ts: now,
        },
    })
}

pub async fn registration_tokens(state: &Context) -> ApiResult<Vec<TokenInfo>> {
    let rows = console::registration_tokens(&mut *state.store.read().await?).await?;
    Ok(rows
        .into_iter()
        .map(|r| TokenInfo {
            id: token_id(&r.token_hash),
            uses_allowed: r.uses_allowed,
            uses: r.uses,
            expiry_ts: r.expiry_ts,
            created_ts: r.created_ts,
        })
        .collect())
}

pub async fn delete_registration_token(state: &Context, by: By<'_>, id: &str) -> ApiResult<()> {
    let rows = console::registration_tokens(&mut *state.store.read().await?).await?;
    let Some(row) = rows.iter().find(|r| token_id(&r.token_hash) == id) else {
        return Err(ApiError::not_found("Unknown registration token"));
    };
    let mut tx = state.store.write().await?;
    console::delete_registration_token(&mut tx, &row.token_hash).await?;
    let target = Target::new("registration_token.delete").map_err(|_| ApiError::internal())?;
    audit::record(&mut tx, by.entry(state, Action::AdminCall).target(target)).await?;
    tx.commit().await?;
    Ok(())
}

/// One account in the console's list.
#[derive(Debug, Serialize)]
pub struct AccountSummary {
    pub user_id: String,
    pub admin: bool,
    pub deactivated: bool,
    pub created_ts: i64,
}

const MAX_LISTED: i64 = 200;

/// Accounts whose id contains `needle`, in id order after `after`.
pub async fn search_accounts(
    state: &Context,
    needle: &str,
    after: Option<&str>,
    limit: i64,
) -> ApiResult<Vec<AccountSummary>> {
    if needle.len() > 255 {
        return Err(ApiError::invalid_param("The search text is too long"));
    }
    let rows = console::search_accounts(
        &mut *state.store.read().await?,
        &needle.to_lowercase(),
        after,
        limit.clamp(1, MAX_LISTED),
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| AccountSummary {
            user_id: r.user_id,
            admin: r.is_admin,
            deactivated: r.deactivated,
            created_ts: r.created_ts,
        })
        .collect())
}

/// An account with its devices, for the console's account page.
#[derive(Debug, Serialize)]
pub struct AccountDetail {
    #[serde(flatten)]
    pub summary: AccountSummary,
    pub roles: Vec<Role>,
    pub devices: Vec<DeviceLine>,
}

#[derive(Debug, Serialize)]
pub struct DeviceLine {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
}

pub async fn account(state: &Context, user_id: &str) -> ApiResult<AccountDetail> {
    let mut conn = state.store.read().await?;
    let user = users::get(&mut conn, user_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown user"))?;
    let created_ts = console::created_ts(&mut conn, user_id).await?.unwrap_or(0);
    let devices = devices::list(&mut conn, user_id)
        .await?
        .into_iter()
        .map(|d| DeviceLine {
            device_id: d.device_id,
            display_name: d.display_name,
            last_seen_ts: d.last_seen_ts,
        })
        .collect();
    drop(conn);
    Ok(AccountDetail {
        summary: AccountSummary {
            user_id: user.user_id,
            admin: user.is_admin,
            deactivated: user.deactivated,
            created_ts,
        },
        roles: roles(state, user_id).await?,
        devices,
    })
}

/// Deletes one device of `user_id` (its session ends), by staff.
pub async fn delete_device(
    state: &Context,
    by: By<'_>,
    user_id: &str,
    device_id: &str,
) -> ApiResult<()> {
    devices_service::get(state, user_id, device_id).await?;
    devices_service::delete_devices_by(state, user_id, &[device_id.to_owned()], by.actor(state))
        .await
}
