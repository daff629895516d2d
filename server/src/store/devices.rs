//! Devices of a user. Their keys live in `store::keys`.

use sqlx::{AnyConnection, Row};

use super::{WriteTx, Writer};

#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
}

fn from_row(r: sqlx::any::AnyRow) -> Result<Device, sqlx::Error> {
    Ok(Device {
        device_id: r.try_get(0)?,
        display_name: r.try_get(1)?,
        last_seen_ts: r.try_get(2)?,
    })
}

pub async fn list(c: &mut AnyConnection, user_id: &str) -> Result<Vec<Device>, sqlx::Error> {
    sqlx::query("SELECT device_id, display_name, last_seen_ts FROM devices WHERE user_id = $1 ORDER BY device_id")
        .bind(user_id)
        .fetch_all(c)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

pub async fn get(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
) -> Result<Option<Device>, sqlx::Error> {
    sqlx::query("SELECT device_id, display_name, last_seen_ts FROM devices WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(device_id)
        .fetch_optional(c)
        .await?
        .map(from_row)
        .transpose()
}

/// Creates the device if it does not exist; returns true when it was created.
pub async fn ensure(
    tx: &mut WriteTx,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts) VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (user_id, device_id) DO NOTHING",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(display_name)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_display_name(
    w: &mut impl Writer,
    user_id: &str,
    device_id: &str,
    name: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let r =
        sqlx::query("UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3")
            .bind(name)
            .bind(user_id)
            .bind(device_id)
            .execute(w.conn())
            .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn touch(
    w: &mut impl Writer,
    user_id: &str,
    device_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE devices SET last_seen_ts = $1 WHERE user_id = $2 AND device_id = $3")
        .bind(now)
        .bind(user_id)
        .bind(device_id)
        .execute(w.conn())
        .await?;
    Ok(())
}

/// Deletes the device with its tokens, keys, pushers and queued to-device
/// messages.
/// Returns false if there was no such device.
pub async fn delete(tx: &mut WriteTx, user_id: &str, device_id: &str) -> Result<bool, sqlx::Error> {
    tx.ends_sessions();
    for table in [
        "access_tokens",
        "device_keys",
        "one_time_keys",
        "fallback_keys",
        "to_device",
        "txn_ids",
        // Pushers belong to the device whose token made them (spec).
        "pushers",
        "sso_devices",
        "sliding_sync_positions",
        "sliding_sync_rooms",
        // Its refresh tokens go with it: a deleted device cannot come back.
        "oauth_sessions",
    ] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"
        ))
        .bind(user_id)
        .bind(device_id)
        .execute(tx.conn())
        .await?;
    }
    let r = sqlx::query("DELETE FROM devices WHERE user_id = $1 AND device_id = $2")
        .bind(user_id)
        .bind(device_id)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}
