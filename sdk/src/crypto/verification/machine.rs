//! The verification calls of [`OlmMachine`] and the routing of incoming
//! verification messages to their flow.

use serde_json::{json, Value};

use super::super::devices::LocalTrust;
use super::super::error::CryptoError;
use super::super::events::CryptoEvent;
use super::super::identities::key_id;
use super::super::machine::OlmMachine;
use super::super::requests::{PendingKind, RequestBody, ToDeviceRequest};
use super::flow::methods_of;
use super::flow::{Flow, Outcome};
use super::sas::Cancel;
use super::{
    VerificationInfo, OUR_METHODS, SAS_V1, VERIFICATION_FUTURE_MS, VERIFICATION_TIMEOUT_MS,
};

/// What an app call on a flow does.
enum Action {
    Accept,
    StartSas,
    Confirm,
}

impl OlmMachine {
    /// Ask `user_id` to verify: their `devices`, or all their known devices
    /// when empty (for our own user: all our other devices). Returns the
    /// flow id; the flow then moves on as messages arrive and the app acts.
    pub fn request_verification(
        &mut self,
        user_id: &str,
        devices: &[String],
        now_ms: u64,
    ) -> Result<String, CryptoError> {
        let devices: Vec<String> = if devices.is_empty() {
            self.devices
                .user_devices(user_id)
                .filter(|d| !(user_id == self.user_id && d.device_id == self.device_id))
                .map(|d| d.device_id.clone())
                .collect()
        } else {
            devices.to_vec()
        };
        if devices.is_empty() {
            return Err(CryptoError::Verification {
                flow_id: String::new(),
                reason: format!("no known device of {user_id} to verify"),
            });
        }
        let flow_id = self.requests.next_id();
        let content = json!({
            "from_device": self.device_id,
            "methods": OUR_METHODS,
            "timestamp": now_ms,
            "transaction_id": flow_id,
        });
        self.send_verification(user_id, &devices, "m.key.verification.request", content);
        let flow = Flow::outgoing(flow_id.clone(), user_id, devices, now_ms);
        self.verifications.insert(flow_id.clone(), flow);
        self.changed(&flow_id);
        Ok(flow_id)
    }

    /// Accept a verification another device requested (answers `ready`).
    pub fn accept_verification(&mut self, flow_id: &str) -> Result<(), CryptoError> {
        self.act(flow_id, Action::Accept)
    }

    /// Start SAS on a ready flow (either side may).
    pub fn start_sas(&mut self, flow_id: &str) -> Result<(), CryptoError> {
        self.act(flow_id, Action::StartSas)
    }

    /// The user confirmed that the emoji (or numbers) match the other
    /// screen.
    pub fn confirm_sas(&mut self, flow_id: &str) -> Result<(), CryptoError> {
        self.act(flow_id, Action::Confirm)
    }

    /// The user said the emoji do not match: cancel with
    /// `m.mismatched_sas`, so the other side learns why.
    pub fn sas_mismatch(&mut self, flow_id: &str) -> Result<(), CryptoError> {
        self.end(
            flow_id,
            "m.mismatched_sas",
            "the short authentication strings differ",
        )
    }

    /// Cancel a verification (the user gave up).
    pub fn cancel_verification(&mut self, flow_id: &str) -> Result<(), CryptoError> {
        self.end(flow_id, "m.user", "cancelled by the user")
    }

    /// One verification, as it stands.
    pub fn verification(&self, flow_id: &str) -> Option<VerificationInfo> {
        self.verifications.get(flow_id).map(Flow::info)
    }

    /// Every verification not yet forgotten (finished ones stay for the
    /// timeout, so an app can show how they ended).
    pub fn verifications(&self) -> Vec<VerificationInfo> {
        self.verifications.values().map(Flow::info).collect()
    }

