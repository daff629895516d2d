//! `/sync`: everything that changed for one device since its last token,
//! waiting (long-poll) until something does or the timeout passes.
//!
//! Every section is read up to one stream position, taken first, so a
//! response is a consistent cut: nothing at or below it is skipped by the
//! next sync, and nothing above it is sent twice in a timeline.

pub mod device_lists;
pub mod filter;
pub mod members;
pub mod recent;
pub mod rooms;
pub mod tokens;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::notify::Subscription;
use crate::service::retention;
use crate::service::session::Auth;
use crate::service::Context;
use crate::store::events::Viewer;
use crate::store::{device_news, to_device, Autocommit};
use cloister_proto::sync::{DeviceLists, ToDeviceEvents};
use filter::SyncFilter;
use tokens::SyncToken;

/// How many to-device messages one response carries at most.
const TO_DEVICE_BATCH: i64 = 100;

pub struct SyncRequest {
    pub since: Option<SyncToken>,
    pub timeout: Duration,
    pub full_state: bool,
    pub filter: SyncFilter,
}

/// The response of `GET /_matrix/client/v3/sync`. Fields are in
/// alphabetical order, as serde_json orders map keys, so the output is the
/// same byte for byte as when it was built as a map. The crypto fields are
/// those of `cloister_proto::sync::SyncCrypto`, listed one by one: flattened,
/// they would all serialize after the others, out of order.
#[derive(Serialize)]
pub struct SyncResponse {
    pub account_data: Events,
    pub device_lists: DeviceLists,
    /// Always present, zero counts included: clients replenish keys from these.
    pub device_one_time_keys_count: BTreeMap<String, u64>,
    /// Always present, even empty: a client reads its absence as "fallback
    /// keys unsupported".
    pub device_unused_fallback_key_types: Vec<String>,
    pub next_batch: String,
    pub presence: Events,
    pub rooms: Rooms,
    pub to_device: ToDeviceEvents,
}

#[derive(Serialize)]
pub struct Events {
    pub events: Vec<Value>,
}

/// The per-room sections, keyed by room id (see [`rooms`]).
#[derive(Serialize)]
pub struct Rooms {
    pub invite: Map<String, Value>,
    pub join: Map<String, Value>,
    pub leave: Map<String, Value>,
}

pub async fn sync(state: &Context, auth: &Auth, req: &SyncRequest) -> ApiResult<SyncResponse> {
    // Subscribe before the first read so a change landing in between still wakes us.
    let mut subscription = state.notifier.subscribe(&auth.user_id);
    let deadline = Instant::now() + req.timeout;
    let long_poll = !req.full_state && !req.timeout.is_zero();
    // A client asks again as soon as it has a response, usually before
    // anything new: then its first read can only find nothing (a third of
    // all reads under load, docs/performance.md), and it waits at once.
    let quiet = long_poll
        && req.since.is_some_and(|since| {
            state.notifier.quiet_since(
                &auth.user_id,
                &auth.device_id,
                &since.to_string(),
                &mut subscription,
            )
        });
    let at_once = req.since.is_none() || !long_poll;
    let (response, seen) =
        long_poll_loop(state, (&mut subscription, deadline), quiet, at_once, || {
            build(state, auth, req)
        })
        .await?;
    Ok(answered(state, auth, response, seen))
}

