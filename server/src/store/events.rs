//! Room events: appending (with current-state and membership upkeep),
//! reading, and rendering in the client format.

use cloister_proto::event::ClientEvent;
use serde_json::{json, Map, Value};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

use super::codec;
use super::readable::{Class, Readable};
use super::{params, rooms, Backend, WriteTx};

/// An event about to be appended.
pub struct NewEvent<'a> {
    pub room_id: &'a str,
    pub sender: &'a str,
    /// The sending device and its transaction id, echoed back to that device
    /// as `unsigned.transaction_id` so it can match its local echo.
    pub sender_device: Option<&'a str>,
    pub txn_id: Option<&'a str>,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub content: &'a Value,
    pub redacts: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    /// A state event sent by no device in particular: room creation, joins
    /// made on a user's behalf, what the server posts on its own authority.
    pub fn state(
        room_id: &'a str,
        sender: &'a str,
        event_type: &'a str,
        state_key: &'a str,
        content: &'a Value,
    ) -> Self {
        NewEvent {
            room_id,
            sender,
            sender_device: None,
            txn_id: None,
            event_type,
            state_key: Some(state_key),
            content,
            redacts: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub pos: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub sender_device: Option<String>,
    pub txn_id: Option<String>,
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: Value,
    pub prev_content: Option<Value>,
    pub redacts: Option<String>,
    pub redacted_by: Option<String>,
    pub origin_server_ts: i64,
    /// The room's `m.room.history_visibility` when the event was sent; who
    /// may read it is decided by this, not by the room's current setting.
    pub history_visibility: Option<String>,
}

pub(super) const COLUMNS: &str = "stream_pos, event_id, room_id, sender, sender_device, txn_id, event_type, state_key, content, \
                       prev_content, redacts, redacted_by, origin_server_ts, history_visibility";

pub(super) fn from_row(r: sqlx::any::AnyRow) -> Result<StoredEvent, sqlx::Error> {
    Ok(StoredEvent {
        pos: r.try_get(0)?,
        event_id: r.try_get(1)?,
        room_id: r.try_get(2)?,
        sender: r.try_get(3)?,
        sender_device: r.try_get(4)?,
        txn_id: r.try_get(5)?,
        event_type: r.try_get(6)?,
        state_key: r.try_get(7)?,
        content: codec::json(&r, 8, "events.content")?,
        prev_content: codec::opt_json(&r, 9, "events.prev_content")?,
        redacts: r.try_get(10)?,
        redacted_by: r.try_get(11)?,
        origin_server_ts: r.try_get(12)?,
        history_visibility: r.try_get(13)?,
    })
}

/// Appends an event at a new stream position, updating current state and
/// memberships for state events. Authorization is the caller's job.
pub async fn append(
    tx: &mut WriteTx,
    event: &NewEvent<'_>,
    now: i64,
) -> Result<StoredEvent, sqlx::Error> {
    let visibility = state_event(tx.conn(), event.room_id, "m.room.history_visibility", "").await?;
    let visibility = visibility.as_ref().map(|e| &e.content);
    append_under(tx, event, crate::ids::new_event_id(), now, visibility).await
}

/// [`append`] under a given event id, for a caller that has read the content
/// of the room's current `m.room.history_visibility` already (`None`: the
/// room has none).
///
/// On PostgreSQL a message event takes its stream position in the same
/// statement that stores it: the counter's row lock is held from then until
/// the commit, and every send waits for it (see the parent module), so the
/// fewer round trips after it, the more sends a second.
pub async fn append_under(
    tx: &mut WriteTx,
    event: &NewEvent<'_>,
    event_id: String,
    now: i64,
    history_visibility: Option<&Value>,
) -> Result<StoredEvent, sqlx::Error> {
    let bump = super::sliding_sync::bumps(event.event_type, event.state_key);
    let late = tx.backend() == Backend::Postgres && event.state_key.is_none();
    let mut prev_content = None;
    let mut pos = None;
    if !late {
        let taken = tx.next_pos().await?;
        pos = Some(taken);
        if let Some(state_key) = event.state_key {
            prev_content = update_state(tx, event, state_key, &event_id, taken).await?;
        }
    }
    let content = serde_json::to_string(event.content).unwrap_or_else(|_| "{}".into());
    let prev = prev_content.as_ref().map(|p| p.to_string());
    let visibility = visibility_for(event, prev_content.as_ref(), history_visibility);
    let sql = insert_sql(pos.is_none(), bump);
    let args = event_arguments(event, &event_id, content, prev, now, visibility)?;
    let query = sqlx::query_scalar_with::<_, i64, _>(&sql, args);
    let pos = match pos {
        Some(pos) => {
            query.bind(pos).fetch_one(tx.conn()).await?;
            if bump {
                sqlx::query("UPDATE rooms SET bump_pos = $1 WHERE room_id = $2 AND bump_pos < $1")
                    .bind(pos)
                    .bind(event.room_id)
                    .execute(tx.conn())
                    .await?;
            }
            pos
        }
        None => query.fetch_one(tx.conn()).await?,
    };
    Ok(stored(event, event_id, pos, now, visibility, prev_content))
}

/// The event's columns as `$1`–`$14`, in the order of [`event_values`];
/// owned, so a write can be handed to the writer's task
/// (`store::checked_append`).
pub(super) fn event_arguments(
    event: &NewEvent<'_>,
    event_id: &str,
    content: String,
    prev_content: Option<String>,
    now: i64,
    visibility: Class,
) -> Result<AnyArguments<'static>, sqlx::Error> {
    let owned = |s: Option<&str>| s.map(str::to_owned);
    let relation = cloister_proto::event::relation(event.content);
    let mut args = AnyArguments::default();
    params::push(&mut args, event_id.to_owned())?;
    params::push(&mut args, event.room_id.to_owned())?;
    params::push(&mut args, event.sender.to_owned())?;
    params::push(&mut args, owned(event.sender_device))?;
    params::push(&mut args, owned(event.txn_id))?;
    params::push(&mut args, event.event_type.to_owned())?;
    params::push(&mut args, owned(event.state_key))?;
    params::push(&mut args, content)?;
    params::push(&mut args, prev_content)?;
    params::push(&mut args, owned(event.redacts))?;
    params::push(&mut args, now)?;
    params::push(&mut args, visibility.as_str())?;
    params::push(&mut args, relation.map(|r| r.event_id.to_owned()))?;
    params::push(&mut args, relation.map(|r| r.rel_type.to_owned()))?;
    Ok(args)
}

