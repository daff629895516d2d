//! The key endpoints of end-to-end encryption (spec: "Key management API"
//! and "Cross-signing"): `/keys/upload`, `/keys/query`, `/keys/claim`,
//! `/keys/device_signing/upload` and `/keys/signatures/upload`.
//!
//! Signed objects (device keys, one-time keys, cross-signing keys) stay raw
//! JSON: signatures cover the exact object, so a struct that dropped an
//! unknown field would make a valid signature fail, and each side checks
//! the shape it relies on where it verifies. They are `Value`s rather than
//! `Map`s so one malformed entry fails its own check, not the whole body.
//!
//! Fields are declared in alphabetical order, the order `serde_json` gives
//! a map, so a body serialized from these types is the same byte for byte
//! as one built with `json!`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The spec's recommended `timeout` for `/keys/query` and `/keys/claim`,
/// in milliseconds; servers use it when the request has none.
pub const DEFAULT_KEYS_TIMEOUT_MS: u64 = 10_000;

/// `null` reads as absent: the server has always accepted it for the key
/// maps of an upload.
fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `POST /_matrix/client/v3/keys/upload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysUploadRequest {
    /// The device's self-signed identity keys; absent once uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_keys: Option<Value>,
    /// `<algorithm>:<key id>` → the fallback key (a signed object with
    /// `"fallback": true`, or a plain key string for unsigned algorithms).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty",
        // The unstable name some clients still send (MSC2732).
        alias = "org.matrix.msc2732.fallback_keys"
    )]
    pub fallback_keys: BTreeMap<String, Value>,
    /// `<algorithm>:<key id>` → one-time key (signed object or key string).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub one_time_keys: BTreeMap<String, Value>,
}

/// The response to [`KeysUploadRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysUploadResponse {
    /// Algorithm → unclaimed one-time keys the server holds for the device.
    /// An algorithm not listed counts as zero.
    #[serde(default)]
    pub one_time_key_counts: BTreeMap<String, u64>,
}

/// `POST /_matrix/client/v3/keys/query`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysQueryRequest {
    /// User id → device ids; an empty list asks for every device. Required
    /// by the spec, but read as empty when missing, as the server always has.
    #[serde(default)]
    pub device_keys: BTreeMap<String, Vec<String>>,
    /// How long the server may wait for remote servers, in milliseconds
    /// ([`DEFAULT_KEYS_TIMEOUT_MS`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The response to [`KeysQueryRequest`]. Every map is always sent, empty or
/// not, as the server has always done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysQueryResponse {
    /// User id → device id → signed device keys, with `unsigned` added.
    #[serde(default)]
    pub device_keys: BTreeMap<String, BTreeMap<String, Value>>,
    /// Server name → error, for remote servers that could not be reached.
    #[serde(default)]
    pub failures: BTreeMap<String, Value>,
    /// User id → master cross-signing key.
    #[serde(default)]
    pub master_keys: BTreeMap<String, Value>,
    /// User id → self-signing key.
    #[serde(default)]
    pub self_signing_keys: BTreeMap<String, Value>,
    /// User id → user-signing key; only the requester's own.
    #[serde(default)]
    pub user_signing_keys: BTreeMap<String, Value>,
}