    fn act(&mut self, flow_id: &str, action: Action) -> Result<(), CryptoError> {
        let me = (self.user_id.clone(), self.device_id.clone());
        let our_keys = self.our_mac_keys();
        let known = self.their_keys(flow_id);
        let flow = self.live_flow(flow_id)?;
        let result = match action {
            Action::Accept => flow.accept(&me.1),
            Action::StartSas => flow.start_sas(&me.1),
            Action::Confirm => flow.confirm((&me.0, &me.1), &our_keys, known),
        };
        match result {
            // A call at the wrong moment is the app's mistake, not a reason
            // to end the flow.
            Err(cancel) if cancel.code == "m.unexpected_message" => {
                Err(CryptoError::Verification {
                    flow_id: flow_id.to_owned(),
                    reason: cancel.reason,
                })
            }
            Err(cancel) => {
                let reason = cancel.reason.clone();
                self.apply(flow_id, Err(cancel));
                Err(CryptoError::Verification {
                    flow_id: flow_id.to_owned(),
                    reason,
                })
            }
            ok => {
                self.apply(flow_id, ok);
                Ok(())
            }
        }
    }

    fn end(&mut self, flow_id: &str, code: &'static str, reason: &str) -> Result<(), CryptoError> {
        self.live_flow(flow_id)?;
        self.apply(flow_id, Err(Cancel::new(code, reason)));
        Ok(())
    }

    pub(crate) fn live_flow(&mut self, flow_id: &str) -> Result<&mut Flow, CryptoError> {
        let error = |reason: &str| CryptoError::Verification {
            flow_id: flow_id.to_owned(),
            reason: reason.to_owned(),
        };
        let flow = self
            .verifications
            .get_mut(flow_id)
            .ok_or_else(|| error("no such verification"))?;
        if flow.phase.is_final() {
            return Err(error("the verification has ended"));
        }
        Ok(flow)
    }

