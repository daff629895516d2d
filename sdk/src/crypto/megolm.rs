//! Megolm: room message encryption. vodozemac provides the ratchet; when to
//! rotate, whom a key went to, which keys to trust and replay detection are
//! this module's job.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cloister_proto::to_device::RoomKeyContent;
use serde_json::Value;
use vodozemac::megolm::{
    ExportedSessionKey, GroupSession, InboundGroupSession as VodozemacInbound, MegolmMessage,
    SessionConfig, SessionKey, SessionOrdering,
};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};
use zeroize::Zeroizing;

use super::error::CryptoError;
use super::persist::DirtySet;
use super::requests::DeviceRef;
use super::{describe_json_error, MEGOLM_V1};

const ONE_HOUR_MS: u64 = 60 * 60 * 1000;
const ONE_WEEK_MS: u64 = 7 * 24 * ONE_HOUR_MS;

/// A room's key rotation policy, from its `m.room.encryption` state event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncryptionSettings {
    /// Rotate after this many messages (clamped to 1–10,000).
    pub rotation_period_msgs: u64,
    /// Rotate after this long (clamped to one hour – one week).
    pub rotation_period_ms: u64,
}

impl Default for EncryptionSettings {
    fn default() -> Self {
        Self {
            rotation_period_msgs: 100,
            rotation_period_ms: ONE_WEEK_MS,
        }
    }
}

impl EncryptionSettings {
    /// Read `rotation_period_msgs` / `rotation_period_ms` from the content of
    /// an `m.room.encryption` event; missing or invalid values take the
    /// defaults.
    pub fn from_room_encryption_content(content: &Value) -> Self {
        let defaults = Self::default();
        Self {
            rotation_period_msgs: content
                .get("rotation_period_msgs")
                .and_then(Value::as_u64)
                .unwrap_or(defaults.rotation_period_msgs),
            rotation_period_ms: content
                .get("rotation_period_ms")
                .and_then(Value::as_u64)
                .unwrap_or(defaults.rotation_period_ms),
        }
        .clamped()
    }

    /// The bounds matrix-sdk-crypto applies: a room cannot ask for a key per
    /// message flood of sessions, nor keep one key for longer than a week.
    pub fn clamped(self) -> Self {
        Self {
            rotation_period_msgs: self.rotation_period_msgs.clamp(1, 10_000),
            rotation_period_ms: self.rotation_period_ms.clamp(ONE_HOUR_MS, ONE_WEEK_MS),
        }
    }
}

pub(crate) struct OutboundGroupSession {
    pub room_id: String,
    pub(crate) session: GroupSession,
    pub(crate) created_at_ms: u64,
    pub settings: EncryptionSettings,
    /// The devices the key went to (each from the index it was at then).
    pub shared_with: BTreeSet<DeviceRef>,
    /// Devices that could not be given the key (no Olm session).
    pub withheld: BTreeSet<DeviceRef>,
    /// Set when a recipient left or a device vanished: never encrypt again.
    pub invalidated: bool,
    /// When the latest message was encrypted: retention rotates the session
    /// once that message has expired.
    pub last_message_ms: Option<u64>,
}

impl OutboundGroupSession {
    pub(crate) fn new(room_id: &str, settings: EncryptionSettings, now_ms: u64) -> Self {
        Self {
            room_id: room_id.to_owned(),
            session: GroupSession::new(SessionConfig::version_1()),
            created_at_ms: now_ms,
            settings: settings.clamped(),
            shared_with: BTreeSet::new(),
            withheld: BTreeSet::new(),
            invalidated: false,
            last_message_ms: None,
        }
    }

    pub(crate) fn session_id(&self) -> String {
        self.session.session_id()
    }

    pub(crate) fn message_index(&self) -> u32 {
        self.session.message_index()
    }

    pub(crate) fn session_key(&self) -> SessionKey {
        self.session.session_key()
    }

    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.invalidated
            || u64::from(self.message_index()) >= self.settings.rotation_period_msgs
            || now_ms.saturating_sub(self.created_at_ms) >= self.settings.rotation_period_ms
    }

    /// The `m.room_key` content for this session at its current index, so
    /// that a device added now cannot read what was sent before. It holds
    /// the key: hand it to `olm::encrypt_for_device`, which wipes it.
    pub(crate) fn room_key_content(&self) -> Result<Value, CryptoError> {
        let content = RoomKeyContent {
            algorithm: MEGOLM_V1.to_owned(),
            room_id: self.room_id.clone(),
            session_id: self.session_id(),
            session_key: self.session_key().to_base64(),
        };
        Ok(serde_json::to_value(&content)?)
    }

    pub(crate) fn encrypt(&mut self, plaintext: &str, now_ms: u64) -> MegolmMessage {
        self.last_message_ms = Some(self.last_message_ms.unwrap_or(0).max(now_ms));
        self.session.encrypt(plaintext)
    }
}

