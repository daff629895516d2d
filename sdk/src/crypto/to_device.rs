//! Incoming to-device events: Olm decryption, room keys, wedged-session
//! recovery, and room-key requests between the user's own devices.

use cloister_proto::to_device::{ForwardedRoomKeyContent, RoomKeyContent};
use serde_json::{json, Value};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};

use super::error::CryptoError;
use super::events::CryptoEvent;
use super::machine::{check_room_id, OlmMachine, OutgoingKeyRequest, QueuedOlmMessage};
use super::megolm::{AddOutcome, InboundGroupSession, KeyOrigin};
use super::olm::{self, parse_envelope, DecryptedOlm, OlmEnvelope};
use super::requests::{PendingKind, RequestBody, ToDeviceRequest};
use super::verification::VERIFICATION_EVENTS;

/// Requests of not-yet-verified own devices kept for a later answer.
const MAX_DEFERRED_KEY_REQUESTS: usize = 256;
use super::{describe_json_error, zeroize_json, MEGOLM_V1};

/// A new Olm session is made at most this often per device, so that a
/// peer sending garbage cannot make us burn its one-time keys.
const WEDGE_RECOVERY_INTERVAL_MS: u64 = 60 * 60 * 1000;

impl OlmMachine {
    /// Handle one to-device event; returns it (decrypted) if it is for the
    /// application rather than for the crypto core.
    pub(crate) fn receive_to_device(&mut self, event: Value, now_ms: u64) -> Option<Value> {
        let event_type = event.get("type").and_then(Value::as_str).unwrap_or("");
        match event_type {
            "m.room.encrypted" => self.receive_encrypted_to_device(&event, now_ms),
            "m.room_key_request" => {
                self.receive_key_request(&event);
                None
            }
            t if VERIFICATION_EVENTS.contains(&t) => {
                self.receive_verification_event(&event, now_ms);
                None
            }
            "m.room_key" | "m.forwarded_room_key" => {
                // Keys are only ever accepted over Olm, where the sender is
                // authenticated.
                self.events.push(CryptoEvent::RoomKeyRejected {
                    sender: sender_of(&event),
                    reason: "room key sent unencrypted".to_owned(),
                });
                None
            }
            _ => Some(event),
        }
    }

    fn receive_encrypted_to_device(&mut self, event: &Value, now_ms: u64) -> Option<Value> {
        let own_key = self.account.identity_keys().curve25519;
        let envelope = match parse_envelope(event, &own_key) {
            Ok(envelope) => envelope,
            Err(error) => {
                self.events.push(CryptoEvent::UndecryptableToDevice {
                    sender: sender_of(event),
                    reason: error.to_string(),
                });
                return None;
            }
        };
        let result = olm::decrypt(
            &mut self.account,
            &mut self.olm,
            &self.devices,
            &self.user_id,
            &envelope,
        );
        match result {
            Ok(decrypted) => {
                if decrypted.sender_device.is_none() {
                    // Learn the sender's devices so later checks can bind
                    // this session to a known device.
                    let sender = [decrypted.sender.as_str()];
                    self.devices.track_users(sender);
                    self.devices.mark_changed(sender);
                }
                self.handle_decrypted(decrypted)
            }
            Err(error) => {
                let wedged = matches!(
                    error,
                    CryptoError::OlmDecryption { .. } | CryptoError::OlmSessionCreation(_)
                );
                self.events.push(CryptoEvent::UndecryptableToDevice {
                    sender: envelope.sender.clone(),
                    reason: error.to_string(),
                });
                if wedged {
                    self.start_wedge_recovery(&envelope, now_ms);
                }
                None
            }
        }
    }

    fn handle_decrypted(&mut self, mut decrypted: DecryptedOlm) -> Option<Value> {
        let result = match decrypted.event_type.as_str() {
            "m.room_key" => {
                self.receive_room_key(&mut decrypted);
                None
            }
            "m.forwarded_room_key" => {
                self.receive_forwarded_room_key(&mut decrypted);
                None
            }
            "m.dummy" => None,
            t if VERIFICATION_EVENTS.contains(&t) => {
                let event = json!({
                    "type": t,
                    "sender": decrypted.sender,
                    "content": decrypted.content.take(),
                });
                self.receive_verification_event(&event, self.last_now_ms);
                None
            }
            _ => Some(json!({
                "type": decrypted.event_type,
                "sender": decrypted.sender,
                "sender_device": decrypted.sender_device.as_ref().map(|d| d.device_id.clone()),
                "sender_key": decrypted.sender_key.to_base64(),
                "content": decrypted.content.take(),
            })),
        };
        zeroize_json(&mut decrypted.content);
        result
    }

