//! `/sync`: feed the crypto core, follow rooms, decrypt timelines, commit
//! everything learned with the new token, then send what the core needs.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::events::{to_timeline_event, TimelineEvent};
use super::http::{encode, Result, REQUEST_TIMEOUT};
use super::retention::{apply_policies, event_is_expired, raw_is_expired};
use super::state::{ClientState, Membership};
use super::{Client, ClientError};
use crate::crypto::{OlmMachine, SyncChanges};

/// Timeline events per room in one sync.
const TIMELINE_LIMIT: u64 = 50;
/// Sessions asked of the key backup are remembered up to this many.
const MAX_BACKUP_TRIED: usize = 10_000;

/// Decrypt again the events that waited for their key; those still missing
/// it stay queued.
fn retry_waiting(
    machine: &mut OlmMachine,
    state: &ClientState,
    retry_queue: &mut Vec<TimelineEvent>,
    now: u64,
) -> Vec<TimelineEvent> {
    let waiting: Vec<TimelineEvent> = std::mem::take(retry_queue)
        .into_iter()
        .filter(|e| !event_is_expired(state, e, now))
        .collect();
    let mut retried = Vec::new();
    for old in waiting {
        let raw = json!({
            "type": "m.room.encrypted",
            "event_id": old.event_id,
            "sender": old.sender,
            "origin_server_ts": old.origin_server_ts,
            "content": old.content,
        });
        let event = to_timeline_event(machine, &old.room_id, &raw);
        if event.is_missing_key() {
            retry_queue.push(old);
        } else {
            retried.push(event);
        }
    }
    retried
}

/// Undecryptable events kept for a retry when their key arrives.
const MAX_RETRY_QUEUE: usize = 1000;

/// What one sync brought.
#[derive(Debug, Default, Clone)]
pub struct SyncSummary {
    /// The sync token to continue from (kept in the store; opaque).
    pub next_batch: String,
    /// Room events, decrypted where possible, in order (also sent to
    /// subscribers). Includes earlier events whose key arrived now.
    pub events: Vec<TimelineEvent>,
    /// To-device events meant for the application (decrypted).
    pub to_device: Vec<Value>,
    /// Rooms we were invited to in this sync.
    pub invites: Vec<String>,
    /// Sending the crypto core's requests after the sync failed (they are
    /// retried with the next sync).
    pub crypto_error: Option<String>,
}

/// A sync applied, its timeline not yet decrypted.
pub(crate) struct AppliedSync {
    pub summary: SyncSummary,
    /// (room id, raw event), in order.
    pub timeline: Vec<(String, Value)>,
}

fn events_of<'a>(room: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    room.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