/// What [`append_under`] stored, as the caller holds it.
pub(super) fn stored(
    event: &NewEvent<'_>,
    event_id: String,
    pos: i64,
    now: i64,
    visibility: Class,
    prev_content: Option<Value>,
) -> StoredEvent {
    StoredEvent {
        pos,
        event_id,
        room_id: event.room_id.to_owned(),
        sender: event.sender.to_owned(),
        sender_device: event.sender_device.map(str::to_owned),
        txn_id: event.txn_id.map(str::to_owned),
        event_type: event.event_type.to_owned(),
        state_key: event.state_key.map(str::to_owned),
        content: event.content.clone(),
        prev_content,
        redacts: event.redacts.map(str::to_owned),
        redacted_by: None,
        origin_server_ts: now,
        history_visibility: Some(visibility.as_str().to_owned()),
    }
}

/// The columns after [`COLUMNS`]' and `relates_to, rel_type`, for an
/// `INSERT INTO events` whose position is `pos` and the rest the parameters
/// of [`event_arguments`].
pub(super) fn event_values(pos: &str) -> String {
    format!("{pos}, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $12, $13, $14")
}

/// The statement that stores an event, returning its position: `$1`–`$14`
/// are the event's columns, `$15` its position unless it takes one itself
/// (`take_position`, PostgreSQL only: SQLite has no writes in a `WITH`),
/// and then it also bumps the room when `bump` says so.
fn insert_sql(take_position: bool, bump: bool) -> String {
    let insert = |pos: &str| {
        format!(
            "INSERT INTO events ({COLUMNS}, relates_to, rel_type) VALUES ({}) RETURNING stream_pos",
            event_values(pos)
        )
    };
    if !take_position {
        return insert("$15");
    }
    let bump = if bump {
        ", b AS (UPDATE rooms SET bump_pos = (SELECT pos FROM p) \
         WHERE room_id = $2 AND bump_pos < (SELECT pos FROM p))"
    } else {
        ""
    };
    format!(
        "WITH p AS (UPDATE stream_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos){bump} {}",
        insert("(SELECT pos FROM p)")
    )
}