    fn receive_room_key(&mut self, decrypted: &mut DecryptedOlm) {
        let reject = |machine: &mut Self, reason: String| {
            machine.events.push(CryptoEvent::RoomKeyRejected {
                sender: decrypted.sender.clone(),
                reason,
            });
        };
        let content: RoomKeyContent = match serde_json::from_value(decrypted.content.take()) {
            Ok(content) => content,
            Err(e) => {
                return reject(
                    self,
                    format!("malformed m.room_key: {}", describe_json_error(&e)),
                )
            }
        };
        if content.algorithm != MEGOLM_V1 {
            return reject(
                self,
                format!("unsupported algorithm {:?}", content.algorithm),
            );
        }
        if check_room_id(&content.room_id).is_err() {
            return reject(self, "invalid room id".to_owned());
        }
        let session = InboundGroupSession::from_room_key(
            &content.room_id,
            &content.session_id,
            &content.session_key,
            decrypted.sender_key,
            decrypted.sender_ed25519,
            KeyOrigin::Direct {
                sender: decrypted.sender.clone(),
            },
        );
        self.store_room_key(&decrypted.sender, session, false);
    }

    pub(crate) fn store_room_key(
        &mut self,
        sender: &str,
        session: Result<InboundGroupSession, CryptoError>,
        forwarded: bool,
    ) -> bool {
        let session = match session {
            // Sync handling sets the time before to-device events are read.
            Ok(session) => session.received_at(self.last_now_ms),
            Err(e) => {
                self.events.push(CryptoEvent::RoomKeyRejected {
                    sender: sender.to_owned(),
                    reason: e.to_string(),
                });
                return false;
            }
        };
        let (room_id, session_id) = (session.room_id.clone(), session.session_id.clone());
        match self.inbound.add(session) {
            AddOutcome::Added => {
                self.events.push(CryptoEvent::RoomKeyReceived {
                    sender: sender.to_owned(),
                    room_id,
                    session_id,
                    forwarded,
                });
                true
            }
            AddOutcome::Kept => false,
            AddOutcome::Rejected(reason) => {
                self.events.push(CryptoEvent::RoomKeyRejected {
                    sender: sender.to_owned(),
                    reason: reason.to_owned(),
                });
                false
            }
        }
    }

    fn receive_forwarded_room_key(&mut self, decrypted: &mut DecryptedOlm) {
        let sender = decrypted.sender.clone();
        let reject = |machine: &mut Self, reason: &str| {
            machine.events.push(CryptoEvent::RoomKeyRejected {
                sender: sender.clone(),
                reason: reason.to_owned(),
            });
        };
        // Only our own devices, and only ones the user verified, may hand us
        // keys we did not get from the session's creator.
        // Verified locally or through cross-signing, as for answering
        // requests.
        let from_verified_own_device = decrypted.sender == self.user_id
            && decrypted.sender_device.as_ref().is_some_and(|d| {
                d.device_id != self.device_id
                    && self.devices.device_trust(&self.user_id, &d.device_id)
                        == Some(super::identities::DeviceTrust::Verified)
            });
        if !from_verified_own_device {
            return reject(self, "forwarded key not from a verified device of our own");
        }
        let content: ForwardedRoomKeyContent =
            match serde_json::from_value(decrypted.content.take()) {
                Ok(content) => content,
                Err(_) => return reject(self, "malformed m.forwarded_room_key"),
            };
        if content.algorithm != MEGOLM_V1 {
            return reject(self, "unsupported algorithm");
        }
        let request_id = self
            .key_requests
            .iter()
            .find(|(_, r)| r.room_id == content.room_id && r.session_id == content.session_id)
            .map(|(id, _)| id.clone());
        let Some(request_id) = request_id else {
            return reject(self, "forwarded key that was not requested");
        };
        let (Ok(sender_key), Ok(signing_key)) = (
            Curve25519PublicKey::from_base64(&content.sender_key),
            Ed25519PublicKey::from_base64(&content.sender_claimed_ed25519_key),
        ) else {
            return reject(self, "invalid keys in m.forwarded_room_key");
        };
        let mut chain = content.forwarding_curve25519_key_chain.clone();
        chain.push(decrypted.sender_key.to_base64());
        let session = InboundGroupSession::from_room_key(
            &content.room_id,
            &content.session_id,
            &content.session_key,
            sender_key,
            signing_key,
            KeyOrigin::Forwarded {
                forwarding_chain: chain,
            },
        );
        if self.store_room_key(&sender, session, true) {
            self.key_requests.remove(&request_id);
            self.queue_key_request_message(json!({
                "action": "request_cancellation",
                "request_id": request_id,
                "requesting_device_id": self.device_id,
            }));
        }
    }

