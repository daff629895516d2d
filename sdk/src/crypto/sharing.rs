//! Getting room keys to devices: Megolm session rotation, `/keys/claim` for
//! missing Olm sessions, and Olm-encrypted to-device messages.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use vodozemac::Curve25519PublicKey;

use super::canonical_json::verify_signature;
use super::devices::Device;
use super::error::CryptoError;
use super::events::CryptoEvent;
use super::machine::{check_room_id, check_user_id, OlmMachine, QueuedOlmMessage};
use super::megolm::{EncryptionSettings, InboundGroupSession, KeyOrigin, OutboundGroupSession};
use super::olm::encrypt_for_device;
use super::requests::{
    DeviceRef, KeysClaimRequest, KeysClaimResponse, OutgoingRequest, PendingKind, RequestBody,
    ToDeviceRequest, KEYS_TIMEOUT_MS,
};
use super::SIGNED_CURVE25519;

/// Messages per `/sendToDevice` request, to keep request bodies bounded.
const TO_DEVICE_BATCH: usize = 250;
/// How long a device a claim found no key for is skipped before retrying.
const UNREACHABLE_RETRY_MS: u64 = 60 * 60 * 1000;

impl OlmMachine {
    /// Make sure every device of every member has the room's current Megolm
    /// key, rotating it first if it expired or someone it went to is gone.
    ///
    /// Returns the next requests to send: a `/keys/query` for members whose
    /// devices are unknown, else a `/keys/claim` for devices without an Olm
    /// session, else the to-device messages carrying `m.room_key`. Send each
    /// request, feed its response to
    /// [`mark_request_as_sent`](Self::mark_request_as_sent), and call again
    /// until the list is empty; then the room key is shared and
    /// [`encrypt_room_event`](Self::encrypt_room_event) works.
    pub fn share_room_key<S: AsRef<str>>(
        &mut self,
        room_id: &str,
        members: &[S],
        settings: EncryptionSettings,
        now_ms: u64,
    ) -> Result<Vec<OutgoingRequest>, CryptoError> {
        check_room_id(room_id)?;
        for member in members {
            check_user_id(member.as_ref())?;
        }
        self.last_now_ms = self.last_now_ms.max(now_ms);
        let mut members: BTreeSet<String> = members.iter().map(|m| m.as_ref().to_owned()).collect();
        members.insert(self.user_id.clone());
        self.devices.track_users(members.iter().map(String::as_str));

        let settings = settings.clamped();
        if let Some(session) = self.outbound.get(room_id) {
            if self.must_rotate(session, &members, settings, now_ms) {
                self.outbound.remove(room_id);
            }
        }

        let outdated: BTreeSet<String> = members
            .iter()
            .filter(|m| self.devices.is_outdated(m))
            .cloned()
            .collect();
        if !outdated.is_empty() {
            self.queue_device_query(Some(&outdated));
            return Ok(self.requests.queries_covering(&outdated));
        }

        let (shared, withheld) = match self.outbound.get(room_id) {
            Some(s) => (s.shared_with.clone(), s.withheld.clone()),
            None => (BTreeSet::new(), BTreeSet::new()),
        };
        let candidates: Vec<Device> = members
            .iter()
            .flat_map(|m| self.devices.user_devices(m))
            .filter(|d| !(d.user_id == self.user_id && d.device_id == self.device_id))
            .filter(|d| !d.is_blocked())
            .filter(|d| {
                let id = (d.user_id.clone(), d.device_id.clone());
                !shared.contains(&id) && !withheld.contains(&id)
            })
            .cloned()
            .collect();

        let missing: BTreeSet<DeviceRef> = candidates
            .iter()
            .filter(|d| !self.olm.has_session(&d.curve25519))
            .map(|d| (d.user_id.clone(), d.device_id.clone()))
            .filter(|id| !self.recently_unreachable(id, now_ms))
            .collect();
        if !missing.is_empty() {
            self.queue_claim(&missing);
            return Ok(self.requests.claims_covering(&missing));
        }

        if !self.outbound.contains_key(room_id) {
            let session = OutboundGroupSession::new(room_id, settings, now_ms);
            self.store_own_inbound_copy(&session)?;
            self.outbound.insert(room_id.to_owned(), session);
        }
        let mut messages = Vec::new();
        if let Some(session) = self.outbound.get_mut(room_id) {
            for device in candidates {
                let id = (device.user_id.clone(), device.device_id.clone());
                if !self.olm.has_session(&device.curve25519) {
                    session.withheld.insert(id);
                    continue;
                }
                let content = encrypt_for_device(
                    &self.account,
                    &mut self.olm,
                    &self.user_id,
                    &self.device_id,
                    &device,
                    "m.room_key",
                    session.room_key_content()?,
                )?;
                session.shared_with.insert(id.clone());
                messages.push((id, content));
            }
        }
        let session_id = self
            .outbound
            .get(room_id)
            .map(OutboundGroupSession::session_id)
            .unwrap_or_default();
        self.push_to_device_batches(messages, Some((room_id.to_owned(), session_id.clone())));
        Ok(self.requests.room_key_requests(room_id, &session_id))
    }

