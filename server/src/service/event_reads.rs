//! Reading room events outside `/sync`: one event, a page of history
//! (`/messages`), an event with its surroundings (`/context`). Each read
//! sees only what history visibility (`service::visibility`) and retention
//! (`service::retention`) leave the reader.

use cloister_proto::event::ClientEvent;

use crate::error::{ApiError, ApiResult};
use crate::service::retention;
use crate::service::session::Auth;
use crate::service::sync::tokens;
use crate::service::visibility::{self, Access};
use crate::service::Context;
use crate::store::events::{self, StoredEvent, Viewer};
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
    let viewer = Viewer {
        user_id: &reader.user_id,
        device_id: &reader.device_id,
    };
    event.to_client(Some(viewer), now)
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
    /// Where the next page starts; `None` when this one reached the end.
    pub end: Option<String>,
    pub chunk: Vec<StoredEvent>,
    pub members: Option<Vec<StoredEvent>>,
}

/// One page of a room's history as `reader` may see it.
pub async fn page(
    ctx: &Context,
    reader: &str,
    room_id: &str,
    req: &PageRequest<'_>,
) -> ApiResult<Page> {
    let mut conn = ctx.store.read().await?;
    let access = visibility::require(&mut conn, room_id, reader).await?;
    let parse = |t: &str| {
        tokens::parse_gap(t).ok_or_else(|| ApiError::invalid_param("invalid pagination token"))
    };
    // A token names the gap before stream position `gap`.
    let from_gap = match req.from {
        Some(t) => parse(t)?,
        None if req.backwards => crate::store::current_pos(&mut conn).await? + 1,
        None => 0,
    };
    let to_gap = req.to.map(parse).transpose()?;
    let cutoff = retention::cutoff(ctx, &mut conn, room_id, ctx.now_ms()).await?;
    let (low, high) = if req.backwards {
        (to_gap.unwrap_or(0), from_gap - 1)
    } else {
        (from_gap, to_gap.map_or(i64::MAX, |g| g - 1))
    };
    let chunk = events::range(
        &mut conn,
        room_id,
        low,
        high,
        req.limit,
        req.backwards,
        cutoff,
        &access.events,
    )
    .await?;
    let end = match chunk.last() {
        Some(last) if chunk.len() as i64 == req.limit => Some(tokens::gap(if req.backwards {
            last.pos
        } else {
            last.pos + 1
        })),
        _ => None,
    };
    let members = if req.lazy_members {
        Some(member_events_for(&mut conn, room_id, &chunk, &access).await?)
    } else {
        None
    };
    Ok(Page {
        start: req
            .from
            .map_or_else(|| tokens::gap(from_gap), str::to_owned),
        end,
        chunk,
        members,
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

async fn visible_event(
    ctx: &Context,
    c: &mut Conn,
    reader: &str,
    room_id: &str,
    event_id: &str,
) -> ApiResult<(StoredEvent, Access)> {
    let access = visibility::require(&mut *c, room_id, reader).await?;
    let event = events::get(&mut *c, event_id)
        .await?
        .filter(|e| e.room_id == room_id && access.events.allows(e))
        .ok_or_else(|| ApiError::not_found("Event not found"))?;
    retention::require_unexpired(ctx, &mut *c, &event).await?;
    Ok((event, access))
}

/// One event of a room, if `reader` may see it and it has not expired.
pub async fn event_for_reader(
    ctx: &Context,
    reader: &str,
    room_id: &str,
    event_id: &str,
) -> ApiResult<StoredEvent> {
    let mut conn = ctx.store.read().await?;
    Ok(visible_event(ctx, &mut conn, reader, room_id, event_id)
        .await?
        .0)
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
}

/// An event with up to `limit` visible events around it, split evenly
/// before and after.
pub async fn context(
    ctx: &Context,
    reader: &str,
    room_id: &str,
    event_id: &str,
    limit: Option<i64>,
) -> ApiResult<EventContext> {
    let mut conn = ctx.store.read().await?;
    let (event, access) = visible_event(ctx, &mut conn, reader, room_id, event_id).await?;
    if limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid_param("limit must not be negative"));
    }
    let limit = limit.unwrap_or(10).clamp(0, 100);
    let cutoff = retention::cutoff(ctx, &mut conn, room_id, ctx.now_ms()).await?;
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
    Ok(EventContext {
        start: tokens::gap(before.last().map_or(event.pos, |e| e.pos)),
        end: tokens::gap(after.last().map_or(event.pos + 1, |e| e.pos + 1)),
        event,
        before,
        after,
        state,
    })
}