    /// Answer `m.room_key_request` from our own verified devices (marked so
    /// here, or cross-signed by our verified identity) with the key,
    /// exported at the first index we know.
    fn receive_key_request(&mut self, event: &Value) {
        let sender = sender_of(event);
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        let request_id = content
            .get("request_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        match content.get("action").and_then(Value::as_str) {
            Some("request") => self.answer_key_request(sender, content),
            Some("request_cancellation") => {
                let request_id = request_id.to_owned();
                self.deferred_key_requests.retain(|(user, c)| {
                    !(user == &sender && c["request_id"] == request_id.as_str())
                });
            }
            _ => {}
        }
    }

    /// Answer the requests of own devices that were not verified when they
    /// asked and are now (by emoji, by the user's decision, or because our
    /// identity now signs them).
    pub(crate) fn retry_deferred_key_requests(&mut self) {
        let ready: Vec<(String, Value)> = {
            let devices = &self.devices;
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.deferred_key_requests)
                .into_iter()
                .partition(|(user, content)| {
                    let device = content["requesting_device_id"].as_str().unwrap_or("");
                    devices.device_trust(user, device) == Some(super::DeviceTrust::Verified)
                });
            self.deferred_key_requests = later;
            now
        };
        for (sender, content) in ready {
            self.answer_key_request(sender, content);
        }
    }

    fn answer_key_request(&mut self, sender: String, content: Value) {
        let device_id = content
            .get("requesting_device_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let ignore = |machine: &mut Self, reason: &str| {
            machine.events.push(CryptoEvent::KeyRequestIgnored {
                user_id: sender.clone(),
                device_id: device_id.clone(),
                reason: reason.to_owned(),
            });
        };
        if sender == self.user_id && device_id == self.device_id {
            return; // our own request, echoed to all our devices
        }
        if sender != self.user_id {
            return ignore(self, "keys are only forwarded to our own devices");
        }
        // Verified locally, or cross-signed by our own verified identity.
        if self.devices.device_trust(&sender, &device_id) != Some(super::DeviceTrust::Verified) {
            // Kept (a bounded number, in memory) in case the device is
            // verified soon: a new device usually asks before that.
            if self.deferred_key_requests.len() < MAX_DEFERRED_KEY_REQUESTS {
                self.deferred_key_requests
                    .push((sender.clone(), content.clone()));
            }
            return ignore(self, "the requesting device is not verified (yet)");
        }
        let body = content.get("body").cloned().unwrap_or(Value::Null);
        let field = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or("");
        if field("algorithm") != MEGOLM_V1 {
            return ignore(self, "unsupported algorithm");
        }
        let Some(session) = self.inbound.get(field("room_id"), field("session_id")) else {
            return ignore(self, "we do not have that room key");
        };
        let chain = match &session.origin {
            KeyOrigin::Direct { .. } => Vec::new(),
            KeyOrigin::Forwarded { forwarding_chain } => forwarding_chain.clone(),
        };
        let forward = ForwardedRoomKeyContent {
            algorithm: MEGOLM_V1.to_owned(),
            forwarding_curve25519_key_chain: chain,
            room_id: session.room_id.clone(),
            sender_claimed_ed25519_key: session.signing_key.to_base64(),
            sender_key: session.sender_key.to_base64(),
            session_id: session.session_id.clone(),
            session_key: session.export().as_str().to_owned(),
        };
        // Wiped with the queued message once sent (or dropped).
        let forward = match serde_json::to_value(&forward) {
            Ok(forward) => forward,
            Err(_) => return ignore(self, "could not encode the key"),
        };
        self.olm_queue.push(QueuedOlmMessage {
            recipient: (sender.clone(), device_id.clone()),
            event_type: "m.forwarded_room_key".to_owned(),
            content: forward,
        });
    }

    /// Ask our other devices for a room key we lack (after
    /// [`CryptoError::MissingRoomKey`]). Only a verified device of ours can
    /// answer; the request goes out with the next
    /// [`outgoing_requests`](Self::outgoing_requests).
    pub fn request_room_key(
        &mut self,
        room_id: &str,
        encrypted_event: &Value,
    ) -> Result<(), CryptoError> {
        check_room_id(room_id)?;
        if self.devices.user_devices(&self.user_id).next().is_none() {
            // No other device of ours to ask.
            return Ok(());
        }
        let content = encrypted_event.get("content").unwrap_or(&Value::Null);
        let session_id = content
            .get("session_id")
            .and_then(Value::as_str)
            .ok_or_else(|| CryptoError::Malformed {
                what: "encrypted room event",
                reason: "no session_id".to_owned(),
            })?;
        // Asking again (say, after verifying a device) repeats the open
        // request under its id rather than opening a second one.
        let open = self
            .key_requests
            .iter()
            .find(|(_, r)| r.room_id == room_id && r.session_id == session_id)
            .map(|(id, _)| id.clone());
        let request_id = open.unwrap_or_else(|| self.requests.next_id());
        let mut body = json!({
            "algorithm": MEGOLM_V1,
            "room_id": room_id,
            "session_id": session_id,
        });
        // sender_key is deprecated, but older clients still expect it.
        if let (Some(key), Some(map)) = (content.get("sender_key"), body.as_object_mut()) {
            map.insert("sender_key".to_owned(), key.clone());
        }
        self.key_requests.insert(
            request_id.clone(),
            OutgoingKeyRequest {
                room_id: room_id.to_owned(),
                session_id: session_id.to_owned(),
            },
        );
        self.queue_key_request_message(json!({
            "action": "request",
            "body": body,
            "request_id": request_id,
            "requesting_device_id": self.device_id,
        }));
        Ok(())
    }

    fn queue_key_request_message(&mut self, content: Value) {
        let txn_id = self.requests.next_id();
        let messages = [(self.user_id.clone(), [("*".to_owned(), content)].into())].into();
        self.requests.push(
            RequestBody::ToDevice(ToDeviceRequest {
                event_type: "m.room_key_request".to_owned(),
                txn_id,
                messages,
            }),
            PendingKind::ToDevice { room_key: None },
        );
    }

    /// A device's messages stopped decrypting: make a fresh session with it
    /// and send `m.dummy` over it, so that it switches to the new session.
    fn start_wedge_recovery(&mut self, envelope: &OlmEnvelope, now_ms: u64) {
        let Some(device) = self
            .devices
            .find_by_curve25519(&envelope.sender, &envelope.sender_key)
        else {
            let sender = [envelope.sender.as_str()];
            self.devices.track_users(sender);
            self.devices.mark_changed(sender);
            return;
        };
        let id = (device.user_id.clone(), device.device_id.clone());
        if self
            .wedge_recovery_at
            .get(&id)
            .is_some_and(|at| now_ms.saturating_sub(*at) < WEDGE_RECOVERY_INTERVAL_MS)
        {
            return;
        }
        self.wedge_recovery_at.insert(id.clone(), now_ms);
        self.events.push(CryptoEvent::WedgedSessionRecovery {
            user_id: id.0.clone(),
            device_id: id.1.clone(),
        });
        self.needs_new_session.insert(id);
    }
}

fn sender_of(event: &Value) -> String {
    event
        .get("sender")
        .and_then(Value::as_str)
        .unwrap_or("(unknown)")
        .to_owned()
}
