//! [`OlmMachine`]: the state of one device's end-to-end encryption, and the
//! request/response and sync plumbing around it. Room-key sharing, room
//! event encryption and to-device handling live in sibling modules as
//! further `impl OlmMachine` blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cloister_proto::sync::{DeviceLists, ToDeviceEvents};
use serde::de::DeserializeOwned;
use serde_json::Value;
use vodozemac::olm::IdentityKeys;

use super::account::Account;
use super::backup::BackupState;
use super::cross_signing::CrossSigningKeys;
use super::devices::{Device, DeviceStore, LocalTrust};
use super::error::CryptoError;
use super::events::CryptoEvent;
use super::identities::{DeviceTrust, UserIdentity};
use super::megolm::{InboundGroupSessions, OutboundGroupSession};
use super::olm::OlmSessions;
use super::persist::PersistState;
use super::requests::{
    DeviceRef, KeysClaimResponse, KeysQueryRequest, KeysQueryResponse, KeysUploadResponse,
    OutgoingRequest, PendingKind, RequestBody, RequestQueue, KEYS_TIMEOUT_MS,
};
use super::verification::Flow;
use super::zeroize_json;

/// What the crypto core needs from one `/sync` response.
#[derive(Debug, Clone, Default)]
pub struct SyncChanges {
    /// `to_device.events`, in order.
    pub to_device_events: Vec<Value>,
    /// `device_lists.changed`.
    pub device_lists_changed: Vec<String>,
    /// `device_lists.left`.
    pub device_lists_left: Vec<String>,
    /// `device_one_time_keys_count`.
    pub one_time_key_counts: BTreeMap<String, u64>,
    /// `device_unused_fallback_key_types`; `None` when the server omitted it.
    pub unused_fallback_key_types: Option<Vec<String>>,
    /// The current time in milliseconds since the Unix epoch.
    pub now_ms: u64,
}

impl SyncChanges {
    /// Pick the crypto-relevant parts
    /// ([`SyncCrypto`](cloister_proto::sync::SyncCrypto)) out of a raw
    /// `/sync` response body.
    pub fn from_sync_response(sync: &Value, now_ms: u64) -> Self {
        // Section by section, and events kept raw: a malformed part from a
        // broken server must not cost the rest, for to-device events carry
        // room keys and are gone once the next sync acknowledges them.
        let to_device: ToDeviceEvents<Value> = section(sync, "to_device");
        let device_lists: DeviceLists = section(sync, "device_lists");
        Self {
            to_device_events: to_device.events,
            device_lists_changed: device_lists.changed,
            device_lists_left: device_lists.left,
            one_time_key_counts: section(sync, "device_one_time_keys_count"),
            unused_fallback_key_types: section(sync, "device_unused_fallback_key_types"),
            now_ms,
        }
    }
}

/// One top-level field of a sync response; its default when absent or
/// malformed.
fn section<T: DeserializeOwned + Default>(sync: &Value, key: &str) -> T {
    sync.get(key)
        .and_then(|v| T::deserialize(v).ok())
        .unwrap_or_default()
}

/// An Olm-encrypted to-device message waiting for a session with its
/// recipient. Its content may hold key material and is wiped on drop.
pub(crate) struct QueuedOlmMessage {
    pub recipient: DeviceRef,
    pub event_type: String,
    pub content: Value,
}

impl Drop for QueuedOlmMessage {
    fn drop(&mut self) {
        zeroize_json(&mut self.content);
    }
}

/// A room key we asked our other devices for.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingKeyRequest {
    pub room_id: String,
    pub session_id: String,
}

/// One device's end-to-end encryption state. See the module docs of
/// [`crate::crypto`] for the sans-I/O contract.
pub struct OlmMachine {
    pub(crate) user_id: String,
    pub(crate) device_id: String,
    pub(crate) account: Account,
    pub(crate) devices: DeviceStore,
    pub(crate) olm: OlmSessions,
    pub(crate) outbound: HashMap<String, OutboundGroupSession>,
    pub(crate) inbound: InboundGroupSessions,
    pub(crate) requests: RequestQueue,
    pub(crate) olm_queue: Vec<QueuedOlmMessage>,
    /// Devices that need a fresh Olm session (wedged-session recovery).
    pub(crate) needs_new_session: BTreeSet<DeviceRef>,
    pub(crate) wedge_recovery_at: HashMap<DeviceRef, u64>,
    /// Devices a `/keys/claim` returned no usable key for, and when.
    pub(crate) unreachable: HashMap<DeviceRef, u64>,
    pub(crate) key_requests: HashMap<String, OutgoingKeyRequest>,
    /// Room → `max_lifetime` (ms) of its retention policy, as last applied.
    pub(crate) retention: BTreeMap<String, u64>,
    pub(crate) events: Vec<CryptoEvent>,
    /// The latest time a caller told us; used where a response arrives
    /// without one.
    pub(crate) last_now_ms: u64,
    /// What the store last saved.
    pub(crate) persist: PersistState,
    /// The private cross-signing keys this device holds.
    pub(crate) cross_signing: CrossSigningKeys,
    /// Interactive verifications by flow id (in memory only: their
    /// ephemeral keys cannot be stored).
    pub(crate) verifications: BTreeMap<String, Flow>,
    /// The key backup this device uploads to.
    pub(crate) backup: BackupState,
    /// Provisional id → event id of in-room verification requests sent.
    pub(crate) verification_aliases: HashMap<String, String>,
    /// Key requests of own devices that were not verified yet: (sender,
    /// content), answered once they are. In memory only.
    pub(crate) deferred_key_requests: Vec<(String, Value)>,
}

