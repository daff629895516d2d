//! Encrypting and decrypting room events with Megolm, and deciding how far
//! a decrypted event's claimed sender can be trusted.

use serde_json::{json, Map, Value};

use super::devices::Device;
use super::error::CryptoError;
use super::machine::{check_room_id, OlmMachine};
use super::megolm::KeyOrigin;
use super::MEGOLM_V1;

/// How far the sender of a decrypted event is established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationState {
    /// Sent by a device the user verified (or by this very device).
    Verified,
    /// The sender is who the event says, as far as the keys go, but see why
    /// that is not a verified fact.
    Unverified(UnverifiedReason),
}

/// Why a decrypted event's sender is not verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnverifiedReason {
    /// The sending device is known and its keys match, but the user has not
    /// verified it.
    DeviceNotVerified,
    /// The sending device is not (yet) in the sender's device list; its
    /// identity rests on what the room key's Olm message claimed.
    UnknownDevice,
    /// The room key was forwarded by another of our devices, so its origin
    /// rests on that device's word.
    ForwardedKey,
}

/// A decrypted room event. The room, the sender's ownership of the room key
/// and, when the device is known, the device's keys were all checked;
/// decryption fails otherwise.
#[derive(Debug, Clone)]
pub struct Decrypted {
    /// The plaintext event: the encrypted event's fields with `type` and
    /// `content` replaced by the decrypted ones.
    pub event: Value,
    /// The sender's user id (the owner of the room key).
    pub sender: String,
    /// The device that sent it, if its keys are known.
    pub sender_device: Option<Device>,
    /// Whether the sending device is verified, and why not.
    pub verification: VerificationState,
    /// The Megolm session (room key) that decrypted it.
    pub session_id: String,
    /// The Megolm message index (each is used once; reuse is a replay).
    pub message_index: u32,
}

impl OlmMachine {
    /// Encrypt an event for a room whose key was shared with
    /// [`share_room_key`](Self::share_room_key). Returns the content of the
    /// `m.room.encrypted` event to send. Fails with
    /// [`CryptoError::RoomKeyNotShared`] if the key must first be (re)shared.
    /// Call `share_room_key` with the current members before each send:
    /// that is where departures and new devices are noticed.
    pub fn encrypt_room_event(
        &mut self,
        room_id: &str,
        event_type: &str,
        content: &Value,
        now_ms: u64,
    ) -> Result<Value, CryptoError> {
        check_room_id(room_id)?;
        self.last_now_ms = self.last_now_ms.max(now_ms);
        let not_shared = || CryptoError::RoomKeyNotShared {
            room_id: room_id.to_owned(),
        };
        let session = self.outbound.get(room_id).ok_or_else(not_shared)?;
        // Rotation happens in share_room_key, where the new key can be sent.
        if session.is_expired(now_ms) {
            return Err(not_shared());
        }
        if !self
            .requests
            .room_key_requests(room_id, &session.session_id())
            .is_empty()
        {
            return Err(not_shared());
        }

        let mut content = content.clone();
        // Relations stay readable to the server (spec: m.relates_to is sent
        // in the clear on the encrypted event), so they are moved out.
        let relates_to = content
            .as_object_mut()
            .and_then(|c| c.remove("m.relates_to"));
        let payload = json!({ "type": event_type, "content": content, "room_id": room_id });
        let plaintext = zeroize::Zeroizing::new(serde_json::to_string(&payload)?);
        drop(payload);

        let keys = self.account.identity_keys();
        let session = self.outbound.get_mut(room_id).ok_or_else(not_shared)?;
        let message = session.encrypt(&plaintext, now_ms);
        let mut encrypted = json!({
            "algorithm": MEGOLM_V1,
            "sender_key": keys.curve25519.to_base64(),
            "device_id": self.device_id,
            "session_id": session.session_id(),
            "ciphertext": message.to_base64(),
        });
        if let (Some(relates_to), Some(map)) = (relates_to, encrypted.as_object_mut()) {
            map.insert("m.relates_to".to_owned(), relates_to);
        }
        Ok(encrypted)
    }