/// Makes a state event current at `pos`; returns the content it replaces.
async fn update_state(
    tx: &mut WriteTx,
    event: &NewEvent<'_>,
    state_key: &str,
    event_id: &str,
    pos: i64,
) -> Result<Option<Value>, sqlx::Error> {
    let prev = state_event(tx.conn(), event.room_id, event.event_type, state_key).await?;
    sqlx::query(
        "INSERT INTO current_state (room_id, event_type, state_key, event_id, stream_pos) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_id = excluded.event_id, stream_pos = excluded.stream_pos",
    )
    .bind(event.room_id)
    .bind(event.event_type)
    .bind(state_key)
    .bind(event_id)
    .bind(pos)
    .execute(tx.conn())
    .await?;
    rooms::state_changed(tx, event.room_id).await?;
    if event.event_type == "m.room.member" {
        let membership = event
            .content
            .get("membership")
            .and_then(Value::as_str)
            .unwrap_or("leave");
        rooms::set_membership(tx, event.room_id, state_key, membership, pos).await?;
    }
    Ok(prev.map(|e| e.content))
}

/// The history visibility an event is sent under: the room's current one.
/// A change of visibility is itself readable under the more permissive of
/// the old and the new setting, so everyone affected sees it happen.
pub fn visibility_for(
    event: &NewEvent<'_>,
    prev_content: Option<&Value>,
    current: Option<&Value>,
) -> Class {
    let of =
        |content: &Value| Class::parse(content.get("history_visibility").and_then(Value::as_str));
    if event.event_type == "m.room.history_visibility" && event.state_key == Some("") {
        // No earlier event: the spec's default, `shared`.
        let old = prev_content.map_or(Class::Shared, of);
        return old.max(of(event.content));
    }
    current.map_or(Class::Shared, of)
}

/// Replaces an event's content with its `redacted` form and records who
/// redacted it. The original content is gone from the database, not hidden;
/// so is its relation, which the redaction algorithm strips (a redacted
/// edit or thread reply no longer counts).
pub async fn apply_redaction(
    tx: &mut WriteTx,
    target: &StoredEvent,
    redacted: &Value,
    redaction_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE events SET content = $1, redacted_by = $2, relates_to = NULL, rel_type = NULL WHERE event_id = $3",
    )
        .bind(redacted.to_string())
        .bind(redaction_id)
        .bind(&target.event_id)
        .execute(tx.conn())
        .await?;
    rooms::state_changed(tx, &target.room_id).await?;
    Ok(())
}

pub async fn get(
    c: &mut AnyConnection,
    event_id: &str,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM events WHERE event_id = $1"))
        .bind(event_id)
        .fetch_optional(c)
        .await?
        .map(from_row)
        .transpose()
}

/// Events after stream position `pos`, oldest first (the push evaluator
/// reads the stream with this).
pub async fn after(
    c: &mut AnyConnection,
    pos: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql =
        format!("SELECT {COLUMNS} FROM events WHERE stream_pos > $1 ORDER BY stream_pos LIMIT $2");
    all(c, sqlx::query(&sql).bind(pos).bind(limit)).await
}