/// `POST /_matrix/client/v3/keys/claim`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysClaimRequest {
    /// User id → device id → key algorithm (`signed_curve25519`). Required
    /// by the spec, but read as empty when missing, as the server always has.
    #[serde(default)]
    pub one_time_keys: BTreeMap<String, BTreeMap<String, String>>,
    /// How long the server may wait for remote servers, in milliseconds
    /// ([`DEFAULT_KEYS_TIMEOUT_MS`] when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The response to [`KeysClaimRequest`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysClaimResponse {
    /// Server name → error, for remote servers that could not be reached.
    #[serde(default)]
    pub failures: BTreeMap<String, Value>,
    /// User id → device id → `<algorithm>:<key id>` → the claimed key (a
    /// one-time key, or the fallback key when none was left). Devices
    /// without a key are missing.
    #[serde(default)]
    pub one_time_keys: BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>,
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`: cross-signing keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeysUploadRequest {
    /// User-interactive authentication, when the server asks for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Value>,
    /// The master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_key: Option<Value>,
    /// The self-signing key, signed by the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signing_key: Option<Value>,
    /// The user-signing key, signed by the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_signing_key: Option<Value>,
}

/// The response to `POST /_matrix/client/v3/keys/signatures/upload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignaturesUploadResponse {
    /// User id → key id → error (`errcode`, `error`) for each signed object
    /// that was refused.
    #[serde(default)]
    pub failures: BTreeMap<String, BTreeMap<String, Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::round_trip;
    use serde_json::json;

    const SIG: &str =
        "FLWxXqGbwrb8SM3Y795eB6OA8bwBcoMZFXBqnTn58AYWZSqiD45tlBVcDa2L7RwdKXebW/VzDlnfVJ+9jok1Bw";

    fn device_keys() -> Value {
        json!({
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "device_id": "JLAFKJWSCS",
            "keys": {
                "curve25519:JLAFKJWSCS": "3C5BFWi2Y8MaVvjM8M22DBmh24PmgR0nPvJOIArzgyI",
                "ed25519:JLAFKJWSCS": "lEuiRJBit0IG6nUf5pUzWTUEsRVVe/HJkoKuEww9ULI"
            },
            "signatures": {"@alice:example.com": {"ed25519:JLAFKJWSCS": "dSO80A01XiigH3uBiDVx/EjzaoycHcjq9lfQX0uWsqxl2giMIiSPR8a4d291W1ihKJL/a+myXS367WT6NAIcBA"}},
            "user_id": "@alice:example.com"
        })
    }

    fn signed_key(key: &str) -> Value {
        json!({"key": key, "signatures": {"@alice:example.com": {"ed25519:JLAFKJWSCS": SIG}}})
    }

    #[test]
    fn upload_matches_the_spec_example() {
        let mut fallback = signed_key("zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs");
        fallback["fallback"] = json!(true);
        let example = json!({
            "device_keys": device_keys(),
            "fallback_keys": {
                "curve25519:AAAAAG": "/qyvZvwjiTxGdGU0RCguDCLeR+nmsb3FfNG3/Ve4vU8",
                "signed_curve25519:AAAAGj": fallback
            },
            "one_time_keys": {
                "curve25519:AAAAAQ": "/qyvZvwjiTxGdGU0RCguDCLeR+nmsb3FfNG3/Ve4vU8",
                "signed_curve25519:AAAAHQ": signed_key("j3fR3HemM16M7CWhoI4Sk5ZsdmdfQHsKL1xuSft6MSw"),
                "signed_curve25519:AAAAHg": signed_key("zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs")
            }
        });
        let upload: KeysUploadRequest = round_trip(&example);
        assert_eq!(upload.device_keys, Some(device_keys()));
        assert_eq!(upload.one_time_keys.len(), 3);

        // Everything is optional, and what is absent stays absent.
        let empty: KeysUploadRequest = round_trip(&json!({}));
        assert_eq!(empty, KeysUploadRequest::default());
        let nulls = json!({"device_keys": null, "one_time_keys": null, "fallback_keys": null});
        let parsed: KeysUploadRequest = serde_json::from_value(nulls).unwrap();
        assert_eq!(serde_json::to_value(parsed).unwrap(), json!({}));
        let unstable = json!({"org.matrix.msc2732.fallback_keys": {"curve25519:A": "k"}});
        let parsed: KeysUploadRequest = serde_json::from_value(unstable).unwrap();
        assert_eq!(
            serde_json::to_value(parsed).unwrap(),
            json!({"fallback_keys": {"curve25519:A": "k"}})
        );

        let counts = json!({"one_time_key_counts": {"curve25519": 10, "signed_curve25519": 20}});
        let response: KeysUploadResponse = round_trip(&counts);
        assert_eq!(response.one_time_key_counts["signed_curve25519"], 20);
        let zero: KeysUploadResponse = serde_json::from_value(json!({})).unwrap();
        assert_eq!(
            serde_json::to_value(zero).unwrap(),
            json!({"one_time_key_counts": {}})
        );
    }

    #[test]
    fn query_matches_the_spec_example() {
        let request: KeysQueryRequest = round_trip(&json!({
            "device_keys": {"@alice:example.com": []},
            "timeout": 10000
        }));
        assert_eq!(request.timeout, Some(DEFAULT_KEYS_TIMEOUT_MS));
        let no_timeout: KeysQueryRequest =
            round_trip(&json!({"device_keys": {"@alice:example.com": ["JLAFKJWSCS"]}}));
        assert_eq!(no_timeout.timeout, None);

        let mut device = device_keys();
        device["unsigned"] = json!({"device_display_name": "Alice's mobile phone"});
        let cross_signing = |usage: &str, key: &str| {
            json!({
                "keys": {format!("ed25519:{key}"): key},
                "signatures": {"@alice:example.com": {"ed25519:base64+master+public+key": "sig"}},
                "usage": [usage],
                "user_id": "@alice:example.com"
            })
        };
        let example = json!({
            "device_keys": {"@alice:example.com": {"JLAFKJWSCS": device}},
            "failures": {},
            "master_keys": {"@alice:example.com": {
                "keys": {"ed25519:base64+master+public+key": "base64+master+public+key"},
                "usage": ["master"],
                "user_id": "@alice:example.com"
            }},
            "self_signing_keys": {"@alice:example.com": cross_signing("self_signing", "ssk")},
            "user_signing_keys": {"@alice:example.com": cross_signing("user_signing", "usk")}
        });
        let response: KeysQueryResponse = round_trip(&example);
        assert_eq!(
            response.device_keys["@alice:example.com"]["JLAFKJWSCS"]["unsigned"]
                ["device_display_name"],
            "Alice's mobile phone"
        );
        // An empty answer still has every map.
        let empty: KeysQueryResponse = serde_json::from_value(json!({})).unwrap();
        assert_eq!(
            serde_json::to_value(empty).unwrap(),
            json!({"device_keys": {}, "failures": {}, "master_keys": {},
                   "self_signing_keys": {}, "user_signing_keys": {}})
        );
    }

    #[test]
    fn claim_matches_the_spec_example() {
        let request: KeysClaimRequest = round_trip(&json!({
            "one_time_keys": {"@alice:example.com": {"JLAFKJWSCS": "signed_curve25519"}},
            "timeout": 10000
        }));
        assert_eq!(
            request.one_time_keys["@alice:example.com"]["JLAFKJWSCS"],
            "signed_curve25519"
        );
        let _: KeysClaimRequest = round_trip(&json!({"one_time_keys": {}}));

        let key = signed_key("zKbLg+NrIjpnagy+pIY6uPL4ZwEG2v+8F9lmgsnlZzs");
        let example = json!({
            "failures": {},
            "one_time_keys": {"@alice:example.com": {"JLAFKJWSCS": {"signed_curve25519:AAAAHg": key}}}
        });
        let response: KeysClaimResponse = round_trip(&example);
        assert_eq!(
            response.one_time_keys["@alice:example.com"]["JLAFKJWSCS"]["signed_curve25519:AAAAHg"],
            key
        );
    }

    #[test]
    fn cross_signing_uploads() {
        let master = json!({
            "keys": {"ed25519:base64+master+public+key": "base64+master+public+key"},
            "usage": ["master"],
            "user_id": "@alice:example.com"
        });
        let upload: SigningKeysUploadRequest = round_trip(&json!({
            "auth": {"type": "m.login.password", "session": "s"},
            "master_key": master
        }));
        assert!(upload.self_signing_key.is_none() && upload.user_signing_key.is_none());
        let _: SigningKeysUploadRequest = round_trip(&json!({}));

        let failure = json!({"errcode": "M_INVALID_SIGNATURE", "error": "Invalid signature"});
        let response: SignaturesUploadResponse =
            round_trip(&json!({"failures": {"@alice:example.com": {"HIJKLMN": failure}}}));
        assert_eq!(response.failures["@alice:example.com"]["HIJKLMN"], failure);
        let _: SignaturesUploadResponse = round_trip(&json!({"failures": {}}));
    }
}
