//! Send-to-device messages, queued per target device until its `/sync`
//! acknowledges them (their transaction ids: `store::txn_ids`).

use cloister_proto::to_device::ToDeviceEvent;
use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{WriteTx, Writer};

/// One message for one device, as queued by `/sendToDevice`.
pub struct Queued<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub sender: &'a str,
    pub event_type: &'a str,
    pub content: &'a str,
}

/// Queues `msg` at stream position `pos`; `now` dates it for retention.
pub async fn insert(
    tx: &mut WriteTx,
    pos: i64,
    msg: &Queued<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO to_device (stream_pos, user_id, device_id, sender, event_type, content, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(pos)
    .bind(msg.user_id)
    .bind(msg.device_id)
    .bind(msg.sender)
    .bind(msg.event_type)
    .bind(msg.content)
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Messages for the device in `(after_pos, up_to_pos]`, oldest first, as
/// `(position, event)`. Messages queued before
/// `cutoff` have expired and are not delivered (rows from before dating
/// began have no time and count as fresh until the purge dates them).
pub async fn pending(
    c: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
    (after_pos, up_to_pos): (i64, i64),
    limit: i64,
    cutoff: i64,
) -> Result<Vec<(i64, ToDeviceEvent)>, sqlx::Error> {
    sqlx::query(
        "SELECT stream_pos, sender, event_type, content FROM to_device \
         WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4 \
         AND (created_ts IS NULL OR created_ts >= $6) ORDER BY stream_pos LIMIT $5",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(after_pos)
    .bind(up_to_pos)
    .bind(limit)
    .bind(cutoff)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        let content: Value = super::codec::json(&r, 3, "to_device.content")?;
        Ok((
            r.try_get(0)?,
            ToDeviceEvent {
                content,
                sender: r.try_get(1)?,
                event_type: r.try_get(2)?,
            },
        ))
    })
    .collect()
}

/// Drops the messages the device has seen: everything up to `up_to_pos`.
///
/// Looks before it deletes: every sync calls this, and on SQLite even a
/// DELETE that matches nothing takes the database's write lock.
pub async fn delete_acknowledged(
    w: &mut impl Writer,
    user_id: &str,
    device_id: &str,
    up_to_pos: i64,
) -> Result<u64, sqlx::Error> {
    let any: Option<i64> = sqlx::query_scalar(
        "SELECT stream_pos FROM to_device WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3 LIMIT 1",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(up_to_pos)
    .fetch_optional(w.conn())
    .await?;
    if any.is_none() {
        return Ok(0);
    }
    let r = sqlx::query(
        "DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(up_to_pos)
    .execute(w.conn())
    .await?;
    Ok(r.rows_affected())
}
