//! Typing notifications and read receipts: the room EDUs `/sync` delivers.
//!
//! A typing stop is stored as a row that has already expired rather than a
//! deletion, so its stream position still tells `/sync` that the room's
//! typing set changed.

use serde_json::{json, Map, Value};
use sqlx::{AnyConnection, Row};

use super::WriteTx;

pub const PRIVATE_READ: &str = "m.read.private";

/// A notice that has already expired (a stop) is announced by this very write.
pub async fn set_typing(
    tx: &mut WriteTx,
    room_id: &str,
    user_id: &str,
    expires_ts: i64,
    pos: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO typing (room_id, user_id, expires_ts, stream_pos, expiry_announced) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (room_id, user_id) DO UPDATE SET expires_ts = excluded.expires_ts, stream_pos = excluded.stream_pos, \
         expiry_announced = excluded.expiry_announced",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(expires_ts)
    .bind(pos)
    .bind((expires_ts <= now_ms) as i64)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Typing notices that timed out without anyone saying so yet: (room, user).
pub async fn unannounced_expiries(
    c: &mut AnyConnection,
    now_ms: i64,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT room_id, user_id FROM typing WHERE expiry_announced = 0 AND expires_ts <= $1",
    )
    .bind(now_ms)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect()
}

/// Gives a timed-out notice a new stream position; false if another node
/// (or a fresh notice) got there first.
pub async fn announce_expiry(
    tx: &mut WriteTx,
    room_id: &str,
    user_id: &str,
    pos: i64,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE typing SET stream_pos = $1, expiry_announced = 1 \
         WHERE room_id = $2 AND user_id = $3 AND expiry_announced = 0 AND expires_ts <= $4",
    )
    .bind(pos)
    .bind(room_id)
    .bind(user_id)
    .bind(now_ms)
    .execute(tx.conn())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The users typing in `room_id` at `now_ms`, if the room's typing set
/// changed in `(from, to]`; `None` when there is nothing new to report.
pub async fn typing(
    c: &mut AnyConnection,
    room_id: &str,
    from: i64,
    to: i64,
    now_ms: i64,
) -> Result<Option<Vec<String>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, expires_ts, stream_pos FROM typing WHERE room_id = $1 ORDER BY user_id",
    )
    .bind(room_id)
    .fetch_all(c)
    .await?;
    let mut changed = false;
    let mut users = Vec::new();
    for r in rows {
        let pos: i64 = r.try_get(2)?;
        changed |= pos > from && pos <= to;
        if r.try_get::<i64, _>(1)? > now_ms {
            users.push(r.try_get(0)?);
        }
    }
    Ok(changed.then_some(users))
}

/// (room_id, stream_pos) of an event, for receipt validation and ordering.
pub async fn event_room_and_pos(
    c: &mut AnyConnection,
    event_id: &str,
) -> Result<Option<(String, i64)>, sqlx::Error> {
    sqlx::query("SELECT room_id, stream_pos FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_optional(c)
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

/// The stream position of the event a user's receipt currently points at.
pub async fn receipt_event_pos(
    c: &mut AnyConnection,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
    thread_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT e.stream_pos FROM receipts r JOIN events e ON e.event_id = r.event_id \
         WHERE r.room_id = $1 AND r.user_id = $2 AND r.receipt_type = $3 AND r.thread_id = $4",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(receipt_type)
    .bind(thread_id)
    .fetch_optional(c)
    .await
}

/// Stores a receipt; `thread_id` is "" for an unthreaded receipt.
#[allow(clippy::too_many_arguments)]
pub async fn put_receipt(
    tx: &mut WriteTx,
    room_id: &str,
    user_id: &str,
    receipt_type: &str,
    thread_id: &str,
    event_id: &str,
    ts: i64,
    pos: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts, stream_pos) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (room_id, user_id, receipt_type, thread_id) \
         DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts, stream_pos = excluded.stream_pos",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(receipt_type)
    .bind(thread_id)
    .bind(event_id)
    .bind(ts)
    .bind(pos)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The content of an `m.receipt` EDU for receipts in `room_id` written in
/// `(from, to]`; private receipts appear only to their owner. `None` when
/// there are none.
pub async fn receipts(
    c: &mut AnyConnection,
    room_id: &str,
    viewer: &str,
    from: i64,
    to: i64,
) -> Result<Option<Value>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, receipt_type, thread_id, event_id, ts FROM receipts \
         WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3 \
         AND (receipt_type <> $4 OR user_id = $5) ORDER BY stream_pos",
    )
    .bind(room_id)
    .bind(from)
    .bind(to)
    .bind(PRIVATE_READ)
    .bind(viewer)
    .fetch_all(c)
    .await?;
    let mut receipts = Vec::with_capacity(rows.len());
    for r in rows {
        receipts.push(Receipt {
            user_id: r.try_get(0)?,
            receipt_type: r.try_get(1)?,
            thread_id: r.try_get(2)?,
            event_id: r.try_get(3)?,
            ts: r.try_get(4)?,
        });
    }
    Ok(receipt_edu(&receipts))
}

struct Receipt {
    user_id: String,
    receipt_type: String,
    thread_id: String,
    event_id: String,
    ts: i64,
}

/// `{event_id: {receipt_type: {user_id: {"ts", "thread_id"?}}}}`. A user
/// with receipts in several threads appears under each event; the same
/// (event, type, user) twice keeps the later one.
fn receipt_edu(receipts: &[Receipt]) -> Option<Value> {
    let mut content = Map::new();
    for r in receipts {
        let by_type = content
            .entry(r.event_id.clone())
            .or_insert_with(|| json!({}));
        let by_user = by_type
            .as_object_mut()
            .expect("built as an object")
            .entry(r.receipt_type.clone())
            .or_insert_with(|| json!({}));
        let mut receipt = json!({ "ts": r.ts });
        if !r.thread_id.is_empty() {
            receipt["thread_id"] = json!(r.thread_id);
        }
        by_user
            .as_object_mut()
            .expect("built as an object")
            .insert(r.user_id.clone(), receipt);
    }
    (!content.is_empty()).then_some(Value::Object(content))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(user: &str, kind: &str, thread: &str, event: &str, ts: i64) -> Receipt {
        Receipt {
            user_id: user.into(),
            receipt_type: kind.into(),
            thread_id: thread.into(),
            event_id: event.into(),
            ts,
        }
    }

    #[test]
    fn edu_shape() {
        assert_eq!(receipt_edu(&[]), None);
        let edu = receipt_edu(&[
            receipt("@a:x", "m.read", "", "$1", 5),
            receipt("@b:x", "m.read", "main", "$1", 6),
            receipt("@a:x", "m.read.private", "", "$2", 7),
        ])
        .unwrap();
        assert_eq!(
            edu,
            json!({
                "$1": { "m.read": { "@a:x": { "ts": 5 }, "@b:x": { "ts": 6, "thread_id": "main" } } },
                "$2": { "m.read.private": { "@a:x": { "ts": 7 } } }
            })
        );
    }
}
