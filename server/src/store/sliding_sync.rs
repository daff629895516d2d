//! Simplified sliding sync (MSC4186): the states of each connection and
//! the rooms each state's client holds (migrations 0015, 0016).
//!
//! A `pos` names a state and a stream position. A room held *live* is held
//! up to the stream position of whichever `pos` names the state, so a
//! response that only brings live rooms up to date hands out a new `pos`
//! for the same state and writes nothing: the usual response, new messages
//! in rooms the client follows, costs no write transaction.

use std::collections::{BTreeMap, HashMap};

use sqlx::{AnyConnection, Row};

use super::rooms::SyncRoom;
use super::{codec, WriteTx, Writer};

/// One connection of one device.
#[derive(Clone, Copy)]
pub struct ConnKey<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub conn_id: &'a str,
}

/// A state of a connection.
#[derive(Debug, Clone)]
pub struct ConnState {
    pub state_id: i64,
    pub seq: i64,
    pub list_counts: BTreeMap<String, u64>,
    pub used_ts: i64,
}

/// A room as a state's client holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRoom {
    /// None: live, held up to the stream position of the client's `pos`.
    pub sent_pos: Option<i64>,
    /// The room config it was sent with (see `service::sliding_sync::lists`).
    pub config: String,
}

/// What a request's `pos` continues from: every state the connection
/// keeps (the current one and, until the client has shown it got the
/// current one, the one before), and the rooms the named state's client
/// holds. One statement: each is a hand-off to a database worker.
pub async fn load(
    c: &mut AnyConnection,
    key: ConnKey<'_>,
    state_id: i64,
) -> Result<(Vec<ConnState>, HashMap<String, HeldRoom>), sqlx::Error> {
    const STATE: i64 = 0;
    let rows = sqlx::query(
        "SELECT CAST(0 AS BIGINT), state_id, seq, used_ts, list_counts, CAST(NULL AS TEXT) \
         FROM sliding_sync_positions WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 \
         UNION ALL \
         SELECT CAST(1 AS BIGINT), state_id, sent_pos, CAST(NULL AS BIGINT), room_id, config \
         FROM sliding_sync_rooms \
         WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND state_id = $4",
    )
    .bind(key.user_id)
    .bind(key.device_id)
    .bind(key.conn_id)
    .bind(state_id)
    .fetch_all(c)
    .await?;
    let (mut states, mut rooms) = (Vec::new(), HashMap::new());
    for r in rows {
        if r.try_get::<i64, _>(0)? == STATE {
            let counts: String = r.try_get(4)?;
            states.push(ConnState {
                state_id: r.try_get(1)?,
                seq: r.try_get(2)?,
                list_counts: codec::decode(&counts, "sliding_sync_positions.list_counts")?,
                used_ts: r.try_get(3)?,
            });
        } else {
            let room = HeldRoom {
                sent_pos: r.try_get(2)?,
                config: r.try_get(5)?,
            };
            rooms.insert(r.try_get(4)?, room);
        }
    }
    Ok((states, rooms))
}

/// Forgets everything a connection was sent, for a client starting it over.
pub async fn reset(tx: &mut WriteTx, key: ConnKey<'_>) -> Result<(), sqlx::Error> {
    forget_states(tx, key, &[]).await
}

/// Drops every state of the connection but those in `keep`, with the rooms
/// they held.
pub async fn forget_states(
    w: &mut impl Writer,
    key: ConnKey<'_>,
    keep: &[i64],
) -> Result<(), sqlx::Error> {
    // Two placeholders always, so the statement text does not vary.
    let (a, b) = match keep {
        [] => (-1, -1),
        [a] => (*a, *a),
        [a, b, ..] => (*a, *b),
    };
    for table in ["sliding_sync_positions", "sliding_sync_rooms"] {
        sqlx::query(&format!(
            "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 \
             AND state_id <> $4 AND state_id <> $5"
        ))
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(a)
        .bind(b)
        .execute(w.conn())
        .await?;
    }
    Ok(())
}

/// Records that a request used the state, for the idle purge.
pub async fn touch(
    w: &mut impl Writer,
    key: ConnKey<'_>,
    state_id: i64,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sliding_sync_positions SET used_ts = $5 \
         WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND state_id = $4",
    )
    .bind(key.user_id)
    .bind(key.device_id)
    .bind(key.conn_id)
    .bind(state_id)
    .bind(now)
    .execute(w.conn())
    .await?;
    Ok(())
}

