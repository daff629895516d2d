//! Users, access tokens, registration tokens and user-interactive-auth sessions.

use sqlx::{AnyConnection, Row};

use super::{WriteTx, Writer};

#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub user_id: String,
    pub device_id: String,
    pub is_admin: bool,
    pub deactivated: bool,
    pub last_seen_ts: Option<i64>,
    pub soft_logout: bool,
    /// When the token stops working (tokens from the OAuth token endpoint).
    pub expires_ts: Option<i64>,
}

pub struct User {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub deactivated: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

pub async fn user_for_token(
    c: &mut AnyConnection,
    token_hash: &[u8],
) -> Result<Option<TokenOwner>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT t.user_id, t.device_id, u.is_admin, u.deactivated, d.last_seen_ts, t.soft_logout, t.expires_ts FROM access_tokens t \
         JOIN users u ON u.user_id = t.user_id \
         LEFT JOIN devices d ON d.user_id = t.user_id AND d.device_id = t.device_id WHERE t.token_hash = $1",
    )
    .bind(token_hash.to_vec())
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        Ok(TokenOwner {
            user_id: r.try_get(0)?,
            device_id: r.try_get(1)?,
            is_admin: super::codec::flag(&r, 2)?,
            deactivated: super::codec::flag(&r, 3)?,
            last_seen_ts: r.try_get(4)?,
            soft_logout: super::codec::flag(&r, 5)?,
            expires_ts: r.try_get(6)?,
        })
    })
    .transpose()
}

pub async fn get(c: &mut AnyConnection, user_id: &str) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, password_hash, is_admin, deactivated, displayname, avatar_url FROM users WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        Ok(User {
            user_id: r.try_get(0)?,
            password_hash: r.try_get(1)?,
            is_admin: super::codec::flag(&r, 2)?,
            deactivated: super::codec::flag(&r, 3)?,
            displayname: r.try_get(4)?,
            avatar_url: r.try_get(5)?,
        })
    })
    .transpose()
}

/// Inserts a user; returns false if the id is taken.
pub async fn create(
    tx: &mut WriteTx,
    user_id: &str,
    password_hash: Option<&str>,
    is_admin: bool,
    displayname: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO users (user_id, password_hash, is_admin, deactivated, displayname, created_ts) \
         VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(password_hash)
    .bind(super::codec::flag_param(is_admin))
    .bind(displayname)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(result.rows_affected() == 1)
}