    /// Decrypt an `m.room.encrypted` room event (the whole event JSON as
    /// received from the server) that arrived in `room_id`.
    ///
    /// Fails with [`CryptoError::Expired`] when the event's
    /// `origin_server_ts` is past the room's retention policy (as last given
    /// to [`apply_retention`](Self::apply_retention)) at the latest time a
    /// caller passed in.
    pub fn decrypt_room_event(
        &mut self,
        room_id: &str,
        event: &Value,
    ) -> Result<Decrypted, CryptoError> {
        check_room_id(room_id)?;
        let malformed = |reason: &str| CryptoError::Malformed {
            what: "encrypted room event",
            reason: reason.to_owned(),
        };
        let sender = event
            .get("sender")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no sender"))?;
        let event_id = event
            .get("event_id")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no event_id"))?;
        let content = event
            .get("content")
            .ok_or_else(|| malformed("no content"))?;

        let origin_server_ts = event.get("origin_server_ts").and_then(Value::as_u64);
        // Refused before the session is touched: a key that retention has
        // not yet shredded (the policy arrived after it was last applied)
        // must still not reveal an expired message.
        if let Some(ts) = origin_server_ts {
            if self.is_expired(room_id, ts) {
                self.shred_for_expired_event(room_id, content);
                return Err(CryptoError::Expired {
                    room_id: room_id.to_owned(),
                    event_id: event_id.to_owned(),
                });
            }
        }
        let (plaintext, session) =
            self.inbound
                .decrypt(room_id, event_id, origin_server_ts, content)?;
        let claimed_room = plaintext.payload.get("room_id").and_then(Value::as_str);
        if claimed_room != Some(room_id) {
            return Err(CryptoError::RoomMismatch {
                claimed: claimed_room.unwrap_or("(none)").to_owned(),
                actual: room_id.to_owned(),
            });
        }
        if let KeyOrigin::Direct { sender: owner } = &session.origin {
            if owner != sender {
                return Err(CryptoError::SenderMismatch {
                    event_sender: sender.to_owned(),
                    key_owner: owner.clone(),
                });
            }
        }

        let own_keys = self.account.identity_keys();
        let is_own_device = sender == self.user_id && session.sender_key == own_keys.curve25519;
        let sender_device = if is_own_device {
            // This very device is not in its own device list.
            Some(Device {
                user_id: self.user_id.clone(),
                device_id: self.device_id.clone(),
                ed25519: own_keys.ed25519,
                curve25519: own_keys.curve25519,
                algorithms: vec![super::OLM_V1.to_owned(), MEGOLM_V1.to_owned()],
                display_name: None,
                local_trust: super::LocalTrust::Verified,
                cross_signed: false,
            })
        } else {
            self.devices
                .find_by_curve25519(sender, &session.sender_key)
                .cloned()
        };
        if let Some(device) = &sender_device {
            if device.ed25519 != session.signing_key {
                return Err(CryptoError::SenderKeyMismatch {
                    user_id: device.user_id.clone(),
                    device_id: device.device_id.clone(),
                });
            }
        }
        if is_own_device && session.signing_key != own_keys.ed25519 {
            return Err(CryptoError::SenderKeyMismatch {
                user_id: self.user_id.clone(),
                device_id: self.device_id.clone(),
            });
        }
        let verification = if matches!(session.origin, KeyOrigin::Forwarded { .. }) {
            VerificationState::Unverified(UnverifiedReason::ForwardedKey)
        } else if is_own_device {
            VerificationState::Verified
        } else {
            // Verified locally, or through cross-signing by a verified owner.
            let trusted = |d: &Device| {
                self.devices.device_trust(&d.user_id, &d.device_id)
                    == Some(super::DeviceTrust::Verified)
            };
            match &sender_device {
                Some(d) if trusted(d) => VerificationState::Verified,
                Some(_) => VerificationState::Unverified(UnverifiedReason::DeviceNotVerified),
                None => VerificationState::Unverified(UnverifiedReason::UnknownDevice),
            }
        };

        let session_id = session.session_id.clone();
        let mut clear = event.as_object().cloned().unwrap_or_else(Map::new);
        let mut payload = plaintext.payload;
        let event_type = payload.get("type").cloned().unwrap_or(Value::Null);
        let mut clear_content = payload
            .get_mut("content")
            .map(Value::take)
            .unwrap_or_else(|| json!({}));
        if let (Some(relates_to), Some(map)) =
            (content.get("m.relates_to"), clear_content.as_object_mut())
        {
            map.entry("m.relates_to")
                .or_insert_with(|| relates_to.clone());
        }
        clear.insert("type".to_owned(), event_type);
        clear.insert("content".to_owned(), clear_content);
        clear.insert("room_id".to_owned(), Value::String(room_id.to_owned()));

        Ok(Decrypted {
            event: Value::Object(clear),
            sender: sender.to_owned(),
            sender_device,
            verification,
            session_id,
            message_index: plaintext.message_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::crypto::megolm::{EncryptionSettings, InboundGroupSession};
    use crate::crypto::requests::KeysQueryResponse;

    const ROOM: &str = "!r:x";
    const ALICE: &str = "@alice:x";
    const BOB: &str = "@bob:x";

    fn learn_device(machine: &mut OlmMachine, of: &OlmMachine) {
        machine.devices.track_users([of.user_id()]);
        let listed = BTreeMap::from([(of.device_id().to_owned(), of.device_keys().unwrap())]);
        let response = KeysQueryResponse {
            device_keys: BTreeMap::from([(of.user_id().to_owned(), listed)]),
            ..Default::default()
        };
        machine
            .devices
            .receive_query_response(response, &HashMap::from([(of.user_id().to_owned(), 1)]));
    }

    /// A room key whose claimed Ed25519 key is not the sending device's
    /// (possible when the key arrived before the device was known) must not
    /// yield a decryption attributed to that device.
    #[test]
    fn room_keys_are_bound_to_the_device_signing_key_and_the_room() {
        let mut alice = OlmMachine::new(ALICE, "ALICE1").unwrap();
        let own = alice.device_keys().unwrap();
        let response = json!({"device_keys": {ALICE: {"ALICE1": own}}});
        for request in alice
            .share_room_key(ROOM, &[ALICE], EncryptionSettings::default(), 0)
            .unwrap()
        {
            alice
                .mark_request_as_sent(&request.request_id, &response)
                .unwrap();
        }
        assert!(alice
            .share_room_key(ROOM, &[ALICE], EncryptionSettings::default(), 0)
            .unwrap()
            .is_empty());
        let session_key = alice.outbound[ROOM].session_key().to_base64();
        let content = alice
            .encrypt_room_event(ROOM, "m.room.message", &json!({"body": "x"}), 0)
            .unwrap();
        let event = json!({"event_id": "$1", "sender": ALICE, "content": content});

        let mut bob = OlmMachine::new(BOB, "BOB1").unwrap();
        learn_device(&mut bob, &alice);
        let keys = alice.identity_keys();
        let stranger = vodozemac::olm::Account::new().ed25519_key();
        let sid = content["session_id"].as_str().unwrap();
        let forged = InboundGroupSession::from_room_key(
            ROOM,
            sid,
            &session_key,
            keys.curve25519,
            stranger,
            KeyOrigin::Direct {
                sender: ALICE.to_owned(),
            },
        )
        .unwrap();
        bob.inbound.add(forged);
        assert!(matches!(
            bob.decrypt_room_event(ROOM, &event),
            Err(CryptoError::SenderKeyMismatch { .. })
        ));

        // With the right signing key the same event decrypts.
        let mut carol = OlmMachine::new("@carol:x", "CAROL1").unwrap();
        learn_device(&mut carol, &alice);
        let genuine = InboundGroupSession::from_room_key(
            ROOM,
            sid,
            &session_key,
            keys.curve25519,
            keys.ed25519,
            KeyOrigin::Direct {
                sender: ALICE.to_owned(),
            },
        )
        .unwrap();
        carol.inbound.add(genuine);
        let decrypted = carol.decrypt_room_event(ROOM, &event).unwrap();
        assert_eq!(decrypted.event["content"]["body"], "x");
        assert_eq!(decrypted.sender_device.unwrap().device_id, "ALICE1");

        // A sender who shared the same session for a second room cannot
        // have its events shown there: the payload names the real room.
        let other_room = "!other:x";
        let same_key_elsewhere = InboundGroupSession::from_room_key(
            other_room,
            sid,
            &session_key,
            keys.curve25519,
            keys.ed25519,
            KeyOrigin::Direct {
                sender: ALICE.to_owned(),
            },
        )
        .unwrap();
        carol.inbound.add(same_key_elsewhere);
        let mut moved = event.clone();
        moved["event_id"] = json!("$2");
        assert!(matches!(
            carol.decrypt_room_event(other_room, &moved),
            Err(CryptoError::RoomMismatch { .. })
        ));
    }
}