/// Who a stored room key came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum KeyOrigin {
    /// Through an Olm `m.room_key` from this user.
    Direct { sender: String },
    /// Through `m.forwarded_room_key`; the chain lists the Curve25519 keys
    /// of every forwarder.
    Forwarded { forwarding_chain: Vec<String> },
}

pub(crate) struct InboundGroupSession {
    pub room_id: String,
    pub session_id: String,
    /// Curve25519 key of the device that created the session.
    pub sender_key: Curve25519PublicKey,
    /// Its Ed25519 key as claimed alongside the room key.
    pub signing_key: Ed25519PublicKey,
    pub origin: KeyOrigin,
    pub(crate) session: VodozemacInbound,
    /// When the key reached this device; `None` for sessions stored before
    /// this was recorded (retention then counts from when it first looks).
    pub received_at_ms: Option<u64>,
    /// Set once retention ratcheted the session forward: no copy of the key
    /// may bring back the indices below it.
    pub retention_floor: Option<u32>,
    /// Uploaded to the current key backup.
    pub backed_up: bool,
}

impl InboundGroupSession {
    pub(crate) fn from_room_key(
        room_id: &str,
        session_id: &str,
        session_key: &str,
        sender_key: Curve25519PublicKey,
        signing_key: Ed25519PublicKey,
        origin: KeyOrigin,
    ) -> Result<Self, CryptoError> {
        let session = match origin {
            KeyOrigin::Direct { .. } => {
                // Decoding errors can quote bytes of the key: not repeated.
                let key =
                    SessionKey::from_base64(session_key).map_err(|_| CryptoError::Malformed {
                        what: "room key",
                        reason: "the session key does not decode".to_owned(),
                    })?;
                VodozemacInbound::new(&key, SessionConfig::version_1())
            }
            KeyOrigin::Forwarded { .. } => {
                let key = ExportedSessionKey::from_base64(session_key).map_err(|_| {
                    CryptoError::Malformed {
                        what: "forwarded room key",
                        reason: "the session key does not decode".to_owned(),
                    }
                })?;
                VodozemacInbound::import(&key, SessionConfig::version_1())
            }
        };
        // The session id is the session's signing key; a key whose id does
        // not match was mislabelled or forged.
        if session.session_id() != session_id {
            return Err(CryptoError::Malformed {
                what: "room key",
                reason: "session_id does not match the session key".to_owned(),
            });
        }
        Ok(Self {
            room_id: room_id.to_owned(),
            session_id: session_id.to_owned(),
            sender_key,
            signing_key,
            origin,
            session,
            received_at_ms: None,
            retention_floor: None,
            backed_up: false,
        })
    }

    /// Who sent the room key directly (not for forwarded keys).
    pub(crate) fn origin_user(&self) -> Option<&str> {
        match &self.origin {
            KeyOrigin::Direct { sender } => Some(sender),
            KeyOrigin::Forwarded { .. } => None,
        }
    }

    /// The same session, noted as received at `now_ms`.
    pub(crate) fn received_at(mut self, now_ms: u64) -> Self {
        self.received_at_ms = Some(now_ms);
        self
    }

    pub(crate) fn first_known_index(&self) -> u32 {
        self.session.first_known_index()
    }

    pub(crate) fn export(&self) -> Zeroizing<String> {
        Zeroizing::new(self.session.export_at_first_known_index().to_base64())
    }

    fn is_forwarded(&self) -> bool {
        matches!(self.origin, KeyOrigin::Forwarded { .. })
    }
}

/// What became of a room key offered to the store.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AddOutcome {
    Added,
    /// An equal or better copy was already held.
    Kept,
    Rejected(&'static str),
}

/// Result of a Megolm decryption, before sender checks.
pub(crate) struct MegolmPlaintext {
    pub payload: Value,
    pub message_index: u32,
}

/// A (room id, session id) pair.
pub(crate) type SessionRef = (String, String);

#[derive(Default)]
pub(crate) struct InboundGroupSessions {
    pub(crate) sessions: HashMap<SessionRef, InboundGroupSession>,
    /// (room, session) → index → the event that used it, for replay
    /// detection.
    pub(crate) seen: HashMap<SessionRef, BTreeMap<u32, String>>,
    /// (room, session) → index → the `origin_server_ts` of the event that
    /// used it, so that retention knows when each message expires.
    pub(crate) timestamps: HashMap<SessionRef, BTreeMap<u32, u64>>,
    /// Sessions (by [`session_record_id`]) changed since last persisted.
    pub(crate) dirty: DirtySet,
    /// Sessions (by [`session_record_id`]) removed since last persisted,
    /// whose records the store must delete.
    pub(crate) removed: DirtySet,
}