    /// A `m.key.verification.*` to-device event (plain, or decrypted from
    /// Olm, with `sender` and `content`).
    pub(crate) fn receive_verification_event(&mut self, event: &Value, now_ms: u64) {
        let event_type = event.get("type").and_then(Value::as_str).unwrap_or("");
        let Some(sender) = event.get("sender").and_then(Value::as_str) else {
            return;
        };
        let content = event.get("content").cloned().unwrap_or(Value::Null);
        let Some(flow_id) = content
            .get("transaction_id")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 255)
            .map(str::to_owned)
        else {
            return;
        };
        if event_type == "m.key.verification.request" {
            let timestamp = content
                .get("timestamp")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            return self.receive_request(sender, &flow_id, &content, timestamp, now_ms, None);
        }
        self.step_flow(&flow_id, sender, event_type, &content, now_ms, None);
    }

    /// Move a flow on with a message from `sender` (to-device, or a room
    /// event in `room_id`). Only the user the flow is with may move it,
    /// over the flow's own channel; anything for a flow we do not know (or
    /// that ended) is dropped.
    pub(crate) fn step_flow(
        &mut self,
        flow_id: &str,
        sender: &str,
        event_type: &str,
        content: &Value,
        now_ms: u64,
        room_id: Option<&str>,
    ) {
        let me = (self.user_id.clone(), self.device_id.clone());
        let known = self.their_keys(flow_id);
        let Some(flow) = self.verifications.get_mut(flow_id).filter(|f| {
            f.other_user == sender && !f.phase.is_final() && f.room_id.as_deref() == room_id
        }) else {
            return;
        };
        flow.last_activity_ms = flow.last_activity_ms.max(now_ms);
        let reciprocate = event_type == "m.key.verification.start"
            && content.get("method").and_then(Value::as_str) == Some(super::qr::RECIPROCATE);
        if reciprocate || (event_type == "m.key.verification.done" && flow.qr.is_some()) {
            let result = if reciprocate {
                self.receive_reciprocate(flow_id, content)
            } else {
                self.receive_qr_done(flow_id)
            };
            return self.apply(flow_id, result);
        }
        let me = (me.0.as_str(), me.1.as_str());
        let result = match event_type {
            "m.key.verification.ready" => flow.receive_ready(content),
            "m.key.verification.start" => flow.receive_start(content, me),
            "m.key.verification.accept" => flow.receive_accept(content),
            "m.key.verification.key" => flow.receive_key(content, me),
            "m.key.verification.mac" => flow.receive_mac(content, me, known),
            "m.key.verification.done" => flow.receive_done(),
            "m.key.verification.cancel" => {
                let text = |f: &str| content.get(f).and_then(Value::as_str).unwrap_or("");
                flow.cancel(text("code"), text("reason"), false);
                Ok(Outcome::default())
            }
            _ => return,
        };
        if event_type == "m.key.verification.ready" && result.is_ok() {
            self.cancel_other_requested_devices(flow_id);
        }
        self.apply(flow_id, result);
    }

    pub(crate) fn receive_request(
        &mut self,
        sender: &str,
        flow_id: &str,
        content: &Value,
        timestamp: u64,
        now_ms: u64,
        room_id: Option<&str>,
    ) {
        let Some(from_device) = content.get("from_device").and_then(Value::as_str) else {
            return;
        };
        let fresh = timestamp + VERIFICATION_TIMEOUT_MS >= now_ms
            && timestamp <= now_ms + VERIFICATION_FUTURE_MS;
        let methods = content.get("methods").and_then(Value::as_array);
        let sas = methods.is_some_and(|m| m.iter().any(|m| m == SAS_V1));
        let ourselves = sender == self.user_id && from_device == self.device_id;
        if !fresh || !sas || ourselves || self.verifications.contains_key(flow_id) {
            return;
        }
        // Its keys are needed to check the MACs: make sure they are fetched.
        self.devices.track_users([sender]);
        if self.devices.get(sender, from_device).is_none() {
            self.devices.mark_changed([sender]);
        }
        let mut flow = Flow::incoming(flow_id.to_owned(), sender, from_device, now_ms);
        flow.their_methods = methods_of(content);
        if let Some(room_id) = room_id {
            flow = flow.in_room(room_id);
        }
        self.verifications.insert(flow_id.to_owned(), flow);
        self.changed(flow_id);
    }

    /// Our request went to several devices and one answered: the others
    /// are told it was accepted elsewhere, so they stop asking their user.
    fn cancel_other_requested_devices(&mut self, flow_id: &str) {
        let Some(flow) = self.verifications.get(flow_id) else {
            return;
        };
        let others: Vec<String> = flow
            .requested_devices
            .iter()
            .filter(|d| Some(d.as_str()) != flow.other_device.as_deref())
            .cloned()
            .collect();
        if others.is_empty() {
            return;
        }
        let user = flow.other_user.clone();
        let content = json!({
            "transaction_id": flow_id,
            "code": "m.accepted",
            "reason": "answered on another device",
        });
        self.send_verification(&user, &others, "m.key.verification.cancel", content);
    }

    /// Send what a transition produced; on a cancel, tell the other side
    /// and end the flow; when MACs verified, record the trust.
    pub(crate) fn apply(&mut self, flow_id: &str, result: Result<Outcome, Cancel>) {
        let Some(flow) = self.verifications.get_mut(flow_id) else {
            return;
        };
        let user = flow.other_user.clone();
        let room = flow.room_id.clone();
        let devices = match &flow.other_device {
            Some(device) => vec![device.clone()],
            None => flow.requested_devices.clone(),
        };
        let mut messages = Vec::new();
        let mut verified = None;
        match result {
            Ok(outcome) => {
                messages = outcome.send;
                verified = outcome.verified_keys;
            }
            Err(cancel) => {
                flow.cancel(cancel.code, &cancel.reason, true);
                let content = flow.wrap(json!({
                    "transaction_id": flow_id,
                    "code": cancel.code,
                    "reason": cancel.reason,
                }));
                messages.push(("m.key.verification.cancel", content));
            }
        };
        for (event_type, content) in messages {
            match &room {
                Some(room_id) => self.send_room_verification(room_id, event_type, content),
                None => self.send_verification(&user, &devices, event_type, content),
            }
        }
        if let Some(keys) = verified {
            self.trust_verified_keys(flow_id, &keys);
        }
        self.changed(flow_id);
    }

    /// The other side proved these keys: their device becomes verified,
    /// and cross-signing makes it last (see the module docs).
    pub(crate) fn trust_verified_keys(&mut self, flow_id: &str, keys: &[String]) {
        let Some(flow) = self.verifications.get(flow_id) else {
            return;
        };
        let user = flow.other_user.clone();
        let Some(device) = flow.other_device.clone() else {
            return;
        };
        let master = self.devices.identity(&user).map(|i| i.master);
        let master_verified = master.is_some_and(|m| keys.contains(&key_id(&m)));
        if keys.contains(&format!("ed25519:{device}")) {
            self.set_local_trust(&user, &device, LocalTrust::Verified);
        }
        let private = self.cross_signing.published.as_ref();
        let has_ssk = private.is_some_and(|p| p.self_signing.is_some());
        let has_usk = private.is_some_and(|p| p.user_signing.is_some());
        // Signing failures (a key dropped meanwhile) leave the local trust
        // in place; they are reported, not fatal.
        let mut results = Vec::new();
        if user == self.user_id {
            if master_verified {
                results.push(self.sign_own_identity());
            }
            if has_ssk {
                results.push(self.sign_own_device(&device));
            }
        } else if master_verified && has_usk {
            results.push(self.sign_user(&user));
        }
        for error in results.into_iter().filter_map(Result::err) {
            self.events.push(CryptoEvent::VerificationSigningFailed {
                flow_id: flow_id.to_owned(),
                reason: error.to_string(),
            });
        }
    }

    /// Our keys for the MAC: this device's, and our master key when we have
    /// an identity (the other side then trusts the identity too).
    fn our_mac_keys(&self) -> Vec<(String, String)> {
        let mut keys = vec![(
            format!("ed25519:{}", self.device_id),
            self.account.identity_keys().ed25519.to_base64(),
        )];
        let master = self.own_master_key();
        if let Some(master) = master {
            let key = master.to_base64();
            keys.push((format!("ed25519:{key}"), key));
        }
        keys
    }

    /// The keys of the other side of `flow_id` a MAC may vouch for: their
    /// device's Ed25519 key and their master key, as we know them.
    fn their_keys(&self, flow_id: &str) -> impl Fn(&str) -> Option<String> {
        let flow = self.verifications.get(flow_id);
        let device = flow.and_then(|f| {
            let device = self
                .devices
                .get(&f.other_user, f.other_device.as_deref()?)?;
            Some((
                format!("ed25519:{}", device.device_id),
                device.ed25519.to_base64(),
            ))
        });
        let master = flow
            .and_then(|f| self.devices.identity(&f.other_user))
            .map(|i| {
                let key = i.master.to_base64();
                (format!("ed25519:{key}"), key)
            });
        move |key_id: &str| {
            [&device, &master]
                .into_iter()
                .flatten()
                .find(|(id, _)| id == key_id)
                .map(|(_, key)| key.clone())
        }
    }

    fn send_verification(
        &mut self,
        user: &str,
        devices: &[String],
        event_type: &str,
        content: Value,
    ) {
        let per_device = devices
            .iter()
            .map(|d| (d.clone(), content.clone()))
            .collect();
        let txn_id = self.requests.next_id();
        self.requests.push(
            RequestBody::ToDevice(ToDeviceRequest {
                event_type: event_type.to_owned(),
                txn_id,
                messages: [(user.to_owned(), per_device)].into(),
            }),
            PendingKind::ToDevice { room_key: None },
        );
    }

    pub(crate) fn changed(&mut self, flow_id: &str) {
        if let Some(flow) = self.verifications.get(flow_id) {
            self.events.push(CryptoEvent::VerificationChanged {
                flow_id: flow_id.to_owned(),
                other_user: flow.other_user.clone(),
            });
        }
    }

    /// End flows idle for longer than the spec's timeout (telling the other
    /// side), and forget finished ones after the same time.
    pub(crate) fn expire_verifications(&mut self, now_ms: u64) {
        let idle: Vec<(String, bool)> = self
            .verifications
            .iter()
            .filter(|(_, f)| f.last_activity_ms + VERIFICATION_TIMEOUT_MS < now_ms)
            .map(|(id, f)| (id.clone(), f.phase.is_final()))
            .collect();
        for (flow_id, finished) in idle {
            if finished {
                self.verifications.remove(&flow_id);
            } else {
                let timeout = Cancel::new("m.timeout", "no answer within ten minutes");
                self.apply(&flow_id, Err(timeout));
                if let Some(flow) = self.verifications.get_mut(&flow_id) {
                    flow.last_activity_ms = now_ms;
                }
            }
        }
    }
}
