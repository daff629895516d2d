//! Server-side key backup (spec §"Server-side key backups"). Backups are
//! ciphertext the server never reads; it only enforces which version takes
//! uploads and which copy of a session key to keep.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::Context;
use crate::store::backup;
use crate::store::is_unique_violation;

pub use crate::store::backup::{BackupVersion, KeyBackupData, Scope};

/// A backup version with the number of keys in it.
pub struct VersionInfo {
    pub version: BackupVersion,
    pub count: i64,
}

/// A version's state after a change to its keys: clients compare `etag`
/// to learn whether another device changed the backup.
pub struct KeysState {
    pub count: i64,
    pub etag: i64,
}

/// The spec's `RoomKeyBackup`: the backed-up sessions of one room.
#[derive(Debug, Default, Serialize)]
pub struct RoomKeyBackup {
    pub sessions: BTreeMap<String, KeyBackupData>,
}

const MAX_ID_LEN: usize = 255;
const MAX_AUTH_DATA_SIZE: usize = 64 * 1024;

/// Version strings are decimal numbers; anything else names no backup.
pub fn parse_version(version: &str) -> Option<i64> {
    if version.is_empty() || version.len() > 18 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    version.parse().ok()
}

fn no_backup(version: &str) -> ApiError {
    ApiError::not_found(format!("Unknown backup version {version:?}"))
}

fn wrong_version(current: i64) -> ApiError {
    ApiError::new(ErrCode::WrongRoomKeysVersion, "Wrong backup version")
        .with("current_version", json!(current.to_string()))
}

fn validate_version_body(algorithm: &str, auth_data: &Value) -> ApiResult<()> {
    if algorithm.is_empty() || algorithm.len() > MAX_ID_LEN {
        return Err(ApiError::invalid_param("algorithm must be 1 to 255 bytes"));
    }
    if !auth_data.is_object() {
        return Err(ApiError::bad_json("auth_data must be an object"));
    }
    if serde_json::to_string(auth_data).map_or(0, |s| s.len()) > MAX_AUTH_DATA_SIZE {
        return Err(ApiError::too_large("auth_data is too large"));
    }
    Ok(())
}

/// Checks one uploaded session key.
pub fn validate_key(room_id: &str, session_id: &str, key: &KeyBackupData) -> ApiResult<()> {
    for (what, id) in [("room id", room_id), ("session id", session_id)] {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return Err(ApiError::invalid_param(format!(
                "{what} must be 1 to 255 bytes"
            )));
        }
    }
    if key.first_message_index < 0 || key.forwarded_count < 0 {
        return Err(ApiError::invalid_param(
            "first_message_index and forwarded_count must not be negative",
        ));
    }
    if !key.session_data.is_object() {
        return Err(ApiError::bad_json("session_data must be an object"));
    }
    Ok(())
}

