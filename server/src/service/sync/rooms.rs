//! The per-room sections of a sync response: `join`, `invite` and `leave`.

use serde_json::{json, Map, Value};
use sqlx::AnyConnection;

use super::filter::SyncFilter;
use crate::error::ApiResult;
use crate::store::events::{self, StoredEvent, Viewer};
use crate::store::readable::Readable;
use crate::store::{ephemeral, rooms};
use cloister_proto::event::ClientEvent;

/// What one room section is built from.
pub struct RoomWindow<'a> {
    pub room_id: &'a str,
    pub viewer: Viewer<'a>,
    /// The client's position; None for an initial sync of this room.
    pub from: Option<i64>,
    /// The last position this response covers.
    pub to: i64,
    /// Which events this user may see (history visibility).
    pub readable: &'a Readable,
    pub filter: &'a SyncFilter,
    /// Send the room's whole state, whatever `from` says.
    pub full_state: bool,
    pub now: i64,
    /// Messages sent before this have expired (see `service::retention`).
    pub cutoff: i64,
}

struct Timeline {
    events: Vec<StoredEvent>,
    limited: bool,
    prev_batch: String,
}

async fn timeline(c: &mut AnyConnection, w: &RoomWindow<'_>) -> ApiResult<Timeline> {
    let low = w.from.map_or(0, |f| f + 1);
    let limit = w.filter.timeline_limit;
    let mut events = events::range(
        c,
        w.room_id,
        low,
        w.to,
        limit + 1,
        true,
        w.cutoff,
        w.readable,
    )
    .await?;
    let limited = events.len() as i64 > limit;
    events.truncate(limit as usize);
    events.reverse();
    let prev_batch = super::tokens::gap(events.first().map_or(w.to + 1, |e| e.pos));
    Ok(Timeline {
        events,
        limited,
        prev_batch,
    })
}

/// State the client lacks before the timeline starts: all of it on an
/// initial sync, the changes in the skipped gap on a limited incremental
/// one, nothing otherwise. Lazy loading keeps only the members who speak.
async fn state_before(
    c: &mut AnyConnection,
    w: &RoomWindow<'_>,
    timeline: &Timeline,
    at: Option<i64>,
) -> ApiResult<Vec<ClientEvent>> {
    let full = w.from.is_none() || w.full_state;
    if !full && !timeline.limited && !w.filter.lazy_load_members {
        return Ok(vec![]);
    }
    let all = match at {
        Some(pos) => events::state_at(&mut *c, w.room_id, pos).await?,
        None => events::current_state(&mut *c, w.room_id).await?,
    };
    let timeline_start = timeline.events.first().map_or(w.to + 1, |e| e.pos);
    let in_timeline = |e: &StoredEvent| timeline.events.iter().any(|t| t.event_id == e.event_id);
    let speakers: Vec<&str> = timeline.events.iter().map(|e| e.sender.as_str()).collect();
    let mut out = Vec::new();
    for event in &all {
        if event.pos > w.to || in_timeline(event) {
            continue;
        }
        let is_member = event.event_type == "m.room.member";
        let key = event.state_key.as_deref().unwrap_or_default();
        let wanted = if is_member && w.filter.lazy_load_members {
            key == w.viewer.user_id || speakers.contains(&key)
        } else {
            full || (timeline.limited
                && event.pos > w.from.unwrap_or(0)
                && event.pos < timeline_start)
        };
        if wanted {
            out.push(event.to_client(None, w.now));
        }
    }
    Ok(out)
}

fn render(events: &[StoredEvent], viewer: Viewer<'_>, now: i64) -> Vec<ClientEvent> {
    events
        .iter()
        .map(|e| e.to_client(Some(viewer), now))
        .collect()
}

