//! End-to-end encryption key material: device keys, one-time and fallback
//! keys, cross-signing keys and their signatures, and the device-list change
//! stream.

use std::collections::BTreeMap;

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{codec, Backend, WriteTx};

/// Records that `user_id`'s devices or cross-signing keys changed, at a new
/// stream position; `/sync` reports it in `device_lists.changed`.
pub async fn record_device_list_change(
    tx: &mut WriteTx,
    user_id: &str,
) -> Result<i64, sqlx::Error> {
    let pos = tx.next_pos().await?;
    sqlx::query("INSERT INTO device_list_changes (stream_pos, user_id) VALUES ($1, $2)")
        .bind(pos)
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(pos)
}

/// Users whose device lists changed in `(from, to]` (`/v3/sync` reads
/// them with its other device reads: `store::device_news`).
pub async fn device_list_changes_between(
    c: &mut AnyConnection,
    from: i64,
    to: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_pos > $1 AND stream_pos <= $2",
    )
    .bind(from)
    .bind(to)
    .fetch_all(c)
    .await
}

/// Users whose keys changed in `(from, to]`, or who began sharing a joined
/// room with `user_id` then, limited to those who share one with it now.
pub async fn changed_users_sharing_rooms(
    c: &mut AnyConnection,
    user_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT d.user_id FROM device_list_changes d \
         WHERE d.stream_pos > $2 AND d.stream_pos <= $3 AND (d.user_id = $1 OR EXISTS ( \
           SELECT 1 FROM memberships mine JOIN memberships other ON other.room_id = mine.room_id \
           WHERE mine.user_id = $1 AND mine.membership = 'join' \
           AND other.user_id = d.user_id AND other.membership = 'join')) \
         UNION \
         SELECT other.user_id FROM memberships mine JOIN memberships other ON other.room_id = mine.room_id \
         WHERE mine.user_id = $1 AND mine.membership = 'join' AND other.membership = 'join' \
         AND other.user_id <> $1 AND ((other.span_start_pos > $2 AND other.span_start_pos <= $3) \
           OR (mine.span_start_pos > $2 AND mine.span_start_pos <= $3))",
    )
    .bind(user_id)
    .bind(from)
    .bind(to)
    .fetch_all(c)
    .await
}

/// Users who stopped sharing some room with `user_id` in `(from, to]`
/// (either side left); the caller drops those who still share another one.
pub async fn users_who_left_shared_rooms(
    c: &mut AnyConnection,
    user_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT other.user_id FROM memberships mine JOIN memberships other ON other.room_id = mine.room_id \
         WHERE mine.user_id = $1 AND other.user_id <> $1 AND ( \
           (mine.membership = 'join' AND other.membership IN ('leave', 'ban') \
            AND other.stream_pos > $2 AND other.stream_pos <= $3) \
           OR (mine.membership IN ('leave', 'ban') AND other.membership = 'join' \
            AND mine.stream_pos > $2 AND mine.stream_pos <= $3))",
    )
    .bind(user_id)
    .bind(from)
    .bind(to)
    .fetch_all(c)
    .await
}

fn to_text(value: &Value) -> String {
    // Serializing a `Value` cannot fail: its keys are strings.
    serde_json::to_string(value).unwrap_or_default()
}

pub async fn get_device_keys(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT key_json FROM device_keys WHERE user_id = $1 AND device_id = $2",
    )
    .bind(user_id)
    .bind(device_id)
    .fetch_optional(c)
    .await?;
    text.map(|t| codec::decode(&t, "device_keys.key_json"))
        .transpose()
}

/// Stores a device's first keys; false when it already has some (perhaps
/// from a concurrent upload), which the caller then compares against.
pub async fn insert_device_keys(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    keys: &Value,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, device_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(to_text(keys))
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn put_device_keys(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    keys: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(to_text(keys))
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub struct StoredDeviceKeys {
    pub device_id: String,
    pub keys: Value,
    pub display_name: Option<String>,
}

/// Device keys of every existing device of `user_id` that uploaded some.
pub async fn device_keys_for_user(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<StoredDeviceKeys>, sqlx::Error> {
    sqlx::query(
        "SELECT k.device_id, k.key_json, d.display_name FROM device_keys k \
         JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id \
         WHERE k.user_id = $1 ORDER BY k.device_id",
    )
    .bind(user_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        Ok(StoredDeviceKeys {
            device_id: r.try_get(0)?,
            keys: codec::json(&r, 1, "device_keys.key_json")?,
            display_name: r.try_get(2)?,
        })
    })
    .collect()
}

pub async fn get_one_time_key(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_id: &str,
) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .bind(key_id)
    .fetch_optional(c)
    .await?;
    text.map(|t| codec::decode(&t, "one_time_keys.key_json"))
        .transpose()
}

/// Stores a one-time key; false when the key id is already taken.
pub async fn insert_one_time_key(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_id: &str,
    key: &Value,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .bind(key_id)
    .bind(to_text(key))
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Unclaimed one-time keys per algorithm; always has `signed_curve25519`,
/// because clients only replenish keys when they see a count of zero.
pub async fn one_time_key_counts(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
) -> Result<BTreeMap<String, i64>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
    )
    .bind(user_id)
    .bind(device_id)
    .fetch_all(c)
    .await?;
    let mut counts = BTreeMap::new();
    for r in rows {
        counts.insert(r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?);
    }
    counts.entry("signed_curve25519".to_owned()).or_insert(0);
    Ok(counts)
}

