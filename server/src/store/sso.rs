//! Single sign-on rows: sign-ins in progress, login tokens, identity links
//! and the devices SSO logins opened.

use sqlx::{AnyConnection, Row};

use super::WriteTx;

/// A sign-in waiting for the identity provider's answer.
pub struct Pending {
    pub state: String,
    pub idp_id: String,
    pub client_redirect: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub created_ts: i64,
}

pub async fn insert_pending(tx: &mut WriteTx, p: &Pending) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sso_pending (state, idp_id, client_redirect, nonce, pkce_verifier, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&p.state)
    .bind(&p.idp_id)
    .bind(&p.client_redirect)
    .bind(&p.nonce)
    .bind(&p.pkce_verifier)
    .bind(p.created_ts)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Removes and returns the sign-in for `state`: a callback can finish it
/// once, on any node.
pub async fn take_pending(tx: &mut WriteTx, state: &str) -> Result<Option<Pending>, sqlx::Error> {
    let row = sqlx::query(
        "DELETE FROM sso_pending WHERE state = $1 \
         RETURNING state, idp_id, client_redirect, nonce, pkce_verifier, created_ts",
    )
    .bind(state)
    .fetch_optional(tx.conn())
    .await?;
    row.map(|r| {
        Ok(Pending {
            state: r.try_get(0)?,
            idp_id: r.try_get(1)?,
            client_redirect: r.try_get(2)?,
            nonce: r.try_get(3)?,
            pkce_verifier: r.try_get(4)?,
            created_ts: r.try_get(5)?,
        })
    })
    .transpose()
}

/// Who a login token signs in, and through which provider session.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LoginGrant {
    pub user_id: String,
    pub issuer: String,
    pub subject: String,
    pub session_id: String,
}

