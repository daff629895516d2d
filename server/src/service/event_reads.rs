//! Reading room events outside `/sync`: one event, a page of history
//! (`/messages`), an event with its surroundings (`/context`). Each read
//! sees only what history visibility (`service::visibility`) and retention
//! (`service::retention`) leave the reader.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use cloister_proto::event::{self, ClientEvent};

use crate::error::{ApiError, ApiResult};
use crate::service::relations::{self, Bundles};
use crate::service::retention;
use crate::service::session::Auth;
use crate::service::sync::tokens;
use crate::service::visibility::{self, Access};
use crate::service::Context;
use crate::store::events::{self, StoredEvent, Viewer};
use crate::store::room_access::RoomAccess;
use crate::store::Conn;

/// Events in the client format as `reader` sees them: their own device's
/// events carry the transaction id it sent them with.
pub fn for_reader(events: &[StoredEvent], reader: &Auth, now: i64) -> Vec<ClientEvent> {
    events
        .iter()
        .map(|e| one_for_reader(e, reader, now))
        .collect()
}

pub fn one_for_reader(event: &StoredEvent, reader: &Auth, now: i64) -> ClientEvent {
    event.to_client(Some(viewer(reader)), now)
}

pub fn viewer(reader: &Auth) -> Viewer<'_> {
    Viewer {
        user_id: &reader.user_id,
        device_id: &reader.device_id,
    }
}

/// A `/messages` request, its parameters checked but its tokens not yet
/// parsed: a reader who may not see the room learns that first.
pub struct PageRequest<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub backwards: bool,
    pub limit: i64,
    /// Also return the membership events of the page's senders.
    pub lazy_members: bool,
}

pub struct Page {
    pub start: String,
    /// Aggregations of the chunk's children (`unsigned.m.relations`).
    pub bundles: Bundles,
    /// Where the next page starts; `None` when this one reached the end.
    pub end: Option<String>,
    pub chunk: Vec<StoredEvent>,
    pub members: Option<Vec<StoredEvent>>,
}

/// The stream positions a page covers, from its `from` and `to` tokens
/// (a token names the gap before a stream position).
pub struct Window {
    /// The gap the page starts at.
    pub start: i64,
    /// Inclusive bounds of the positions the page may hold.
    pub low: i64,
    pub high: i64,
    pub backwards: bool,
}

impl Window {
    pub async fn parse(
        c: &mut Conn,
        from: Option<&str>,
        to: Option<&str>,
        backwards: bool,
    ) -> ApiResult<Window> {
        let parse = |t: &str| {
            tokens::parse_gap(t).ok_or_else(|| ApiError::invalid_param("invalid pagination token"))
        };
        let start = match from {
            Some(t) => parse(t)?,
            None if backwards => crate::store::current_pos(c).await? + 1,
            None => 0,
        };
        let to_gap = to.map(parse).transpose()?;
        let (low, high) = if backwards {
            (to_gap.unwrap_or(0), start - 1)
        } else {
            (start, to_gap.map_or(i64::MAX, |g| g - 1))
        };
        Ok(Window {
            start,
            low,
            high,
            backwards,
        })
    }

    /// The token of the next page; `None` when `chunk` (at most `limit`
    /// events, in the page's order) reached the end.
    pub fn next(&self, chunk: &[StoredEvent], limit: i64) -> Option<String> {
        match chunk.last() {
            Some(last) if chunk.len() as i64 == limit => Some(tokens::gap(if self.backwards {
                last.pos
            } else {
                last.pos + 1
            })),
            _ => None,
        }
    }
}

