//! Rooms, their current state, memberships and aliases.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::WriteTx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub membership: String,
    /// Stream position of the membership event.
    pub pos: i64,
    /// Where the current span of this membership began (for history visibility).
    pub span_start_pos: i64,
    pub forgotten: bool,
}

pub async fn create(
    tx: &mut WriteTx,
    room_id: &str,
    creator: &str,
    version: &str,
    is_public: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO rooms (room_id, creator, room_version, is_public, created_ts) VALUES ($1, $2, $3, $4, $5)")
        .bind(room_id)
        .bind(creator)
        .bind(version)
        .bind(super::codec::flag_param(is_public))
        .bind(now)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn exists(c: &mut AnyConnection, room_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE room_id = $1")
        .bind(room_id)
        .fetch_one(c)
        .await?;
    Ok(n > 0)
}

pub async fn membership(
    c: &mut AnyConnection,
    room_id: &str,
    user_id: &str,
) -> Result<Option<Membership>, sqlx::Error> {
    sqlx::query("SELECT membership, stream_pos, span_start_pos, forgotten FROM memberships WHERE room_id = $1 AND user_id = $2")
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(c)
        .await?
        .map(|r| {
            Ok(Membership {
                membership: r.try_get(0)?,
                pos: r.try_get(1)?,
                span_start_pos: r.try_get(2)?,
                forgotten: super::codec::flag(&r, 3)?,
            })
        })
        .transpose()
}

/// Every membership `user_id` has had in `room_id`, oldest first, as
/// (stream position, membership): the spans history visibility reads.
pub async fn membership_history(
    c: &mut AnyConnection,
    room_id: &str,
    user_id: &str,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    sqlx::query(
        "SELECT stream_pos, content FROM events \
         WHERE room_id = $1 AND event_type = 'm.room.member' AND state_key = $2 ORDER BY stream_pos",
    )
    .bind(room_id)
    .bind(user_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        let content: serde_json::Value = super::codec::json(&r, 1, "events.content")?;
        let membership = content
            .get("membership")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("leave")
            .to_owned();
        Ok((r.try_get(0)?, membership))
    })
    .collect()
}

/// Called whenever an `m.room.member` state event is stored.
pub async fn set_membership(
    tx: &mut WriteTx,
    room_id: &str,
    user_id: &str,
    membership: &str,
    pos: i64,
) -> Result<(), sqlx::Error> {
    let previous = self::membership(tx.conn(), room_id, user_id).await?;
    // A join after a join (a profile change) continues the same span.
    let span_start = match previous {
        Some(p) if p.membership == membership => p.span_start_pos,
        _ => pos,
    };
    sqlx::query(
        "INSERT INTO memberships (room_id, user_id, membership, stream_pos, span_start_pos, forgotten) VALUES ($1, $2, $3, $4, $5, 0) \
         ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, stream_pos = excluded.stream_pos, \
         span_start_pos = excluded.span_start_pos, forgotten = 0",
    )
    .bind(room_id)
    .bind(user_id)
    .bind(membership)
    .bind(pos)
    .bind(span_start)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Moves the room's `state_serial` (migration 0023): every write that
/// changes what a send's authorization reads about the room calls this, so
/// a send that read the room earlier finds out (`store::checked_append`),
/// and so does every rewrite or deletion of a stored event (a redaction,
/// erasure, the retention purge), so that a node's kept copies of the
/// room's events (`service::sync::members`, `service::sync::recent`) are
/// never served after it. Appending an event moves it only for state.
pub async fn state_changed(tx: &mut WriteTx, room_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rooms SET state_serial = state_serial + 1 WHERE room_id = $1")
        .bind(room_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// [`state_changed`] for the room of `event_id`; before a rewrite or
/// deletion of it.
pub async fn event_changed(tx: &mut WriteTx, event_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE rooms SET state_serial = state_serial + 1 WHERE room_id = \
         (SELECT room_id FROM events WHERE event_id = $1)",
    )
    .bind(event_id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn forget(tx: &mut WriteTx, room_id: &str, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE memberships SET forgotten = 1 WHERE room_id = $1 AND user_id = $2")
        .bind(room_id)
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Members of `room_id` whose membership is one of `memberships`.
pub async fn members(
    c: &mut AnyConnection,
    room_id: &str,
    memberships: &[&str],
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, membership FROM memberships WHERE room_id = $1 ORDER BY user_id",
    )
    .bind(room_id)
    .fetch_all(c)
    .await?;
    rows.into_iter()
        .filter_map(|r| {
            let m: String = r.try_get(1).ok()?;
            memberships.contains(&m.as_str()).then(|| r.try_get(0))
        })
        .collect()
}

/// Members of `room_id` whose membership is one of `memberships`, with that
/// membership, ordered by user id: one query where the caller needs several
/// kinds apart (a room summary's joined and invited members).
pub async fn members_with_membership(
    c: &mut AnyConnection,
    room_id: &str,
    memberships: &[&str],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT user_id, membership FROM memberships WHERE room_id = $1 ORDER BY user_id",
    )
    .bind(room_id)
    .fetch_all(c)
    .await?;
    let mut out = Vec::new();
    for r in rows {
        let m: String = r.try_get(1)?;
        if memberships.contains(&m.as_str()) {
            out.push((r.try_get(0)?, m));
        }
    }
    Ok(out)
}

pub async fn joined_members(
    c: &mut AnyConnection,
    room_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    members(c, room_id, &["join"]).await
}

/// Every room the user has a membership row in: (room_id, membership).
pub async fn rooms_for_user(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<(String, Membership)>, sqlx::Error> {
    sqlx::query("SELECT room_id, membership, stream_pos, span_start_pos, forgotten FROM memberships WHERE user_id = $1 ORDER BY room_id")
        .bind(user_id)
        .fetch_all(c)
        .await?
        .into_iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Membership {
                    membership: r.try_get(1)?,
                    pos: r.try_get(2)?,
                    span_start_pos: r.try_get(3)?,
                    forgotten: super::codec::flag(&r, 4)?,
                },
            ))
        })
        .collect()
}

