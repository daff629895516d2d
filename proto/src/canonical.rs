//! Canonical JSON and Ed25519 signatures, as the Matrix appendix defines
//! them.
//!
//! The canonical form is written out here rather than left to
//! `serde_json`'s map order: any crate in a build can switch on
//! `preserve_order`, which would silently change what gets signed.

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Map, Value};

/// Largest magnitude an integer may have in canonical JSON (2^53 − 1).
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number with a fraction or exponent.
    #[error("floating-point numbers are not allowed in canonical JSON")]
    Float,
    /// An integer beyond ±(2^53 − 1).
    #[error("integer outside the canonical JSON range ±(2^53-1)")]
    OutOfRange,
    /// Only objects can carry `signatures`.
    #[error("a signed value must be a JSON object")]
    NotAnObject,
}

/// Why a signature check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature by that signer and key id.
    #[error("signature missing")]
    Missing,
    /// The signature is not base64 of 64 bytes.
    #[error("signature is not base64 of the right length")]
    Malformed,
    /// The signature does not match the object and key.
    #[error("signature does not verify")]
    Invalid,
    /// The object has no canonical form, so nothing could be signed.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// Checks that every number in `value` is an integer Matrix can sign.
pub fn check_numbers(value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Number(n) => number(n).map(drop),
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

fn number(n: &serde_json::Number) -> Result<i64, CanonicalError> {
    match n.as_i64() {
        Some(i) if (-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&i) => Ok(i),
        Some(_) => Err(CanonicalError::OutOfRange),
        None if n.is_u64() => Err(CanonicalError::OutOfRange),
        None => Err(CanonicalError::Float),
    }
}

/// `value` as canonical JSON: compact, object keys sorted by code point,
/// integers only and within ±(2^53 − 1).
pub fn to_canonical(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n)?.to_string()),
        // serde_json escapes exactly what canonical JSON requires: `"`, `\`
        // and control characters, leaving every other code point as UTF-8.
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Sorting UTF-8 strings bytewise is sorting by code point.
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(key, out);
                out.push(':');
                write(&map[key], out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut String) {
    // Serializing a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// The bytes a Matrix signature covers: the canonical form of the object
/// without `signatures` and `unsigned`.
pub fn signable_bytes(object: &Map<String, Value>) -> Result<String, CanonicalError> {
    let mut copy = object.clone();
    copy.remove("signatures");
    copy.remove("unsigned");
    to_canonical(&Value::Object(copy))
}

/// Like [`signable_bytes`], for a value that must be an object.
pub fn signable_value(value: &Value) -> Result<String, CanonicalError> {
    value
        .as_object()
        .ok_or(CanonicalError::NotAnObject)
        .and_then(signable_bytes)
}

/// Matrix's "unpadded base64", decoded the way other implementations do:
/// padding optional and non-zero trailing bits tolerated (the spec's own
/// example key has them).
pub const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes base64 with [`LENIENT_B64`].
pub fn decode_b64(encoded: &str) -> Option<Vec<u8>> {
    LENIENT_B64.decode(encoded).ok()
}

/// Decodes an unpadded (or padded) base64 Ed25519 public key.
pub fn decode_ed25519_key(encoded: &str) -> Option<VerifyingKey> {
    let bytes = decode_b64(encoded)?;
    VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()
}

/// The base64 signature at `signatures.{signer}.{key_id}`, if present.
pub fn signature_of<'a>(
    object: &'a Map<String, Value>,
    signer: &str,
    key_id: &str,
) -> Option<&'a str> {
    object
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
}

/// Verifies `signatures.{signer}.{key_id}` on `object` with `key`.
pub fn verify_signature(
    object: &Map<String, Value>,
    signer: &str,
    key_id: &str,
    key: &VerifyingKey,
) -> Result<(), SignatureError> {
    let signature = signature_of(object, signer, key_id).ok_or(SignatureError::Missing)?;
    let signature = decode_b64(signature)
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(SignatureError::Malformed)?;
    let message = signable_bytes(object)?;
    key.verify_strict(message.as_bytes(), &signature)
        .map_err(|_| SignatureError::Invalid)
}

/// [`verify_signature`] for a value that must be an object.
pub fn verify_value(
    value: &Value,
    signer: &str,
    key_id: &str,
    key: &VerifyingKey,
) -> Result<(), SignatureError> {
    let object = value.as_object().ok_or(CanonicalError::NotAnObject)?;
    verify_signature(object, signer, key_id, key)
}