/// What a new state records.
pub struct NewState<'a> {
    pub state: &'a ConnState,
    /// The state it follows, whose rooms it holds but for `changed`.
    pub base: Option<i64>,
    /// Rooms held differently from `base` (or all, without one).
    pub changed: &'a [(&'a str, &'a HeldRoom)],
}

/// Records a new state of the connection, and drops every other but its
/// base: a client can only retry from the state it sent, or go on.
pub async fn save(
    tx: &mut WriteTx,
    key: ConnKey<'_>,
    new: &NewState<'_>,
) -> Result<(), sqlx::Error> {
    let state = new.state;
    let counts =
        serde_json::to_string(&state.list_counts).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO sliding_sync_positions (user_id, device_id, conn_id, state_id, seq, list_counts, used_ts) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(key.user_id)
    .bind(key.device_id)
    .bind(key.conn_id)
    .bind(state.state_id)
    .bind(state.seq)
    .bind(counts)
    .bind(state.used_ts)
    .execute(tx.conn())
    .await?;
    if let Some(base) = new.base {
        sqlx::query(
            "INSERT INTO sliding_sync_rooms (user_id, device_id, conn_id, state_id, room_id, sent_pos, config) \
             SELECT user_id, device_id, conn_id, $5, room_id, sent_pos, config FROM sliding_sync_rooms \
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND state_id = $4",
        )
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(base)
        .bind(state.state_id)
        .execute(tx.conn())
        .await?;
    }
    for (room_id, room) in new.changed {
        sqlx::query(
            "DELETE FROM sliding_sync_rooms \
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3 AND state_id = $4 AND room_id = $5",
        )
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(state.state_id)
        .bind(*room_id)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "INSERT INTO sliding_sync_rooms (user_id, device_id, conn_id, state_id, room_id, sent_pos, config) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(key.user_id)
        .bind(key.device_id)
        .bind(key.conn_id)
        .bind(state.state_id)
        .bind(*room_id)
        .bind(room.sent_pos)
        .bind(&room.config)
        .execute(tx.conn())
        .await?;
    }
    let keep = [new.base.unwrap_or(state.state_id), state.state_id];
    forget_states(tx, key, &keep).await
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

/// Whether an event of this type and state key moves its room up a list.
pub fn bumps(event_type: &str, state_key: Option<&str>) -> bool {
    match state_key {
        None => BUMP_TYPES.contains(&event_type),
        Some(key) => key.is_empty() && event_type == "m.room.create",
    }
}

/// For each of `rooms` the user is joined to, the stream position of its
/// latest event that [`bumps`], at or before `to`. Each room keeps its
/// latest (`rooms.bump_pos`, written with the event and read with the
/// rooms); only a room bumped after `to` (by a send that committed after
/// the rooms were read) has its latest event up to `to` looked up, one
/// descent of the `(room_id, event_type, state_key, stream_pos)` index per
/// type.
pub async fn bump_positions(
    c: &mut AnyConnection,
    rooms: &[SyncRoom],
    to: i64,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut out = HashMap::new();
    for room in rooms.iter().filter(|r| r.membership.membership == "join") {
        let pos = match room.bump_pos {
            0 => None,
            pos if pos <= to => Some(pos),
            _ => bump_position_at(&mut *c, &room.room_id, to).await?,
        };
        if let Some(pos) = pos {
            out.insert(room.room_id.clone(), pos);
        }
    }
    Ok(out)
}

/// The room's latest event that [`bumps`], at or before `to`.
async fn bump_position_at(
    c: &mut AnyConnection,
    room_id: &str,
    to: i64,
) -> Result<Option<i64>, sqlx::Error> {
    let latest = |event_type: &str, state_key: &str| {
        format!(
            "(SELECT MAX(e.stream_pos) FROM events e WHERE e.room_id = $1 \
             AND e.event_type = '{event_type}' AND e.state_key {state_key} AND e.stream_pos <= $2)"
        )
    };
    // The types are constants of this file: safe to inline.
    let mut columns = vec![latest("m.room.create", "= ''")];
    columns.extend(BUMP_TYPES.iter().map(|t| latest(t, "IS NULL")));
    let r = sqlx::query(&format!("SELECT {}", columns.join(", ")))
        .bind(room_id)
        .bind(to)
        .fetch_one(c)
        .await?;
    let mut latest = None;
    for i in 0..columns.len() {
        latest = latest.max(r.try_get::<Option<i64>, _>(i)?);
    }
    Ok(latest)
}

/// Forgets connections no request has used since `cutoff`, with the rooms
/// their states held. Returns how many states went.
pub async fn purge_idle(w: &mut impl Writer, cutoff: i64) -> Result<u64, sqlx::Error> {
    let positions = sqlx::query(
        "DELETE FROM sliding_sync_positions WHERE (user_id, device_id, conn_id) IN \
         (SELECT user_id, device_id, conn_id FROM sliding_sync_positions \
          GROUP BY user_id, device_id, conn_id HAVING MAX(used_ts) < $1)",
    )
    .bind(cutoff)
    .execute(w.conn())
    .await?;
    sqlx::query(
        "DELETE FROM sliding_sync_rooms WHERE NOT EXISTS (SELECT 1 FROM sliding_sync_positions p \
         WHERE p.user_id = sliding_sync_rooms.user_id AND p.device_id = sliding_sync_rooms.device_id \
         AND p.conn_id = sliding_sync_rooms.conn_id AND p.state_id = sliding_sync_rooms.state_id)",
    )
    .execute(w.conn())
    .await?;
    Ok(positions.rows_affected())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::events::{self, NewEvent};
    use crate::store::{rooms, Store};

    async fn send(store: &Store, room: &str, kind: &str, state_key: Option<&str>) -> i64 {
        let mut tx = store.write().await.unwrap();
        if kind == "m.room.create" {
            rooms::create(&mut tx, room, "@u:x", "10", false, 0)
                .await
                .unwrap();
        }
        let content = match kind {
            "m.room.member" => json!({ "membership": "join" }),
            _ => json!({}),
        };
        let event = NewEvent {
            room_id: room,
            sender: "@u:x",
            sender_device: None,
            txn_id: None,
            event_type: kind,
            state_key,
            content: &content,
            redacts: None,
        };
        let pos = events::append(&mut tx, &event, 0).await.unwrap().pos;
        tx.commit().await.unwrap();
        pos
    }

    /// As a response at `to` reads them, from rooms read at the newest
    /// position (which a send may have moved past `to` meanwhile).
    async fn bumps_at(store: &Store, to: i64) -> HashMap<String, i64> {
        let mut c = store.read().await.unwrap();
        let newest = crate::store::current_pos(&mut c).await.unwrap();
        let rooms = rooms::rooms_for_sync(&mut c, "@u:x", newest, newest, "")
            .await
            .unwrap();
        bump_positions(&mut c, &rooms, to).await.unwrap()
    }

    /// The stored latest bump answers for a response's position, a send
    /// committed after it does not show, and the migration's backfill
    /// arrives at the same stamps as the sends did.
    #[tokio::test]
    async fn bump_stamps_are_the_latest_bumping_event_up_to_the_position() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::tests::sqlite_store(&dir).await;
        let a_created = send(&store, "!a:x", "m.room.create", Some("")).await;
        send(&store, "!a:x", "m.room.member", Some("@u:x")).await;
        let b_created = send(&store, "!b:x", "m.room.create", Some("")).await;
        send(&store, "!b:x", "m.room.member", Some("@u:x")).await;
        let a_message = send(&store, "!a:x", "m.room.encrypted", None).await;
        // Neither a reaction nor a state change moves a room up.
        send(&store, "!b:x", "m.reaction", None).await;
        send(&store, "!b:x", "m.room.name", Some("")).await;
        let a_later = send(&store, "!a:x", "m.room.message", None).await;

        let now = bumps_at(&store, a_later).await;
        assert_eq!(now.get("!a:x"), Some(&a_later));
        assert_eq!(now.get("!b:x"), Some(&b_created));
        // A response whose position was taken before the later message.
        let before = bumps_at(&store, a_later - 1).await;
        assert_eq!(before.get("!a:x"), Some(&a_message));
        let at_creation = bumps_at(&store, a_created).await;
        assert_eq!(at_creation.get("!a:x"), Some(&a_created));

        let mut c = store.read().await.unwrap();
        sqlx::query("UPDATE rooms SET bump_pos = 0")
            .execute(&mut *c)
            .await
            .unwrap();
        let migration = include_str!("migrations/0021_room_bump.sql");
        let backfill = &migration[migration.find("UPDATE rooms").unwrap()..];
        sqlx::raw_sql(backfill).execute(&mut *c).await.unwrap();
        drop(c);
        assert_eq!(bumps_at(&store, a_later).await, now);
    }
}