/// One of a user's rooms as an incremental sync sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncRoom {
    pub room_id: String,
    pub membership: Membership,
    /// The room has events in the window.
    pub has_events: bool,
    /// Its receipts or typing notices changed in the window.
    pub has_ephemeral: bool,
    /// The content of its current state event of the type asked for (key
    /// `""`), if any.
    pub state_content: Option<serde_json::Value>,
    /// The room's `state_serial` (see [`state_changed`]).
    pub state_serial: i64,
    /// The position of the room's last event up to the window's end, if
    /// it has any: kept recent events (`service::sync::recent`) cover the
    /// window only if they reach this far.
    pub last_event_pos: Option<i64>,
    /// The room's latest event that moves it up a sliding sync list, as
    /// written with it (`rooms.bump_pos`, 0 for none): it may be later
    /// than the window's end (see `sliding_sync::bump_positions`).
    pub bump_pos: i64,
}

/// Every room the user has a membership row in, as [`rooms_for_user`], and
/// for each whether anything happened in it in `(from, to]`, with one state
/// event's content. One query where a sync made three, plus one per room:
/// each query is a hand-off to a database worker, which costs more than
/// these index probes. Both sync APIs read the same rows with the device's
/// news (`store::device_news`); this alone serves that union's tests.
pub async fn rooms_for_sync(
    c: &mut AnyConnection,
    user_id: &str,
    from: i64,
    to: i64,
    state_type: &str,
) -> Result<Vec<SyncRoom>, sqlx::Error> {
    sqlx::query(&sync_rooms_select("$1", "$2", "$3", "$4"))
        .bind(user_id)
        .bind(from)
        .bind(to)
        .bind(state_type)
        .fetch_all(c)
        .await?
        .iter()
        .map(|r| sync_room(r, 0))
        .collect::<Result<Vec<_>, _>>()
        .map(sorted_by_room)
}

/// In room id order, as clients and tests see them.
pub(super) fn sorted_by_room(mut rooms: Vec<SyncRoom>) -> Vec<SyncRoom> {
    rooms.sort_unstable_by(|a, b| a.room_id.cmp(&b.room_id));
    rooms
}