impl std::fmt::Debug for OlmMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Identifiers only: nothing secret, nothing that grows unboundedly.
        f.debug_struct("OlmMachine")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("ed25519", &self.account.identity_keys().ed25519.to_base64())
            .finish_non_exhaustive()
    }
}

/// `@localpart:server`, as [`cloister_proto::ids::parse_user_id`] reads it.
pub(crate) fn check_user_id(user_id: &str) -> Result<(), CryptoError> {
    if cloister_proto::ids::parse_user_id(user_id).is_some() {
        Ok(())
    } else {
        Err(CryptoError::InvalidUserId(user_id.to_owned()))
    }
}

/// `!opaque:server`, or `!opaque` (room version 12 ids have no server
/// part), as [`cloister_proto::ids::is_valid_room_id`] reads it.
pub(crate) fn check_room_id(room_id: &str) -> Result<(), CryptoError> {
    if cloister_proto::ids::is_valid_room_id(room_id) {
        Ok(())
    } else {
        Err(CryptoError::InvalidRoomId(room_id.to_owned()))
    }
}

impl OlmMachine {
    /// A new device with fresh identity keys.
    pub fn new(user_id: &str, device_id: &str) -> Result<Self, CryptoError> {
        check_user_id(user_id)?;
        if device_id.is_empty()
            || device_id.len() > 255
            || device_id.chars().any(|c| c.is_whitespace() || c == ':')
        {
            return Err(CryptoError::InvalidDeviceId(device_id.to_owned()));
        }
        let account = Account::new(user_id, device_id);
        let devices = DeviceStore::new(user_id, device_id, account.identity_keys());
        Ok(Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            account,
            devices,
            olm: OlmSessions::default(),
            outbound: HashMap::new(),
            inbound: InboundGroupSessions::default(),
            requests: RequestQueue::new(),
            olm_queue: Vec::new(),
            needs_new_session: BTreeSet::new(),
            wedge_recovery_at: HashMap::new(),
            unreachable: HashMap::new(),
            key_requests: HashMap::new(),
            retention: BTreeMap::new(),
            events: Vec::new(),
            last_now_ms: 0,
            persist: PersistState::default(),
            cross_signing: CrossSigningKeys::default(),
            verifications: BTreeMap::new(),
            backup: BackupState::default(),
            verification_aliases: HashMap::new(),
            deferred_key_requests: Vec::new(),
        })
    }

    /// The user this device belongs to.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// This device's id.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// This device's Ed25519 (fingerprint) and Curve25519 keys.
    pub fn identity_keys(&self) -> IdentityKeys {
        self.account.identity_keys()
    }

    /// This device's self-signed device keys, as uploaded.
    pub fn device_keys(&self) -> Result<Value, CryptoError> {
        self.account.device_keys()
    }

    /// Track users we share an encrypted room with, so that their devices
    /// are queried and kept up to date.
    pub fn update_tracked_users<S: AsRef<str>>(&mut self, users: &[S]) -> Result<(), CryptoError> {
        for user in users {
            check_user_id(user.as_ref())?;
        }
        self.devices.track_users(users.iter().map(AsRef::as_ref));
        Ok(())
    }

    /// The users whose devices are tracked (ourselves included).
    pub fn tracked_users(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .devices
            .users
            .iter()
            .filter(|(_, u)| u.tracked)
            .map(|(id, _)| id.clone())
            .collect();
        users.sort();
        users
    }

    /// Another (or our own) device's verified keys, if known.
    pub fn get_device(&self, user_id: &str, device_id: &str) -> Option<Device> {
        self.devices.get(user_id, device_id).cloned()
    }

    /// Every known device of `user_id` with verified keys.
    pub fn user_devices(&self, user_id: &str) -> Vec<Device> {
        self.devices.user_devices(user_id).cloned().collect()
    }

    /// `user_id`'s cross-signing identity, as the last `/keys/query` gave
    /// it (checked: every key chains to the master key).
    pub fn user_identity(&self, user_id: &str) -> Option<UserIdentity> {
        self.devices.identity(user_id).cloned()
    }

    /// Whether the local user verified `user_id`'s identity: their master
    /// key is signed by our user-signing key (or, for our own, by this
    /// device).
    pub fn is_identity_verified(&self, user_id: &str) -> bool {
        self.devices
            .identity(user_id)
            .is_some_and(|i| i.is_verified(self.devices.identity(&self.user_id)))
    }

    /// How far a known device can be trusted, from local decisions and
    /// cross-signing; None for a device we do not know.
    pub fn device_trust(&self, user_id: &str, device_id: &str) -> Option<DeviceTrust> {
        self.devices.device_trust(user_id, device_id)
    }

    /// Record the user's decision about a device. Blocking a device that
    /// holds a current room key rotates that room's key. Returns whether the
    /// device is known.
    pub fn set_local_trust(&mut self, user_id: &str, device_id: &str, trust: LocalTrust) -> bool {
        let known = self.devices.set_local_trust(user_id, device_id, trust);
        if known && trust == LocalTrust::Blocked {
            self.invalidate_sessions_shared_with(&(user_id.to_owned(), device_id.to_owned()));
        }
        if known && trust == LocalTrust::Verified {
            self.retry_deferred_key_requests();
        }
        known
    }

    /// Force the room's next message onto a new Megolm session (for example
    /// after a history-visibility change). Returns whether one existed.
    pub fn invalidate_group_session(&mut self, room_id: &str) -> bool {
        self.outbound.remove(room_id).is_some()
    }

    /// Warnings and notices gathered since the last call.
    pub fn take_events(&mut self) -> Vec<CryptoEvent> {
        std::mem::take(&mut self.events)
    }

    pub(crate) fn invalidate_sessions_shared_with(&mut self, device: &DeviceRef) {
        for session in self.outbound.values_mut() {
            if session.shared_with.contains(device) {
                session.invalidated = true;
            }
        }
    }

    /// Everything to send now: key uploads, device queries, Olm session
    /// claims, and to-device messages. Requests are handed out again until
    /// they are marked as sent.
    pub fn outgoing_requests(&mut self) -> Result<Vec<OutgoingRequest>, CryptoError> {
        if !self.requests.has_upload() {
            if let Some(upload) = self.account.keys_for_upload()? {
                self.requests
                    .push(RequestBody::KeysUpload(upload), PendingKind::Upload);
            }
        }
        self.queue_device_query(None);
        self.flush_olm_queue()?;
        self.queue_backup()?;
        Ok(self.requests.all())
    }

    /// Queue a `/keys/query` for outdated tracked users (limited to `only`
    /// when given) that no queued query already covers.
    pub(crate) fn queue_device_query(&mut self, only: Option<&BTreeSet<String>>) {
        let in_flight = self.requests.users_being_queried();
        let generations: HashMap<String, u64> = self
            .devices
            .users_to_query()
            .into_iter()
            .filter(|(user, _)| !in_flight.contains(user))
            .filter(|(user, _)| only.is_none_or(|set| set.contains(user)))
            .collect();
        if generations.is_empty() {
            return;
        }
        let device_keys = generations
            .keys()
            .map(|user| (user.clone(), Vec::new()))
            .collect();
        self.requests.push(
            RequestBody::KeysQuery(KeysQueryRequest {
                device_keys,
                timeout: KEYS_TIMEOUT_MS,
            }),
            PendingKind::Query { generations },
        );
    }

    /// Feed back the JSON response body of a request from
    /// [`outgoing_requests`](Self::outgoing_requests) or
    /// [`share_room_key`](Self::share_room_key) once the server accepted it.
    pub fn mark_request_as_sent(
        &mut self,
        request_id: &str,
        response: &Value,
    ) -> Result<(), CryptoError> {
        let kind = self
            .requests
            .get(request_id)
            .map(|p| p.kind.clone())
            .ok_or_else(|| CryptoError::UnknownRequest(request_id.to_owned()))?;
        // A response that does not parse leaves the request queued, to be
        // sent again, rather than losing what it was for.
        match kind {
            PendingKind::Upload => {
                let response: KeysUploadResponse = serde_json::from_value(response.clone())?;
                self.requests.take(request_id);
                self.account.mark_uploaded(&response.one_time_key_counts);
            }
            PendingKind::Query { generations } => {
                let response: KeysQueryResponse = serde_json::from_value(response.clone())?;
                self.requests.take(request_id);
                let outcome = self.devices.receive_query_response(response, &generations);
                for device in &outcome.removed {
                    self.invalidate_sessions_shared_with(device);
                }
                self.events.extend(outcome.events);
                // Cross-signing may have made an asking device verified.
                self.retry_deferred_key_requests();
            }
            PendingKind::Claim { devices } => {
                let response: KeysClaimResponse = serde_json::from_value(response.clone())?;
                self.requests.take(request_id);
                self.receive_claim_response(&devices, response)?;
            }
            PendingKind::ToDevice { .. } => {
                self.requests.take(request_id);
            }
            PendingKind::RoomEvent {
                verification_request,
            } => {
                self.requests.take(request_id);
                if let Some(provisional) = verification_request {
                    self.verification_request_sent(&provisional, response);
                }
            }
            PendingKind::Backup { sessions } => {
                self.requests.take(request_id);
                self.mark_backed_up(&sessions);
            }
            PendingKind::Signatures { user_id } => {
                self.requests.take(request_id);
                self.receive_signatures_response(&user_id, response)?;
            }
        }
        Ok(())
    }

    /// Take in what a sync returned. Returns the to-device events meant for
    /// the application (decrypted where they were encrypted); room keys and
    /// other crypto-internal events are consumed here and not returned.
    pub fn receive_sync_changes(&mut self, changes: SyncChanges) -> Vec<Value> {
        self.last_now_ms = self.last_now_ms.max(changes.now_ms);
        let valid = |u: &&String| check_user_id(u).is_ok();
        self.devices.mark_changed(
            changes
                .device_lists_changed
                .iter()
                .filter(valid)
                .map(String::as_str),
        );
        self.devices.mark_left(
            changes
                .device_lists_left
                .iter()
                .filter(valid)
                .map(String::as_str),
        );
        self.expire_verifications(changes.now_ms);
        let mut for_app = Vec::new();
        for event in changes.to_device_events {
            if let Some(event) = self.receive_to_device(event, changes.now_ms) {
                for_app.push(event);
            }
        }
        // While an upload is queued the server's counts are stale, and new
        // keys would be marked published by that upload without being in it.
        if !self.requests.has_upload() {
            self.account.update_key_counts(
                &changes.one_time_key_counts,
                changes.unused_fallback_key_types.as_deref(),
            );
        }
        for_app
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sync_changes_are_read_from_a_sync_response() {
        let sync = json!({
            "next_batch": "s1",
            "to_device": {"events": [{"type": "m.dummy", "sender": "@a:x", "content": {}}]},
            "device_lists": {"changed": ["@a:x"], "left": ["@b:x"]},
            "device_one_time_keys_count": {"signed_curve25519": 7},
            "device_unused_fallback_key_types": [],
        });
        let changes = SyncChanges::from_sync_response(&sync, 42);
        assert_eq!(changes.to_device_events.len(), 1);
        assert_eq!(changes.device_lists_changed, ["@a:x"]);
        assert_eq!(changes.device_lists_left, ["@b:x"]);
        assert_eq!(changes.one_time_key_counts["signed_curve25519"], 7);
        assert_eq!(changes.unused_fallback_key_types, Some(vec![]));
        assert_eq!(changes.now_ms, 42);

        // A server that omits the fallback field must not look like one
        // reporting the fallback key used.
        let changes = SyncChanges::from_sync_response(&json!({}), 0);
        assert_eq!(changes.unused_fallback_key_types, None);
        let null = json!({"device_unused_fallback_key_types": null});
        let changes = SyncChanges::from_sync_response(&null, 0);
        assert_eq!(changes.unused_fallback_key_types, None);

        // A malformed section costs only itself; odd events are kept for
        // the machine to judge one by one.
        let broken = json!({
            "to_device": {"events": [{"type": "m.dummy"}, 42]},
            "device_lists": {"changed": [7]},
            "device_one_time_keys_count": {"signed_curve25519": 3},
        });
        let changes = SyncChanges::from_sync_response(&broken, 0);
        assert_eq!(changes.to_device_events.len(), 2);
        assert!(changes.device_lists_changed.is_empty());
        assert_eq!(changes.one_time_key_counts["signed_curve25519"], 3);
    }

    #[test]
    fn ids_are_validated_and_debug_shows_no_secrets() {
        assert!(OlmMachine::new("alice", "D").is_err());
        assert!(OlmMachine::new("@alice:x", "").is_err());
        let machine = OlmMachine::new("@alice:x", "D").unwrap();
        let debug = format!("{machine:?}");
        assert!(debug.contains("@alice:x"));
        assert!(!debug.contains(&machine.identity_keys().curve25519.to_base64()));
        assert!(
            check_room_id("!opaque").is_ok(),
            "room version 12 ids have no server"
        );
        assert!(check_room_id("#alias:x").is_err());
    }
}
