//! TEST DOUBLE: a tiny in-memory stand-in for the homeserver's key and
//! to-device endpoints (`/keys/upload`, `/keys/query`, `/keys/claim`,
//! `/sendToDevice`) and the crypto-relevant parts of `/sync`.
//!
//! It exists only so the crypto core's tests can run several simulated
//! devices without a network. It is not the Cloister server and implements
//! no more of it than these tests need; the end-to-end tests replace it with
//! the real server running as a process.
//!
//! Simplification: every registered device shares a room with every other,
//! so a key change of any user is announced to all devices.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use cloister_sdk::crypto::{
    EncryptionSettings, OlmMachine, OutgoingRequest, RequestBody, SyncChanges,
};
use serde_json::{json, Value};

type DeviceKey = (String, String);

pub(crate) const ROOM: &str = "!room:cloister.test";
pub(crate) const ALICE: &str = "@alice:cloister.test";
pub(crate) const BOB: &str = "@bob:cloister.test";
pub(crate) const CAROL: &str = "@carol:cloister.test";
pub(crate) const HOUR_MS: u64 = 60 * 60 * 1000;
/// A fixed, arbitrary "now": the core never reads a clock.
pub(crate) const T0: u64 = 1_700_000_000_000;

pub(crate) fn settings() -> EncryptionSettings {
    EncryptionSettings::default()
}

/// The Megolm session an encrypted room event used.
pub(crate) fn session_id(event: &Value) -> String {
    event["content"]["session_id"].as_str().unwrap().to_owned()
}

#[derive(Default)]
pub(crate) struct FakeHomeserver {
    device_keys: BTreeMap<String, BTreeMap<String, Value>>,
    one_time_keys: BTreeMap<DeviceKey, BTreeMap<String, Value>>,
    /// The fallback key and whether a claim has handed it out.
    fallback_keys: BTreeMap<DeviceKey, (String, Value, bool)>,
    to_device: BTreeMap<DeviceKey, VecDeque<Value>>,
    device_list_changes: BTreeMap<DeviceKey, BTreeSet<String>>,
    seen_txns: BTreeSet<(String, String, String)>,
    next_event: u64,
    /// Room events sent (in-room verification), in order; all in one room.
    room_events: Vec<Value>,
    /// Key backup: room → session → key data (one backup version).
    backup: BTreeMap<String, BTreeMap<String, Value>>,
}

impl FakeHomeserver {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn announce_change(&mut self, user: &str) {
        for device in self.all_devices() {
            self.device_list_changes
                .entry(device)
                .or_default()
                .insert(user.to_owned());
        }
    }

    fn all_devices(&self) -> Vec<DeviceKey> {
        self.device_keys
            .iter()
            .flat_map(|(u, ds)| ds.keys().map(move |d| (u.clone(), d.clone())))
            .collect()
    }

    /// Answer one request as `user`/`device` would see the server answer it.
    pub(crate) fn handle(&mut self, user: &str, device: &str, request: &OutgoingRequest) -> Value {
        let me = (user.to_owned(), device.to_owned());
        match &request.body {
            RequestBody::KeysUpload(upload) => {
                if let Some(keys) = &upload.device_keys {
                    let known = self.device_keys.get(user).and_then(|d| d.get(device));
                    if known != Some(keys) {
                        self.device_keys
                            .entry(user.to_owned())
                            .or_default()
                            .insert(device.to_owned(), keys.clone());
                        self.announce_change(user);
                    }
                }
                let otks = self.one_time_keys.entry(me.clone()).or_default();
                for (id, key) in &upload.one_time_keys {
                    otks.insert(id.clone(), key.clone());
                }
                if let Some((id, key)) = upload.fallback_keys.iter().next() {
                    self.fallback_keys
                        .insert(me.clone(), (id.clone(), key.clone(), false));
                }
                json!({"one_time_key_counts": {"signed_curve25519": self.one_time_keys[&me].len()}})
            }
            RequestBody::KeysQuery(query) => {
                let mut device_keys = serde_json::Map::new();
                for queried in query.device_keys.keys() {
                    let devices = self.device_keys.get(queried).cloned().unwrap_or_default();
                    device_keys.insert(queried.clone(), json!(devices));
                }
                json!({"device_keys": device_keys, "failures": {}})
            }
            RequestBody::KeysClaim(claim) => {
                let mut result: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
                for (claimed_user, devices) in &claim.one_time_keys {
                    for claimed_device in devices.keys() {
                        if let Some((id, key)) = self.claim_one(claimed_user, claimed_device) {
                            result
                                .entry(claimed_user.clone())
                                .or_default()
                                .insert(claimed_device.clone(), json!({ id: key }));
                        }
                    }
                }
                json!({"one_time_keys": result, "failures": {}})
            }
            RequestBody::ToDevice(to_device) => {
                let txn = (user.to_owned(), device.to_owned(), to_device.txn_id.clone());
                if !self.seen_txns.insert(txn) {
                    return json!({});
                }
                for (target_user, devices) in &to_device.messages {
                    for (target_device, content) in devices {
                        let targets: Vec<String> = if target_device == "*" {
                            self.device_keys
                                .get(target_user)
                                .map(|d| d.keys().cloned().collect())
                                .unwrap_or_default()
                        } else {
                            vec![target_device.clone()]
                        };
                        for target in targets {
                            self.to_device
                                .entry((target_user.clone(), target))
                                .or_default()
                                .push_back(json!({
                                    "type": to_device.event_type,
                                    "sender": user,
                                    "content": content,
                                }));
                        }
                    }
                }
                json!({})
            }
            RequestBody::RoomEvent {
                room_id,
                event_type,
                content,
                ..
            } => {
                let event_id = self.new_event_id();
                self.room_events.push(json!({
                    "type": event_type,
                    "sender": user,
                    "event_id": event_id,
                    "room_id": room_id,
                    "origin_server_ts": T0,
                    "content": content,
                }));
                json!({ "event_id": event_id })
            }
            RequestBody::BackupKeys { body, .. } => {
                let rooms = body["rooms"].as_object().cloned().unwrap_or_default();
                for (room, sessions) in rooms {
                    let sessions = sessions["sessions"].as_object().cloned().unwrap_or_default();
                    self.backup.entry(room).or_default().extend(sessions);
                }
                let count: usize = self.backup.values().map(BTreeMap::len).sum();
                json!({ "etag": count.to_string(), "count": count })
            }
            RequestBody::SignaturesUpload(_) => panic!(
                "the test double keeps no cross-signing keys: test signatures against the real server (tests/tests/sdk_verification.rs)"
            ),
        }
    }