/// One page of a room's history as `reader` may see it.
pub async fn page(
    ctx: &Context,
    reader: &Auth,
    room_id: &str,
    req: &PageRequest<'_>,
) -> ApiResult<Page> {
    let mut conn = ctx.store.read().await?;
    let (access, room, cutoff) = readable_room(ctx, &mut conn, room_id, &reader.user_id).await?;
    let window = Window::parse(&mut conn, req.from, req.to, req.backwards).await?;
    let view = ReaderView {
        access: &access,
        cutoff,
    };
    let kept = from_kept(ctx, room_id, &room, req, &window, view);
    let (mut chunk, mut span, rest_high) = match kept {
        Some(kept) => (kept.chunk, kept.span, kept.rest_high),
        None => (Vec::new(), None, Some(window.high)),
    };
    // The page is as long as the database would make it: the copies'
    // part first, then the rest (if any) read.
    match rest_high {
        Some(high) if (chunk.len() as i64) < req.limit => {
            let more = events::range(
                &mut conn,
                room_id,
                window.low,
                high,
                req.limit - chunk.len() as i64,
                req.backwards,
                cutoff,
                &access.events,
            )
            .await?;
            if !more.is_empty() {
                span = None;
            }
            chunk.extend(more);
        }
        _ => {
            ctx.metrics
                .messages_pages_from_kept
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    let end = window.next(&chunk, req.limit);
    let bundles = match span {
        Some(span) => relations::bundle_batch(&span, viewer(reader), ctx.now_ms()),
        None => {
            relations::bundle(
                &mut conn,
                room_id,
                &chunk,
                &access.events,
                cutoff,
                viewer(reader),
                ctx.now_ms(),
            )
            .await?
        }
    };
    let members = if req.lazy_members {
        Some(member_events_for(&mut conn, room_id, &chunk, &access).await?)
    } else {
        None
    };
    Ok(Page {
        start: req
            .from
            .map_or_else(|| tokens::gap(window.start), str::to_owned),
        bundles,
        end,
        chunk,
        members,
    })
}

/// The part of a backward page the kept recent events hold.
struct KeptPart {
    /// Newest first, at most the page's `limit`.
    chunk: Vec<StoredEvent>,
    /// Every event the chunk's aggregations are made of, oldest first,
    /// when the copies hold them all.
    span: Option<Vec<StoredEvent>>,
    /// Where the page goes on in the database when the copies ran out
    /// first: the position the stretch starts after.
    rest_high: Option<i64>,
}

/// What one reader may see of a room's events.
#[derive(Clone, Copy)]
struct ReaderView<'a> {
    access: &'a Access,
    cutoff: i64,
}

/// The part of a backward page the node's kept recent events hold
/// (`service::sync::recent`), when they hold every event of the room up to
/// the page's start: a client filling a `limited` sync gap asks for just
/// these, and under load its reads of them queued behind the very sends
/// that made the gap (docs/performance.md, "`/messages` from the kept
/// events"). When the stretch also reaches the room's last event, it holds
/// every child of the part's events, and their aggregations need no read
/// either. `room` was read with the reader's access: the copies serve only
/// at the room's serial, as for `/sync`.
fn from_kept(
    ctx: &Context,
    room_id: &str,
    room: &RoomAccess,
    req: &PageRequest<'_>,
    window: &Window,
    view: ReaderView<'_>,
) -> Option<KeptPart> {
    if !req.backwards {
        return None;
    }
    let kept = ctx.sync_recent.page_before(
        room_id,
        room.state_serial,
        room.last_event_pos,
        window.high,
    )?;
    // What events::range would read, from the copies.
    let visible = |e: &&Arc<StoredEvent>| {
        !retention::is_expired(e, view.cutoff) && view.access.events.allows(e)
    };
    let chunk: Vec<StoredEvent> = kept
        .events
        .iter()
        .rev()
        .filter(|e| window.low <= e.pos && e.pos <= window.high)
        .filter(visible)
        .take(usize::try_from(req.limit).unwrap_or(usize::MAX))
        .map(|e| StoredEvent::clone(e))
        .collect();
    // Positions start at 1: a stretch after 0 holds the room's first event.
    let rest_high = (kept.after >= window.low.max(1)).then_some(kept.after);
    let span = kept.reaches_room_end.then(|| {
        let oldest = chunk.last().map_or(window.high + 1, |e| e.pos);
        kept.events
            .iter()
            .filter(|e| e.pos >= oldest)
            .filter(visible)
            .filter(|e| e.pos <= window.high || event::relation(&e.content).is_some())
            .map(|e| StoredEvent::clone(e))
            .collect()
    });
    Some(KeptPart {
        chunk,
        span,
        rest_high,
    })
}

/// The membership events of the senders in `chunk`, for lazy loading, as
/// of the state the reader may see (none for someone never joined).
async fn member_events_for(
    c: &mut Conn,
    room_id: &str,
    chunk: &[StoredEvent],
    access: &Access,
) -> ApiResult<Vec<StoredEvent>> {
    let mut senders: Vec<&str> = chunk.iter().map(|e| e.sender.as_str()).collect();
    senders.sort_unstable();
    senders.dedup();
    let mut out = Vec::new();
    match access.state_at {
        None => {}
        Some(i64::MAX) => {
            for sender in senders {
                if let Some(e) =
                    events::state_event(&mut *c, room_id, "m.room.member", sender).await?
                {
                    out.push(e);
                }
            }
        }
        Some(at) => {
            for e in events::state_at(&mut *c, room_id, at).await? {
                let key = e.state_key.as_deref().unwrap_or_default();
                if e.event_type == "m.room.member" && senders.contains(&key) {
                    out.push(e);
                }
            }
        }
    }
    Ok(out)
}

/// The reader's access to a room and the room's retention cutoff, with
/// what else the same one statement read about the room
/// (`store::room_access`); 404 for an unknown room, 403 for one the reader
/// may read nothing of.
pub async fn readable_room(
    ctx: &Context,
    c: &mut Conn,
    room_id: &str,
    reader: &str,
) -> ApiResult<(Access, RoomAccess, i64)> {
    let (access, room) = visibility::require_reading(c, room_id, reader).await?;
    let cutoff = retention::cutoff_from_content(ctx, room.retention.as_ref(), ctx.now_ms());
    Ok((access, room, cutoff))
}

/// One event with the reader's access to its room and the room's
/// retention cutoff; 404 when the reader may not see it or it expired.
pub async fn visible_event(
    ctx: &Context,
    c: &mut Conn,
    reader: &str,
    room_id: &str,
    event_id: &str,
) -> ApiResult<(StoredEvent, Access, i64)> {
    let (access, _, cutoff) = readable_room(ctx, &mut *c, room_id, reader).await?;
    // An expired event is answered exactly as one that never existed.
    let event = events::get(&mut *c, event_id)
        .await?
        .filter(|e| e.room_id == room_id && access.events.allows(e))
        .filter(|e| !retention::is_expired(e, cutoff))
        .ok_or_else(|| ApiError::not_found("Event not found"))?;
    Ok((event, access, cutoff))
}

/// One event of a room, if `reader` may see it and it has not expired,
/// with the aggregations of its children.
pub async fn event_for_reader(
    ctx: &Context,
    reader: &Auth,
    room_id: &str,
    event_id: &str,
) -> ApiResult<(StoredEvent, Bundles)> {
    let mut conn = ctx.store.read().await?;
    let (event, access, cutoff) =
        visible_event(ctx, &mut conn, &reader.user_id, room_id, event_id).await?;
    let bundles = relations::bundle(
        &mut conn,
        room_id,
        std::slice::from_ref(&event),
        &access.events,
        cutoff,
        viewer(reader),
        ctx.now_ms(),
    )
    .await?;
    Ok((event, bundles))
}

pub struct EventContext {
    pub event: StoredEvent,
    /// Newest first.
    pub before: Vec<StoredEvent>,
    pub after: Vec<StoredEvent>,
    /// The room state the reader may see.
    pub state: Vec<StoredEvent>,
    pub start: String,
    pub end: String,
    /// Aggregations of the children of the event and those around it.
    pub bundles: Bundles,
}

/// An event with up to `limit` visible events around it, split evenly
/// before and after.
pub async fn context(
    ctx: &Context,
    reader: &Auth,
    room_id: &str,
    event_id: &str,
    limit: Option<i64>,
) -> ApiResult<EventContext> {
    let mut conn = ctx.store.read().await?;
    let (event, access, cutoff) =
        visible_event(ctx, &mut conn, &reader.user_id, room_id, event_id).await?;
    if limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid_param("limit must not be negative"));
    }
    let limit = limit.unwrap_or(10).clamp(0, 100);
    let before = events::range(
        &mut conn,
        room_id,
        0,
        event.pos - 1,
        limit / 2,
        true,
        cutoff,
        &access.events,
    )
    .await?;
    let after = events::range(
        &mut conn,
        room_id,
        event.pos + 1,
        i64::MAX,
        limit - limit / 2,
        false,
        cutoff,
        &access.events,
    )
    .await?;
    let state = match access.state_at {
        Some(at) => events::state_until(&mut conn, room_id, at).await?,
        None => Vec::new(),
    };
    let shown: Vec<StoredEvent> = before
        .iter()
        .chain(std::iter::once(&event))
        .chain(&after)
        .cloned()
        .collect();
    let bundles = relations::bundle(
        &mut conn,
        room_id,
        &shown,
        &access.events,
        cutoff,
        viewer(reader),
        ctx.now_ms(),
    )
    .await?;
    Ok(EventContext {
        bundles,
        start: tokens::gap(before.last().map_or(event.pos, |e| e.pos)),
        end: tokens::gap(after.last().map_or(event.pos + 1, |e| e.pos + 1)),
        event,
        before,
        after,
        state,
    })
}
