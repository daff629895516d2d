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
mod summary;
pub mod validate;

pub use summary::SummaryCache;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use cloister_proto::sliding_sync::{
    ExtensionsRequest, ExtensionsResponse, ListResult, Request, Response, ToDeviceRequest, Toggle,
};

use crate::error::{ApiError, ApiResult};
use crate::service::session::Auth;
use crate::service::sync::{long_poll_loop, read_news, News};
use crate::service::Context;
use crate::store;
use crate::store::events::Viewer;
use crate::store::sliding_sync::ConnKey;
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
    let _first_build = match base {
        Some(_) => None,
        None => {
            let permit = first_build(state).await?;
            // A fresh connection's counts should be exact (see `sync::build`).
            crate::service::push::catch_up(state).await?;
            Some(permit)
        }
    };
    let deadline = Instant::now() + req.timeout;
    let long_poll = !req.timeout.is_zero();
    let asked = fingerprint(&req.body);
    // As on `/v3/sync`: a client asks again as soon as it has a response,
    // usually before anything new, so a request from the last response's
    // position that asks the same can only find nothing unless a wake-up
    // named the user since; it waits at once.
    let quiet = long_poll
        && base.is_some()
        && req.pos.as_deref().is_some_and(|pos| {
            let token = quiet_token(key.conn_id, pos, asked, to_device_since(&req.body));
            state
                .notifier
                .quiet_since(&auth.user_id, &auth.device_id, &token, &mut subscription)
        });
    let held = base.as_ref();
    let (built, seen) = long_poll_loop(
        state,
        (&mut subscription, deadline),
        quiet,
        // A fresh connection is answered at once.
        held.is_none(),
        move || async move {
            let built = build(state, auth, &req.body, held).await?;
            let has_news = built.has_news;
            Ok((built, has_news))
        },
    )
    .await?;
    answered(state, auth, key, &req.body, asked, held, built, seen).await
}

/// How many fresh connections a node answers at once. Each is answered at
/// once with a whole response, which it holds while it queues to write its
/// first state; when ten thousand clients started their connections in the
/// same second, they held their responses together (docs/performance.md,
/// "Many idle long-polls"). Beyond a few the database is the bottleneck
/// anyway. (A restart does not cause that burst: connections' states are
/// in the database, and clients carry on with them.)
pub const MAX_FIRST_BUILDS: usize = 32;

async fn first_build(state: &Context) -> ApiResult<tokio::sync::SemaphorePermit<'_>> {
    state
        .sliding_first_builds
        .acquire()
        .await
        // Never closed, so this cannot fail.
        .map_err(|_| ApiError::internal())
}

/// Commits the response's position, and remembers, when the response
/// holds everything up to it, that its connection saw everything
/// committed before its reads began (`Notifier::remember_quiet`).
#[allow(clippy::too_many_arguments)]
async fn answered(
    state: &Context,
    auth: &Auth,
    key: ConnKey<'_>,
    req: &Request,
    asked: u64,
    base: Option<&Base>,
    built: Built,
    seen: u64,
) -> ApiResult<Response> {
    let response = connection::commit(state, key, base, built).await?;
    let to_device = response.extensions.to_device.as_ref();
    let stopped_short = to_device.is_some_and(|t| {
        let limit = req
            .extensions
            .to_device
            .as_ref()
            .map_or(0, extensions::to_device_limit);
        t.events.events.len() as i64 >= limit
    });
    if !stopped_short {
        let next_since = to_device.map(|t| t.next_batch.as_str());
        let token = quiet_token(key.conn_id, &response.pos, asked, next_since);
        state
            .notifier
            .remember_quiet(&auth.user_id, &auth.device_id, token, seen);
    }
    Ok(response)
}

/// What a request asks, leaving out what it acknowledges (the to-device
/// `since`) and what it only echoes (`txn_id`): from one position, requests
/// that ask the same get the same answer while nothing new is committed.
fn fingerprint(req: &Request) -> u64 {
    // Taken apart whole, so that a field added later cannot be left out
    // unnoticed; hashed in place, without a copy of the request.
    let Request {
        conn_id,
        txn_id: _,
        lists,
        room_subscriptions,
        extensions,
    } = req;
    let ExtensionsRequest {
        e2ee,
        to_device,
        account_data,
        receipts,
        typing,
    } = extensions;
    let to_device = to_device.as_ref().map(|t| {
        let ToDeviceRequest {
            enabled,
            since: _,
            limit,
        } = t;
        (enabled, limit)
    });
    let mut hasher = DefaultHasher::new();
    (conn_id, lists, room_subscriptions).hash(&mut hasher);
    (e2ee, to_device, account_data, receipts, typing).hash(&mut hasher);
    hasher.finish()
}

