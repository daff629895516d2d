//! The sync task and event delivery: polled with
//! `cloister_client_next_event`, or pushed to a registered callback.

use std::collections::{BTreeMap, HashMap};
use std::ffi::c_void;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_sdk::client::{Client, Membership};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{
    cloister_client, cloister_event_callback, lock, with_client, Callback, Shared,
    MAX_QUEUED_EVENTS,
};
use crate::event::cloister_event;
use crate::result::*;
use crate::runtime::{block_on, runtime};
use crate::types::out;
use crate::verification::{cloister_verification_phase, phase_to_c};

/// How long one `/sync` long-poll waits for news.
const POLL: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(crate) struct SyncTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Stop the sync task if one runs, and wait for it (no callback runs once
/// this returns).
pub(crate) fn stop(shared: &Shared) -> Result<()> {
    let Some(task) = lock(&shared.sync).take() else {
        return Ok(());
    };
    let _ = task.stop.send(true);
    let _ = block_on(task.task)?;
    Ok(())
}

/// Start syncing in the background: a task on the library runtime
/// long-polls the homeserver, decrypts, and delivers events (to the
/// callback if one is registered, else to the queue read by
/// `cloister_client_next_event`). `CLOISTER_RESULT_INVALID_STATE` if sync
/// runs already.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_sync_start(
    client: *mut cloister_client,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        let current = shared.logged_in()?;
        let mut slot = lock(&shared.sync);
        if slot.is_some() {
            return Err(Error::new(
                CLOISTER_RESULT_INVALID_STATE,
                "sync is running already",
            ));
        }
        let (stop, stopped) = watch::channel(false);
        let task = runtime().spawn(sync_loop(shared.clone(), current, stopped));
        *slot = Some(SyncTask { stop, task });
        Ok(())
    })
}

/// Stop syncing and wait until the sync task ended: once this returns no
/// callback is running or will run. A no-op if sync is not running. Must
/// not be called from an event callback.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_sync_stop(
    client: *mut cloister_client,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| stop(shared))
}

/// Register `callback` to receive every event (instead of the queue), with
/// `user_data` passed back as is; NULL unregisters (events are queued
/// again). Events are delivered on a library thread — see
/// `cloister_event_callback`. `user_data` must stay valid, and usable from
/// that thread, until the callback is unregistered and
/// `cloister_client_sync_stop` (or close) has returned.
#[no_mangle]
pub unsafe extern "C" fn cloister_client_set_event_callback(
    client: *mut cloister_client,
    callback: cloister_event_callback,
    user_data: *mut c_void,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        *lock(&shared.callback) = callback.map(|f| Callback { f, user_data });
        Ok(())
    })
}

/// Wait up to `timeout_ms` milliseconds (0: do not wait) for the next
/// queued event and write it to `*out_event` (free it with
/// `cloister_event_free`). `CLOISTER_RESULT_TIMEOUT` if none came;
/// `CLOISTER_RESULT_CLOSED` if the handle was closed meanwhile. Events are
/// only queued while no callback is registered; at most 10000 are kept
/// (the oldest are dropped).
#[no_mangle]
pub unsafe extern "C" fn cloister_client_next_event(
    client: *mut cloister_client,
    timeout_ms: u32,
    out_event: *mut *mut cloister_event,
) -> cloister_result {
    // SAFETY: NULL or a handle not yet freed (header contract).
    let client = unsafe { client.as_ref() };
    with_client(client, |shared| {
        // SAFETY: NULL or writable (the header's contract for out-parameters).
        let out_event = unsafe { out(out_event) }?;
        if timeout_ms > 0 && tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::new(
                CLOISTER_RESULT_WRONG_THREAD,
                "cloister_client_next_event may not wait inside a callback",
            ));
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms.into());
        let mut queue = lock(&shared.queue);
        loop {
            if shared.is_closed() {
                return Err(Error::new(
                    CLOISTER_RESULT_CLOSED,
                    "the client handle is closed",
                ));
            }
            if let Some(event) = queue.pop_front() {
                drop(queue);
                out_event.put(Box::into_raw(Box::new(event)));
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    CLOISTER_RESULT_TIMEOUT,
                    "no event within the timeout",
                ));
            }
            queue = shared
                .ready
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    })
}

