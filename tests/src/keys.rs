//! Realistic, correctly signed end-to-end-encryption key material for
//! `/keys/upload`: device keys, signed one-time keys and fallback keys,
//! signed the way the Matrix appendix prescribes (Ed25519 over canonical
//! JSON without `signatures` and `unsigned`). The Curve25519 keys are random
//! 32-byte strings: the server never does Curve25519 math, it only stores and
//! hands them out, so they need not be valid points.

use std::sync::atomic::{AtomicU32, Ordering};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{json, Map, Value};

pub const OLM_ALGORITHM: &str = "m.olm.v1.curve25519-aes-sha2";
pub const MEGOLM_ALGORITHM: &str = "m.megolm.v1.aes-sha2";

/// Matrix's "unpadded base64" (standard alphabet, no `=`).
pub fn b64(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

/// Decodes unpadded or padded standard base64.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_NO_PAD.decode(text.trim_end_matches('=')).ok()
}

/// Base64 of `n` random bytes.
pub fn random_b64(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    b64(&bytes)
}

/// Canonical JSON: compact, object keys sorted by code point at every level.
/// (Sorting is done here explicitly rather than relying on serde_json's map
/// type, which becomes insertion-ordered if any crate enables
/// `preserve_order`.)
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key).expect("a string serializes"));
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).expect("a scalar serializes")),
    }
}

/// The bytes a Matrix signature covers: the canonical JSON of `value` with
/// the top-level `signatures` and `unsigned` removed.
pub fn signable_json(value: &Value) -> String {
    let mut value = value.clone();
    if let Value::Object(map) = &mut value {
        map.remove("signatures");
        map.remove("unsigned");
    }
    canonical_json(&value)
}

/// Signs `value` with `key`, returning it with
/// `signatures[signer][key_id]` added (other signatures are kept).
pub fn sign_json(value: &Value, signer: &str, key_id: &str, key: &SigningKey) -> Value {
    let signature = b64(&key.sign(signable_json(value).as_bytes()).to_bytes());
    let mut signed = value.clone();
    let map = signed
        .as_object_mut()
        .expect("only JSON objects are signed");
    let signatures = map
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()));
    let by_signer = signatures
        .as_object_mut()
        .expect("signatures is an object")
        .entry(signer)
        .or_insert_with(|| Value::Object(Map::new()));
    by_signer
        .as_object_mut()
        .expect("signatures[signer] is an object")
        .insert(key_id.to_owned(), Value::String(signature));
    signed
}

/// Checks `value.signatures[signer][key_id]` against the unpadded-base64
/// Ed25519 public key `public_key`.
pub fn verify_json(value: &Value, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = value
        .pointer(&format!(
            "/signatures/{}/{}",
            pointer_escape(signer),
            pointer_escape(key_id)
        ))
        .and_then(Value::as_str)
        .and_then(b64_decode)
        .and_then(|s| Signature::from_slice(&s).ok())
    else {
        return false;
    };
    let Some(key) = b64_decode(public_key)
        .and_then(|k| <[u8; 32]>::try_from(k).ok())
        .and_then(|k| VerifyingKey::from_bytes(&k).ok())
    else {
        return false;
    };
    key.verify(signable_json(value).as_bytes(), &signature)
        .is_ok()
}

fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// One device's identity: an Ed25519 signing key and a Curve25519 identity
/// key, plus a counter for one-time-key ids.
pub struct DeviceKeys {
    pub user_id: String,
    pub device_id: String,
    pub signing_key: SigningKey,
    /// Unpadded base64 of the random Curve25519 identity key.
    pub curve25519: String,
    next_key_id: AtomicU32,
}

impl DeviceKeys {
    pub fn generate(user_id: &str, device_id: &str) -> DeviceKeys {
        DeviceKeys {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            signing_key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
            curve25519: random_b64(32),
            next_key_id: AtomicU32::new(1),
        }
    }

    /// Unpadded base64 of the Ed25519 public key.
    pub fn ed25519(&self) -> String {
        b64(self.signing_key.verifying_key().as_bytes())
    }

    /// `ed25519:<device_id>`
    pub fn ed25519_key_id(&self) -> String {
        format!("ed25519:{}", self.device_id)
    }

    /// `curve25519:<device_id>`
    pub fn curve25519_key_id(&self) -> String {
        format!("curve25519:{}", self.device_id)
    }

    /// Signs `value` with this device's key (`signatures[user_id]["ed25519:DEV"]`).
    pub fn sign(&self, value: &Value) -> Value {
        sign_json(
            value,
            &self.user_id,
            &self.ed25519_key_id(),
            &self.signing_key,
        )
    }