fn to_device_since(req: &Request) -> Option<&str> {
    req.extensions.to_device.as_ref()?.since.as_deref()
}

/// What the notifier keeps of a response for its device: the connection,
/// the position and the to-device `since` the next request will send, and
/// what was asked. Never equal to a `/v3/sync` token, which shares the
/// device's place there.
fn quiet_token(conn_id: &str, pos: &str, asked: u64, to_device_since: Option<&str>) -> String {
    format!(
        "sliding {asked:x} {pos} {} {conn_id}",
        to_device_since.unwrap_or("-")
    )
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
    let from = base.map(|b| b.stream_pos);
    let ext = &req.extensions;
    let to_device_ext = ext.to_device.as_ref().filter(|t| t.enabled == Some(true));
    // The position, the rooms, the counts and every extension but the
    // ephemeral ones in one statement, as `/v3/sync` reads them.
    let mut news = read_news(
        state,
        &mut c,
        auth,
        News {
            from,
            acked: to_device_ext.map_or(0, extensions::acknowledged),
            // A request without the extension reads none.
            to_device_limit: to_device_ext.map_or(0, extensions::to_device_limit),
            // Which rooms are direct ones, for the lists' filters.
            data_type: Some("m.direct"),
        },
    )
    .await?;
    let to = news.to;
    // A position the server never reached cannot have been handed out.
    if from.is_some_and(|from| from > to) {
        return Err(connection::unknown_pos());
    }
    let sync_rooms = std::mem::take(&mut news.rooms);
    let direct = news.data.take();
    let view = lists::view(&mut c, req, &sync_rooms, direct, to).await?;
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
    let mut counts = crate::service::push::unread_by_room(std::mem::take(&mut news.unread));
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

    let mut extensions = ExtensionsResponse {
        to_device: to_device_ext.map(|t| {
            let pending = std::mem::take(&mut news.to_device);
            extensions::to_device(pending, extensions::to_device_limit(t), to)
        }),
        ..ExtensionsResponse::default()
    };
    if Toggle::on(&ext.e2ee) {
        extensions.e2ee = Some(extensions::e2ee(&mut c, auth, &sync_rooms, &mut news, from).await?);
    }
    if Toggle::on(&ext.account_data) {
        extensions.account_data = Some(extensions::account_data(
            &auth.user_id,
            &news.account_data,
            from,
        ));
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn asked(body: serde_json::Value) -> u64 {
        fingerprint(&serde_json::from_value(body).unwrap())
    }

    /// What only acknowledges or echoes leaves the fingerprint as it is;
    /// anything asked moves it.
    #[test]
    fn the_fingerprint_leaves_out_only_the_since_and_the_txn_id() {
        let body = |since: &str, txn: &str, limit: u64, to_device_limit: u64| {
            json!({
                "conn_id": "main",
                "txn_id": txn,
                "lists": { "all": { "ranges": [[0, 19]], "timeline_limit": limit } },
                "extensions": { "to_device": { "enabled": true, "since": since, "limit": to_device_limit } },
            })
        };
        let base = asked(body("1", "a", 10, 50));
        assert_eq!(asked(body("2", "b", 10, 50)), base);
        assert_ne!(asked(body("1", "a", 11, 50)), base);
        assert_ne!(asked(body("1", "a", 10, 51)), base);
        let mut other_conn = body("1", "a", 10, 50);
        other_conn["conn_id"] = json!("other");
        assert_ne!(asked(other_conn), base);
        let mut typing = body("1", "a", 10, 50);
        typing["extensions"]["typing"] = json!({ "enabled": true });
        assert_ne!(asked(typing), base);
        let mut subscribed = body("1", "a", 10, 50);
        subscribed["room_subscriptions"] = json!({ "!r:x": { "timeline_limit": 1 } });
        assert_ne!(asked(subscribed), base);
    }
}
