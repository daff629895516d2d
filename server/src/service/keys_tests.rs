//! Unit tests for `service::keys`: upload validation and token parsing.

use super::*;
use crate::service::cross_signing::tests::{b64, sign, signing_key};
use ed25519_dalek::SigningKey;

fn device_keys(user: &str, device: &str, key: &SigningKey) -> Value {
    let mut v = json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): b64(&[7u8; 32]),
            format!("ed25519:{device}"): b64(key.verifying_key().as_bytes()),
        },
    });
    sign(&mut v, user, &format!("ed25519:{device}"), key);
    v
}

#[test]
fn device_keys_need_a_valid_self_signature() {
    let key = signing_key(1);
    let v = device_keys("@a:x", "DEV", &key);
    let (stored, ed) = validate_device_keys(&v, "@a:x", "DEV").unwrap();
    assert_eq!(ed, key.verifying_key());
    assert!(stored.get("unsigned").is_none());

    assert!(validate_device_keys(&v, "@b:x", "DEV").is_err());
    assert!(validate_device_keys(&v, "@a:x", "OTHER").is_err());
    let mut tampered = v.clone();
    tampered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    let err = validate_device_keys(&tampered, "@a:x", "DEV").unwrap_err();
    assert_eq!(err.errcode, "M_INVALID_PARAM");
    let mut wrong_signer = v.clone();
    wrong_signer["signatures"] = json!({});
    sign(&mut wrong_signer, "@a:x", "ed25519:DEV", &signing_key(2));
    assert!(validate_device_keys(&wrong_signer, "@a:x", "DEV").is_err());
    let mut no_curve = v.clone();
    no_curve["keys"]
        .as_object_mut()
        .unwrap()
        .remove("curve25519:DEV");
    sign(&mut no_curve, "@a:x", "ed25519:DEV", &key);
    assert!(validate_device_keys(&no_curve, "@a:x", "DEV").is_err());
}

#[test]
fn key_material_comparison_ignores_signatures_and_order() {
    let key = signing_key(1);
    let a = device_keys("@a:x", "DEV", &key);
    let mut b = a.clone();
    b["algorithms"] = json!(["m.megolm.v1.aes-sha2", "m.olm.v1.curve25519-aes-sha2"]);
    b["signatures"]["@a:x"]["ed25519:SSK"] = json!("x");
    assert!(same_key_material(&a, &b));
    let c = device_keys("@a:x", "DEV", &signing_key(3));
    assert!(!same_key_material(&a, &c));
}

#[test]
fn one_time_keys_are_checked() {
    let key = signing_key(1);
    let vk = key.verifying_key();
    let mut signed = json!({ "key": b64(&[9u8; 32]) });
    sign(&mut signed, "@a:x", "ed25519:DEV", &key);
    let mut map = BTreeMap::new();
    map.insert("signed_curve25519:AAAAAQ".into(), signed.clone());
    map.insert("curve25519:AAAAAg".into(), json!(b64(&[8u8; 32])));
    let entries = parse_key_entries(&map, 100, "one_time_keys", "@a:x", "DEV", Some(&vk)).unwrap();
    assert_eq!(entries.len(), 2);
    assert!(entries
        .iter()
        .any(|e| e.algorithm == "signed_curve25519" && e.key_id == "AAAAAQ"));

    let other = signing_key(2).verifying_key();
    assert!(parse_key_entries(&map, 100, "k", "@a:x", "DEV", Some(&other)).is_err());
    // Unknown device key: cannot check, so accepted.
    assert!(parse_key_entries(&map, 100, "k", "@a:x", "DEV", None).is_ok());
    assert!(parse_key_entries(&map, 1, "k", "@a:x", "DEV", Some(&vk)).is_err());

    for (id, value) in [
        ("nocolon", json!("abc")),
        (":AAAA", json!("abc")),
        ("signed_curve25519:", json!("abc")),
        ("signed_curve25519:B", json!("abc")),
        ("curve25519:C", json!(5)),
        ("curve25519:D", json!({"nokey": 1})),
    ] {
        let mut bad = BTreeMap::new();
        bad.insert(id.into(), value);
        assert!(
            parse_key_entries(&bad, 100, "k", "@a:x", "DEV", None).is_err(),
            "{id}"
        );
    }
    let mut long = BTreeMap::new();
    long.insert(format!("curve25519:{}", "A".repeat(250)), json!("abc"));
    assert!(parse_key_entries(&long, 100, "k", "@a:x", "DEV", None).is_err());
}

#[test]
fn signatures_merge_into_key_objects() {
    let mut v = json!({ "keys": {}, "signatures": { "@a:x": { "ed25519:DEV": "self" } } });
    let sig = |target: &str, signature: &str| KeySignature {
        target_key: target.into(),
        signer_user: "@a:x".into(),
        signer_key: "ed25519:SSK".into(),
        signature: signature.into(),
    };
    let sigs = [sig("DEV", "s1"), sig("OTHER", "s2")];
    merge_signatures(&mut v, &sigs, "DEV");
    assert_eq!(
        v["signatures"],
        json!({ "@a:x": { "ed25519:DEV": "self", "ed25519:SSK": "s1" } })
    );
    let mut bare = json!({ "keys": {} });
    merge_signatures(&mut bare, &sigs, "OTHER");
    assert_eq!(bare["signatures"]["@a:x"]["ed25519:SSK"], "s2");
}
