//! Retention (MSC1763 `m.room.retention`) enforced on the device by
//! crypto-shredding: once a room's messages have expired, the Megolm keys
//! that decrypt them are destroyed, so copies of the ciphertext (in backups
//! of the server, in logs, saved by the app) can no longer be read here.
//!
//! An inbound session is judged by the `origin_server_ts` of the messages
//! this device decrypted with it (a session never used for a message, by
//! when its key arrived):
//!
//! - every known message expired: the session is discarded;
//! - the oldest known messages expired, later ones not: the session is
//!   ratcheted forward (vodozemac's `advance_to`) past the expired ones, so
//!   it keeps decrypting the live messages but no longer the old ones.
//!
//! Our own outbound session is discarded (so the next message starts a new
//! one) once its latest message has expired.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::CryptoError;
use super::machine::{check_room_id, OlmMachine};
use super::megolm::{session_record_id, SessionRef};

/// A room's retention policy: the content of its `m.room.retention` state
/// event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Messages older than this (in milliseconds) have expired.
    pub max_lifetime_ms: Option<u64>,
    /// How long the server must keep messages. Informational on a client:
    /// nothing here keeps a message the user or the app deletes earlier.
    pub min_lifetime_ms: Option<u64>,
}

impl RetentionPolicy {
    /// Read `max_lifetime` / `min_lifetime` from an `m.room.retention`
    /// content; values that are not non-negative integers are ignored.
    pub fn from_content(content: &Value) -> Self {
        Self {
            max_lifetime_ms: content.get("max_lifetime").and_then(Value::as_u64),
            min_lifetime_ms: content.get("min_lifetime").and_then(Value::as_u64),
        }
    }

    /// The `origin_server_ts` below which messages have expired at `now_ms`,
    /// if the policy expires anything.
    pub fn cutoff(&self, now_ms: u64) -> Option<u64> {
        self.max_lifetime_ms.map(|max| now_ms.saturating_sub(max))
    }

    /// Whether a message sent at `origin_server_ts` has expired at `now_ms`.
    pub fn is_expired(&self, origin_server_ts: u64, now_ms: u64) -> bool {
        self.cutoff(now_ms).is_some_and(|c| origin_server_ts < c)
    }
}

/// What [`OlmMachine::apply_retention`] destroyed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShredReport {
    /// The room whose policy was applied.
    pub room_id: String,
    /// Messages with an `origin_server_ts` below this have expired.
    pub cutoff_ms: u64,
    /// Inbound sessions deleted: every message they decrypted had expired.
    pub discarded_sessions: Vec<String>,
    /// Inbound sessions ratcheted forward past their expired messages, with
    /// the first message index they can still decrypt.
    pub ratcheted_sessions: Vec<(String, u32)>,
    /// Our outbound session for the room was discarded; the next message
    /// starts a new one.
    pub rotated_outbound: bool,
}

impl ShredReport {
    /// Whether nothing was destroyed.
    pub fn is_empty(&self) -> bool {
        self.discarded_sessions.is_empty()
            && self.ratcheted_sessions.is_empty()
            && !self.rotated_outbound
    }
}

/// What to do with one inbound session.
enum Verdict {
    Keep,
    Discard,
    /// Advance to this first known index.
    Ratchet(u32),
}

