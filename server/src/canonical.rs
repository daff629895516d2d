//! Canonical JSON and Ed25519 signatures, as the Matrix appendix defines them.
//!
//! Canonical JSON is compact, with object keys sorted by code point and
//! integers only, each within ±(2^53 − 1). `serde_json`'s default map is a
//! `BTreeMap` ordered by UTF-8 bytes, which is the same order as code points,
//! and its escaping matches the spec's (shortest escapes, UTF-8 otherwise).

use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::Value;

pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// Checks that every number in `value` is an integer Matrix can sign.
pub fn check_numbers(value: &Value) -> Result<(), &'static str> {
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(i) if (-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&i) => Ok(()),
            Some(_) => Err("integer outside the canonical JSON range ±(2^53-1)"),
            None if n.is_u64() => Err("integer outside the canonical JSON range ±(2^53-1)"),
            None => Err("floating-point numbers are not allowed in canonical JSON"),
        },
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// The canonical encoding of `value` with `signatures` and `unsigned` removed:
/// the bytes a Matrix signature covers.
pub fn signable_bytes(value: &Value) -> Result<String, &'static str> {
    let Value::Object(map) = value else {
        return Err("a signed value must be a JSON object");
    };
    let mut map = map.clone();
    map.remove("signatures");
    map.remove("unsigned");
    let value = Value::Object(map);
    check_numbers(&value)?;
    serde_json::to_string(&value).map_err(|_| "value cannot be serialized")
}

/// Decodes an unpadded (or padded) standard base64 Ed25519 public key.
pub fn decode_ed25519_key(encoded: &str) -> Option<VerifyingKey> {
    let bytes = decode_b64(encoded)?;
    VerifyingKey::from_bytes(&bytes.try_into().ok()?).ok()
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

pub fn decode_b64(encoded: &str) -> Option<Vec<u8>> {
    LENIENT_B64.decode(encoded).ok()
}

/// Verifies `value.signatures[signer][key_id]` with `key`.
pub fn verify_signature(
    value: &Value,
    signer: &str,
    key_id: &str,
    key: &VerifyingKey,
) -> Result<(), &'static str> {
    let signature = value
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.get(key_id))
        .and_then(Value::as_str)
        .ok_or("signature missing")?;
    let signature = decode_b64(signature).ok_or("signature is not base64")?;
    let signature =
        Signature::from_slice(&signature).map_err(|_| "signature has the wrong length")?;
    let message = signable_bytes(value)?;
    key.verify_strict(message.as_bytes(), &signature)
        .map_err(|_| "signature does not verify")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_sorts_and_compacts() {
        let v =
            json!({"b": 1, "a": {"d": [1, 2], "c": "é\n"}, "signatures": {}, "unsigned": {"x": 1}});
        assert_eq!(
            signable_bytes(&v).unwrap(),
            "{\"a\":{\"c\":\"é\\n\",\"d\":[1,2]},\"b\":1}"
        );
    }

    #[test]
    fn numbers_outside_range_are_refused() {
        assert!(check_numbers(&json!({"n": 9007199254740991i64})).is_ok());
        assert!(check_numbers(&json!({"n": 9007199254740992i64})).is_err());
        assert!(check_numbers(&json!({"n": -9007199254740992i64})).is_err());
        assert!(check_numbers(&json!([1.5])).is_err());
        assert!(check_numbers(&json!({"n": u64::MAX})).is_err());
    }

    /// The spec's own example: the signing key from the appendix signs `{}`
    /// as `K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ`.
    #[test]
    fn spec_signing_example_verifies() {
        use ed25519_dalek::SigningKey;
        let seed = decode_b64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap();
        let key = SigningKey::from_bytes(&seed.try_into().unwrap());
        let value = json!({"signatures": {"domain": {"ed25519:1":
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}});
        verify_signature(&value, "domain", "ed25519:1", &key.verifying_key()).unwrap();
        let mut tampered = value.clone();
        tampered["extra"] = json!(1);
        assert!(verify_signature(&tampered, "domain", "ed25519:1", &key.verifying_key()).is_err());
    }
}
