//! The per-room sections of a sync response: `join`, `invite` and `leave`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use sqlx::AnyConnection;

use super::filter::SyncFilter;
use super::members::MemberCache;
use super::recent::{self, RecentEvents};
use crate::error::ApiResult;
use crate::metrics::Metrics;
use crate::service::relations::{self, Bundles};
use crate::service::retention;
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
    /// Where recent events and lazily loaded member events may be kept;
    /// None reads them.
    pub kept: Option<Kept<'a>>,
}

/// The node's kept events, and what the response read of the room with
/// its list of rooms, before any of its events (`store::rooms::SyncRoom`;
/// see [`super::members`] and [`super::recent`]).
#[derive(Clone, Copy)]
pub struct Kept<'a> {
    pub members: &'a MemberCache,
    pub recent: &'a RecentEvents,
    pub state_serial: i64,
    /// The room's last event up to the response's position.
    pub last_event_pos: Option<i64>,
    /// Counts the copies used and the reads.
    pub metrics: &'a Metrics,
}

/// Also read by sliding sync, whose timelines follow the same rules.
pub(crate) struct Timeline {
    pub(crate) events: Vec<StoredEvent>,
    pub(crate) limited: bool,
    pub(crate) prev_batch: String,
}

pub(crate) async fn timeline(c: &mut AnyConnection, w: &RoomWindow<'_>) -> ApiResult<Timeline> {
    let limit = w.filter.timeline_limit;
    if let (Some(kept), Some(from)) = (w.kept, w.from) {
        if let Some(window) = recent_window(c, w, kept, from).await? {
            // What events::range below would read, from the copies.
            let newest = window
                .iter()
                .rev()
                .filter(|e| !retention::is_expired(e, w.cutoff))
                .filter(|e| w.readable.allows(e))
                .take(limit as usize + 1)
                .map(|e| StoredEvent::clone(e))
                .collect();
            return Ok(Timeline::from_newest(newest, limit, w.to));
        }
    }
    let low = w.from.map_or(0, |f| f + 1);
    let newest = events::range(
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
    Ok(Timeline::from_newest(newest, limit, w.to))
}

impl Timeline {
    /// From up to `limit + 1` events of a window ending at `to`, newest
    /// first: one more than the limit means there are older ones.
    fn from_newest(mut events: Vec<StoredEvent>, limit: i64, to: i64) -> Timeline {
        let limited = events.len() as i64 > limit;
        events.truncate(limit as usize);
        events.reverse();
        let prev_batch = super::tokens::gap(events.first().map_or(to + 1, |e| e.pos));
        Timeline {
            events,
            limited,
            prev_batch,
        }
    }
}

/// Every event of the room in the window, whoever may see it, from the
/// node's kept recent events, or read to keep them; None when the window
/// is too long for that (then the caller reads as before).
async fn recent_window(
    c: &mut AnyConnection,
    w: &RoomWindow<'_>,
    kept: Kept<'_>,
    from: i64,
) -> ApiResult<Option<Vec<Arc<StoredEvent>>>> {
    let ask = recent::Ask {
        room_id: w.room_id,
        state_serial: kept.state_serial,
        from,
        to: w.to,
        last_event_pos: kept.last_event_pos,
    };
    if let Some(window) = kept.recent.get(&ask) {
        kept.metrics
            .sync_recent_events_used
            .fetch_add(1, Ordering::Relaxed);
        return Ok(Some(window));
    }
    let Some(after) = kept.recent.read_after(&ask) else {
        return Ok(None);
    };
    kept.metrics
        .sync_recent_events_reads
        .fetch_add(1, Ordering::Relaxed);
    let read = events::between(c, w.room_id, after, w.to, recent::MAX_READ_SPAN).await?;
    Ok(kept
        .recent
        .put(&ask, after, read.into_iter().map(Arc::new).collect()))
}

/// Beyond this many senders, one bound parameter each would be too many for
/// SQLite; the whole state is read and filtered instead.
const MAX_MEMBER_KEYS: usize = 500;

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
    let timeline_start = timeline.events.first().map_or(w.to + 1, |e| e.pos);
    let in_timeline = |e: &StoredEvent| timeline.events.iter().any(|t| t.event_id == e.event_id);
    let speakers: Vec<&str> = timeline.events.iter().map(|e| e.sender.as_str()).collect();
    let shared = |events: Vec<StoredEvent>| events.into_iter().map(Arc::new).collect();
    let all: Vec<Arc<StoredEvent>> = match at {
        Some(pos) => shared(events::state_at(&mut *c, w.room_id, pos).await?),
        None if full => shared(events::current_state(&mut *c, w.room_id).await?),
        // Incremental: read only what the filter below can keep.
        None => {
            let mut keys: Vec<&str> = speakers.clone();
            keys.push(w.viewer.user_id);
            keys.sort_unstable();
            keys.dedup();
            let gap = timeline
                .limited
                .then_some((w.from.unwrap_or(0), timeline_start));
            if w.filter.lazy_load_members && keys.len() > MAX_MEMBER_KEYS {
                shared(events::current_state(&mut *c, w.room_id).await?)
            } else if let Some(kept) = w
                .kept
                .filter(|_| w.filter.lazy_load_members && gap.is_none())
            {
                // Only member events are wanted: kept ones serve while the
                // room's state has not moved.
                match kept.members.get(w.room_id, kept.state_serial, &keys) {
                    Some(events) => {
                        kept.metrics
                            .sync_member_copies_used
                            .fetch_add(1, Ordering::Relaxed);
                        events
                    }
                    None => {
                        kept.metrics
                            .sync_member_reads
                            .fetch_add(1, Ordering::Relaxed);
                        let read =
                            events::current_state_part(&mut *c, w.room_id, Some(&keys), None)
                                .await?;
                        let read = shared(read);
                        kept.members.put(w.room_id, kept.state_serial, &keys, &read);
                        read
                    }
                }
            } else {
                let keys = w.filter.lazy_load_members.then_some(keys.as_slice());
                shared(events::current_state_part(&mut *c, w.room_id, keys, gap).await?)
            }
        }
    };
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

/// The timeline in the client format, with its events' aggregations.
pub(crate) async fn render(
    c: &mut AnyConnection,
    w: &RoomWindow<'_>,
    timeline: &Timeline,
) -> ApiResult<Vec<ClientEvent>> {
    let mut events: Vec<ClientEvent> = timeline
        .events
        .iter()
        .map(|e| e.to_client(Some(w.viewer), w.now))
        .collect();
    bundles(c, w, timeline).await?.attach(&mut events);
    Ok(events)
}

/// An incremental timeline that is not limited holds every event of its
/// window, so every child of its events too (a child comes after its
/// parent): its aggregations are computed from it without a query.
async fn bundles(
    c: &mut AnyConnection,
    w: &RoomWindow<'_>,
    timeline: &Timeline,
) -> ApiResult<Bundles> {
    if timeline.events.is_empty() {
        return Ok(Bundles::default());
    }
    if w.from.is_some() && !timeline.limited {
        return Ok(relations::bundle_batch(&timeline.events, w.viewer, w.now));
    }
    relations::bundle(
        c,
        w.room_id,
        &timeline.events,
        w.readable,
        w.cutoff,
        w.viewer,
        w.now,
    )
    .await
}

/// What [`joined`] found.
pub struct Joined {
    /// The `rooms.join` entry; None when nothing changed for an incremental sync.
    pub section: Option<Value>,
    /// The window may hold membership events of the room. When false,
    /// device-list tracking has nothing to read there.
    pub members_may_have_changed: bool,
}

/// A `rooms.join` entry; None when nothing changed for an incremental sync.
/// `has_ephemeral`: receipts or typing changed in the window (ignored when
/// `w.from` is None). `unread`: `unread_notifications` and, for a
/// thread-aware filter, `unread_thread_notifications`; they change only
/// with the room's events and the user's receipts, so they need no
/// condition of their own here.
pub async fn joined(
    c: &mut AnyConnection,
    w: &RoomWindow<'_>,
    account_data: Vec<Value>,
    has_new_events: bool,
    has_ephemeral: bool,
    unread: (Value, Option<Value>),
) -> ApiResult<Joined> {
    let from = w.from.unwrap_or(-1);
    // Both answer None when nothing changed in the window, which the caller
    // already knows for every room from one query.
    let (receipts, typing) = if w.from.is_none() || has_ephemeral {
        (
            ephemeral::receipts(&mut *c, w.room_id, w.viewer.user_id, from, w.to).await?,
            ephemeral::typing(&mut *c, w.room_id, from, w.to, w.now).await?,
        )
    } else {
        (None, None)
    };
    if w.from.is_some()
        && !w.full_state
        && !has_new_events
        && receipts.is_none()
        && typing.is_none()
        && account_data.is_empty()
    {
        // No events in the window, so no membership events either.
        return Ok(Joined {
            section: None,
            members_may_have_changed: false,
        });
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
    let send_summary = members_may_have_changed(w, &timeline);
    let summary = if send_summary {
        self::summary(&mut *c, w).await?
    } else {
        json!({})
    };
    let events = render(&mut *c, w, &timeline).await?;
    let (unread, unread_threads) = unread;
    let mut section = json!({
        "timeline": { "events": events, "limited": timeline.limited, "prev_batch": timeline.prev_batch },
        "state": { "events": state },
        "ephemeral": { "events": ephemeral_events },
        "account_data": { "events": account_data },
        "summary": summary,
        "unread_notifications": unread,
    });
    if let Some(threads) = unread_threads {
        section["unread_thread_notifications"] = threads;
    }
    Ok(Joined {
        section: Some(section),
        // Incremental without new events: the window holds no events at all.
        members_may_have_changed: (w.from.is_none() || has_new_events) && send_summary,
    })
}

/// Member counts and heroes change only with membership events. An
/// incremental sync whose timeline holds every event of the window (not
/// limited) and no member event leaves the client's summary as it was, so
/// the summary is sent empty, as Synapse does: clients keep the fields they
/// have (the spec: "omitted if unchanged since the last sync"). This holds
/// because an incremental joined room is read with a readable window that
/// covers all of `(from, to]` (see `visibility::current_member`), and state
/// events never expire.
fn members_may_have_changed(w: &RoomWindow<'_>, timeline: &Timeline) -> bool {
    w.from.is_none()
        || w.full_state
        || timeline.limited
        || timeline
            .events
            .iter()
            .any(|e| e.event_type == "m.room.member")
}

async fn summary(c: &mut AnyConnection, w: &RoomWindow<'_>) -> ApiResult<Value> {
    let members = rooms::members_with_membership(&mut *c, w.room_id, &["join", "invite"]).await?;
    let (joined, invited): (Vec<_>, Vec<_>) = members.iter().partition(|(_, m)| m == "join");
    let heroes: Vec<&String> = joined
        .iter()
        .chain(invited.iter())
        .map(|(u, _)| u)
        .filter(|u| *u != w.viewer.user_id)
        .take(5)
        .collect();
    Ok(
        json!({ "m.joined_member_count": joined.len(), "m.invited_member_count": invited.len(), "m.heroes": heroes }),
    )
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
    let events = render(&mut *c, &window, &timeline).await?;
    Ok(json!({
        "timeline": { "events": events, "limited": timeline.limited, "prev_batch": timeline.prev_batch },
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