    /// Each one-time key is handed out once; when none are left the
    /// fallback key is, and stays, but is marked used.
    fn claim_one(&mut self, user: &str, device: &str) -> Option<(String, Value)> {
        let id = (user.to_owned(), device.to_owned());
        if let Some(otks) = self.one_time_keys.get_mut(&id) {
            if let Some(first) = otks.keys().next().cloned() {
                let key = otks.remove(&first)?;
                return Some((first, key));
            }
        }
        let (key_id, key, used) = self.fallback_keys.get_mut(&id)?;
        *used = true;
        Some((key_id.clone(), key.clone()))
    }

    /// The crypto part of a `/sync` for one device; to-device events are
    /// handed over once.
    pub(crate) fn sync(&mut self, user: &str, device: &str, now_ms: u64) -> SyncChanges {
        let id = (user.to_owned(), device.to_owned());
        let to_device_events = self
            .to_device
            .remove(&id)
            .map(Vec::from)
            .unwrap_or_default();
        let changed = self
            .device_list_changes
            .remove(&id)
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        let count = self.one_time_keys.get(&id).map_or(0, BTreeMap::len) as u64;
        let unused_fallback = match self.fallback_keys.get(&id) {
            Some((_, _, false)) => vec!["signed_curve25519".to_owned()],
            _ => vec![],
        };
        SyncChanges {
            to_device_events,
            device_lists_changed: changed,
            device_lists_left: vec![],
            one_time_key_counts: BTreeMap::from([("signed_curve25519".to_owned(), count)]),
            unused_fallback_key_types: Some(unused_fallback),
            now_ms,
        }
    }