/// The id under which an inbound session is persisted.
pub(crate) fn session_record_id(room_id: &str, session_id: &str) -> String {
    format!("{room_id}\n{session_id}")
}

impl InboundGroupSessions {
    /// Sessions not in the current backup yet.
    pub(crate) fn unbacked(&self) -> impl Iterator<Item = (&SessionRef, &InboundGroupSession)> {
        self.sessions.iter().filter(|(_, s)| !s.backed_up)
    }

    pub(crate) fn set_backed_up(&mut self, key: &SessionRef, backed_up: bool) {
        if let Some(session) = self.sessions.get_mut(key) {
            if session.backed_up != backed_up {
                session.backed_up = backed_up;
                self.dirty.mark(&session_record_id(&key.0, &key.1));
            }
        }
    }

    /// A new backup: every session goes up again.
    pub(crate) fn mark_all_unbacked(&mut self) {
        let keys: Vec<SessionRef> = self.sessions.keys().cloned().collect();
        for key in keys {
            self.set_backed_up(&key, false);
        }
    }

    pub(crate) fn get(&self, room_id: &str, session_id: &str) -> Option<&InboundGroupSession> {
        self.sessions
            .get(&(room_id.to_owned(), session_id.to_owned()))
    }

    pub(crate) fn add(&mut self, mut new: InboundGroupSession) -> AddOutcome {
        let id = (new.room_id.clone(), new.session_id.clone());
        let record_id = session_record_id(&id.0, &id.1);
        let Some(existing) = self.sessions.get_mut(&id) else {
            self.sessions.insert(id, new);
            self.dirty.mark(&record_id);
            return AddOutcome::Added;
        };
        // Whoever created the session first owns it: a second sender offering
        // the same id is not trusted to replace it.
        if existing.sender_key != new.sender_key || existing.signing_key != new.signing_key {
            return AddOutcome::Rejected("a session with this id from another device is held");
        }
        // A copy reaching further back must not revive messages retention
        // shredded: cut it to the same index before comparing.
        if let Some(floor) = existing.retention_floor {
            new.session.advance_to(floor);
            new.retention_floor = Some(floor);
        }
        match existing.session.compare(&mut new.session) {
            SessionOrdering::Unconnected => {
                AddOutcome::Rejected("the key does not belong to the held session")
            }
            SessionOrdering::Worse => {
                new.received_at_ms = existing.received_at_ms.or(new.received_at_ms);
                *existing = new;
                self.dirty.mark(&record_id);
                AddOutcome::Added
            }
            // A direct key at the same index is more trustworthy than a
            // forwarded one: replace the forwarded copy.
            SessionOrdering::Equal if existing.is_forwarded() && !new.is_forwarded() => {
                new.received_at_ms = existing.received_at_ms.or(new.received_at_ms);
                *existing = new;
                self.dirty.mark(&record_id);
                AddOutcome::Added
            }
            _ => AddOutcome::Kept,
        }
    }

