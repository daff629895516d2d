//! Rooms' retention policies (`m.room.retention`) enforced on this device:
//! expired events are no longer shown, and the Megolm keys that decrypt
//! them are destroyed (see [`crate::crypto::OlmMachine::apply_retention`]).

use serde_json::Value;

use super::events::TimelineEvent;
use super::http::Result;
use super::state::ClientState;
use super::Client;
use crate::crypto::{OlmMachine, ShredReport};

/// Apply every known room's policy to the crypto core at `now_ms`, and
/// forget the policies of rooms that dropped theirs.
pub(crate) fn apply_policies(
    state: &ClientState,
    machine: &mut OlmMachine,
    now_ms: u64,
) -> Vec<ShredReport> {
    let mut reports = Vec::new();
    for (room_id, room) in &state.rooms {
        match room.retention_policy().max_lifetime_ms {
            // Room ids come from the server: an invalid one is skipped, not
            // fatal to the sync.
            Some(max) => {
                if let Ok(report) = machine.apply_retention(room_id, max, now_ms) {
                    if !report.is_empty() {
                        reports.push(report);
                    }
                }
            }
            None => {
                machine.clear_retention(room_id);
            }
        }
    }
    reports
}

/// Whether a room event sent at `ts` has expired: state events never do
/// (the room's current state is not history).
fn expired(state: &ClientState, room_id: &str, is_state: bool, ts: u64, now_ms: u64) -> bool {
    !is_state
        && state
            .rooms
            .get(room_id)
            .is_some_and(|room| room.retention_policy().is_expired(ts, now_ms))
}

/// [`expired`] for a raw event from the server; one without a timestamp is
/// kept.
pub(crate) fn raw_is_expired(
    state: &ClientState,
    room_id: &str,
    event: &Value,
    now_ms: u64,
) -> bool {
    event
        .get("origin_server_ts")
        .and_then(Value::as_u64)
        .is_some_and(|ts| expired(state, room_id, event.get("state_key").is_some(), ts, now_ms))
}

pub(crate) fn event_is_expired(state: &ClientState, event: &TimelineEvent, now_ms: u64) -> bool {
    expired(
        state,
        &event.room_id,
        event.state_key.is_some(),
        event.origin_server_ts,
        now_ms,
    )
}

impl Client {
    /// Enforce every room's retention policy now (by this client's clock,
    /// see [`set_clock`](Self::set_clock)). Done after every sync; call it
    /// also when the app wakes after a long pause without syncing.
    pub async fn enforce_retention(&self) -> Result<Vec<ShredReport>> {
        self.enforce_retention_at(self.now()).await
    }

    /// Enforce every room's retention policy as of `now_ms`: destroy the
    /// room keys of expired messages (deleting them from the store in the
    /// same commit) and drop expired events waiting for a key. Returns what
    /// was destroyed, per room.
    pub async fn enforce_retention_at(&self, now_ms: u64) -> Result<Vec<ShredReport>> {
        let mut retry_queue = self.inner.sync_lock.lock().await;
        let state = self.inner.state.lock().await;
        retry_queue.retain(|e| !event_is_expired(&state, e, now_ms));
        let mut machine = self.inner.machine.lock().await;
        let reports = apply_policies(&state, &mut machine, now_ms);
        self.save(None, &mut machine, None).await?;
        Ok(reports)
    }

    /// Whether an event has expired under its room's retention policy (by
    /// this client's clock). Apps that keep events themselves should drop
    /// those for which this is true.
    pub async fn is_expired(&self, event: &TimelineEvent) -> bool {
        let state = self.inner.state.lock().await;
        event_is_expired(&state, event, self.now())
    }

    /// Apply one room's policy before sending in it, so that an outbound
    /// session whose messages all expired is not used again.
    pub(crate) async fn enforce_room_retention(&self, room_id: &str) -> Result<()> {
        let now = self.now();
        let max = {
            let state = self.inner.state.lock().await;
            state
                .rooms
                .get(room_id)
                .and_then(|r| r.retention_policy().max_lifetime_ms)
        };
        if let Some(max) = max {
            let mut machine = self.inner.machine.lock().await;
            machine.apply_retention(room_id, max, now)?;
            self.save(None, &mut machine, None).await?;
        }
        Ok(())
    }
}
