//! The OAuth 2.0 authorization server's tables (migration 0017): clients,
//! authorization requests ("grants") and sessions with rotating refresh
//! tokens. Secrets arrive here already hashed.

use sqlx::{any::AnyRow, AnyConnection, Row};

use super::Writer;

pub async fn insert_client(
    w: &mut impl Writer,
    client_id: &str,
    metadata: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO oauth_clients (client_id, metadata, created_ts) VALUES ($1, $2, $3)")
        .bind(client_id)
        .bind(metadata)
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// A client's registered metadata (JSON), if it is registered.
pub async fn client(c: &mut AnyConnection, client_id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT metadata FROM oauth_clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(c)
        .await
}

/// An authorization request on its way through the browser.
#[derive(Debug, Clone)]
pub struct Grant {
    pub grant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub response_mode: String,
    pub browser_hash: Vec<u8>,
    pub user_id: Option<String>,
    pub code_used_ts: Option<i64>,
    pub session_id: Option<String>,
    pub created_ts: i64,
    pub expires_ts: i64,
    /// The device grant this sign-in answers, instead of a redirect URI.
    pub device_code_hash: Option<Vec<u8>>,
    /// The provider identity that signed the person in, if one did (JSON
    /// of `store::sso::LoginGrant`).
    pub sso_login: Option<String>,
}

const GRANT_COLUMNS: &str = "grant_id, client_id, redirect_uri, scope, state, code_challenge, \
     response_mode, browser_hash, user_id, code_used_ts, session_id, created_ts, expires_ts, \
     device_code_hash, sso_login";

fn grant_from(r: AnyRow) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        grant_id: r.try_get(0)?,
        client_id: r.try_get(1)?,
        redirect_uri: r.try_get(2)?,
        scope: r.try_get(3)?,
        state: r.try_get(4)?,
        code_challenge: r.try_get(5)?,
        response_mode: r.try_get(6)?,
        browser_hash: r.try_get(7)?,
        user_id: r.try_get(8)?,
        code_used_ts: r.try_get(9)?,
        session_id: r.try_get(10)?,
        created_ts: r.try_get(11)?,
        expires_ts: r.try_get(12)?,
        device_code_hash: r.try_get(13)?,
        sso_login: r.try_get(14)?,
    })
}

pub async fn insert_grant(w: &mut impl Writer, g: &Grant) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO oauth_grants ({GRANT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(&g.grant_id)
    .bind(&g.client_id)
    .bind(&g.redirect_uri)
    .bind(&g.scope)
    .bind(&g.state)
    .bind(&g.code_challenge)
    .bind(&g.response_mode)
    .bind(g.browser_hash.clone())
    .bind(&g.user_id)
    .bind(g.code_used_ts)
    .bind(&g.session_id)
    .bind(g.created_ts)
    .bind(g.expires_ts)
    .bind(g.device_code_hash.clone())
    .bind(&g.sso_login)
    .execute(w.conn())
    .await?;
    Ok(())
}

pub async fn grant(c: &mut AnyConnection, grant_id: &str) -> Result<Option<Grant>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE grant_id = $1"
    ))
    .bind(grant_id)
    .fetch_optional(c)
    .await?
    .map(grant_from)
    .transpose()
}

pub async fn grant_by_code(
    c: &mut AnyConnection,
    code_hash: &[u8],
) -> Result<Option<Grant>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE code_hash = $1"
    ))
    .bind(code_hash.to_vec())
    .fetch_optional(c)
    .await?
    .map(grant_from)
    .transpose()
}