/// `POST /room_keys/version`: returns the new version.
pub async fn create_version(
    state: &Context,
    user_id: &str,
    algorithm: &str,
    auth_data: &Value,
) -> ApiResult<String> {
    validate_version_body(algorithm, auth_data)?;
    // Two concurrent creations on PostgreSQL may pick the same number; the
    // loser's transaction is aborted, so it starts over.
    for _ in 0..3 {
        let mut tx = state.store.write().await?;
        match backup::create_version(&mut tx, user_id, algorithm, auth_data).await {
            Ok(version) => {
                tx.commit().await?;
                return Ok(version.to_string());
            }
            Err(e) if is_unique_violation(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        ErrCode::Unknown,
        "backup versions were created concurrently; retry",
    )
    .with_status(StatusCode::CONFLICT))
}

/// `GET /room_keys/version[/{version}]`: the named or else the current
/// version. No backup is 404 `M_NOT_FOUND`, which clients rely on.
pub async fn get_version(
    state: &Context,
    user_id: &str,
    version: Option<&str>,
) -> ApiResult<VersionInfo> {
    let mut conn = state.store.read().await?;
    let found = match version {
        None => backup::current_version(&mut conn, user_id).await?,
        Some(v) => match parse_version(v) {
            Some(n) => backup::get_version(&mut conn, user_id, n).await?,
            None => None,
        },
    };
    let found = found.ok_or_else(|| match version {
        Some(v) => no_backup(v),
        None => ApiError::not_found("No current backup version"),
    })?;
    let count = backup::count_keys(&mut conn, user_id, found.version).await?;
    Ok(VersionInfo {
        version: found,
        count,
    })
}

/// `PUT /room_keys/version/{version}`: replaces the auth data; the
/// algorithm cannot change.
pub async fn update_version(
    state: &Context,
    user_id: &str,
    version: &str,
    algorithm: &str,
    auth_data: &Value,
    body_version: Option<&str>,
) -> ApiResult<()> {
    validate_version_body(algorithm, auth_data)?;
    if body_version.is_some_and(|v| v != version) {
        return Err(ApiError::invalid_param(
            "version in the body does not match the path",
        ));
    }
    let n = parse_version(version).ok_or_else(|| no_backup(version))?;
    let mut tx = state.store.write().await?;
    let existing = backup::lock_version(&mut tx, user_id, n)
        .await?
        .ok_or_else(|| no_backup(version))?;
    if existing.algorithm != algorithm {
        return Err(ApiError::invalid_param(
            "the algorithm of a backup version cannot change",
        ));
    }
    backup::set_auth_data(&mut tx, user_id, n, auth_data).await?;
    tx.commit().await?;
    Ok(())
}

/// `DELETE /room_keys/version/{version}`.
pub async fn delete_version(state: &Context, user_id: &str, version: &str) -> ApiResult<()> {
    let n = parse_version(version).ok_or_else(|| no_backup(version))?;
    let mut tx = state.store.write().await?;
    if !backup::delete_version(&mut tx, user_id, n).await? {
        return Err(no_backup(version));
    }
    tx.commit().await?;
    Ok(())
}

/// `PUT /room_keys/keys…`: stores each key unless the one already stored is
/// better. Only the current version takes uploads.
pub async fn upload_keys(
    state: &Context,
    user_id: &str,
    version: &str,
    uploads: Vec<(String, String, KeyBackupData)>,
) -> ApiResult<KeysState> {
    for (room_id, session_id, key) in &uploads {
        validate_key(room_id, session_id, key)?;
    }
    let mut tx = state.store.write().await?;
    let current = backup::current_version(tx.conn(), user_id)
        .await?
        .ok_or_else(|| no_backup(version))?;
    if parse_version(version) != Some(current.version) {
        return Err(wrong_version(current.version));
    }
    let current = backup::lock_version(&mut tx, user_id, current.version)
        .await?
        .ok_or_else(|| no_backup(version))?;
    let mut etag = current.etag;
    let mut changed = false;
    for (room_id, session_id, key) in &uploads {
        let stored =
            backup::get_key(tx.conn(), user_id, current.version, room_id, session_id).await?;
        if stored.is_none_or(|old| backup::should_replace(&old, key)) {
            backup::put_key(
                &mut tx,
                user_id,
                current.version,
                room_id,
                session_id,
                key,
                state.now_ms(),
            )
            .await?;
            changed = true;
        }
    }
    if changed {
        etag = backup::bump_etag(&mut tx, user_id, current.version).await?;
    }
    let count = backup::count_keys(tx.conn(), user_id, current.version).await?;
    tx.commit().await?;
    Ok(KeysState { count, etag })
}

async fn existing_version(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    version: &str,
) -> ApiResult<i64> {
    let n = parse_version(version).ok_or_else(|| no_backup(version))?;
    backup::get_version(conn, user_id, n)
        .await?
        .map(|v| v.version)
        .ok_or_else(|| no_backup(version))
}

/// `GET /room_keys/keys…`: the keys in `scope`, by room.
pub async fn get_keys(
    state: &Context,
    user_id: &str,
    version: &str,
    scope: Scope<'_>,
) -> ApiResult<BTreeMap<String, RoomKeyBackup>> {
    let mut conn = state.store.read().await?;
    let n = existing_version(&mut conn, user_id, version).await?;
    let mut rooms = BTreeMap::<String, RoomKeyBackup>::new();
    for (room_id, session_id, key) in backup::keys(&mut conn, user_id, n, scope).await? {
        rooms
            .entry(room_id)
            .or_default()
            .sessions
            .insert(session_id, key);
    }
    Ok(rooms)
}

/// `DELETE /room_keys/keys…`.
pub async fn delete_keys(
    state: &Context,
    user_id: &str,
    version: &str,
    scope: Scope<'_>,
) -> ApiResult<KeysState> {
    let mut tx = state.store.write().await?;
    let n = parse_version(version).ok_or_else(|| no_backup(version))?;
    let found = backup::lock_version(&mut tx, user_id, n)
        .await?
        .ok_or_else(|| no_backup(version))?;
    let mut etag = found.etag;
    if backup::delete_keys(&mut tx, user_id, n, scope).await? > 0 {
        etag = backup::bump_etag(&mut tx, user_id, n).await?;
    }
    let count = backup::count_keys(tx.conn(), user_id, n).await?;
    tx.commit().await?;
    Ok(KeysState { count, etag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_decimal() {
        assert_eq!(parse_version("1"), Some(1));
        assert_eq!(parse_version("0042"), Some(42));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("-1"), None);
        assert_eq!(parse_version("1a"), None);
        assert_eq!(parse_version("99999999999999999999"), None);
    }

    #[test]
    fn uploaded_keys_are_checked() {
        let key = |fmi: i64, data: Value| KeyBackupData {
            first_message_index: fmi,
            forwarded_count: 0,
            is_verified: false,
            session_data: data,
        };
        assert!(validate_key("!r:x", "s", &key(0, json!({}))).is_ok());
        assert!(validate_key("", "s", &key(0, json!({}))).is_err());
        assert!(validate_key("!r:x", &"s".repeat(256), &key(0, json!({}))).is_err());
        assert!(validate_key("!r:x", "s", &key(-1, json!({}))).is_err());
        assert!(validate_key("!r:x", "s", &key(0, json!("x"))).is_err());
    }
}