/// A `rooms.join` entry; None when nothing changed for an incremental sync.
pub async fn joined(
    c: &mut AnyConnection,
    w: &RoomWindow<'_>,
    account_data: Vec<Value>,
    has_new_events: bool,
) -> ApiResult<Option<Value>> {
    let from = w.from.unwrap_or(-1);
    let receipts = ephemeral::receipts(&mut *c, w.room_id, w.viewer.user_id, from, w.to).await?;
    let typing = ephemeral::typing(&mut *c, w.room_id, from, w.to, w.now).await?;
    if w.from.is_some()
        && !w.full_state
        && !has_new_events
        && receipts.is_none()
        && typing.is_none()
        && account_data.is_empty()
    {
        return Ok(None);
    }
    let timeline = if w.from.is_none() || has_new_events {
        self::timeline(&mut *c, w).await?
    } else {
        Timeline {
            events: vec![],
            limited: false,
            prev_batch: super::tokens::gap(w.to + 1),
        }
    };
    let state = state_before(&mut *c, w, &timeline, None).await?;
    let mut ephemeral_events = Vec::new();
    if let Some(content) = receipts {
        ephemeral_events.push(json!({ "type": "m.receipt", "content": content }));
    }
    if let Some(user_ids) = typing {
        ephemeral_events.push(json!({ "type": "m.typing", "content": { "user_ids": user_ids } }));
    }
    let joined = rooms::members(&mut *c, w.room_id, &["join"]).await?;
    let invited = rooms::members(&mut *c, w.room_id, &["invite"]).await?;
    let heroes: Vec<&String> = joined
        .iter()
        .chain(invited.iter())
        .filter(|u| *u != w.viewer.user_id)
        .take(5)
        .collect();
    Ok(Some(json!({
        "timeline": { "events": render(&timeline.events, w.viewer, w.now), "limited": timeline.limited, "prev_batch": timeline.prev_batch },
        "state": { "events": state },
        "ephemeral": { "events": ephemeral_events },
        "account_data": { "events": account_data },
        "summary": { "m.joined_member_count": joined.len(), "m.invited_member_count": invited.len(), "m.heroes": heroes },
        "unread_notifications": {},
    })))
}

/// A `rooms.leave` entry: the history up to the departure, and no further.
/// `state_at` is the state the user may see: the state at their last
/// departure from the room, or none when they were never joined.
pub async fn left(
    c: &mut AnyConnection,
    w: &RoomWindow<'_>,
    left_at: i64,
    state_at: Option<i64>,
) -> ApiResult<Value> {
    let window = RoomWindow { to: left_at, ..*w };
    let timeline = self::timeline(&mut *c, &window).await?;
    let state = match state_at {
        Some(at) => state_before(&mut *c, &window, &timeline, Some(at.min(left_at))).await?,
        None => Vec::new(),
    };
    Ok(json!({
        "timeline": { "events": render(&timeline.events, w.viewer, w.now), "limited": timeline.limited, "prev_batch": timeline.prev_batch },
        "state": { "events": state },
        "account_data": { "events": [] },
    }))
}

/// A `rooms.invite` entry: stripped state so the client can show the invite.
pub async fn invited(c: &mut AnyConnection, room_id: &str, user_id: &str) -> ApiResult<Value> {
    const SHOWN: &[&str] = &[
        "m.room.create",
        "m.room.name",
        "m.room.avatar",
        "m.room.topic",
        "m.room.join_rules",
        "m.room.canonical_alias",
        "m.room.encryption",
    ];
    let state = events::current_state(&mut *c, room_id).await?;
    let invite = state
        .iter()
        .find(|e| e.event_type == "m.room.member" && e.state_key.as_deref() == Some(user_id));
    let inviter = invite.map(|e| e.sender.clone());
    let stripped: Vec<Value> = state
        .iter()
        .filter(|e| {
            SHOWN.contains(&e.event_type.as_str())
                || (e.event_type == "m.room.member"
                    && (e.state_key.as_deref() == Some(user_id) || e.state_key == inviter))
        })
        .map(StoredEvent::to_stripped)
        .collect();
    Ok(json!({ "invite_state": { "events": stripped } }))
}

/// Groups room account data by room.
pub fn room_account_data(changes: &[(String, String, Value)]) -> Map<String, Value> {
    let mut by_room: Map<String, Value> = Map::new();
    for (room_id, data_type, content) in changes.iter().filter(|(r, _, _)| !r.is_empty()) {
        let entry = by_room.entry(room_id.clone()).or_insert_with(|| json!([]));
        if let Value::Array(list) = entry {
            list.push(json!({ "type": data_type, "content": content }));
        }
    }
    by_room
}