/// Hands out one key of `algorithm` for the device: a one-time key, deleted
/// as it is returned, else the fallback key, which stays and is marked used.
/// Returns `(key_id, key)`.
pub async fn claim_key(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<(String, Value)>, sqlx::Error> {
    // On PostgreSQL, concurrent claimers skip rows another transaction has
    // already picked instead of waiting and then finding them gone. SQLite
    // writers are serialized by `Store::write`.
    let lock = match tx.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = ( \
         SELECT key_id FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
         ORDER BY key_id LIMIT 1{lock}) RETURNING key_id, key_json"
    );
    let row = sqlx::query(&sql)
        .bind(user_id)
        .bind(device_id)
        .bind(algorithm)
        .fetch_optional(tx.conn())
        .await?;
    let row = match row {
        Some(row) => row,
        None => {
            let fallback = sqlx::query(
                "UPDATE fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 \
                 RETURNING key_id, key_json",
            )
            .bind(user_id)
            .bind(device_id)
            .bind(algorithm)
            .fetch_optional(tx.conn())
            .await?;
            match fallback {
                Some(row) => row,
                None => return Ok(None),
            }
        }
    };
    Ok(Some((
        row.try_get(0)?,
        codec::json(&row, 1, "one_time_keys or fallback_keys.key_json")?,
    )))
}

/// The fallback key of `algorithm`: `(key_id, key)`.
pub async fn get_fallback_key(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
) -> Result<Option<(String, Value)>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT key_id, key_json FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .fetch_optional(c)
    .await?;
    row.map(|r| Ok((r.try_get(0)?, codec::json(&r, 1, "fallback_keys.key_json")?)))
        .transpose()
}

/// Replaces the fallback key of `algorithm`; the new key starts unused.
pub async fn put_fallback_key(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    algorithm: &str,
    key_id: &str,
    key: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES ($1, $2, $3, $4, $5, 0) \
         ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, \
         key_json = excluded.key_json, used = 0",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(algorithm)
    .bind(key_id)
    .bind(to_text(key))
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// What `/sync` tells a device about its own keys, in one query: how many
/// one-time keys of each algorithm it has left (`signed_curve25519` always
/// present), and the algorithms of its unused fallback keys, sorted.
pub async fn device_key_state(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
) -> Result<(BTreeMap<String, i64>, Vec<String>), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT 'otk', algorithm, COUNT(*) FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm \
         UNION ALL \
         SELECT 'fallback', algorithm, 0 FROM fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0",
    )
    .bind(user_id)
    .bind(device_id)
    .fetch_all(c)
    .await?;
    let mut counts = BTreeMap::from([("signed_curve25519".to_owned(), 0)]);
    let mut fallback = Vec::new();
    for r in rows {
        let algorithm: String = r.try_get(1)?;
        if r.try_get::<String, _>(0)? == "otk" {
            counts.insert(algorithm, r.try_get::<i64, _>(2)?);
        } else {
            fallback.push(algorithm);
        }
    }
    fallback.sort_unstable();
    Ok((counts, fallback))
}

/// `key_type` is `master`, `self_signing` or `user_signing`.
pub async fn get_cross_signing_key(
    c: &mut AnyConnection,
    user_id: &str,
    key_type: &str,
) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT key_json FROM cross_signing_keys WHERE user_id = $1 AND key_type = $2",
    )
    .bind(user_id)
    .bind(key_type)
    .fetch_optional(c)
    .await?;
    text.map(|t| codec::decode(&t, "cross_signing_keys.key_json"))
        .transpose()
}

pub async fn put_cross_signing_key(
    tx: &mut WriteTx,
    user_id: &str,
    key_type: &str,
    key: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id, key_type) DO UPDATE SET key_json = excluded.key_json",
    )
    .bind(user_id)
    .bind(key_type)
    .bind(to_text(key))
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// A signature uploaded through `/keys/signatures/upload`. `target_key` is a
/// device id or a cross-signing public key; `signer_key` a key id such as
/// `ed25519:<public key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySignature {
    pub target_key: String,
    pub signer_user: String,
    pub signer_key: String,
    pub signature: String,
}

/// Every stored signature on keys of `target_user`.
pub async fn signatures_on(
    c: &mut AnyConnection,
    target_user: &str,
) -> Result<Vec<KeySignature>, sqlx::Error> {
    sqlx::query(
        "SELECT target_key, signer_user, signer_key, signature FROM key_signatures \
         WHERE target_user = $1 ORDER BY target_key, signer_user, signer_key",
    )
    .bind(target_user)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        Ok(KeySignature {
            target_key: r.try_get(0)?,
            signer_user: r.try_get(1)?,
            signer_key: r.try_get(2)?,
            signature: r.try_get(3)?,
        })
    })
    .collect()
}

pub async fn put_signature(
    tx: &mut WriteTx,
    target_user: &str,
    sig: &KeySignature,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO key_signatures (target_user, target_key, signer_user, signer_key, signature) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (target_user, target_key, signer_user, signer_key) \
         DO UPDATE SET signature = excluded.signature",
    )
    .bind(target_user)
    .bind(&sig.target_key)
    .bind(&sig.signer_user)
    .bind(&sig.signer_key)
    .bind(&sig.signature)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Forgets signatures on a key that is being replaced (a device id reused
/// after the device was deleted): they were made over other key material.
pub async fn delete_signatures_on(
    tx: &mut WriteTx,
    target_user: &str,
    target_key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM key_signatures WHERE target_user = $1 AND target_key = $2")
        .bind(target_user)
        .bind(target_key)
        .execute(tx.conn())
        .await?;
    Ok(())
}