fn entries<'a>(sync: &'a Value, section: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    sync.pointer(&format!("/rooms/{section}"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// Apply a sync response to the client state and the crypto core: to-device
/// events, device lists and key counts, then rooms; timelines are only
/// collected (see [`decrypt_timeline`]). `initial` is a sync without a
/// `since` token. Pure: no I/O, so it can be benchmarked on its own.
pub(crate) fn apply_sync_response(
    state: &mut ClientState,
    machine: &mut OlmMachine,
    own_user: &str,
    sync: &Value,
    initial: bool,
    now_ms: u64,
) -> AppliedSync {
    let mut timeline = Vec::new();
    let mut summary = SyncSummary {
        next_batch: sync
            .get("next_batch")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        ..Default::default()
    };
    let mut changes = SyncChanges::from_sync_response(sync, now_ms);
    if initial {
        // An initial sync reports no device-list changes, yet devices may
        // have come and gone since we last queried: query everyone again.
        changes.device_lists_changed.extend(machine.tracked_users());
    }
    summary.to_device = machine.receive_sync_changes(changes);

    let mut tracked = BTreeSet::new();
    for (room_id, room) in entries(sync, "join") {
        let record = state.room_mut(room_id, Membership::Join);
        record.membership = Membership::Join;
        record.inviter = None;
        for event in events_of(room, "/state/events") {
            record.apply_state(event);
        }
        for event in events_of(room, "/timeline/events") {
            if event.get("state_key").is_some() {
                record.apply_state(event);
            }
        }
        if record.is_encrypted() {
            tracked.extend(record.active_members());
        }
        for event in events_of(room, "/timeline/events") {
            timeline.push((room_id.clone(), event.clone()));
        }
        // Departures must rotate the key before the next message: forget
        // the current session when someone left.
        let left = events_of(room, "/timeline/events").any(|e| {
            e.get("type").and_then(Value::as_str) == Some("m.room.member")
                && matches!(
                    e.pointer("/content/membership").and_then(Value::as_str),
                    Some("leave" | "ban")
                )
        });
        if left {
            machine.invalidate_group_session(room_id);
        }
    }
    for (room_id, room) in entries(sync, "invite") {
        let record = state.room_mut(room_id, Membership::Invite);
        record.membership = Membership::Invite;
        for event in events_of(room, "/invite_state/events") {
            record.apply_state(event);
            if event.get("type").and_then(Value::as_str) == Some("m.room.member")
                && event.get("state_key").and_then(Value::as_str) == Some(own_user)
            {
                record.inviter = event
                    .get("sender")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
        }
        summary.invites.push(room_id.clone());
    }
    for (room_id, room) in entries(sync, "leave") {
        let record = state.room_mut(room_id, Membership::Leave);
        record.membership = Membership::Leave;
        for event in events_of(room, "/timeline/events") {
            if event.get("state_key").is_some() {
                record.apply_state(event);
            }
        }
        machine.invalidate_group_session(room_id);
    }
    for user in tracked {
        // Ids come from the server: an invalid one is skipped, not fatal.
        let _ = machine.update_tracked_users(&[user]);
    }
    AppliedSync { summary, timeline }
}

/// Decrypt a sync's timeline events (after the devices of new senders were
/// queried, so that their events are attributed to known devices).
pub(crate) fn decrypt_timeline(
    machine: &mut OlmMachine,
    timeline: &[(String, Value)],
) -> Vec<TimelineEvent> {
    timeline
        .iter()
        .map(|(room_id, event)| to_timeline_event(machine, room_id, event))
        .collect()
}

impl Client {
    /// One `/sync` round: long-polls up to `timeout` for news, applies it,
    /// commits it with the new token, sends the crypto core's requests, and
    /// publishes decrypted events to subscribers.
    pub async fn sync_once(&self, timeout: Duration) -> Result<SyncSummary> {
        let response = self.fetch_sync(timeout).await?;
        // Applying and committing must not be cut short by a caller
        // dropping this future: a half-applied sync would have the core
        // see its to-device messages twice. A task runs to the end.
        let client = self.clone();
        tokio::spawn(async move { client.process_sync(response).await })
            .await
            .map_err(|e| ClientError::InvalidArgument(format!("sync task failed: {e}")))?
    }

    /// The `/sync` request alone (cancellable).
    async fn fetch_sync(&self, timeout: Duration) -> Result<Value> {
        let since = self.inner.state.lock().await.sync_token.clone();
        let filter = json!({"room": {"timeline": {"limit": TIMELINE_LIMIT}}}).to_string();
        let mut path = format!(
            "/_matrix/client/v3/sync?timeout={}&filter={}",
            timeout.as_millis(),
            encode(&filter)
        );
        if let Some(since) = &since {
            path.push_str(&format!("&since={}", encode(since)));
        }
        self.inner
            .http
            .json(Method::GET, &path, None, timeout + REQUEST_TIMEOUT)
            .await
    }

    async fn process_sync(&self, response: Value) -> Result<SyncSummary> {
        let mut retry_queue = self.inner.sync_lock.lock().await;
        // 1. What the sync taught (room keys, device lists, rooms) is
        //    committed with its token.
        let AppliedSync {
            mut summary,
            timeline,
        } = {
            let mut state = self.inner.state.lock().await;
            let mut machine = self.inner.machine.lock().await;
            let initial = state.sync_token.is_none();
            let applied = apply_sync_response(
                &mut state,
                &mut machine,
                self.user_id(),
                &response,
                initial,
                self.now(),
            );
            let token = Some(applied.summary.next_batch.clone()).filter(|t| !t.is_empty());
            if let Some(token) = &token {
                state.sync_token = Some(token.clone());
            }
            self.save(Some(&mut state), &mut machine, token).await?;
            applied
        };
        // 2. Keys up, new members' devices queried, to-device out.
        if let Err(error) = self.send_crypto_requests().await {
            summary.crypto_error = Some(error.to_string());
        }
        let mut queued_requests = false;
        let mut missing: Vec<(String, String)> = Vec::new();
        // 3. Timelines decrypted, and earlier events whose key came now;
        //    then retention, which needs the timestamps of what was just
        //    decrypted to tell live sessions from expired ones.
        {
            let now = self.now();
            let state = self.inner.state.lock().await;
            let mut machine = self.inner.machine.lock().await;
            let timeline: Vec<(String, Value)> = timeline
                .into_iter()
                .filter(|(room_id, event)| !raw_is_expired(&state, room_id, event, now))
                .collect();
            summary.events = decrypt_timeline(&mut machine, &timeline);
            for event in summary.events.iter().filter(|e| e.is_verification()) {
                let raw = json!({
                    "type": event.event_type,
                    "sender": event.sender,
                    "event_id": event.event_id,
                    "origin_server_ts": event.origin_server_ts,
                    "content": event.content,
                });
                machine.receive_verification_room_event(&event.room_id, &raw, now);
                queued_requests = true;
            }
            let retried = retry_waiting(&mut machine, &state, &mut retry_queue, now);
            for event in &summary.events {
                if event.is_missing_key() && retry_queue.len() < MAX_RETRY_QUEUE {
                    retry_queue.push(event.clone());
                    if let Some(session) = event.content.get("session_id").and_then(Value::as_str) {
                        missing.push((event.room_id.clone(), session.to_owned()));
                    }
                    // Our verified devices may hold the key: ask them (one
                    // open request per session). A late to-device message,
                    // a forwarded key or a backup restore all end up in the
                    // retry above.
                    let raw = json!({ "content": event.content });
                    if machine.request_room_key(&event.room_id, &raw).is_ok() {
                        queued_requests = true;
                    }
                }
            }
            summary.events.retain(|e| !e.is_missing_key());
            summary.events.extend(retried);
            apply_policies(&state, &mut machine, now);
            self.save(None, &mut machine, None).await?;
        }
        // 4. Keys still missing may be in the key backup: fetch those, and
        //    decrypt what waited for them now.
        if !missing.is_empty() && self.fetch_from_backup(&missing).await {
            let now = self.now();
            let state = self.inner.state.lock().await;
            let mut machine = self.inner.machine.lock().await;
            let retried = retry_waiting(&mut machine, &state, &mut retry_queue, now);
            apply_policies(&state, &mut machine, now);
            self.save(None, &mut machine, None).await?;
            summary.events.extend(retried);
        }
        drop(retry_queue);
        // In-room verification steps and key requests go out at once, not
        // after the next long-poll.
        if queued_requests {
            if let Err(error) = self.send_crypto_requests().await {
                summary.crypto_error = Some(error.to_string());
            }
        }
        for event in &summary.events {
            // No subscribers is not an error.
            let _ = self.inner.events.send(event.clone());
        }
        Ok(summary)
    }

    /// Fetch the sessions of `missing` (room, session) from the key backup
    /// when this device holds the backup's key; each session is asked for
    /// once. Returns whether any key came.
    async fn fetch_from_backup(&self, missing: &[(String, String)]) -> bool {
        let version = {
            let machine = self.inner.machine.lock().await;
            match (machine.backup_version(), machine.backup_key()) {
                (Some(version), Some(_)) => version,
                _ => return false,
            }
        };
        let wanted: Vec<(String, String)> = {
            let mut tried = self
                .inner
                .backup_tried
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if tried.len() > MAX_BACKUP_TRIED {
                tried.clear();
            }
            missing
                .iter()
                .filter(|key| tried.insert((*key).clone()))
                .cloned()
                .collect()
        };
        let mut rooms = serde_json::Map::new();
        for (room_id, session_id) in wanted {
            let path = format!(
                "/_matrix/client/v3/room_keys/keys/{}/{}?version={}",
                encode(&room_id),
                encode(&session_id),
                encode(&version)
            );
            // Not in the backup (404), or the server failing: the event
            // waits for the key by the other ways.
            if let Ok(data) = self.inner.http.get(&path).await {
                let room = rooms
                    .entry(room_id)
                    .or_insert_with(|| json!({ "sessions": {} }));
                room["sessions"][session_id] = data;
            }
        }
        if rooms.is_empty() {
            return false;
        }
        let mut machine = self.inner.machine.lock().await;
        let imported = machine
            .import_backup(&json!({ "rooms": rooms }))
            .map(|report| report.imported)
            .unwrap_or(0);
        imported > 0
    }

    /// Undecryptable events waiting for their room key.
    pub async fn undecrypted_events(&self) -> Vec<TimelineEvent> {
        self.inner.sync_lock.lock().await.clone()
    }

    /// Sync in a background task until stopped: long-polls of `timeout`,
    /// with a growing pause after errors.
    pub fn spawn_sync_loop(&self, timeout: Duration) -> SyncLoop {
        let (stop, mut stopped) = watch::channel(false);
        let (errors_tx, errors) = watch::channel(None);
        let client = self.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(500);
            loop {
                let fetched = tokio::select! {
                    _ = stopped.changed() => return,
                    result = client.fetch_sync(timeout) => result,
                };
                // Processing is not raced against `stop`: it runs to the end.
                let result = match fetched {
                    Ok(response) => client.process_sync(response).await,
                    Err(error) => Err(error),
                };
                {
                    match result {
                        Ok(_) => backoff = Duration::from_millis(500),
                        Err(error) => {
                            let _ = errors_tx.send(Some(error.to_string()));
                            tokio::select! {
                                _ = stopped.changed() => return,
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
        });
        SyncLoop { stop, task, errors }
    }
}

/// A running background sync; stop it with [`SyncLoop::stop`].
pub struct SyncLoop {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    errors: watch::Receiver<Option<String>>,
}

impl SyncLoop {
    /// The latest sync error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.errors.borrow().clone()
    }

    /// Stop after the current request (an in-flight long-poll is dropped;
    /// what was already committed stays).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