/// Records who signed in for the grant, and the provider identity that
/// vouched for them if one did.
pub async fn set_grant_user(
    w: &mut impl Writer,
    grant_id: &str,
    user_id: &str,
    sso_login: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE oauth_grants SET user_id = $2, sso_login = $3 WHERE grant_id = $1")
        .bind(grant_id)
        .bind(user_id)
        .bind(sso_login)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Attaches the code handed out (once: false if the grant already has one)
/// and moves the grant's expiry to the code's.
pub async fn set_grant_code(
    w: &mut impl Writer,
    grant_id: &str,
    code_hash: &[u8],
    expires_ts: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE oauth_grants SET code_hash = $2, expires_ts = $3 \
         WHERE grant_id = $1 AND code_hash IS NULL AND user_id IS NOT NULL",
    )
    .bind(grant_id)
    .bind(code_hash.to_vec())
    .bind(expires_ts)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks the grant's code used by `session_id`; false if it already was
/// (two exchanges racing: only one wins).
pub async fn use_code(
    w: &mut impl Writer,
    grant_id: &str,
    session_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE oauth_grants SET code_used_ts = $3, session_id = $2 \
         WHERE grant_id = $1 AND code_used_ts IS NULL",
    )
    .bind(grant_id)
    .bind(session_id)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete_grant(w: &mut impl Writer, grant_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oauth_grants WHERE grant_id = $1")
        .bind(grant_id)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// A signed-in client (one device).
#[derive(Debug, Clone)]
pub struct Session {
    pub session_id: String,
    pub user_id: String,
    pub device_id: String,
    pub client_id: String,
    pub scope: String,
    pub refresh_hash: Vec<u8>,
    pub previous_refresh_hash: Option<Vec<u8>>,
    pub rotated_ts: Option<i64>,
}

const SESSION_COLUMNS: &str = "session_id, user_id, device_id, client_id, scope, refresh_hash, \
     previous_refresh_hash, rotated_ts";

fn session_from(r: AnyRow) -> Result<Session, sqlx::Error> {
    Ok(Session {
        session_id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        device_id: r.try_get(2)?,
        client_id: r.try_get(3)?,
        scope: r.try_get(4)?,
        refresh_hash: r.try_get(5)?,
        previous_refresh_hash: r.try_get(6)?,
        rotated_ts: r.try_get(7)?,
    })
}

pub async fn insert_session(w: &mut impl Writer, s: &Session, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO oauth_sessions ({SESSION_COLUMNS}, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    ))
    .bind(&s.session_id)
    .bind(&s.user_id)
    .bind(&s.device_id)
    .bind(&s.client_id)
    .bind(&s.scope)
    .bind(s.refresh_hash.clone())
    .bind(s.previous_refresh_hash.clone())
    .bind(s.rotated_ts)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// The session a refresh token belongs to, as its current or its previous
/// token.
pub async fn session_by_refresh(
    c: &mut AnyConnection,
    refresh_hash: &[u8],
) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM oauth_sessions \
         WHERE refresh_hash = $1 OR previous_refresh_hash = $1"
    ))
    .bind(refresh_hash.to_vec())
    .fetch_optional(c)
    .await?
    .map(session_from)
    .transpose()
}

pub async fn session_by_id(
    c: &mut AnyConnection,
    session_id: &str,
) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM oauth_sessions WHERE session_id = $1"
    ))
    .bind(session_id)
    .fetch_optional(c)
    .await?
    .map(session_from)
    .transpose()
}

pub async fn session_by_device(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
) -> Result<Option<Session>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM oauth_sessions WHERE user_id = $1 AND device_id = $2"
    ))
    .bind(user_id)
    .bind(device_id)
    .fetch_optional(c)
    .await?
    .map(session_from)
    .transpose()
}

/// Rotates the refresh token from `presented` (the current or the previous
/// one) to `next`; false if another rotation got there first.
pub async fn rotate(
    w: &mut impl Writer,
    session_id: &str,
    presented: &[u8],
    next: &[u8],
    now: i64,
) -> Result<bool, sqlx::Error> {
    // Rotating from the previous token (within the grace) keeps it as the
    // previous one, so a client retrying twice is not signed out.
    let r = sqlx::query(
        "UPDATE oauth_sessions SET \
           previous_refresh_hash = CASE WHEN refresh_hash = $2 THEN refresh_hash ELSE previous_refresh_hash END, \
           refresh_hash = $3, rotated_ts = $4 \
         WHERE session_id = $1 AND (refresh_hash = $2 OR previous_refresh_hash = $2)",
    )
    .bind(session_id)
    .bind(presented.to_vec())
    .bind(next.to_vec())
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete_device_sessions(
    w: &mut impl Writer,
    user_id: &str,
    device_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM oauth_sessions WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(device_id)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Forgets grants that expired before `now`, whatever their state.
pub async fn purge_expired_grants(w: &mut impl Writer, now: i64) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM oauth_grants WHERE expires_ts < $1")
        .bind(now)
        .execute(w.conn())
        .await?;
    Ok(r.rows_affected())
}

/// Records that `user_id` approved `action` now (again: the newest counts).
pub async fn approve_action(
    w: &mut impl Writer,
    user_id: &str,
    action: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO oauth_account_actions (user_id, action, approved_ts) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, action) DO UPDATE SET approved_ts = excluded.approved_ts",
    )
    .bind(user_id)
    .bind(action)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// Spends an approval of `action` given after `since`; false if there is
/// none (or another request spent it first).
pub async fn take_action(
    w: &mut impl Writer,
    user_id: &str,
    action: &str,
    since: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "DELETE FROM oauth_account_actions WHERE user_id = $1 AND action = $2 AND approved_ts > $3",
    )
    .bind(user_id)
    .bind(action)
    .bind(since)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}
