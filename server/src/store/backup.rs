//! Server-side key backup: versions with their (opaque) auth data, and the
//! encrypted Megolm session keys stored in each.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{codec, Backend, WriteTx};

#[derive(Debug, Clone, PartialEq)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: Value,
    pub etag: i64,
}

/// The spec's `KeyBackupData`; `session_data` is ciphertext we never read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyBackupData {
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: Value,
}

/// The spec's rule for a key uploaded over one already stored: a verified
/// key beats an unverified one, then the one known from an earlier message
/// index wins, then the one forwarded fewer times. Ties keep what is stored.
pub fn should_replace(current: &KeyBackupData, new: &KeyBackupData) -> bool {
    let rank = |k: &KeyBackupData| (!k.is_verified, k.first_message_index, k.forwarded_count);
    rank(new) < rank(current)
}

fn version_from_row(r: sqlx::any::AnyRow) -> Result<BackupVersion, sqlx::Error> {
    Ok(BackupVersion {
        version: r.try_get(0)?,
        algorithm: r.try_get(1)?,
        auth_data: codec::json(&r, 2, "backup_versions.auth_data")?,
        etag: r.try_get(3)?,
    })
}

/// The newest version not deleted: the one uploads must go to.
pub async fn current_version(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<BackupVersion>, sqlx::Error> {
    sqlx::query(
        "SELECT version, algorithm, auth_data, etag FROM backup_versions \
         WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(c)
    .await?
    .map(version_from_row)
    .transpose()
}

pub async fn get_version(
    c: &mut AnyConnection,
    user_id: &str,
    version: i64,
) -> Result<Option<BackupVersion>, sqlx::Error> {
    sqlx::query(
        "SELECT version, algorithm, auth_data, etag FROM backup_versions \
         WHERE user_id = $1 AND version = $2 AND deleted = 0",
    )
    .bind(user_id)
    .bind(version)
    .fetch_optional(c)
    .await?
    .map(version_from_row)
    .transpose()
}

/// Reads a version and, on PostgreSQL, locks its row until commit, so that
/// concurrent uploads to one backup compare against each other's keys.
pub async fn lock_version(
    tx: &mut WriteTx,
    user_id: &str,
    version: i64,
) -> Result<Option<BackupVersion>, sqlx::Error> {
    let lock = match tx.backend() {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    sqlx::query(&format!(
        "SELECT version, algorithm, auth_data, etag FROM backup_versions \
         WHERE user_id = $1 AND version = $2 AND deleted = 0{lock}"
    ))
    .bind(user_id)
    .bind(version)
    .fetch_optional(tx.conn())
    .await?
    .map(version_from_row)
    .transpose()
}

/// Creates the next version number (deleted versions keep theirs, so a
/// number is never reused). Two concurrent creations on PostgreSQL can pick
/// the same number; the loser gets a unique violation and should retry.
pub async fn create_version(
    tx: &mut WriteTx,
    user_id: &str,
    algorithm: &str,
    auth_data: &Value,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO backup_versions (user_id, version, algorithm, auth_data, etag, deleted) \
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, 0, 0 FROM backup_versions WHERE user_id = $1 \
         RETURNING version",
    )
    .bind(user_id)
    .bind(algorithm)
    .bind(serde_json::to_string(auth_data).unwrap_or_default())
    .fetch_one(tx.conn())
    .await
}

pub async fn set_auth_data(
    tx: &mut WriteTx,
    user_id: &str,
    version: i64,
    auth_data: &Value,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE backup_versions SET auth_data = $1 WHERE user_id = $2 AND version = $3 AND deleted = 0",
    )
    .bind(serde_json::to_string(auth_data).unwrap_or_default())
    .bind(user_id)
    .bind(version)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks the version deleted and drops its keys; false when there was none.
pub async fn delete_version(
    tx: &mut WriteTx,
    user_id: &str,
    version: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE backup_versions SET deleted = 1 WHERE user_id = $1 AND version = $2 AND deleted = 0",
    )
    .bind(user_id)
    .bind(version)
    .execute(tx.conn())
    .await?;
    if r.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2")
        .bind(user_id)
        .bind(version)
        .execute(tx.conn())
        .await?;
    Ok(true)
}

pub async fn bump_etag(tx: &mut WriteTx, user_id: &str, version: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2 RETURNING etag",
    )
    .bind(user_id)
    .bind(version)
    .fetch_one(tx.conn())
    .await
}

pub async fn count_keys(
    c: &mut AnyConnection,
    user_id: &str,
    version: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM backup_keys WHERE user_id = $1 AND version = $2")
        .bind(user_id)
        .bind(version)
        .fetch_one(c)
        .await
}

