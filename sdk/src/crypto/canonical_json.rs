//! Matrix canonical JSON and the signing rules built on it.
//!
//! Signatures cover the canonical form of an object without its `signatures`
//! and `unsigned` members. The canonical form is written here rather than
//! relying on `serde_json`'s map ordering, because any crate in the build
//! could turn on `preserve_order` and silently change what gets signed.

use serde_json::{Map, Value};
use vodozemac::{Ed25519PublicKey, Ed25519Signature};

use super::error::CryptoError;

/// Largest magnitude an integer may have in canonical JSON (2^53 − 1).
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Serialize `value` as Matrix canonical JSON: compact, object keys sorted
/// by code point, integers only and within ±(2^53 − 1).
pub fn canonical_json(value: &Value) -> Result<String, CryptoError> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut String) -> Result<(), CryptoError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let int = n
                .as_i64()
                .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok()))
                .ok_or_else(|| CryptoError::CanonicalJson(format!("{n} is not an integer")))?;
            if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&int) {
                return Err(CryptoError::CanonicalJson(format!("{int} is out of range")));
            }
            out.push_str(&int.to_string());
        }
        // serde_json escapes exactly what canonical JSON requires: `"`, `\`
        // and control characters, leaving all other code points as UTF-8.
        Value::String(s) => out.push_str(&serde_json::to_string(s)?),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(key)?);
                out.push(':');
                write_canonical(&map[key], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// The bytes a Matrix signature covers: the canonical form of the object
/// without `signatures` and `unsigned`.
pub fn signable_bytes(object: &Map<String, Value>) -> Result<String, CryptoError> {
    let mut copy = object.clone();
    copy.remove("signatures");
    copy.remove("unsigned");
    canonical_json(&Value::Object(copy))
}

/// Add `signature` under `signatures.{user_id}.{key_id}`, keeping any
/// signatures already present.
pub fn add_signature(
    object: &mut Map<String, Value>,
    user_id: &str,
    key_id: &str,
    signature: &Ed25519Signature,
) {
    let signatures = object
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()));
    if !signatures.is_object() {
        *signatures = Value::Object(Map::new());
    }
    if let Value::Object(by_user) = signatures {
        let entry = by_user
            .entry(user_id.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(by_key) = entry {
            by_key.insert(key_id.to_owned(), Value::String(signature.to_base64()));
        }
    }
}

/// Check the signature `signatures.{user_id}.{key_id}` on `object` with
/// `key`. `what` names the object in the error.
pub fn verify_signature(
    object: &Map<String, Value>,
    user_id: &str,
    key_id: &str,
    key: &Ed25519PublicKey,
    what: &'static str,
) -> Result<(), CryptoError> {
    let bad = || CryptoError::BadSignature {
        what,
        signer: format!("{user_id} {key_id}"),
    };
    let signature = object
        .get("signatures")
        .and_then(|s| s.get(user_id))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
        .ok_or_else(bad)?;
    let signature = Ed25519Signature::from_base64(signature).map_err(|_| bad())?;
    let message = signable_bytes(object)?;
    key.verify(message.as_bytes(), &signature)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_compacts() {
        let value = json!({"b": 1, "a": {"d": [1, "x"], "c": null}, "é": true, "Z": "\u{1F600}\n"});
        assert_eq!(
            canonical_json(&value).unwrap(),
            "{\"Z\":\"\u{1F600}\\n\",\"a\":{\"c\":null,\"d\":[1,\"x\"]},\"b\":1,\"é\":true}"
        );
    }

    #[test]
    fn matches_the_spec_examples() {
        // Examples from the Matrix specification, appendix "Canonical JSON".
        let value = json!({"one": 1, "two": "Two"});
        assert_eq!(canonical_json(&value).unwrap(), r#"{"one":1,"two":"Two"}"#);
        let value = json!({"a": "\u{65E5}\u{672C}\u{8A9E}"});
        assert_eq!(canonical_json(&value).unwrap(), "{\"a\":\"日本語\"}");
        let value = json!({"a": "\u{0000}"});
        assert_eq!(canonical_json(&value).unwrap(), r#"{"a":"\u0000"}"#);
    }

    #[test]
    fn rejects_floats_and_unsafe_integers() {
        assert!(canonical_json(&json!({"a": 1.5})).is_err());
        assert!(canonical_json(&json!({"a": MAX_SAFE_INTEGER + 1})).is_err());
        assert!(canonical_json(&json!({"a": -MAX_SAFE_INTEGER - 1})).is_err());
        assert!(canonical_json(&json!({"a": MAX_SAFE_INTEGER})).is_ok());
    }

    #[test]
    fn signature_round_trip_ignores_unsigned_and_other_signatures() {
        let account = vodozemac::olm::Account::new();
        let mut object = json!({"key": "abc", "unsigned": {"x": 1}})
            .as_object()
            .unwrap()
            .clone();
        let signature = account.sign(signable_bytes(&object).unwrap());
        add_signature(&mut object, "@a:x", "ed25519:D", &signature);
        add_signature(
            &mut object,
            "@other:x",
            "ed25519:E",
            &account.sign("unrelated"),
        );
        object.insert("unsigned".into(), json!({"changed": true}));
        let key = account.ed25519_key();
        verify_signature(&object, "@a:x", "ed25519:D", &key, "test object").unwrap();

        object.insert("key".into(), json!("abd"));
        assert!(verify_signature(&object, "@a:x", "ed25519:D", &key, "test object").is_err());
    }
}