/// The wait both sync APIs share. `build` reads a response and says
/// whether it has news; the first is answered when it has, when `at_once`
/// (an initial sync, no timeout), or at the deadline; else the request
/// waits for a wake-up of its user and builds again. `quiet`: the request
/// can only find nothing yet, so it waits before building at all. Returns
/// the response and the notifier's stamp seen before its reads.
pub(crate) async fn long_poll_loop<B, F>(
    state: &Context,
    (subscription, deadline): (&mut Subscription, Instant),
    quiet: bool,
    at_once: bool,
    mut build: impl FnMut() -> F,
) -> ApiResult<(B, u64)>
where
    F: Future<Output = ApiResult<(B, bool)>>,
{
    let mut built = None;
    if !quiet {
        let seen = subscription.mark_seen();
        built = Some((build().await?, seen));
    }
    loop {
        if let Some(((response, has_news), seen)) = built.take() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if has_news || at_once || remaining.is_zero() || state.notifier.is_shutting_down() {
                return Ok((response, seen));
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !subscription.wait(remaining).await {
            let seen = subscription.mark_seen();
            return Ok((build().await?.0, seen));
        }
        // Woken: let the rest of a burst arrive, so that it costs this
        // client one response rather than one per event.
        let window = Duration::from_millis(state.config.limits.sync_coalesce_ms)
            .min(deadline.saturating_duration_since(Instant::now()));
        if !window.is_zero() && !state.notifier.is_shutting_down() {
            tokio::time::sleep(window).await;
        }
        let seen = subscription.mark_seen();
        built = Some((build().await?, seen));
    }
}

/// Counts the response, and remembers what its device has seen when the
/// response holds everything up to its `next_batch`.
fn answered(state: &Context, auth: &Auth, response: SyncResponse, seen: u64) -> SyncResponse {
    if response.to_device.events.len() < TO_DEVICE_BATCH as usize {
        state.notifier.remember_quiet(
            &auth.user_id,
            &auth.device_id,
            response.next_batch.clone(),
            seen,
        );
    }
    counted(state, response)
}

/// Counts the response and the timeline events it delivers.
fn counted(state: &Context, response: SyncResponse) -> SyncResponse {
    let delivered: usize = response
        .rooms
        .join
        .values()
        .chain(response.rooms.leave.values())
        .filter_map(|room| room["timeline"]["events"].as_array())
        .map(Vec::len)
        .sum();
    let m = &state.metrics;
    m.sync_responses.fetch_add(1, Ordering::Relaxed);
    m.sync_events_delivered
        .fetch_add(delivered as u64, Ordering::Relaxed);
    response
}

/// What one response reads about its device: the window after `from`
/// (None: an initial response), the to-device messages acknowledged up to
/// `acked` (0: none), at most `to_device_limit` pending ones, and the
/// global account data of `data_type`, if any.
pub(crate) struct News {
    pub from: Option<i64>,
    pub acked: i64,
    pub to_device_limit: i64,
    pub data_type: Option<&'static str>,
}

/// Deletes the to-device messages the request acknowledges, then reads the
/// device's news up to the current position, which it returns, in one
/// statement (`store::device_news`): for `/v3/sync` and sliding sync alike.
pub(crate) async fn read_news(
    state: &Context,
    c: &mut Autocommit,
    auth: &Auth,
    ask: News,
) -> ApiResult<device_news::DeviceNews> {
    if ask.acked > 0 {
        to_device::delete_acknowledged(&mut *c, &auth.user_id, &auth.device_id, ask.acked).await?;
    }
    let window = device_news::Window {
        to_device_after: ask.acked,
        data_after: ask.from.unwrap_or(-1),
        device_lists_after: ask.from,
        // The response's position, read with the device's news: one
        // round trip fewer.
        to: None,
        to_device_limit: ask.to_device_limit,
        to_device_cutoff: state
            .config
            .retention
            .to_device_lifetime
            .cutoff(state.now_ms()),
        // An incremental response reads only rooms where something
        // happened, so a long-poll costs a few queries, not several per
        // joined room. An initial one asks about an empty window: every
        // room is sent anyway.
        rooms_after: ask.from,
        room_state_type: retention::RETENTION_EVENT,
        data_type: ask.data_type,
    };
    Ok(device_news::read(c, &auth.user_id, &auth.device_id, &window).await?)
}

async fn build(state: &Context, auth: &Auth, req: &SyncRequest) -> ApiResult<(SyncResponse, bool)> {
    let now = state.now_ms();
    if req.since.is_none() {
        // An initial sync starts the client's counts, so they should be
        // exact; incremental ones take what the background evaluator has
        // done, as catching up there cost every long-poll CPU and time
        // under load (docs/performance.md). Before this response's
        // connection is taken (see `catch_up`).
        crate::service::push::catch_up(state).await?;
    }
    // Reads, and deletes what the token acknowledges: no transaction needed.
    let mut c = state.store.autocommit().await?;
    // `full_state` resends every room's state, but timelines still start
    // at `since`: a client never sees an event twice in its timeline.
    let from = req.since.map(|s| s.pos);
    let viewer = Viewer {
        user_id: &auth.user_id,
        device_id: &auth.device_id,
    };

    // To-device: what the client's token acknowledges is delivered, and only then deleted.
    let acked = req.since.map_or(0, |s| s.to_device);
    let news = read_news(
        state,
        &mut c,
        auth,
        News {
            from,
            acked,
            to_device_limit: TO_DEVICE_BATCH,
            data_type: None,
        },
    )
    .await?;
    let to = news.to;
    let to_device = news.to_device;
    let to_device_pos = match to_device.last() {
        Some((pos, _)) if to_device.len() as i64 == TO_DEVICE_BATCH => *pos,
        Some(_) => to,
        // Nothing to acknowledge: everything up to `acked` was deleted
        // above and nothing else is pending, so the next request can skip
        // looking for acknowledged messages (a query per long-poll).
        None => 0,
    };

    let data_changes = news.account_data;
    let mut global_data: Vec<Value> = data_changes
        .iter()
        .filter(|(room, _, _)| room.is_empty())
        .map(|(_, t, content)| json!({ "type": t, "content": content }))
        .collect();
    if from.is_none()
        && !data_changes
            .iter()
            .any(|(r, t, _)| r.is_empty() && t == "m.push_rules")
    {
        global_data.push(json!({ "type": "m.push_rules", "content": crate::service::pushrules::default_ruleset(&auth.user_id) }));
    }
    let mut room_data = rooms::room_account_data(&data_changes);

    let sync_rooms = news.rooms;
    // Every joined room's notification counts, read with the news at `to`.
    let mut counts = crate::service::push::unread_by_room(news.unread);
    let (mut join, mut invite, mut leave) = (Map::new(), Map::new(), Map::new());
    // Joined rooms whose window is known to hold no membership events.
    let mut no_member_events = vec![false; sync_rooms.len()];
    for (i, room) in sync_rooms.iter().enumerate() {
        let (room_id, membership) = (&room.room_id, &room.membership);
        let cutoff = retention::cutoff_from_content(state, room.state_content.as_ref(), now);
        let changed_since = from.is_none_or(|f| membership.pos > f);
        let data = match room_data.remove(room_id) {
            Some(Value::Array(list)) => list,
            _ => vec![],
        };
        match membership.membership.as_str() {
            "join" => {
                let quiet = !req.full_state
                    && from.is_some_and(|f| membership.span_start_pos <= f)
                    && !room.has_events
                    && !room.has_ephemeral
                    && data.is_empty();
                if quiet {
                    no_member_events[i] = true;
                    continue;
                }
                let unread = counts
                    .remove(room_id)
                    .unwrap_or_default()
                    .render(req.filter.unread_thread_notifications);
                // A room joined since the token is new to the client: send it whole.
                let joined_since = from.is_some_and(|f| membership.span_start_pos > f);
                let has_new_events = joined_since || room.has_events;
                let access = if from.is_some() && !joined_since && !membership.forgotten {
                    crate::service::visibility::current_member(
                        &auth.user_id,
                        membership.span_start_pos,
                    )
                } else {
                    match crate::service::visibility::access(&mut c, room_id, &auth.user_id).await?
                    {
                        Some(access) => access,
                        None => continue,
                    }
                };
                let window = rooms::RoomWindow {
                    room_id,
                    viewer,
                    from: if joined_since { None } else { from },
                    to,
                    readable: &access.events,
                    filter: &req.filter,
                    full_state: req.full_state,
                    now,
                    cutoff,
                    kept: Some(rooms::Kept {
                        members: &state.sync_members,
                        recent: &state.sync_recent,
                        state_serial: room.state_serial,
                        last_event_pos: room.last_event_pos,
                        metrics: &state.metrics,
                    }),
                };
                let joined = rooms::joined(
                    &mut c,
                    &window,
                    data,
                    has_new_events,
                    room.has_ephemeral,
                    unread,
                )
                .await?;
                no_member_events[i] = !joined.members_may_have_changed;
                if let Some(section) = joined.section {
                    join.insert(room_id.clone(), section);
                }
            }
            "invite" if changed_since => {
                invite.insert(
                    room_id.clone(),
                    rooms::invited(&mut c, room_id, &auth.user_id).await?,
                );
            }
            "leave" | "ban"
                if !membership.forgotten
                    && (from.is_some() && changed_since
                        || from.is_none() && req.filter.include_leave) =>
            {
                let Some(access) =
                    crate::service::visibility::access(&mut c, room_id, &auth.user_id).await?
                else {
                    continue;
                };
                let window = rooms::RoomWindow {
                    room_id,
                    viewer,
                    from,
                    to,
                    readable: &access.events,
                    filter: &req.filter,
                    full_state: req.full_state,
                    now,
                    cutoff,
                    kept: None,
                };
                leave.insert(
                    room_id.clone(),
                    rooms::left(&mut c, &window, membership.pos, access.state_at).await?,
                );
            }
            _ => {}
        }
    }

    let device_lists = match from {
        Some(f) => {
            // Leaving out rooms without membership events spares a query
            // each and changes nothing: all it would read there are those.
            let my_rooms: Vec<_> = sync_rooms
                .iter()
                .zip(no_member_events)
                .filter(|(_, none)| !none)
                .map(|(r, _)| r)
                .collect();
            let keys_changed = news.device_list_changes;
            device_lists::changes(&mut c, &auth.user_id, keys_changed, &my_rooms, f, to).await?
        }
        None => DeviceLists::default(),
    };
    let has_news = !join.is_empty()
        || !invite.is_empty()
        || !leave.is_empty()
        || !to_device.is_empty()
        || !global_data.is_empty()
        || !device_lists.changed.is_empty()
        || !device_lists.left.is_empty();
    let response = SyncResponse {
        next_batch: SyncToken {
            pos: to,
            to_device: to_device_pos,
        }
        .to_string(),
        rooms: Rooms {
            join,
            invite,
            leave,
        },
        account_data: Events {
            events: global_data,
        },
        presence: Events { events: vec![] },
        to_device: ToDeviceEvents {
            events: to_device.into_iter().map(|(_, e)| e).collect(),
        },
        device_lists,
        device_one_time_keys_count: crate::service::keys::wire_counts(news.one_time_key_counts),
        device_unused_fallback_key_types: news.unused_fallback_types,
    };
    Ok((response, has_news))
}