pub async fn set_password_hash(
    tx: &mut WriteTx,
    user_id: &str,
    hash: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("UPDATE users SET password_hash = $1 WHERE user_id = $2")
        .bind(hash)
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_deactivated(tx: &mut WriteTx, user_id: &str) -> Result<(), sqlx::Error> {
    tx.ends_sessions();
    sqlx::query("UPDATE users SET deactivated = 1, password_hash = NULL WHERE user_id = $1")
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn set_profile_field(
    tx: &mut WriteTx,
    user_id: &str,
    field: ProfileField,
    value: Option<&str>,
) -> Result<(), sqlx::Error> {
    let sql = match field {
        ProfileField::Displayname => "UPDATE users SET displayname = $1 WHERE user_id = $2",
        ProfileField::AvatarUrl => "UPDATE users SET avatar_url = $1 WHERE user_id = $2",
    };
    sqlx::query(sql)
        .bind(value)
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileField {
    Displayname,
    AvatarUrl,
}

impl ProfileField {
    pub fn key(self) -> &'static str {
        match self {
            ProfileField::Displayname => "displayname",
            ProfileField::AvatarUrl => "avatar_url",
        }
    }
}

pub async fn insert_token(
    tx: &mut WriteTx,
    token_hash: &[u8],
    user_id: &str,
    device_id: &str,
    now: i64,
    expires_ts: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts) VALUES ($1, $2, $3, $4, $5)")
        .bind(token_hash.to_vec())
        .bind(user_id)
        .bind(device_id)
        .bind(now)
        .bind(expires_ts)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Drops a device's access tokens that have expired.
pub async fn delete_expired_tokens(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2 \
         AND expires_ts IS NOT NULL AND expires_ts <= $3",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    if r.rows_affected() > 0 {
        tx.ends_sessions();
    }
    Ok(())
}

pub async fn delete_tokens_for_device(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
) -> Result<(), sqlx::Error> {
    tx.ends_sessions();
    sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(device_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Ends the sessions of a device "softly": its tokens stop working but
/// say so with `soft_logout`, and the device and its keys stay.
pub async fn soft_logout_device(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
) -> Result<u64, sqlx::Error> {
    tx.ends_sessions();
    let r = sqlx::query(
        "UPDATE access_tokens SET soft_logout = 1 WHERE user_id = $1 AND device_id = $2 AND soft_logout = 0",
    )
    .bind(user_id)
    .bind(device_id)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected())
}

/// Consumes one use of a registration token; false when it is unknown,
/// expired or used up. The conditional UPDATE makes concurrent uses safe.
pub async fn use_registration_token(
    w: &mut impl Writer,
    token_hash: &[u8],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE registration_tokens SET uses = uses + 1 WHERE token_hash = $1 \
         AND (uses_allowed IS NULL OR uses < uses_allowed) AND (expiry_ts IS NULL OR expiry_ts > $2)",
    )
    .bind(token_hash.to_vec())
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn registration_token_valid(
    c: &mut AnyConnection,
    token_hash: &[u8],
    now: i64,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM registration_tokens WHERE token_hash = $1 \
         AND (uses_allowed IS NULL OR uses < uses_allowed) AND (expiry_ts IS NULL OR expiry_ts > $2)",
    )
    .bind(token_hash.to_vec())
    .bind(now)
    .fetch_one(c)
    .await?;
    Ok(n > 0)
}

pub async fn create_registration_token(
    tx: &mut WriteTx,
    token_hash: &[u8],
    uses_allowed: Option<i64>,
    expiry_ts: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO registration_tokens (token_hash, uses_allowed, uses, expiry_ts, created_ts) VALUES ($1, $2, 0, $3, $4)")
        .bind(token_hash.to_vec())
        .bind(uses_allowed)
        .bind(expiry_ts)
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub struct UiaSession {
    pub user_id: Option<String>,
    pub request_hash: String,
    pub completed: Vec<String>,
    pub created_ts: i64,
}

pub async fn get_uia_session(
    c: &mut AnyConnection,
    session_id: &str,
) -> Result<Option<UiaSession>, sqlx::Error> {
    let row = sqlx::query("SELECT user_id, request_hash, completed, created_ts FROM uia_sessions WHERE session_id = $1")
        .bind(session_id)
        .fetch_optional(c)
        .await?;
    row.map(|r| {
        Ok(UiaSession {
            user_id: r.try_get(0)?,
            request_hash: r.try_get(1)?,
            completed: super::codec::json(&r, 2, "uia_sessions.completed")?,
            created_ts: r.try_get(3)?,
        })
    })
    .transpose()
}

pub async fn put_uia_session(
    w: &mut impl Writer,
    session_id: &str,
    session: &UiaSession,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO uia_sessions (session_id, user_id, request_hash, completed, created_ts) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (session_id) DO UPDATE SET completed = excluded.completed",
    )
    .bind(session_id)
    .bind(session.user_id.as_deref())
    .bind(&session.request_hash)
    .bind(serde_json::to_string(&session.completed).unwrap_or_else(|_| "[]".into()))
    .bind(session.created_ts)
    .execute(w.conn())
    .await?;
    Ok(())
}

pub async fn delete_uia_session(w: &mut impl Writer, session_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM uia_sessions WHERE session_id = $1")
        .bind(session_id)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Deletes the user-interactive auth sessions created at or before
/// `cutoff`; returns how many.
pub async fn purge_uia_sessions(w: &mut impl Writer, cutoff: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM uia_sessions WHERE created_ts <= $1")
        .bind(cutoff)
        .execute(w.conn())
        .await?;
    Ok(done.rows_affected())
}
