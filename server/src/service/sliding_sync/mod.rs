//! Simplified sliding sync (MSC4186): a client asks for windows onto its
//! room list and for some rooms by id, and gets, per connection, only what
//! it does not hold yet. What each connection holds is stored (see
//! `connection`), so a response is computed against the position the
//! request names, whichever node answers and however often it is retried.
//!
//! Every section is read up to one stream position, taken first, as in
//! `/v3/sync`, and with its readers: history visibility, retention and
//! erasure apply alike.

mod connection;
mod extensions;
mod lists;
mod rooms;
pub mod validate;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cloister_proto::sliding_sync::{ExtensionsResponse, ListResult, Request, Response, Toggle};

use crate::error::ApiResult;
use crate::service::session::Auth;
use crate::service::{retention, Context};
use crate::store::events::Viewer;
use crate::store::sliding_sync::ConnKey;
use crate::store::{self};
use connection::{Base, Built, SentRoom};

/// A connection no request has moved on for this long is forgotten; its
/// client gets `M_UNKNOWN_POS` and starts afresh, as clients do.
const IDLE_CONNECTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Forgets idle connections (a client can open any number of `conn_id`s).
pub async fn purge_idle(state: &Context) -> Result<u64, sqlx::Error> {
    let mut conn = state.store.autocommit().await?;
    store::sliding_sync::purge_idle(&mut conn, state.now_ms() - IDLE_CONNECTION_MS).await
}

pub struct SlidingSyncRequest {
    pub pos: Option<String>,
    pub timeout: Duration,
    pub body: Request,
}

pub async fn sync(state: &Context, auth: &Auth, req: &SlidingSyncRequest) -> ApiResult<Response> {
    validate::validate(&req.body)?;
    let key = ConnKey {
        user_id: &auth.user_id,
        device_id: &auth.device_id,
        conn_id: req.body.conn_id.as_deref().unwrap_or_default(),
    };
    // Subscribe before the first read so a change landing in between still wakes us.
    let mut subscription = state.notifier.subscribe(&auth.user_id);
    let base = connection::load(state, key, req.pos.as_deref()).await?;
    if base.is_none() {
        // A fresh connection's counts should be exact (see `sync::build`).
        crate::service::push::catch_up(state).await?;
    }
    let deadline = Instant::now() + req.timeout;
    loop {
        let built = build(state, auth, &req.body, base.as_ref()).await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if built.has_news
            || base.is_none()
            || remaining.is_zero()
            || state.notifier.is_shutting_down()
        {
            return connection::commit(state, key, base.as_ref(), built).await;
        }
        if !subscription.wait(remaining).await {
            let built = build(state, auth, &req.body, base.as_ref()).await?;
            return connection::commit(state, key, base.as_ref(), built).await;
        }
        // Let the rest of a burst arrive, as `/v3/sync` does.
        let window = Duration::from_millis(state.config.limits.sync_coalesce_ms)
            .min(deadline.saturating_duration_since(Instant::now()));
        if !window.is_zero() && !state.notifier.is_shutting_down() {
            tokio::time::sleep(window).await;
        }
    }
}

