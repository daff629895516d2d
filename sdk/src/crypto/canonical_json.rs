//! Matrix canonical JSON and the signing rules built on it, as thin
//! adapters over [`cloister_proto::canonical`]: the one implementation the
//! server, the SDK and the C library share. What is here only converts
//! between vodozemac's Ed25519 types and proto's, and proto's errors into
//! [`CryptoError`].
//!
//! Signatures cover the canonical form of an object without its `signatures`
//! and `unsigned` members.

use cloister_proto::canonical::{self, CanonicalError, SignatureError};
use serde_json::{Map, Value};
use vodozemac::{Ed25519PublicKey, Ed25519Signature};

use super::error::CryptoError;

/// Largest magnitude an integer may have in canonical JSON (2^53 − 1).
#[cfg(test)]
pub(super) const MAX_SAFE_INTEGER: i64 = canonical::MAX_SAFE_INT;

fn canonical_error(error: CanonicalError) -> CryptoError {
    CryptoError::CanonicalJson(error.to_string())
}

/// Serialize `value` as Matrix canonical JSON: compact, object keys sorted
/// by code point, integers only and within ±(2^53 − 1).
pub fn canonical_json(value: &Value) -> Result<String, CryptoError> {
    canonical::to_canonical(value).map_err(canonical_error)
}

/// The bytes a Matrix signature covers: the canonical form of the object
/// without `signatures` and `unsigned`.
pub(super) fn signable_bytes(object: &Map<String, Value>) -> Result<String, CryptoError> {
    canonical::signable_bytes(object).map_err(canonical_error)
}

/// Add `signature` under `signatures.{user_id}.{key_id}`, keeping any
/// signatures already present.
pub(super) fn add_signature(
    object: &mut Map<String, Value>,
    user_id: &str,
    key_id: &str,
    signature: &Ed25519Signature,
) {
    canonical::add_signature(object, user_id, key_id, signature.to_base64());
}

/// Check the signature `signatures.{user_id}.{key_id}` on `object` with
/// `key`. `what` names the object in the error.
pub(super) fn verify_signature(
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
    // vodozemac's key wraps the same ed25519-dalek key type; both verify
    // with `verify_strict`.
    let key = ed25519_dalek::VerifyingKey::from_bytes(key.as_bytes()).map_err(|_| bad())?;
    match canonical::verify_signature(object, user_id, key_id, &key) {
        Ok(()) => Ok(()),
        Err(SignatureError::Canonical(error)) => Err(canonical_error(error)),
        Err(SignatureError::Missing | SignatureError::Malformed | SignatureError::Invalid) => {
            Err(bad())
        }
    }
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

    /// The spec's signing example (appendix "Signing JSON"), checked with a
    /// vodozemac key: the adapters and cloister-proto agree.
    #[test]
    fn vodozemac_keys_verify_through_proto() {
        let seed =
            cloister_proto::canonical::decode_b64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
                .unwrap();
        let dalek = ed25519_dalek::SigningKey::from_bytes(&seed.try_into().unwrap());
        let key = Ed25519PublicKey::from_slice(dalek.verifying_key().as_bytes()).unwrap();
        let object = json!({"signatures": {"domain": {"ed25519:1":
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}});
        let object = object.as_object().unwrap();
        verify_signature(object, "domain", "ed25519:1", &key, "spec example").unwrap();
        let err =
            verify_signature(object, "domain", "ed25519:2", &key, "spec example").unwrap_err();
        assert!(matches!(err, CryptoError::BadSignature { .. }), "{err}");

        // A float makes the object unsignable: reported as such, not as a
        // bad signature.
        let mut with_float = object.clone();
        with_float.insert("n".into(), json!(1.5));
        let err = verify_signature(&with_float, "domain", "ed25519:1", &key, "x").unwrap_err();
        assert!(matches!(err, CryptoError::CanonicalJson(_)), "{err}");

        // The same bytes as proto, by construction.
        let value = json!({"b": [1, {"z": null, "a": "\u{1F600}"}], "a": -9007199254740991i64});
        assert_eq!(
            canonical_json(&value).unwrap(),
            cloister_proto::canonical::to_canonical(&value).unwrap()
        );
    }
}