    fn must_rotate(
        &self,
        session: &OutboundGroupSession,
        members: &BTreeSet<String>,
        settings: EncryptionSettings,
        now_ms: u64,
    ) -> bool {
        session.is_expired(now_ms)
            || session.settings != settings
            || session.shared_with.iter().any(|(user, device)| {
                // A recipient left, or a device that holds the key is gone
                // or blocked: later messages must not be readable with it.
                !members.contains(user)
                    || self
                        .devices
                        .get(user, device)
                        .is_none_or(Device::is_blocked)
            })
    }

    /// Our own messages must be readable by us later (history, other
    /// devices we forward to), so every outbound session gets an inbound
    /// twin.
    fn store_own_inbound_copy(
        &mut self,
        session: &OutboundGroupSession,
    ) -> Result<(), CryptoError> {
        let keys = self.account.identity_keys();
        let session_key = zeroize::Zeroizing::new(session.session_key().to_base64());
        let inbound = InboundGroupSession::from_room_key(
            &session.room_id,
            &session.session_id(),
            &session_key,
            keys.curve25519,
            keys.ed25519,
            KeyOrigin::Direct {
                sender: self.user_id.clone(),
            },
        )?
        .received_at(session.created_at_ms);
        self.inbound.add(inbound);
        Ok(())
    }

    fn recently_unreachable(&self, device: &DeviceRef, now_ms: u64) -> bool {
        self.unreachable
            .get(device)
            .is_some_and(|since| now_ms.saturating_sub(*since) < UNREACHABLE_RETRY_MS)
    }

    /// Queue a `/keys/claim` for the devices no queued claim covers yet:
    /// claiming twice would burn two one-time keys.
    pub(crate) fn queue_claim(&mut self, devices: &BTreeSet<DeviceRef>) {
        let in_flight = self.requests.devices_being_claimed();
        let to_claim: BTreeSet<DeviceRef> = devices.difference(&in_flight).cloned().collect();
        if to_claim.is_empty() {
            return;
        }
        let mut one_time_keys: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (user, device) in &to_claim {
            one_time_keys
                .entry(user.clone())
                .or_default()
                .insert(device.clone(), SIGNED_CURVE25519.to_owned());
        }
        self.requests.push(
            RequestBody::KeysClaim(KeysClaimRequest {
                one_time_keys,
                timeout: KEYS_TIMEOUT_MS,
            }),
            PendingKind::Claim { devices: to_claim },
        );
    }

    /// Create outbound Olm sessions from claimed one-time keys, each checked
    /// against the signature of the device it claims to belong to.
    pub(crate) fn receive_claim_response(
        &mut self,
        devices: &BTreeSet<DeviceRef>,
        mut response: KeysClaimResponse,
    ) -> Result<(), CryptoError> {
        for id in devices {
            let keys = response
                .one_time_keys
                .get_mut(&id.0)
                .and_then(|d| d.remove(&id.1))
                .unwrap_or_default();
            match self.session_from_claimed_key(id, keys) {
                Ok(()) => {
                    self.unreachable.remove(id);
                    if self.needs_new_session.remove(id) {
                        self.olm_queue.push(QueuedOlmMessage {
                            recipient: id.clone(),
                            event_type: "m.dummy".to_owned(),
                            content: json!({}),
                        });
                    }
                }
                Err(reason) => {
                    self.unreachable.insert(id.clone(), self.last_now_ms);
                    self.needs_new_session.remove(id);
                    self.events.push(CryptoEvent::OlmSessionUnavailable {
                        user_id: id.0.clone(),
                        device_id: id.1.clone(),
                        reason,
                    });
                }
            }
        }
        self.flush_olm_queue()
    }