/// Adds `signature` (unpadded base64) under `signatures.{signer}.{key_id}`,
/// keeping any signatures already present.
pub fn add_signature(
    object: &mut Map<String, Value>,
    signer: &str,
    key_id: &str,
    signature: String,
) {
    let signatures = object
        .entry("signatures")
        .or_insert_with(|| Value::Object(Map::new()));
    if !signatures.is_object() {
        *signatures = Value::Object(Map::new());
    }
    if let Value::Object(by_signer) = signatures {
        let entry = by_signer
            .entry(signer.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        if let Value::Object(by_key) = entry {
            by_key.insert(key_id.to_owned(), Value::String(signature));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_by_code_point_and_compacts() {
        let value = json!({"b": 1, "a": {"d": [1, "x"], "c": null}, "é": true, "Z": "\u{1F600}\n"});
        assert_eq!(
            to_canonical(&value).unwrap(),
            "{\"Z\":\"\u{1F600}\\n\",\"a\":{\"c\":null,\"d\":[1,\"x\"]},\"b\":1,\"é\":true}"
        );
        let v =
            json!({"b": 1, "a": {"d": [1, 2], "c": "é\n"}, "signatures": {}, "unsigned": {"x": 1}});
        assert_eq!(
            signable_value(&v).unwrap(),
            "{\"a\":{\"c\":\"é\\n\",\"d\":[1,2]},\"b\":1}"
        );
    }

    #[test]
    fn matches_the_spec_examples() {
        // The Matrix specification, appendix "Canonical JSON".
        let value = json!({"one": 1, "two": "Two"});
        assert_eq!(to_canonical(&value).unwrap(), r#"{"one":1,"two":"Two"}"#);
        let value = json!({"a": "\u{65E5}\u{672C}\u{8A9E}"});
        assert_eq!(to_canonical(&value).unwrap(), "{\"a\":\"日本語\"}");
        let value = json!({"a": "\u{0000}"});
        assert_eq!(to_canonical(&value).unwrap(), r#"{"a":"\u0000"}"#);
    }

    #[test]
    fn numbers_outside_range_are_refused() {
        assert!(check_numbers(&json!({"n": 9007199254740991i64})).is_ok());
        assert_eq!(
            check_numbers(&json!({"n": 9007199254740992i64})),
            Err(CanonicalError::OutOfRange)
        );
        assert!(check_numbers(&json!({"n": -9007199254740992i64})).is_err());
        assert_eq!(check_numbers(&json!([1.5])), Err(CanonicalError::Float));
        assert!(check_numbers(&json!({"n": u64::MAX})).is_err());
        assert!(to_canonical(&json!({"a": 1.5})).is_err());
    }

    /// The spec's own example: the appendix's signing key signs `{}` as below.
    #[test]
    fn spec_signing_example_verifies() {
        use ed25519_dalek::{Signer, SigningKey};
        let seed = decode_b64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
        let key = SigningKey::from_bytes(&seed.try_into().unwrap());
        let value = json!({"signatures": {"domain": {"ed25519:1":
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}});
        let object = value.as_object().unwrap();
        verify_signature(object, "domain", "ed25519:1", &key.verifying_key()).unwrap();
        let mut tampered = object.clone();
        tampered.insert("extra".into(), json!(1));
        assert_eq!(
            verify_signature(&tampered, "domain", "ed25519:1", &key.verifying_key()),
            Err(SignatureError::Invalid)
        );

        // Signing and adding round-trips, and other signatures are ignored.
        let mut object = json!({"key": "abc", "unsigned": {"x": 1}})
            .as_object()
            .unwrap()
            .clone();
        let sig = key.sign(signable_bytes(&object).unwrap().as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(sig.to_bytes());
        add_signature(&mut object, "@a:x", "ed25519:D", b64);
        add_signature(&mut object, "@o:x", "ed25519:E", "AAAA".into());
        verify_signature(&object, "@a:x", "ed25519:D", &key.verifying_key()).unwrap();
        assert_eq!(
            verify_signature(&object, "@a:x", "ed25519:X", &key.verifying_key()),
            Err(SignatureError::Missing)
        );
    }
}