pub async fn insert_login_token(
    tx: &mut WriteTx,
    token_hash: &[u8],
    grant: &LoginGrant,
    expires_ts: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO login_tokens (token_hash, user_id, issuer, subject, session_id, expires_ts) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(token_hash.to_vec())
    .bind(&grant.user_id)
    .bind(&grant.issuer)
    .bind(&grant.subject)
    .bind(&grant.session_id)
    .bind(expires_ts)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Spends a login token: deleted whatever its age, returned only while
/// valid.
pub async fn take_login_token(
    tx: &mut WriteTx,
    token_hash: &[u8],
    now: i64,
) -> Result<Option<LoginGrant>, sqlx::Error> {
    let row = sqlx::query(
        "DELETE FROM login_tokens WHERE token_hash = $1 \
         RETURNING user_id, issuer, subject, session_id, expires_ts",
    )
    .bind(token_hash.to_vec())
    .fetch_optional(tx.conn())
    .await?;
    let Some(r) = row else { return Ok(None) };
    let expires_ts: i64 = r.try_get(4)?;
    if expires_ts <= now {
        return Ok(None);
    }
    Ok(Some(LoginGrant {
        user_id: r.try_get(0)?,
        issuer: r.try_get(1)?,
        subject: r.try_get(2)?,
        session_id: r.try_get(3)?,
    }))
}

/// The account linked to a person at a provider.
pub async fn linked_user(
    c: &mut AnyConnection,
    issuer: &str,
    subject: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM identity_links WHERE issuer = $1 AND subject = $2")
        .bind(issuer)
        .bind(subject)
        .fetch_optional(c)
        .await
}

/// Links a person at a provider to an account; false if they are linked
/// already (to any account).
pub async fn link(
    tx: &mut WriteTx,
    issuer: &str,
    subject: &str,
    user_id: &str,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO identity_links (issuer, subject, user_id, created_ts) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (issuer, subject) DO NOTHING",
    )
    .bind(issuer)
    .bind(subject)
    .bind(user_id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn unlink(tx: &mut WriteTx, issuer: &str, subject: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("DELETE FROM identity_links WHERE issuer = $1 AND subject = $2")
        .bind(issuer)
        .bind(subject)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn unlink_all(tx: &mut WriteTx, user_id: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query("DELETE FROM identity_links WHERE user_id = $1")
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected())
}

/// Whether an account has any identity link (it then signs in through its
/// provider).
pub async fn is_linked(c: &mut AnyConnection, user_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM identity_links WHERE user_id = $1 LIMIT 1")
            .bind(user_id)
            .fetch_optional(c)
            .await?;
    Ok(found.is_some())
}

/// (issuer, subject) of each link of an account.
pub async fn links_of(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT issuer, subject FROM identity_links WHERE user_id = $1 ORDER BY issuer, subject",
    )
    .bind(user_id)
    .fetch_all(c)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

pub async fn record_device(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    grant: &LoginGrant,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sso_devices (user_id, device_id, issuer, subject, session_id, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id, device_id) DO UPDATE SET \
         issuer = excluded.issuer, subject = excluded.subject, session_id = excluded.session_id, \
         created_ts = excluded.created_ts",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(&grant.issuer)
    .bind(&grant.subject)
    .bind(&grant.session_id)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The (user, device) pairs a provider's logout names: those of its
/// session `sid` when given, else all of the subject's.
pub async fn devices_to_log_out(
    c: &mut AnyConnection,
    issuer: &str,
    subject: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows =
        match (session_id, subject) {
            // Sign-ins whose ID token carried no `sid` can only be found
            // by their subject.
            (Some(sid), Some(sub)) => sqlx::query(
                "SELECT user_id, device_id FROM sso_devices WHERE issuer = $1 AND subject = $3 \
                     AND (session_id = $2 OR session_id = '')",
            )
            .bind(issuer)
            .bind(sid)
            .bind(sub)
            .fetch_all(c)
            .await?,
            (Some(sid), None) => sqlx::query(
                "SELECT user_id, device_id FROM sso_devices WHERE issuer = $1 AND session_id = $2",
            )
            .bind(issuer)
            .bind(sid)
            .fetch_all(c)
            .await?,
            (None, Some(sub)) => {
                sqlx::query(
                    "SELECT user_id, device_id FROM sso_devices WHERE issuer = $1 AND subject = $2",
                )
                .bind(issuer)
                .bind(sub)
                .fetch_all(c)
                .await?
            }
            (None, None) => return Ok(Vec::new()),
        };
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Remembers a SAML assertion id until `expires_ts`; false if it was
/// already (a replay).
pub async fn remember_assertion(
    tx: &mut WriteTx,
    assertion_id: &str,
    expires_ts: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO saml_seen_assertions (assertion_id, expires_ts) VALUES ($1, $2) \
         ON CONFLICT (assertion_id) DO NOTHING",
    )
    .bind(assertion_id)
    .bind(expires_ts)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn assertion_seen(
    c: &mut AnyConnection,
    assertion_id: &str,
) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT assertion_id FROM saml_seen_assertions WHERE assertion_id = $1")
            .bind(assertion_id)
            .fetch_optional(c)
            .await?;
    Ok(found.is_some())
}

/// Drops sign-ins begun before `pending_before`, expired login tokens and
/// SAML assertion ids past their validity.
pub async fn purge_expired(
    tx: &mut WriteTx,
    pending_before: i64,
    now: i64,
) -> Result<u64, sqlx::Error> {
    let a = sqlx::query("DELETE FROM sso_pending WHERE created_ts < $1")
        .bind(pending_before)
        .execute(tx.conn())
        .await?;
    let b = sqlx::query("DELETE FROM login_tokens WHERE expires_ts <= $1")
        .bind(now)
        .execute(tx.conn())
        .await?;
    let c = sqlx::query("DELETE FROM saml_seen_assertions WHERE expires_ts <= $1")
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(a.rows_affected() + b.rows_affected() + c.rows_affected())
}