pub async fn state_event(
    c: &mut AnyConnection,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {} FROM current_state s JOIN events e ON e.event_id = s.event_id \
         WHERE s.room_id = $1 AND s.event_type = $2 AND s.state_key = $3",
        prefixed("e")
    ))
    .bind(room_id)
    .bind(event_type)
    .bind(state_key)
    .fetch_optional(c)
    .await?
    .map(from_row)
    .transpose()
}

/// The current state events of a room with the given `(type, state
/// key)`s, in one statement; those not set are left out.
pub async fn state_events(
    c: &mut AnyConnection,
    room_id: &str,
    keys: &[(&str, &str)],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<String> = (0..keys.len())
        .map(|i| {
            let at = 2 + 2 * i;
            format!("(s.event_type = ${at} AND s.state_key = ${})", at + 1)
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM current_state s JOIN events e ON e.event_id = s.event_id \
         WHERE s.room_id = $1 AND ({})",
        prefixed("e"),
        wanted.join(" OR ")
    );
    let mut query = sqlx::query(&sql).bind(room_id);
    for (event_type, state_key) in keys {
        query = query.bind(*event_type).bind(*state_key);
    }
    all(c, query).await
}

/// The full current state of a room.
pub async fn current_state(
    c: &mut AnyConnection,
    room_id: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {} FROM current_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id = $1 ORDER BY e.stream_pos",
        prefixed("e")
    ))
    .bind(room_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(from_row)
    .collect()
}

/// Part of a room's current state, for an incremental sync that needs only
/// a few of its events: the member events whose state keys are in
/// `member_keys`, and the state events set at positions strictly between
/// the two ends of `gap` — of every type, or, when `member_keys` is given,
/// of every type but `m.room.member`. Reading the whole state instead costs
/// a row per member on every sync of a busy room.
pub async fn current_state_part(
    c: &mut AnyConnection,
    room_id: &str,
    member_keys: Option<&[&str]>,
    gap: Option<(i64, i64)>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut wanted = Vec::new();
    let keys = member_keys.unwrap_or_default();
    if !keys.is_empty() {
        wanted.push(format!(
            "(s.event_type = 'm.room.member' AND s.state_key IN ({}))",
            params::list(2, keys.len())
        ));
    }
    if gap.is_some() {
        // Bound, not inlined: every text is prepared (and cached) on its
        // own, and the positions differ from one call to the next.
        let types = if member_keys.is_some() {
            "s.event_type <> 'm.room.member' AND "
        } else {
            ""
        };
        let first = 2 + keys.len();
        wanted.push(format!(
            "({types}e.stream_pos > ${first} AND e.stream_pos < ${})",
            first + 1
        ));
    }
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {} FROM current_state s JOIN events e ON e.event_id = s.event_id \
         WHERE s.room_id = $1 AND ({}) ORDER BY e.stream_pos",
        prefixed("e"),
        wanted.join(" OR ")
    );
    let mut query = sqlx::query(&sql).bind(room_id);
    for key in keys {
        query = query.bind(*key);
    }
    if let Some((after, before)) = gap {
        query = query.bind(after).bind(before);
    }
    all(c, query).await
}

/// The room's state as it stood at stream position `at` (inclusive): the
/// latest state event per (type, key) at or before `at`. Used for rooms the
/// viewer has left, whose later state they may not see.
pub async fn state_at(
    c: &mut AnyConnection,
    room_id: &str,
    at: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {cols} FROM events e WHERE e.room_id = $1 AND e.state_key IS NOT NULL AND e.stream_pos <= $2 \
         AND e.stream_pos = (SELECT MAX(x.stream_pos) FROM events x WHERE x.room_id = e.room_id \
         AND x.event_type = e.event_type AND x.state_key = e.state_key AND x.stream_pos <= $2) ORDER BY e.stream_pos",
        cols = prefixed("e")
    ))
    .bind(room_id)
    .bind(at)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(from_row)
    .collect()
}

/// The room's state as a reader whose visible history ends at `to` sees it:
/// the current state for members (`to == i64::MAX`), the state at their
/// departure for those who left.
pub async fn state_until(
    c: &mut AnyConnection,
    room_id: &str,
    to: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if to == i64::MAX {
        current_state(c, room_id).await
    } else {
        state_at(c, room_id, to).await
    }
}