/// The select of [`rooms_for_sync`], given the SQL of its user id, window
/// and state type: one row per room, in the columns [`sync_room`] reads,
/// bigint and text in the same places as `store::device_news`'s rows so
/// that it can be one part of a union there.
pub(super) fn sync_rooms_select(user: &str, from: &str, to: &str, state_type: &str) -> String {
    let changed = |table: &str, alias: &str| {
        format!(
            "EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.room_id = m.room_id \
             AND {alias}.stream_pos > {from} AND {alias}.stream_pos <= {to})"
        )
    };
    format!(
        "SELECT m.stream_pos, m.room_id, m.membership, p.content, m.span_start_pos, \
         m.forgotten + CAST(CASE WHEN {events} THEN 2 ELSE 0 END AS BIGINT) \
         + CAST(CASE WHEN {receipts} OR {typing} THEN 4 ELSE 0 END AS BIGINT), \
         COALESCE(r.state_serial, 0), \
         (SELECT MAX(l.stream_pos) FROM events l WHERE l.room_id = m.room_id AND l.stream_pos <= {to}), \
         COALESCE(r.bump_pos, 0) \
         FROM memberships m \
         LEFT JOIN current_state s ON s.room_id = m.room_id AND s.event_type = {state_type} AND s.state_key = '' \
         LEFT JOIN events p ON p.event_id = s.event_id \
         LEFT JOIN rooms r ON r.room_id = m.room_id \
         WHERE m.user_id = {user}",
        events = changed("events", "e"),
        receipts = changed("receipts", "r2"),
        typing = changed("typing", "t"),
    )
}

/// A row of [`sync_rooms_select`], its columns from `at` on.
pub(super) fn sync_room(r: &AnyRow, at: usize) -> Result<SyncRoom, sqlx::Error> {
    let flags: i64 = r.try_get(at + 5)?;
    Ok(SyncRoom {
        room_id: r.try_get(at + 1)?,
        membership: Membership {
            membership: r.try_get(at + 2)?,
            pos: r.try_get(at)?,
            span_start_pos: r.try_get(at + 4)?,
            forgotten: flags & 1 != 0,
        },
        has_events: flags & 2 != 0,
        has_ephemeral: flags & 4 != 0,
        state_content: super::codec::opt_json(r, at + 3, "events.content")?,
        state_serial: r.try_get(at + 6)?,
        last_event_pos: r.try_get(at + 7)?,
        bump_pos: r.try_get(at + 8)?,
    })
}

pub async fn joined_rooms(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room_id FROM memberships WHERE user_id = $1 AND membership = 'join' ORDER BY room_id")
        .bind(user_id)
        .fetch_all(c)
        .await
}

/// Everyone who shares a joined room with `user_id`, `user_id` included:
/// the users who must hear about changes to its devices.
pub async fn users_sharing_rooms(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let mut users: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT other.user_id FROM memberships mine JOIN memberships other ON other.room_id = mine.room_id \
         WHERE mine.user_id = $1 AND mine.membership = 'join' AND other.membership = 'join'",
    )
    .bind(user_id)
    .fetch_all(c)
    .await?;
    if !users.iter().any(|u| u == user_id) {
        users.push(user_id.to_owned());
    }
    Ok(users)
}

/// True when the two users share at least one joined room.
pub async fn share_a_room(c: &mut AnyConnection, a: &str, b: &str) -> Result<bool, sqlx::Error> {
    if a == b {
        return Ok(true);
    }
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships x JOIN memberships y ON y.room_id = x.room_id \
         WHERE x.user_id = $1 AND y.user_id = $2 AND x.membership = 'join' AND y.membership = 'join'",
    )
    .bind(a)
    .bind(b)
    .fetch_one(c)
    .await?;
    Ok(n > 0)
}

pub async fn put_alias(
    tx: &mut WriteTx,
    alias: &str,
    room_id: &str,
    creator: &str,
) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT (alias) DO NOTHING")
        .bind(alias)
        .bind(room_id)
        .bind(creator)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}

/// (room_id, creator)
pub async fn get_alias(
    c: &mut AnyConnection,
    alias: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
        .bind(alias)
        .fetch_optional(c)
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
}

pub async fn delete_alias(tx: &mut WriteTx, alias: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM room_aliases WHERE alias = $1")
        .bind(alias)
        .execute(tx.conn())
        .await?;
    Ok(())
}

pub async fn aliases_for_room(
    c: &mut AnyConnection,
    room_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
        .bind(room_id)
        .fetch_all(c)
        .await
}

/// Rooms whose current state holds an event of `event_type` (any state
/// key), in room id order.
pub async fn rooms_with_state(
    c: &mut AnyConnection,
    event_type: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT room_id FROM current_state WHERE event_type = $1 ORDER BY room_id",
    )
    .bind(event_type)
    .fetch_all(c)
    .await
}
