//! Rows behind the web console: staff roles, console sessions, and the
//! account and registration-token listings its pages show.

use sqlx::{AnyConnection, Row};

use super::{WriteTx, Writer};

/// A signed-in console session, found by its cookie's digest.
pub struct ConsoleSession {
    pub user_id: String,
    pub last_seen_ts: i64,
    pub expires_ts: i64,
}

pub struct NewSession<'a> {
    pub session_hash: &'a [u8],
    pub user_id: &'a str,
    pub now: i64,
    pub expires_ts: i64,
}

pub async fn insert_session(tx: &mut WriteTx, s: &NewSession<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO console_sessions (session_hash, user_id, created_ts, last_seen_ts, expires_ts) \
         VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(s.session_hash.to_vec())
    .bind(s.user_id)
    .bind(s.now)
    .bind(s.expires_ts)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn session(
    c: &mut AnyConnection,
    session_hash: &[u8],
) -> Result<Option<ConsoleSession>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, last_seen_ts, expires_ts FROM console_sessions WHERE session_hash = $1",
    )
    .bind(session_hash.to_vec())
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        Ok(ConsoleSession {
            user_id: r.try_get(0)?,
            last_seen_ts: r.try_get(1)?,
            expires_ts: r.try_get(2)?,
        })
    })
    .transpose()
}

pub async fn touch_session(
    w: &mut impl Writer,
    session_hash: &[u8],
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE console_sessions SET last_seen_ts = $2 WHERE session_hash = $1")
        .bind(session_hash.to_vec())
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(())
}

pub async fn delete_session(w: &mut impl Writer, session_hash: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE session_hash = $1")
        .bind(session_hash.to_vec())
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Ends every console session of `user_id` (deactivation, a new password,
/// a role taken away).
pub async fn delete_sessions_of(w: &mut impl Writer, user_id: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(w.conn())
        .await?;
    Ok(r.rows_affected())
}

/// Drops sessions past their idle or absolute limit.
pub async fn purge_sessions(
    w: &mut impl Writer,
    idle_cutoff: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM console_sessions WHERE last_seen_ts < $1 OR expires_ts <= $2")
        .bind(idle_cutoff)
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(r.rows_affected())
}

pub async fn roles_of(c: &mut AnyConnection, user_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT role FROM staff_roles WHERE user_id = $1 ORDER BY role")
        .bind(user_id)
        .fetch_all(c)
        .await
}

/// Whether the role was new.
pub async fn grant_role(
    tx: &mut WriteTx,
    user_id: &str,
    role: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO staff_roles (user_id, role, granted_ts) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(user_id)
    .bind(role)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Whether the user had the role.
pub async fn revoke_role(tx: &mut WriteTx, user_id: &str, role: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM staff_roles WHERE user_id = $1 AND role = $2")
        .bind(user_id)
        .bind(role)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Every (user, role) pair, for `cloister admin role list`.
pub async fn all_roles(c: &mut AnyConnection) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query("SELECT user_id, role FROM staff_roles ORDER BY user_id, role")
        .fetch_all(c)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// One line of the console's account list.
pub struct AccountRow {
    pub user_id: String,
    pub is_admin: bool,
    pub deactivated: bool,
    pub created_ts: i64,
}

/// Accounts whose id contains `needle` (already lower-cased), in id order,
/// after `after` when given.
pub async fn search_accounts(
    c: &mut AnyConnection,
    needle: &str,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<AccountRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, is_admin, deactivated, created_ts FROM users \
         WHERE user_id LIKE $1 ESCAPE '\\' AND user_id > $2 ORDER BY user_id LIMIT $3",
    )
    .bind(super::codec::contains_pattern(needle))
    .bind(after.unwrap_or(""))
    .bind(limit)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AccountRow {
                user_id: r.try_get(0)?,
                is_admin: super::codec::flag(r, 1)?,
                deactivated: super::codec::flag(r, 2)?,
                created_ts: r.try_get(3)?,
            })
        })
        .collect()
}

pub async fn created_ts(c: &mut AnyConnection, user_id: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT created_ts FROM users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(c)
        .await
}

pub struct TokenRow {
    pub token_hash: Vec<u8>,
    pub uses_allowed: Option<i64>,
    pub uses: i64,
    pub expiry_ts: Option<i64>,
    pub created_ts: i64,
}

pub async fn registration_tokens(c: &mut AnyConnection) -> Result<Vec<TokenRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT token_hash, uses_allowed, uses, expiry_ts, created_ts FROM registration_tokens \
         ORDER BY created_ts DESC",
    )
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenRow {
                token_hash: r.try_get(0)?,
                uses_allowed: r.try_get(1)?,
                uses: r.try_get(2)?,
                expiry_ts: r.try_get(3)?,
                created_ts: r.try_get(4)?,
            })
        })
        .collect()
}

pub async fn delete_registration_token(
    tx: &mut WriteTx,
    token_hash: &[u8],
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM registration_tokens WHERE token_hash = $1")
        .bind(token_hash.to_vec())
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Rough sizes for the health page.
pub struct Counts {
    pub users: i64,
    pub rooms: i64,
    pub events: i64,
}

pub async fn counts(c: &mut AnyConnection) -> Result<Counts, sqlx::Error> {
    let users = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE deactivated = 0")
        .fetch_one(&mut *c)
        .await?;
    let rooms = sqlx::query_scalar("SELECT COUNT(*) FROM rooms")
        .fetch_one(&mut *c)
        .await?;
    let events = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(&mut *c)
        .await?;
    Ok(Counts {
        users,
        rooms,
        events,
    })
}