pub async fn get_key(
    c: &mut AnyConnection,
    user_id: &str,
    version: i64,
    room_id: &str,
    session_id: &str,
) -> Result<Option<KeyBackupData>, sqlx::Error> {
    sqlx::query(
        "SELECT first_message_index, forwarded_count, is_verified, session_data FROM backup_keys \
         WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4",
    )
    .bind(user_id)
    .bind(version)
    .bind(room_id)
    .bind(session_id)
    .fetch_optional(c)
    .await?
    .map(|r| key_from_row(&r, 0))
    .transpose()
}

fn key_from_row(r: &sqlx::any::AnyRow, first: usize) -> Result<KeyBackupData, sqlx::Error> {
    Ok(KeyBackupData {
        first_message_index: r.try_get(first)?,
        forwarded_count: r.try_get(first + 1)?,
        is_verified: codec::flag(r, first + 2)?,
        session_data: codec::json(r, first + 3, "backup_keys.session_data")?,
    })
}

pub async fn put_key(
    tx: &mut WriteTx,
    user_id: &str,
    version: i64,
    room_id: &str,
    session_id: &str,
    key: &KeyBackupData,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO backup_keys (user_id, version, room_id, session_id, first_message_index, forwarded_count, \
         is_verified, session_data, updated_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
         first_message_index = excluded.first_message_index, forwarded_count = excluded.forwarded_count, \
         is_verified = excluded.is_verified, session_data = excluded.session_data, updated_ts = excluded.updated_ts",
    )
    .bind(user_id)
    .bind(version)
    .bind(room_id)
    .bind(session_id)
    .bind(key.first_message_index)
    .bind(key.forwarded_count)
    .bind(codec::flag_param(key.is_verified))
    .bind(serde_json::to_string(&key.session_data).unwrap_or_default())
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Which keys of a version a read or delete covers.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    All,
    Room(&'a str),
    Session(&'a str, &'a str),
}

impl Scope<'_> {
    fn filter(&self) -> &'static str {
        match self {
            Scope::All => "",
            Scope::Room(_) => " AND room_id = $3",
            Scope::Session(..) => " AND room_id = $3 AND session_id = $4",
        }
    }

    fn bind<'q>(
        &self,
        q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        match *self {
            Scope::All => q,
            Scope::Room(room) => q.bind(room.to_owned()),
            Scope::Session(room, session) => q.bind(room.to_owned()).bind(session.to_owned()),
        }
    }
}

/// `(room_id, session_id, key)` in room, then session order.
pub async fn keys(
    c: &mut AnyConnection,
    user_id: &str,
    version: i64,
    scope: Scope<'_>,
) -> Result<Vec<(String, String, KeyBackupData)>, sqlx::Error> {
    let sql = format!(
        "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data \
         FROM backup_keys WHERE user_id = $1 AND version = $2{} ORDER BY room_id, session_id",
        scope.filter()
    );
    let q = sqlx::query(&sql).bind(user_id).bind(version);
    scope
        .bind(q)
        .fetch_all(c)
        .await?
        .into_iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, key_from_row(&r, 2)?)))
        .collect()
}

pub async fn delete_keys(
    tx: &mut WriteTx,
    user_id: &str,
    version: i64,
    scope: Scope<'_>,
) -> Result<u64, sqlx::Error> {
    let sql = format!(
        "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2{}",
        scope.filter()
    );
    let q = sqlx::query(&sql).bind(user_id).bind(version);
    Ok(scope.bind(q).execute(tx.conn()).await?.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(verified: bool, index: i64, forwarded: i64) -> KeyBackupData {
        KeyBackupData {
            first_message_index: index,
            forwarded_count: forwarded,
            is_verified: verified,
            session_data: json!({}),
        }
    }

    #[test]
    fn verified_wins_over_lower_index() {
        assert!(should_replace(&key(false, 0, 0), &key(true, 5, 3)));
        assert!(!should_replace(&key(true, 5, 3), &key(false, 0, 0)));
    }

    #[test]
    fn lower_index_then_fewer_forwards_win() {
        assert!(should_replace(&key(false, 5, 0), &key(false, 4, 9)));
        assert!(!should_replace(&key(false, 4, 9), &key(false, 5, 0)));
        assert!(should_replace(&key(true, 4, 2), &key(true, 4, 1)));
        assert!(!should_replace(&key(true, 4, 1), &key(true, 4, 2)));
    }

    #[test]
    fn ties_keep_the_stored_key() {
        assert!(!should_replace(&key(true, 4, 1), &key(true, 4, 1)));
    }
}
