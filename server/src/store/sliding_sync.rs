//! Simplified sliding sync (MSC4186): each connection's positions and the
//! rooms each position's client holds (migration 0015).

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, Row};

use super::{codec, WriteTx};

/// One connection of one device.
#[derive(Clone, Copy)]
pub struct ConnKey<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub conn_id: &'a str,
}

/// A position handed out to a connection.
#[derive(Debug, Clone)]
pub struct Position {
    pub seq: i64,
    pub stream_pos: i64,
    pub list_counts: BTreeMap<String, u64>,
}

/// A room as a position's client holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRoom {
    pub sent_pos: i64,
    pub config: String,
}

pub async fn position(
    c: &mut AnyConnection,
    key: ConnKey<'_>,
    pos_id: i64,
) -> Result<Option<Position>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT seq, stream_pos, list_counts FROM sliding_sync_positions \
         WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND pos_id = $4",
    )
    .bind(key.user_id)
    .bind(key.device_id)
    .bind(key.conn_id)
    .bind(pos_id)
    .fetch_optional(c)
    .await?;
    row.map(|r| {
        let counts: String = r.try_get(2)?;
        Ok(Position {
            seq: r.try_get(0)?,
            stream_pos: r.try_get(1)?,
            list_counts: codec::decode(&counts, "sliding_sync_positions.list_counts")?,
        })
    })
    .transpose()
}

pub async fn rooms(
    c: &mut AnyConnection,
    key: ConnKey<'_>,
    pos_id: i64,
) -> Result<HashMap<String, SentRoom>, sqlx::Error> {
    sqlx::query(
        "SELECT room_id, sent_pos, config FROM sliding_sync_rooms \
         WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND pos_id = $4",
    )
    .bind(key.user_id)
    .bind(key.device_id)
    .bind(key.conn_id)
    .bind(pos_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        Ok((
            r.try_get(0)?,
            SentRoom {
                sent_pos: r.try_get(1)?,
                config: r.try_get(2)?,
            },
        ))
    })
    .collect()
}

/// Forgets everything a connection was sent, for a client starting it over.
pub async fn reset(tx: &mut WriteTx, key: ConnKey<'_>) -> Result<(), sqlx::Error> {
    for table in ["sliding_sync_positions", "sliding_sync_rooms"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2 AND conn_id = $3"
        ))
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// What a new position records.
pub struct NewPosition<'a> {
    pub pos_id: i64,
    pub position: &'a Position,
    pub now: i64,
    /// The rooms sent in this response; every other room is held as at `base`.
    pub sent: &'a [(String, SentRoom)],
}

/// Records `new` as the position after `base` (None: a fresh connection),
/// and drops every other position of the connection: a client can only
/// retry from the position it sent, or go on from the new one.
pub async fn save(
    tx: &mut WriteTx,
    key: ConnKey<'_>,
    base: Option<i64>,
    new: &NewPosition<'_>,
) -> Result<(), sqlx::Error> {
    let counts = serde_json::to_string(&new.position.list_counts)
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, pos_id, seq, stream_pos, list_counts, created_ts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.user_id)
    .bind(key.device_id)
    .bind(key.conn_id)
    .bind(new.pos_id)
    .bind(new.position.seq)
    .bind(new.position.stream_pos)
    .bind(counts)
    .bind(new.now)
    .execute(tx.conn())
    .await?;
    let kept = base.unwrap_or(new.pos_id);
    if let Some(base) = base {
        sqlx::query(
            "INSERT INTO sliding_sync_rooms (user_id, device_id, conn_id, pos_id, room_id, sent_pos, config) \
             SELECT user_id, device_id, conn_id, $5, room_id, sent_pos, config FROM sliding_sync_rooms \
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND pos_id = $4",
        )
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(base)
        .bind(new.pos_id)
        .execute(tx.conn())
        .await?;
    }
    for (room_id, room) in new.sent {
        sqlx::query(
            "DELETE FROM sliding_sync_rooms \
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND pos_id = $4 AND room_id = $5",
        )
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(new.pos_id)
        .bind(room_id)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO sliding_sync_rooms (user_id, device_id, conn_id, pos_id, room_id, sent_pos, config) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(new.pos_id)
        .bind(room_id)
        .bind(room.sent_pos)
        .bind(&room.config)
        .execute(tx.conn())
        .await?;
    }
    for table in ["sliding_sync_positions", "sliding_sync_rooms"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 \
             AND pos_id <> $4 AND pos_id <> $5"
        ))
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(kept)
        .bind(new.pos_id)
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}

/// Message event types that move a room up a client's room list (as
/// Synapse's default bump types, but for `m.beacon_info`, a state event):
/// what a person would call activity, not reactions, receipts or most state
/// changes. The room's creation counts too.
pub const BUMP_TYPES: &[&str] = &[
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
];

/// For each room the user is joined to, the stream position of its latest
/// event of a [`BUMP_TYPES`] type, or of its creation, at or before `to`.
/// One lookup per type and room, each a descent of the
/// `(room_id, event_type, state_key, stream_pos)` index rather than a scan
/// of the room's messages.
pub async fn bump_positions(
    c: &mut AnyConnection,
    user_id: &str,
    to: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let latest = |event_type: &str, state_key: &str| {
        format!(
            "(SELECT MAX(e.stream_pos) FROM events e WHERE e.room_id = m.room_id \
             AND e.event_type = '{event_type}' AND e.state_key {state_key} AND e.stream_pos <= $2)"
        )
    };
    // The types are constants of this file: safe to inline.
    let mut columns = vec![latest("m.room.create", "= ''")];
    columns.extend(BUMP_TYPES.iter().map(|t| latest(t, "IS NULL")));
    let sql = format!(
        "SELECT m.room_id, {} FROM memberships m WHERE m.user_id = $1 AND m.membership = 'join'",
        columns.join(", ")
    );
    let mut out = HashMap::new();
    for r in sqlx::query(&sql)
        .bind(user_id)
        .bind(to)
        .fetch_all(c)
        .await?
    {
        let mut latest = None;
        for i in 1..=columns.len() {
            latest = latest.max(r.try_get::<Option<i64>, _>(i)?);
        }
        if let Some(pos) = latest {
            out.insert(r.try_get(0)?, pos);
        }
    }
    Ok(out)
}

/// Forgets connections whose newest position was handed out before
/// `cutoff`, with the rooms their positions held. Returns how many
/// positions went.
pub async fn purge_idle(w: &mut impl super::Writer, cutoff: i64) -> Result<u64, sqlx::Error> {
    let positions = sqlx::query(
        "DELETE FROM sliding_sync_positions WHERE (user_id, device_id, conn_id) IN \
         (SELECT user_id, device_id, conn_id FROM sliding_sync_positions \
          GROUP BY user_id, device_id, conn_id HAVING MAX(created_ts) < $1)",
    )
    .bind(cutoff)
    .execute(w.conn())
    .await?;
    sqlx::query(
        "DELETE FROM sliding_sync_rooms WHERE NOT EXISTS (SELECT 1 FROM sliding_sync_positions p \
         WHERE p.user_id = sliding_sync_rooms.user_id AND p.device_id = sliding_sync_rooms.device_id \
         AND p.conn_id = sliding_sync_rooms.conn_id AND p.pos_id = sliding_sync_rooms.pos_id)",
    )
    .execute(w.conn())
    .await?;
    Ok(positions.rows_affected())
}
