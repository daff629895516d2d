//! Send-to-device messaging (spec: "Send-to-Device messaging") and the
//! room keys that travel in it (`m.room_key`, `m.forwarded_room_key`),
//! once decrypted from their Olm envelope.
//!
//! Fields are declared in alphabetical order, the order `serde_json` gives
//! a map, so a body serialized from these types is the same byte for byte
//! as one built with `json!`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroize;

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`; the event
/// type and transaction id are path parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendToDeviceRequest {
    /// User id → device id (or `*` for every device) → event content.
    pub messages: BTreeMap<String, BTreeMap<String, Value>>,
}

impl SendToDeviceRequest {
    /// Number of messages, counting `*` once.
    pub fn message_count(&self) -> usize {
        self.messages.values().map(BTreeMap::len).sum()
    }
}

/// A to-device event as `/sync` delivers it (`to_device.events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDeviceEvent {
    /// The content the sender gave for this device (an object).
    pub content: Value,
    /// The sending user.
    pub sender: String,
    /// The event type, e.g. `m.room.encrypted`.
    #[serde(rename = "type")]
    pub event_type: String,
}

/// The content of `m.room_key`: a Megolm session's key, sent by its creator
/// over Olm. The session key is wiped when this is dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomKeyContent {
    /// The encryption algorithm, `m.megolm.v1.aes-sha2`.
    pub algorithm: String,
    /// The room the session is for.
    pub room_id: String,
    /// The Megolm session id.
    pub session_id: String,
    /// The Megolm session key (base64), at its current ratchet index.
    pub session_key: String,
}

impl Drop for RoomKeyContent {
    fn drop(&mut self) {
        self.session_key.zeroize();
    }
}

/// Leaves the session key out, so the key cannot end up in a log.
impl fmt::Debug for RoomKeyContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoomKeyContent")
            .field("algorithm", &self.algorithm)
            .field("room_id", &self.room_id)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// The content of `m.forwarded_room_key`: a room key passed on by a device
/// other than the session's creator. The session key is wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardedRoomKeyContent {
    /// The encryption algorithm, `m.megolm.v1.aes-sha2`.
    pub algorithm: String,
    /// The Curve25519 keys of the devices the key passed through, oldest
    /// first. Required by the spec; read as empty when missing.
    #[serde(default)]
    pub forwarding_curve25519_key_chain: Vec<String>,
    /// The room the session is for.
    pub room_id: String,
    /// The Ed25519 key of the device that created the session, as claimed
    /// by the forwarder (unverified).
    pub sender_claimed_ed25519_key: String,
    /// The Curve25519 key of the device that created the session.
    pub sender_key: String,
    /// The Megolm session id.
    pub session_id: String,
    /// The exported Megolm session key (base64).
    pub session_key: String,
}

impl Drop for ForwardedRoomKeyContent {
    fn drop(&mut self) {
        self.session_key.zeroize();
    }
}

/// Leaves the session key out, so the key cannot end up in a log.
impl fmt::Debug for ForwardedRoomKeyContent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForwardedRoomKeyContent")
            .field("algorithm", &self.algorithm)
            .field("room_id", &self.room_id)
            .field("sender_key", &self.sender_key)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round_trip;
    use serde_json::json;

    #[test]
    fn send_to_device_matches_the_spec_example() {
        let example = json!({"messages": {"@alice:example.com": {
            "TLLBEANAAG": {"example_content_key": "value"},
            "*": {"example_content_key": "to every device"}
        }}});
        let request: SendToDeviceRequest = round_trip(&example);
        assert_eq!(request.message_count(), 2);
        assert!(serde_json::from_value::<SendToDeviceRequest>(json!({})).is_err());
    }

    #[test]
    fn to_device_event_matches_the_spec_example() {
        let example = json!({
            "content": {"example_content_key": "value"},
            "sender": "@alice:example.com",
            "type": "m.new_device"
        });
        let event: ToDeviceEvent = round_trip(&example);
        assert_eq!(
            (event.sender.as_str(), event.event_type.as_str()),
            ("@alice:example.com", "m.new_device")
        );
        let no_sender = json!({"content": {}, "type": "m.dummy"});
        assert!(serde_json::from_value::<ToDeviceEvent>(no_sender).is_err());
    }

    #[test]
    fn room_keys_match_the_spec_examples() {
        let example = json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "room_id": "!Cuyf34gef24t:localhost",
            "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
            "session_key": "AgAAAADxKHa9uFxcXzwYoNueL5Xqi69IkD4sni8LlfJL7qNBEY..."
        });
        let key: RoomKeyContent = round_trip(&example);
        assert_eq!(key.room_id, "!Cuyf34gef24t:localhost");
        let debug = format!("{key:?}");
        assert!(debug.contains("X3lUlvLELLYx") && !debug.contains("AgAAAADx"));
        let mut missing = example.clone();
        missing.as_object_mut().unwrap().remove("session_key");
        assert!(serde_json::from_value::<RoomKeyContent>(missing).is_err());

        let example = json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "forwarding_curve25519_key_chain": ["hPQNcabIABgGnx3/ACv/jmMmiQHoeFfuLB17tzWp6Hw"],
            "room_id": "!Cuyf34gef24t:localhost",
            "sender_claimed_ed25519_key": "aj40p+aw64yPIdsxoog8jhPu9i7l7NcFRecuOQblE3Y",
            "sender_key": "RF3s+E7RkTQTGF2d8Deol0FkQvgII2aJDf3/Jp5mxVU",
            "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
            "session_key": "AgAAAADxKHa9uFxcXzwYoNueL5Xqi69IkD4sni8LlfJL7qNBEY..."
        });
        let forwarded: ForwardedRoomKeyContent = round_trip(&example);
        assert_eq!(forwarded.forwarding_curve25519_key_chain.len(), 1);
        assert!(!format!("{forwarded:?}").contains("AgAAAADx"));
        let mut no_chain = example.clone();
        no_chain
            .as_object_mut()
            .unwrap()
            .remove("forwarding_curve25519_key_chain");
        let parsed: ForwardedRoomKeyContent = serde_json::from_value(no_chain).unwrap();
        assert!(parsed.forwarding_curve25519_key_chain.is_empty());
    }
}