async fn build(
    state: &Context,
    auth: &Auth,
    req: &Request,
    base: Option<&Base>,
) -> ApiResult<Built> {
    let now = state.now_ms();
    // Reads, and deletes acknowledged to-device messages: no transaction needed.
    let mut c = state.store.autocommit().await?;
    let to = store::current_pos(&mut c).await?;
    let from = base.map(|b| b.stream_pos);
    let sync_rooms = store::rooms::rooms_for_sync(
        &mut c,
        &auth.user_id,
        from.unwrap_or(to),
        to,
        retention::RETENTION_EVENT,
    )
    .await?;
    let view = lists::view(&mut c, &auth.user_id, req, &sync_rooms, to).await?;
    let by_id: HashMap<&str, &store::rooms::SyncRoom> =
        sync_rooms.iter().map(|r| (r.room_id.as_str(), r)).collect();
    let frame = rooms::Frame {
        state,
        viewer: Viewer {
            user_id: &auth.user_id,
            device_id: &auth.device_id,
        },
        conn_pos: from,
        to,
        now,
    };
    let mut response = Response {
        txn_id: req.txn_id.clone(),
        lists: view
            .counts
            .iter()
            .map(|(name, count)| (name.clone(), ListResult { count: *count }))
            .collect(),
        ..Response::default()
    };
    let mut sent = Vec::new();
    let mut counts = None;
    // (room, sent whole, receipts or typing changed), for the extensions.
    let mut ephemeral_rooms = Vec::new();
    for (room_id, want) in &view.rooms {
        let Some(room) = by_id.get(room_id.as_str()) else {
            continue;
        };
        let held = base.and_then(|b| b.rooms.get(room_id));
        let outcome = rooms::room(&mut c, &frame, room, want, held).await?;
        let initial = outcome.result.as_ref().is_some_and(|r| r.initial);
        if room.membership.membership == "join" {
            ephemeral_rooms.push((
                room_id.clone(),
                initial || held.is_none(),
                room.has_ephemeral,
            ));
        }
        if let Some(held) = outcome.held {
            sent.push((room_id.clone(), held));
        }
        let Some(mut result) = outcome.result else {
            continue;
        };
        result.bump_stamp = view.bump_stamps.get(room_id).copied().unwrap_or(0);
        result.is_dm = view.dms.contains(room_id);
        if room.membership.membership == "join" {
            let counts = match &mut counts {
                Some(counts) => counts,
                None => counts
                    .insert(crate::service::push::unread_counts(&mut c, &auth.user_id, to).await?),
            };
            let (unread, _) = counts.remove(room_id).unwrap_or_default().render(false);
            let count = |field: &str| unread[field].as_u64().unwrap_or(0);
            result.notification_count = count("notification_count");
            result.highlight_count = count("highlight_count");
        }
        response.rooms.insert(room_id.clone(), result);
    }

    if let Some(base) = base {
        let departed = sync_rooms.iter().filter(|r| {
            matches!(r.membership.membership.as_str(), "leave" | "ban") && !r.membership.forgotten
        });
        for room in departed {
            let Some(held) = base.rooms.get(&room.room_id) else {
                continue;
            };
            if held.sent_pos >= room.membership.pos {
                continue;
            }
            let result = rooms::left(&mut c, &frame, room, held).await?;
            response.rooms.insert(room.room_id.clone(), result);
            sent.push((
                room.room_id.clone(),
                SentRoom {
                    sent_pos: to,
                    config: held.config.clone(),
                },
            ));
        }
    }

    let ext = &req.extensions;
    let mut extensions = ExtensionsResponse {
        to_device: extensions::to_device(state, &mut c, auth, ext, to).await?,
        ..ExtensionsResponse::default()
    };
    if Toggle::on(&ext.e2ee) {
        extensions.e2ee = Some(extensions::e2ee(&mut c, auth, &sync_rooms, from, to).await?);
    }
    if Toggle::on(&ext.account_data) {
        extensions.account_data =
            Some(extensions::account_data(&mut c, &auth.user_id, from, to).await?);
    }
    (extensions.receipts, extensions.typing) = extensions::ephemeral(
        &mut c,
        &auth.user_id,
        ext,
        &ephemeral_rooms,
        from,
        (to, now),
    )
    .await?;

    let lists_changed = base.is_none_or(|b| b.state.list_counts != view.counts);
    // Rooms now asked for with less: nothing to send, but a new position
    // must record it (see `rooms::room`).
    let configs_changed = base.is_some_and(|b| {
        sent.iter()
            .any(|(id, held)| b.rooms.get(id).is_some_and(|was| was.config != held.config))
    });
    let has_news = lists_changed
        || configs_changed
        || !response.rooms.is_empty()
        || extensions
            .to_device
            .as_ref()
            .is_some_and(|t| !t.events.events.is_empty())
        || extensions
            .e2ee
            .as_ref()
            .is_some_and(|e| !e.device_lists.changed.is_empty() || !e.device_lists.left.is_empty())
        || extensions
            .account_data
            .as_ref()
            .is_some_and(|a| !a.global.is_empty() || !a.rooms.is_empty())
        || [&extensions.receipts, &extensions.typing]
            .iter()
            .any(|e| e.as_ref().is_some_and(|e| !e.rooms.is_empty()));
    response.extensions = extensions;
    Ok(Built {
        response,
        has_news,
        stream_pos: to,
        list_counts: view.counts,
        sent,
        eventful: sync_rooms
            .iter()
            .filter(|r| r.has_events)
            .map(|r| r.room_id.clone())
            .collect(),
    })
}