impl OlmMachine {
    /// Enforce a room's retention policy at `now_ms`: remember the policy
    /// (so that [`decrypt_room_event`](Self::decrypt_room_event) refuses
    /// expired events from now on) and destroy the keys of messages sent
    /// before `now_ms - max_lifetime_ms` (see the module docs). The changes
    /// are handed to the store by the next
    /// [`pending_changes`](Self::pending_changes): deleted sessions as
    /// record deletions. Call it again as time passes; it is idempotent.
    pub fn apply_retention(
        &mut self,
        room_id: &str,
        max_lifetime_ms: u64,
        now_ms: u64,
    ) -> Result<ShredReport, CryptoError> {
        check_room_id(room_id)?;
        self.last_now_ms = self.last_now_ms.max(now_ms);
        self.retention.insert(room_id.to_owned(), max_lifetime_ms);
        let cutoff = now_ms.saturating_sub(max_lifetime_ms);
        let mut report = ShredReport {
            room_id: room_id.to_owned(),
            cutoff_ms: cutoff,
            ..Default::default()
        };

        let own_outbound = self
            .outbound
            .get(room_id)
            .map(|s| (s.session_id(), s.last_message_ms.unwrap_or(s.created_at_ms)));
        if let Some((_, newest)) = &own_outbound {
            if *newest < cutoff {
                self.outbound.remove(room_id);
                report.rotated_outbound = true;
            }
        }

        let mut keys: Vec<SessionRef> = self
            .inbound
            .sessions
            .keys()
            .filter(|(room, _)| room == room_id)
            .cloned()
            .collect();
        keys.sort();
        for key in keys {
            // Our own messages are known to the outbound session even
            // before this device decrypted them.
            let own_newest = own_outbound
                .as_ref()
                .filter(|(id, _)| *id == key.1)
                .map(|(_, newest)| *newest);
            match self.judge(&key, cutoff, own_newest, now_ms) {
                Verdict::Keep => {}
                Verdict::Discard => {
                    self.discard_inbound(&key);
                    report.discarded_sessions.push(key.1);
                }
                Verdict::Ratchet(index) => {
                    self.ratchet_inbound(&key, index);
                    report.ratcheted_sessions.push((key.1, index));
                }
            }
        }
        Ok(report)
    }

    /// An expired event met a key we hold: ratchet the key past that
    /// message (its index is read from the ciphertext's header; nothing is
    /// decrypted). A key that arrived without its messages' times —
    /// restored from a backup, forwarded by another device — thus loses an
    /// expired message as soon as the message is seen, while later, live
    /// messages of the same session still decrypt.
    pub(crate) fn shred_for_expired_event(&mut self, room_id: &str, content: &Value) {
        let (Some(session_id), Some(ciphertext)) = (
            content.get("session_id").and_then(Value::as_str),
            content.get("ciphertext").and_then(Value::as_str),
        ) else {
            return;
        };
        let Ok(message) = vodozemac::megolm::MegolmMessage::from_base64(ciphertext) else {
            return;
        };
        let key = (room_id.to_owned(), session_id.to_owned());
        let index = message.message_index();
        let held = self.inbound.sessions.get(&key);
        if held.is_some_and(|s| s.first_known_index() <= index) {
            self.ratchet_inbound(&key, index.saturating_add(1));
        }
    }

    /// Forget a room's policy (its `m.room.retention` was removed). Keys
    /// already destroyed stay destroyed. Returns whether one was known.
    pub fn clear_retention(&mut self, room_id: &str) -> bool {
        self.retention.remove(room_id).is_some()
    }

    /// The `max_lifetime` last applied to a room, in milliseconds.
    pub fn retention_max_lifetime(&self, room_id: &str) -> Option<u64> {
        self.retention.get(room_id).copied()
    }

    /// Whether a message of `room_id` sent at `origin_server_ts` has expired
    /// under the room's known policy at the latest time a caller passed in.
    pub fn is_expired(&self, room_id: &str, origin_server_ts: u64) -> bool {
        self.retention
            .get(room_id)
            .is_some_and(|max| origin_server_ts < self.last_now_ms.saturating_sub(*max))
    }

    fn judge(
        &mut self,
        key: &SessionRef,
        cutoff: u64,
        own_newest: Option<u64>,
        now_ms: u64,
    ) -> Verdict {
        let Some(session) = self.inbound.sessions.get_mut(key) else {
            return Verdict::Keep;
        };
        let received_at = match session.received_at_ms {
            Some(at) => at,
            None => {
                // Stored before arrival times were recorded: count from now,
                // the earliest moment this device can vouch for.
                session.received_at_ms = Some(now_ms);
                self.inbound.dirty.mark(&session_record_id(&key.0, &key.1));
                now_ms
            }
        };
        let first_known = session.first_known_index();
        let timestamps = self.inbound.timestamps.get(key);
        let known: Vec<(u32, u64)> = timestamps
            .into_iter()
            .flatten()
            .filter(|(index, _)| **index >= first_known)
            .map(|(index, ts)| (*index, *ts))
            .collect();
        let newest = known
            .iter()
            .map(|(_, ts)| *ts)
            .chain(own_newest)
            .max()
            .unwrap_or(received_at);
        if newest < cutoff {
            return Verdict::Discard;
        }
        // The expired prefix, in index order: a message sent before an
        // expired one is taken to be at least as old (indices follow the
        // sender's order, timestamps the server's arrival order), while one
        // after the last expired message is given the benefit of the doubt.
        let mut keep_from = first_known;
        for (index, ts) in known {
            if ts >= cutoff {
                break;
            }
            keep_from = index.saturating_add(1);
        }
        if keep_from > first_known {
            Verdict::Ratchet(keep_from)
        } else {
            Verdict::Keep
        }
    }

