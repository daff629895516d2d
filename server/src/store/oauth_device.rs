//! The device authorization grant's table (migration 0018).

use sqlx::{AnyConnection, Row};

use super::Writer;

/// A device authorization, as the polling app and the person's page see it.
#[derive(Debug, Clone)]
pub struct DeviceGrant {
    pub device_code_hash: Vec<u8>,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    /// `pending`, `approved`, `denied` or `used`.
    pub status: String,
    pub user_id: Option<String>,
    pub last_poll_ts: Option<i64>,
    pub expires_ts: i64,
    /// As `store::oauth::Grant::sso_login`.
    pub sso_login: Option<String>,
}

const COLUMNS: &str = "device_code_hash, user_code, client_id, scope, status, user_id, \
     last_poll_ts, expires_ts, sso_login";

fn from_row(r: sqlx::any::AnyRow) -> Result<DeviceGrant, sqlx::Error> {
    Ok(DeviceGrant {
        device_code_hash: r.try_get(0)?,
        user_code: r.try_get(1)?,
        client_id: r.try_get(2)?,
        scope: r.try_get(3)?,
        status: r.try_get(4)?,
        user_id: r.try_get(5)?,
        last_poll_ts: r.try_get(6)?,
        expires_ts: r.try_get(7)?,
        sso_login: r.try_get(8)?,
    })
}

/// Stores a new device grant; false if its user code is taken (the
/// caller draws another).
pub async fn insert(w: &mut impl Writer, g: &DeviceGrant, now: i64) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(&format!(
        "INSERT INTO oauth_device_grants ({COLUMNS}, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"
    ))
    .bind(g.device_code_hash.clone())
    .bind(&g.user_code)
    .bind(&g.client_id)
    .bind(&g.scope)
    .bind(&g.status)
    .bind(&g.user_id)
    .bind(g.last_poll_ts)
    .bind(g.expires_ts)
    .bind(&g.sso_login)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn by_device_code(
    c: &mut AnyConnection,
    hash: &[u8],
) -> Result<Option<DeviceGrant>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM oauth_device_grants WHERE device_code_hash = $1"
    ))
    .bind(hash.to_vec())
    .fetch_optional(c)
    .await?
    .map(from_row)
    .transpose()
}

pub async fn by_user_code(
    c: &mut AnyConnection,
    user_code: &str,
) -> Result<Option<DeviceGrant>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {COLUMNS} FROM oauth_device_grants WHERE user_code = $1"
    ))
    .bind(user_code)
    .fetch_optional(c)
    .await?
    .map(from_row)
    .transpose()
}

/// Records a poll.
pub async fn polled(w: &mut impl Writer, hash: &[u8], now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oauth_device_grants SET last_poll_ts = $2 WHERE device_code_hash = $1")
        .bind(hash.to_vec())
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// The person who decided, and how they signed in.
pub struct Decider<'a> {
    pub user_id: &'a str,
    pub sso_login: Option<&'a str>,
}

/// Moves a grant from `from` to `to` status (with the person, when they
/// decide); false if it was no longer in `from` (a race lost).
pub async fn transition(
    w: &mut impl Writer,
    hash: &[u8],
    from: &str,
    to: &str,
    by: Option<Decider<'_>>,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE oauth_device_grants SET status = $3, user_id = COALESCE($4, user_id), \
         sso_login = COALESCE($5, sso_login) WHERE device_code_hash = $1 AND status = $2",
    )
    .bind(hash.to_vec())
    .bind(from)
    .bind(to)
    .bind(by.as_ref().map(|d| d.user_id))
    .bind(by.as_ref().and_then(|d| d.sso_login))
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Forgets device grants that expired before `now`.
pub async fn purge_expired(w: &mut impl Writer, now: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM oauth_device_grants WHERE expires_ts < $1")
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(r.rows_affected())
}