    fn session_from_claimed_key(
        &mut self,
        (user, device_id): &DeviceRef,
        keys: BTreeMap<String, Value>,
    ) -> Result<(), String> {
        let device = self
            .devices
            .get(user, device_id)
            .cloned()
            .ok_or_else(|| "the device's keys are not known".to_owned())?;
        let (_, key) = keys
            .iter()
            .find(|(id, _)| id.starts_with(&format!("{SIGNED_CURVE25519}:")))
            .ok_or_else(|| "the server returned no one-time key".to_owned())?;
        let object = key
            .as_object()
            .ok_or_else(|| "the one-time key is not an object".to_owned())?;
        verify_signature(
            object,
            user,
            &format!("ed25519:{device_id}"),
            &device.ed25519,
            "one-time key",
        )
        .map_err(|e| e.to_string())?;
        let one_time_key = object
            .get("key")
            .and_then(Value::as_str)
            .and_then(|k| Curve25519PublicKey::from_base64(k).ok())
            .ok_or_else(|| "the one-time key is not a Curve25519 key".to_owned())?;
        let session = self
            .account
            .create_outbound_session(device.curve25519, one_time_key)
            .map_err(|e| e.to_string())?;
        self.olm.add(&device.curve25519, session);
        Ok(())
    }

    /// Encrypt queued Olm messages for devices that have a session; claim
    /// sessions for the rest.
    pub(crate) fn flush_olm_queue(&mut self) -> Result<(), CryptoError> {
        let now_ms = self.last_now_ms;
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        let mut to_claim: BTreeSet<DeviceRef> = self.needs_new_session.clone();
        for message in std::mem::take(&mut self.olm_queue) {
            let id = &message.recipient;
            let device = self.devices.get(&id.0, &id.1).cloned();
            let usable = device.as_ref().is_some_and(|d| {
                self.olm.has_session(&d.curve25519) && !self.needs_new_session.contains(id)
            });
            match device {
                Some(device) if usable => ready.push((device, message)),
                Some(_) if !self.recently_unreachable(id, now_ms) => {
                    to_claim.insert(id.clone());
                    waiting.push(message);
                }
                _ => self.events.push(CryptoEvent::ToDeviceDropped {
                    user_id: id.0.clone(),
                    device_id: id.1.clone(),
                    event_type: message.event_type.clone(),
                }),
            }
        }
        self.olm_queue = waiting;
        self.queue_claim(&to_claim);

        let mut messages = Vec::new();
        for (device, mut message) in ready {
            let content = std::mem::take(&mut message.content);
            let encrypted = encrypt_for_device(
                &self.account,
                &mut self.olm,
                &self.user_id,
                &self.device_id,
                &device,
                &message.event_type,
                content,
            )?;
            messages.push((message.recipient.clone(), encrypted));
        }
        self.push_to_device_batches(messages, None);
        Ok(())
    }

    fn push_to_device_batches(
        &mut self,
        messages: Vec<(DeviceRef, Value)>,
        room_key: Option<(String, String)>,
    ) {
        let mut messages = messages.into_iter().peekable();
        while messages.peek().is_some() {
            let mut batch: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
            for ((user, device), content) in messages.by_ref().take(TO_DEVICE_BATCH) {
                batch.entry(user).or_default().insert(device, content);
            }
            let txn_id = self.requests.next_id();
            self.requests.push(
                RequestBody::ToDevice(ToDeviceRequest {
                    event_type: "m.room.encrypted".to_owned(),
                    txn_id,
                    messages: batch,
                }),
                PendingKind::ToDevice {
                    room_key: room_key.clone(),
                },
            );
        }
    }
}