    /// Decrypt the `m.room.encrypted` content of event `event_id` in
    /// `room_id`, refusing a (session, index) already used by another event.
    /// `origin_server_ts` is the event's, recorded against its index for
    /// retention.
    pub(crate) fn decrypt(
        &mut self,
        room_id: &str,
        event_id: &str,
        origin_server_ts: Option<u64>,
        content: &Value,
    ) -> Result<(MegolmPlaintext, &InboundGroupSession), CryptoError> {
        let malformed = |reason: &str| CryptoError::Malformed {
            what: "encrypted room event",
            reason: reason.to_owned(),
        };
        let algorithm = content
            .get("algorithm")
            .and_then(Value::as_str)
            .unwrap_or("");
        if algorithm != MEGOLM_V1 {
            return Err(CryptoError::UnsupportedAlgorithm(algorithm.to_owned()));
        }
        let session_id = content
            .get("session_id")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no session_id"))?;
        let ciphertext = content
            .get("ciphertext")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no ciphertext"))?;
        let message = MegolmMessage::from_base64(ciphertext)
            .map_err(|e| CryptoError::MegolmDecryption(e.to_string()))?;
        let key = (room_id.to_owned(), session_id.to_owned());
        let stored = self
            .sessions
            .get_mut(&key)
            .ok_or_else(|| CryptoError::MissingRoomKey {
                room_id: room_id.to_owned(),
                session_id: session_id.to_owned(),
            })?;
        let decrypted = stored
            .session
            .decrypt(&message)
            .map_err(|e| CryptoError::MegolmDecryption(e.to_string()))?;
        let plaintext = Zeroizing::new(decrypted.plaintext);
        let index = decrypted.message_index;

        let seen = self.seen.entry(key.clone()).or_default();
        match seen.get(&index) {
            Some(first) if first != event_id => {
                return Err(CryptoError::Replay {
                    session_id: session_id.to_owned(),
                    index,
                    first_event_id: first.clone(),
                })
            }
            Some(_) => {}
            None => {
                seen.insert(index, event_id.to_owned());
                self.dirty.mark(&session_record_id(room_id, session_id));
            }
        }
        if let Some(ts) = origin_server_ts {
            let timestamps = self.timestamps.entry(key).or_default();
            if timestamps.insert(index, ts) != Some(ts) {
                self.dirty.mark(&session_record_id(room_id, session_id));
            }
        }
        let payload: Value =
            serde_json::from_slice(&plaintext).map_err(|e| CryptoError::Malformed {
                what: "Megolm payload",
                reason: describe_json_error(&e),
            })?;
        let session = self
            .get(room_id, session_id)
            .ok_or_else(|| CryptoError::MissingRoomKey {
                room_id: room_id.to_owned(),
                session_id: session_id.to_owned(),
            })?;
        Ok((
            MegolmPlaintext {
                payload,
                message_index: index,
            },
            session,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_read_and_clamped() {
        let s = EncryptionSettings::from_room_encryption_content(&json!({
            "algorithm": MEGOLM_V1, "rotation_period_msgs": 0, "rotation_period_ms": 5
        }));
        assert_eq!(s.rotation_period_msgs, 1);
        assert_eq!(s.rotation_period_ms, ONE_HOUR_MS);
        let s = EncryptionSettings::from_room_encryption_content(&json!({
            "rotation_period_msgs": 1_000_000, "rotation_period_ms": u64::MAX
        }));
        assert_eq!(s.rotation_period_msgs, 10_000);
        assert_eq!(s.rotation_period_ms, ONE_WEEK_MS);
        let s = EncryptionSettings::from_room_encryption_content(&json!({}));
        assert_eq!(s, EncryptionSettings::default());
        assert_eq!(s.rotation_period_msgs, 100);
    }

    #[test]
    fn outbound_expires_by_count_and_age() {
        let settings = EncryptionSettings {
            rotation_period_msgs: 2,
            rotation_period_ms: ONE_HOUR_MS,
        };
        let mut session = OutboundGroupSession::new("!r", settings, 1_000);
        assert!(!session.is_expired(1_000));
        session.encrypt("a", 1_000);
        assert!(!session.is_expired(1_000));
        session.encrypt("b", 1_000);
        assert!(session.is_expired(1_000));

        let session = OutboundGroupSession::new("!r", settings, 1_000);
        assert!(!session.is_expired(1_000 + ONE_HOUR_MS - 1));
        assert!(session.is_expired(1_000 + ONE_HOUR_MS));
    }

    #[test]
    fn a_later_key_does_not_replace_an_earlier_one_and_a_foreign_one_is_refused() {
        let mut outbound = GroupSession::new(SessionConfig::version_1());
        let early = outbound.session_key().to_base64();
        outbound.encrypt("x");
        let late = outbound.session_key().to_base64();
        let id = outbound.session_id();
        let owner = vodozemac::olm::Account::new();
        let make = |key: &str, curve: Curve25519PublicKey| {
            InboundGroupSession::from_room_key(
                "!r",
                &id,
                key,
                curve,
                owner.ed25519_key(),
                KeyOrigin::Direct {
                    sender: "@a:x".into(),
                },
            )
            .unwrap()
        };
        let mut store = InboundGroupSessions::default();
        assert_eq!(
            store.add(make(&late, owner.curve25519_key())),
            AddOutcome::Added
        );
        assert_eq!(
            store.add(make(&late, owner.curve25519_key())),
            AddOutcome::Kept
        );
        assert_eq!(
            store.add(make(&early, owner.curve25519_key())),
            AddOutcome::Added
        );
        assert_eq!(store.get("!r", &id).unwrap().first_known_index(), 0);
        assert_eq!(
            store.add(make(&late, owner.curve25519_key())),
            AddOutcome::Kept
        );
        let other = vodozemac::olm::Account::new().curve25519_key();
        assert!(matches!(
            store.add(make(&early, other)),
            AddOutcome::Rejected(_)
        ));

        // A key labelled with another session's id is refused outright.
        let wrong = GroupSession::new(SessionConfig::version_1())
            .session_key()
            .to_base64();
        assert!(InboundGroupSession::from_room_key(
            "!r",
            &id,
            &wrong,
            owner.curve25519_key(),
            owner.ed25519_key(),
            KeyOrigin::Direct {
                sender: "@a:x".into()
            },
        )
        .is_err());
    }
}
