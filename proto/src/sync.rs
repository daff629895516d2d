//! The end-to-end encryption parts of a `/sync` response (spec: "Extensions
//! to /sync" of the end-to-end encryption module, and "Send-to-Device
//! messaging"). The rest of a sync response is the server's business.
//!
//! Fields are declared in alphabetical order, the order `serde_json` gives
//! a map, so a body serialized from these types is the same byte for byte
//! as one built with `json!`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::to_device::ToDeviceEvent;

/// `device_lists` in `/sync`, and the body of `GET /keys/changes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLists {
    /// Users whose devices changed (or who now share an encrypted room
    /// with us): their keys must be queried again.
    #[serde(default)]
    pub changed: Vec<String>,
    /// Users who no longer share any encrypted room with us.
    #[serde(default)]
    pub left: Vec<String>,
}

/// `to_device` in `/sync`. Generic over the event so that a client can keep
/// each event raw (`ToDeviceEvents<Value>`): one malformed event must not
/// cost it the others, which may carry room keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// serde would infer `E: Default` from the field defaults; none is needed.
#[serde(bound(deserialize = "E: Deserialize<'de>"))]
pub struct ToDeviceEvents<E = ToDeviceEvent> {
    /// The to-device events for this device, oldest first.
    #[serde(default)]
    pub events: Vec<E>,
}

// Written out: a derive would require `E: Default`.
impl<E> Default for ToDeviceEvents<E> {
    fn default() -> Self {
        Self { events: Vec::new() }
    }
}

/// What end-to-end encryption needs from a `/sync` response.
///
/// A server always sends every field, the counts and fallback key types
/// included when empty: a client reads a missing count as zero, and a
/// missing `device_unused_fallback_key_types` as "this server does not
/// support fallback keys" (so it must not conclude its fallback key was
/// used). That is why the fallback types are an `Option`: `None` only when
/// parsing a response that lacks them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "E: Deserialize<'de>"))]
pub struct SyncCrypto<E = ToDeviceEvent> {
    /// Device-list changes since the previous sync.
    #[serde(default)]
    pub device_lists: DeviceLists,
    /// Algorithm → unclaimed one-time keys the server holds for this device.
    #[serde(default)]
    pub device_one_time_keys_count: BTreeMap<String, u64>,
    /// Algorithms for which the server holds an unused fallback key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_unused_fallback_key_types: Option<Vec<String>>,
    /// To-device events for this device.
    #[serde(default)]
    pub to_device: ToDeviceEvents<E>,
}

// Written out: a derive would require `E: Default`.
impl<E> Default for SyncCrypto<E> {
    fn default() -> Self {
        Self {
            device_lists: DeviceLists::default(),
            device_one_time_keys_count: BTreeMap::new(),
            device_unused_fallback_key_types: None,
            to_device: ToDeviceEvents::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round_trip;
    use serde_json::{json, Value};

    fn example() -> Value {
        json!({
            "device_lists": {"changed": ["@alice:example.com"], "left": ["@bob:example.com"]},
            "device_one_time_keys_count": {"curve25519": 10, "signed_curve25519": 20},
            "device_unused_fallback_key_types": ["signed_curve25519"],
            "to_device": {"events": [{
                "content": {"example_content_key": "value"},
                "sender": "@alice:example.com",
                "type": "m.new_device"
            }]}
        })
    }

    #[test]
    fn crypto_parts_match_the_spec_example() {
        let sync: SyncCrypto = round_trip(&example());
        assert_eq!(sync.device_lists.changed, ["@alice:example.com"]);
        assert_eq!(sync.device_one_time_keys_count["signed_curve25519"], 20);
        assert_eq!(sync.to_device.events[0].event_type, "m.new_device");

        // The rest of a sync response is ignored.
        let mut full = example();
        full["next_batch"] = json!("s72595_4483_1934");
        full["rooms"] = json!({"join": {}});
        let parsed: SyncCrypto = serde_json::from_value(full).unwrap();
        assert_eq!(parsed, sync);

        // Raw events survive whatever shape they have.
        let mut odd = example();
        odd["to_device"]["events"] = json!([{"type": "m.dummy"}, 42]);
        let raw: SyncCrypto<Value> = round_trip(&odd);
        assert_eq!(raw.to_device.events.len(), 2);
        assert!(serde_json::from_value::<SyncCrypto>(odd).is_err());
    }

    #[test]
    fn counts_and_fallback_types_are_sent_even_when_empty() {
        let empty = SyncCrypto::<ToDeviceEvent> {
            device_unused_fallback_key_types: Some(vec![]),
            ..SyncCrypto::default()
        };
        let sent = json!({
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
            "device_unused_fallback_key_types": [],
            "to_device": {"events": []}
        });
        assert_eq!(serde_json::to_value(&empty).unwrap(), sent);
        assert_eq!(round_trip::<SyncCrypto>(&sent), empty);

        // A server that omits the fallback types is not reporting the
        // fallback key used.
        let parsed: SyncCrypto = serde_json::from_value(json!({})).unwrap();
        assert_eq!(parsed.device_unused_fallback_key_types, None);
        assert_eq!(parsed, SyncCrypto::default());

        let changes: DeviceLists = round_trip(&json!({"changed": ["@a:x"], "left": []}));
        assert_eq!(changes.changed, ["@a:x"]);
    }
}