    fn discard_inbound(&mut self, key: &SessionRef) {
        self.inbound.sessions.remove(key);
        self.inbound.seen.remove(key);
        self.inbound.timestamps.remove(key);
        self.inbound
            .removed
            .mark(&session_record_id(&key.0, &key.1));
        // An open request would let another device hand the key back.
        self.key_requests
            .retain(|_, r| !(r.room_id == key.0 && r.session_id == key.1));
    }

    fn ratchet_inbound(&mut self, key: &SessionRef, index: u32) {
        if let Some(session) = self.inbound.sessions.get_mut(key) {
            session.session.advance_to(index);
            session.retention_floor = Some(session.retention_floor.unwrap_or(0).max(index));
        }
        // The replay log of shredded indices would only keep their event
        // ids (metadata) around.
        if let Some(seen) = self.inbound.seen.get_mut(key) {
            seen.retain(|i, _| *i >= index);
        }
        if let Some(timestamps) = self.inbound.timestamps.get_mut(key) {
            timestamps.retain(|i, _| *i >= index);
        }
        self.inbound.dirty.mark(&session_record_id(&key.0, &key.1));
    }

    /// Rooms with a known retention policy.
    pub fn rooms_with_retention(&self) -> BTreeSet<String> {
        self.retention.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use vodozemac::megolm::{GroupSession, SessionConfig};

    use super::*;
    use crate::crypto::megolm::{InboundGroupSession, KeyOrigin};
    use crate::crypto::MEGOLM_V1;

    const ROOM: &str = "!r:x";
    const HOUR: u64 = 60 * 60 * 1000;

    /// A key that reaches further back (a forwarded or re-sent copy of the
    /// session at an earlier index) must not revive shredded messages.
    #[test]
    fn an_earlier_copy_of_a_ratcheted_session_does_not_undo_the_ratchet() {
        let sender = vodozemac::olm::Account::new();
        let mut outbound = GroupSession::new(SessionConfig::version_1());
        let early_key = outbound.session_key().to_base64();
        let session_id = outbound.session_id();
        let inbound = |key: &str| {
            InboundGroupSession::from_room_key(
                ROOM,
                &session_id,
                key,
                sender.curve25519_key(),
                sender.ed25519_key(),
                KeyOrigin::Direct {
                    sender: "@a:x".into(),
                },
            )
            .unwrap()
            .received_at(0)
        };
        let mut machine = OlmMachine::new("@b:x", "B").unwrap();
        machine.inbound.add(inbound(&early_key));
        for (i, ts) in [0, 50 * 60 * 1000].into_iter().enumerate() {
            let payload = json!({"type": "m.room.message", "content": {}, "room_id": ROOM});
            let content = json!({
                "algorithm": MEGOLM_V1,
                "session_id": session_id,
                "ciphertext": outbound.encrypt(payload.to_string()).to_base64(),
            });
            machine
                .inbound
                .decrypt(ROOM, &format!("$e{i}"), Some(ts), &content)
                .unwrap();
        }
        let report = machine.apply_retention(ROOM, HOUR, HOUR + 1).unwrap();
        assert_eq!(report.ratcheted_sessions, [(session_id.clone(), 1)]);

        machine.inbound.add(inbound(&early_key));
        let held = machine.inbound.get(ROOM, &session_id).unwrap();
        assert_eq!(held.first_known_index(), 1);
    }
}