impl Shared {
    /// Hand events to the callback (no lock held while it runs) or queue.
    fn deliver(&self, events: Vec<cloister_event>) {
        if events.is_empty() {
            return;
        }
        let callback = *lock(&self.callback);
        match callback {
            Some(Callback { f, user_data }) => {
                for event in &events {
                    // SAFETY: the application registered `f` with
                    // `user_data` for exactly this call, on a library
                    // thread (see `cloister_event_callback`); `event` is
                    // borrowed for the call and outlives it.
                    unsafe { f(user_data, event) };
                }
            }
            None => {
                let mut queue = lock(&self.queue);
                queue.extend(events);
                while queue.len() > MAX_QUEUED_EVENTS {
                    queue.pop_front();
                }
                drop(queue);
                self.ready.notify_all();
            }
        }
    }
}

/// Device keys of the users we share encrypted rooms with, to warn when
/// they change. (The crypto core's own key-change warnings are not
/// reachable through the SDK client; this compares snapshots instead.)
#[derive(Default)]
struct KeyTracker {
    known: HashMap<String, BTreeMap<String, String>>,
}

impl KeyTracker {
    async fn check(&mut self, client: &Client) -> Vec<cloister_event> {
        let mut users: Vec<String> = client
            .rooms()
            .await
            .into_iter()
            .filter(|r| r.membership == Membership::Join && r.is_encrypted())
            .flat_map(|r| r.active_members())
            .filter(|u| u != client.user_id())
            .collect();
        users.sort();
        users.dedup();
        let mut warnings = Vec::new();
        for user in users {
            let devices: BTreeMap<String, String> = client
                .user_devices(&user)
                .await
                .into_iter()
                .map(|d| (d.device_id, d.ed25519.to_base64()))
                .collect();
            if devices.is_empty() {
                continue;
            }
            if let Some(before) = self.known.get(&user) {
                if *before != devices {
                    let added: Vec<&str> = devices
                        .keys()
                        .filter(|d| before.get(*d) != devices.get(*d))
                        .map(String::as_str)
                        .collect();
                    let removed: Vec<&str> = before
                        .keys()
                        .filter(|d| !devices.contains_key(*d))
                        .map(String::as_str)
                        .collect();
                    let text = format!(
                        "devices of {user} changed: new or re-keyed [{}], removed [{}]",
                        added.join(", "),
                        removed.join(", ")
                    );
                    tracing::warn!(target: "cloister", "{text}");
                    warnings.push(cloister_event::key_change(&user, &text));
                }
            }
            self.known.insert(user, devices);
        }
        warnings
    }
}

/// The phase of each verification as last reported, to tell the app about
/// changes (requests arriving, the other side answering) as events.
#[derive(Default)]
struct VerificationTracker {
    known: HashMap<String, cloister_verification_phase>,
}

impl VerificationTracker {
    async fn check(&mut self, client: &Client) -> Vec<cloister_event> {
        let mut events = Vec::new();
        let current = client.verifications().await;
        for info in &current {
            let phase = phase_to_c(&info.phase);
            if self.known.insert(info.flow_id.clone(), phase) != Some(phase) {
                events.push(cloister_event::verification(
                    &info.flow_id,
                    &info.other_user,
                    phase.name(),
                ));
            }
        }
        self.known
            .retain(|flow, _| current.iter().any(|i| &i.flow_id == flow));
        events
    }
}

async fn sync_loop(shared: Arc<Shared>, client: Client, mut stopped: watch::Receiver<bool>) {
    let mut backoff = MIN_BACKOFF;
    let mut keys = KeyTracker::default();
    let mut verifications = VerificationTracker::default();
    loop {
        let result = tokio::select! {
            _ = stopped.changed() => return,
            result = client.sync_once(POLL) => result,
        };
        match result {
            Ok(summary) => {
                backoff = MIN_BACKOFF;
                let mut events: Vec<cloister_event> = summary
                    .events
                    .into_iter()
                    .map(cloister_event::from_timeline)
                    .collect();
                for room_id in &summary.invites {
                    let inviter = client.room(room_id).await.and_then(|r| r.inviter);
                    events.push(cloister_event::invite(room_id, inviter.as_deref()));
                }
                if let Some(error) = summary.crypto_error {
                    let error = Error::new(CLOISTER_RESULT_CRYPTO, error);
                    events.push(cloister_event::sync_failed(&error));
                }
                events.extend(keys.check(&client).await);
                events.extend(verifications.check(&client).await);
                shared.deliver(events);
            }
            Err(error) => {
                let error = Error::from(error);
                tracing::warn!(target: "cloister", "sync failed: {}", error.message);
                // A rate-limited sync waits as long as the server asks.
                let pause = backoff.max(Duration::from_millis(error.retry_after_ms));
                shared.deliver(vec![cloister_event::sync_failed(&error)]);
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