    /// The signed `device_keys` object.
    pub fn device_keys(&self) -> Value {
        self.sign(&json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM_ALGORITHM, MEGOLM_ALGORITHM],
            "keys": {
                self.curve25519_key_id(): self.curve25519,
                self.ed25519_key_id(): self.ed25519(),
            },
        }))
    }

    /// A fresh key id, unique for this device (vodozemac-style base64 of a counter).
    pub fn next_key_id(&self) -> String {
        let n = self.next_key_id.fetch_add(1, Ordering::Relaxed);
        format!("AAAA{}", b64(&n.to_be_bytes()))
    }

    /// `n` fresh signed one-time keys: `{"signed_curve25519:<id>": {key, signatures}}`.
    pub fn one_time_keys(&self, n: usize) -> Value {
        let mut keys = Map::new();
        for _ in 0..n {
            let key = self.sign(&json!({ "key": random_b64(32) }));
            keys.insert(format!("signed_curve25519:{}", self.next_key_id()), key);
        }
        Value::Object(keys)
    }

    /// A fresh signed fallback key: `{"signed_curve25519:<id>": {key, fallback: true, signatures}}`.
    pub fn fallback_key(&self) -> Value {
        let key = self.sign(&json!({ "key": random_b64(32), "fallback": true }));
        json!({ format!("signed_curve25519:{}", self.next_key_id()): key })
    }

    /// A complete `/keys/upload` body: device keys, `n_one_time` one-time
    /// keys and a fallback key.
    pub fn upload_body(&self, n_one_time: usize) -> Value {
        json!({
            "device_keys": self.device_keys(),
            "one_time_keys": self.one_time_keys(n_one_time),
            "fallback_keys": self.fallback_key(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_and_compacts() {
        let v = json!({"b": 1, "a": {"d": [1, {"z": null, "y": true}], "c": "é\n"}, "A": -5});
        assert_eq!(
            canonical_json(&v),
            "{\"A\":-5,\"a\":{\"c\":\"é\\n\",\"d\":[1,{\"y\":true,\"z\":null}]},\"b\":1}"
        );
    }

    #[test]
    fn device_keys_are_signed_and_verifiable() {
        let dev = DeviceKeys::generate("@alice:localhost", "DEVICEA");
        let keys = dev.device_keys();
        assert_eq!(keys["keys"]["ed25519:DEVICEA"], dev.ed25519());
        assert_eq!(b64_decode(&dev.curve25519).unwrap().len(), 32);
        assert!(!dev.ed25519().contains('='));
        assert!(verify_json(
            &keys,
            "@alice:localhost",
            "ed25519:DEVICEA",
            &dev.ed25519()
        ));
        // `unsigned` is not covered by the signature; a changed field is.
        let mut with_unsigned = keys.clone();
        with_unsigned["unsigned"] = json!({"device_display_name": "phone"});
        assert!(verify_json(
            &with_unsigned,
            "@alice:localhost",
            "ed25519:DEVICEA",
            &dev.ed25519()
        ));
        let mut tampered = keys.clone();
        tampered["device_id"] = json!("OTHER");
        assert!(!verify_json(
            &tampered,
            "@alice:localhost",
            "ed25519:DEVICEA",
            &dev.ed25519()
        ));
    }

    #[test]
    /// This module's canonical JSON is written independently, as an oracle
    /// for the one the server and SDK share (cloister-proto).
    fn the_servers_canonical_form_agrees() {
        let dev = DeviceKeys::generate("@bob:localhost", "BOBDEV");
        let body = dev.upload_body(3);
        let keys = &body["device_keys"];
        assert_eq!(
            cloister_proto::canonical::signable_value(keys).unwrap(),
            signable_json(keys)
        );
        let public = cloister_proto::canonical::decode_ed25519_key(&dev.ed25519()).unwrap();
        cloister_proto::canonical::verify_value(keys, "@bob:localhost", "ed25519:BOBDEV", &public)
            .unwrap();
        for (_, otk) in body["one_time_keys"].as_object().unwrap() {
            cloister_proto::canonical::verify_value(
                otk,
                "@bob:localhost",
                "ed25519:BOBDEV",
                &public,
            )
            .unwrap();
        }
    }

    #[test]
    fn one_time_and_fallback_keys_are_unique_and_signed() {
        let dev = DeviceKeys::generate("@a:localhost", "D");
        let body = dev.upload_body(5);
        let otks = body["one_time_keys"].as_object().unwrap();
        assert_eq!(otks.len(), 5);
        let fallback = body["fallback_keys"].as_object().unwrap();
        assert_eq!(fallback.len(), 1);
        let (id, key) = fallback.iter().next().unwrap();
        assert!(id.starts_with("signed_curve25519:"));
        assert!(!otks.contains_key(id));
        assert_eq!(key["fallback"], true);
        assert!(verify_json(
            key,
            "@a:localhost",
            "ed25519:D",
            &dev.ed25519()
        ));
        for (id, otk) in otks {
            assert!(id.starts_with("signed_curve25519:"));
            assert!(verify_json(
                otk,
                "@a:localhost",
                "ed25519:D",
                &dev.ed25519()
            ));
        }
    }
}