/// Up to `limit` events of a room with positions in `[from, to]` that
/// `readable` lets its reader see, newest first when `backwards`, oldest
/// first otherwise. Message events sent before `cutoff` have expired under
/// the room's retention policy and are left out (state events never expire).
#[allow(clippy::too_many_arguments)]
pub async fn range(
    c: &mut AnyConnection,
    room_id: &str,
    from: i64,
    to: i64,
    limit: i64,
    backwards: bool,
    cutoff: i64,
    readable: &Readable,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let order = if backwards { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND stream_pos >= $2 AND stream_pos <= $3 \
         AND (state_key IS NOT NULL OR origin_server_ts >= $5) AND {visible} \
         ORDER BY stream_pos {order} LIMIT $4",
        visible = readable.sql("$6", 7)
    );
    let query = sqlx::query(&sql)
        .bind(room_id)
        .bind(from)
        .bind(to)
        .bind(limit)
        .bind(cutoff)
        .bind(&readable.user_id);
    all(c, readable.bind_bounds(query)).await
}

/// Every event of a room with positions in `(after, to]`, oldest first,
/// at most `limit`, whoever may read them: for copies kept by the node
/// (`service::sync::recent`), filtered per reader as [`range`] would.
pub async fn between(
    c: &mut AnyConnection,
    room_id: &str,
    after: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3 \
         ORDER BY stream_pos LIMIT $4"
    );
    let query = sqlx::query(&sql).bind(room_id).bind(after).bind(to);
    all(c, query.bind(limit)).await
}

/// Membership events in `(from, to]` of the given rooms' (for device-list tracking).
pub async fn member_events_between(
    c: &mut AnyConnection,
    room_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND event_type = 'm.room.member' AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos"
    );
    all(c, sqlx::query(&sql).bind(room_id).bind(from).bind(to)).await
}

/// Every row of `query`, in the columns of [`COLUMNS`], as an event.
pub(super) async fn all<'q>(
    c: &mut AnyConnection,
    query: Query<'q, Any, AnyArguments<'q>>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    query
        .fetch_all(c)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
}

fn prefixed(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Who is looking at an event, for `unsigned.transaction_id`.
#[derive(Clone, Copy)]
pub struct Viewer<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
}

impl StoredEvent {
    /// The client-server API's event format.
    pub fn to_client(&self, viewer: Option<Viewer<'_>>, now: i64) -> ClientEvent {
        let mut unsigned = Map::new();
        unsigned.insert("age".into(), json!((now - self.origin_server_ts).max(0)));
        if let (Some(v), Some(device), Some(txn)) = (viewer, &self.sender_device, &self.txn_id) {
            if v.user_id == self.sender && v.device_id == device {
                unsigned.insert("transaction_id".into(), json!(txn));
            }
        }
        if let Some(prev) = &self.prev_content {
            unsigned.insert("prev_content".into(), prev.clone());
        }
        if let Some(by) = &self.redacted_by {
            unsigned.insert(
                "redacted_because".into(),
                json!({ "event_id": by, "type": "m.room.redaction", "content": {} }),
            );
        }
        ClientEvent {
            content: self.content.clone(),
            event_id: self.event_id.clone(),
            // Always the server's clock at append time: never negative.
            origin_server_ts: u64::try_from(self.origin_server_ts).unwrap_or(0),
            redacts: self.redacts.clone(),
            room_id: self.room_id.clone(),
            sender: self.sender.clone(),
            state_key: self.state_key.clone(),
            event_type: self.event_type.clone(),
            // Never empty (`age` is always there), so always sent.
            unsigned,
        }
    }

    /// The stripped form shown to invitees before they join.
    pub fn to_stripped(&self) -> Value {
        json!({
            "type": self.event_type,
            "state_key": self.state_key.clone().unwrap_or_default(),
            "sender": self.sender,
            "content": self.content,
        })
    }
}