    /// Pending to-device events for a device, without delivering them.
    pub(crate) fn peek_to_device(&self, user: &str, device: &str) -> Vec<Value> {
        self.to_device
            .get(&(user.to_owned(), device.to_owned()))
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Put a to-device event in a device's inbox as if the server sent it.
    pub(crate) fn inject_to_device(&mut self, user: &str, device: &str, event: Value) {
        self.to_device
            .entry((user.to_owned(), device.to_owned()))
            .or_default()
            .push_back(event);
    }

    pub(crate) fn delete_device(&mut self, user: &str, device: &str) {
        if let Some(devices) = self.device_keys.get_mut(user) {
            devices.remove(device);
        }
        let id = (user.to_owned(), device.to_owned());
        self.one_time_keys.remove(&id);
        self.fallback_keys.remove(&id);
        self.announce_change(user);
    }

    /// Overwrite a device's published keys, as a malicious server (or a
    /// reused device id) would, and announce the change.
    pub(crate) fn replace_device_keys(&mut self, user: &str, device: &str, keys: Value) {
        self.device_keys
            .entry(user.to_owned())
            .or_default()
            .insert(device.to_owned(), keys);
        self.announce_change(user);
    }

    /// Claim every one-time key and the fallback key of a device, as heavy
    /// use by other devices would.
    pub(crate) fn exhaust_keys(&mut self, user: &str, device: &str) {
        let id = (user.to_owned(), device.to_owned());
        self.one_time_keys.remove(&id);
        if let Some(fallback) = self.fallback_keys.get_mut(&id) {
            fallback.2 = true;
        }
    }

    /// Swap the public key inside each of a device's one-time keys for
    /// another one, leaving the device's signature as it was.
    pub(crate) fn tamper_one_time_keys(&mut self, user: &str, device: &str, other_key: &str) {
        if let Some(otks) = self
            .one_time_keys
            .get_mut(&(user.to_owned(), device.to_owned()))
        {
            for key in otks.values_mut() {
                key["key"] = json!(other_key);
            }
        }
    }

    pub(crate) fn one_time_key_count(&self, user: &str, device: &str) -> usize {
        self.one_time_keys
            .get(&(user.to_owned(), device.to_owned()))
            .map_or(0, BTreeMap::len)
    }

    /// The room events sent since the last call, as a timeline delivers
    /// them (to every member, the sender included).
    pub(crate) fn take_room_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.room_events)
    }

    /// The backup as `GET /room_keys/keys` returns it.
    pub(crate) fn backup_keys(&self) -> Value {
        let rooms: serde_json::Map<String, Value> = self
            .backup
            .iter()
            .map(|(room, sessions)| (room.clone(), json!({ "sessions": sessions })))
            .collect();
        json!({ "rooms": rooms })
    }

    pub(crate) fn new_event_id(&mut self) -> String {
        self.next_event += 1;
        format!("$event{}", self.next_event)
    }
}

/// Send every request the machine has and feed back the responses, until
/// it has nothing left to send.
pub(crate) fn drive(server: &mut FakeHomeserver, machine: &mut OlmMachine) {
    for _ in 0..20 {
        let requests = machine.outgoing_requests().expect("outgoing requests");
        if requests.is_empty() {
            return;
        }
        for request in requests {
            let response = server.handle(machine.user_id(), machine.device_id(), &request);
            machine
                .mark_request_as_sent(&request.request_id, &response)
                .expect("mark request as sent");
        }
    }
    panic!("the machine kept producing requests");
}

/// A new device whose keys are on the server.
pub(crate) fn login(server: &mut FakeHomeserver, user: &str, device: &str) -> OlmMachine {
    let mut machine = OlmMachine::new(user, device).expect("new machine");
    drive(server, &mut machine);
    machine
}

/// One sync round: take what the server has for the device, then send what
/// that made necessary. Returns the to-device events for the application.
pub(crate) fn sync(
    server: &mut FakeHomeserver,
    machine: &mut OlmMachine,
    now_ms: u64,
) -> Vec<Value> {
    let changes = server.sync(machine.user_id(), machine.device_id(), now_ms);
    let events = machine.receive_sync_changes(changes);
    drive(server, machine);
    events
}

/// Share the room key the way an application does: call `share_room_key`
/// and send what it returns until it returns nothing.
pub(crate) fn share(
    server: &mut FakeHomeserver,
    machine: &mut OlmMachine,
    room_id: &str,
    members: &[&str],
    settings: EncryptionSettings,
    now_ms: u64,
) {
    for _ in 0..10 {
        let requests = machine
            .share_room_key(room_id, members, settings, now_ms)
            .expect("share room key");
        if requests.is_empty() {
            return;
        }
        for request in requests {
            let response = server.handle(machine.user_id(), machine.device_id(), &request);
            machine
                .mark_request_as_sent(&request.request_id, &response)
                .expect("mark request as sent");
        }
    }
    panic!("share_room_key kept producing requests");
}

/// Share the key if needed, encrypt a text message and return the event as
/// the server would deliver it in the room timeline.
pub(crate) fn send_text(
    server: &mut FakeHomeserver,
    machine: &mut OlmMachine,
    room_id: &str,
    members: &[&str],
    settings: EncryptionSettings,
    body: &str,
    now_ms: u64,
) -> Value {
    share(server, machine, room_id, members, settings, now_ms);
    let content = machine
        .encrypt_room_event(
            room_id,
            "m.room.message",
            &json!({"msgtype": "m.text", "body": body}),
            now_ms,
        )
        .expect("encrypt room event");
    json!({
        "type": "m.room.encrypted",
        "event_id": server.new_event_id(),
        "sender": machine.user_id(),
        "room_id": room_id,
        "origin_server_ts": now_ms,
        "content": content,
    })
}

/// The `body` of a decrypted text message.
pub(crate) fn body_of(machine: &mut OlmMachine, room_id: &str, event: &Value) -> String {
    let decrypted = machine
        .decrypt_room_event(room_id, event)
        .expect("decrypt room event");
    decrypted.event["content"]["body"]
        .as_str()
        .expect("a text body")
        .to_owned()
}
