//! Reading other people's cross-signing identities from `/keys/query`
//! through the machine's public API: a device signed by its owner's
//! self-signing key is cross-signed, one the owner did not sign is flagged,
//! a user without an identity is plain unverified, a replaced master key is
//! reported as an identity change, a forged chain is refused, and all of it
//! survives a reload from records.

use cloister_sdk::crypto::{
    CryptoEvent, CryptoRecord, DeviceTrust, LocalTrust, OlmMachine, RequestBody, SyncChanges,
};
use serde_json::{json, Map, Value};
use vodozemac::Ed25519SecretKey;
use zeroize::Zeroizing;

const ALICE: &str = "@alice:cloister.test";
const BOB: &str = "@bob:cloister.test";
const CAROL: &str = "@carol:cloister.test";

fn key_id(key: &Ed25519SecretKey) -> String {
    format!("ed25519:{}", key.public_key().to_base64())
}

/// Signs `json` as `user` with `key` under `key_id` (spec: "Signing JSON").
fn sign(json: &mut Value, user: &str, key_id: &str, key: &Ed25519SecretKey) {
    let mut unsigned = json.as_object().unwrap().clone();
    unsigned.remove("signatures");
    unsigned.remove("unsigned");
    let canonical = cloister_sdk::crypto::canonical_json(&Value::Object(unsigned)).unwrap();
    let signature = key.sign(canonical.as_bytes()).to_base64();
    let signatures = json
        .as_object_mut()
        .unwrap()
        .entry("signatures")
        .or_insert_with(|| json!({}));
    signatures
        .as_object_mut()
        .unwrap()
        .entry(user)
        .or_insert_with(|| Value::Object(Map::new()))[key_id] = json!(signature);
}

fn cross_signing_key(user: &str, usage: &str, key: &Ed25519SecretKey) -> Value {
    let public = key.public_key().to_base64();
    json!({ "user_id": user, "usage": [usage], "keys": { format!("ed25519:{public}"): public } })
}

/// Bob's master and self-signing keys.
struct Identity {
    master: Ed25519SecretKey,
    ssk: Ed25519SecretKey,
}

impl Identity {
    fn new() -> Self {
        Identity {
            master: Ed25519SecretKey::new(),
            ssk: Ed25519SecretKey::new(),
        }
    }

    fn keys(&self, user: &str) -> (Value, Value) {
        let master = cross_signing_key(user, "master", &self.master);
        let mut ssk = cross_signing_key(user, "self_signing", &self.ssk);
        sign(&mut ssk, user, &key_id(&self.master), &self.master);
        (master, ssk)
    }
}

/// Answers Alice's pending `/keys/query` with `response`.
fn answer_query(alice: &mut OlmMachine, response: &Value) {
    let requests = alice.outgoing_requests().unwrap();
    let query = requests
        .iter()
        .find(|r| matches!(r.body, RequestBody::KeysQuery(_)))
        .expect("a keys query");
    alice
        .mark_request_as_sent(&query.request_id, response)
        .unwrap();
}

/// A sync saying `user`'s keys changed: the machine queries them again.
fn changed(machine: &mut OlmMachine, user: &str) {
    let sync = json!({ "device_lists": { "changed": [user] }, "next_batch": "s1" });
    machine.receive_sync_changes(SyncChanges::from_sync_response(&sync, 0));
}

fn reload(machine: &mut OlmMachine) -> OlmMachine {
    let changes = machine.pending_changes().unwrap();
    let records: Vec<CryptoRecord> = changes
        .upserts
        .into_iter()
        .map(|r| CryptoRecord {
            kind: r.kind,
            id: r.id,
            data: Zeroizing::new(r.data.to_vec()),
        })
        .collect();
    OlmMachine::from_records(records).unwrap()
}

#[test]
fn cross_signing_decides_device_trust() {
    let mut alice = OlmMachine::new(ALICE, "A1").unwrap();
    let bob1 = OlmMachine::new(BOB, "B1").unwrap();
    let bob2 = OlmMachine::new(BOB, "B2").unwrap();
    let carol = OlmMachine::new(CAROL, "C1").unwrap();
    let bob = Identity::new();
    let (master, ssk) = bob.keys(BOB);
    // Bob's self-signing key signed B1; B2 it did not.
    let mut b1 = bob1.device_keys().unwrap();
    sign(&mut b1, BOB, &key_id(&bob.ssk), &bob.ssk);
    let response = json!({
        "device_keys": {
            ALICE: { "A1": alice.device_keys().unwrap() },
            BOB: { "B1": b1, "B2": bob2.device_keys().unwrap() },
            CAROL: { "C1": carol.device_keys().unwrap() },
        },
        "master_keys": { BOB: master },
        "self_signing_keys": { BOB: ssk },
        "failures": {},
    });
    alice.update_tracked_users(&[BOB, CAROL]).unwrap();
    answer_query(&mut alice, &response);

    let identity = alice.user_identity(BOB).expect("Bob's identity");
    assert_eq!(identity.master, bob.master.public_key());
    assert!(!alice.is_identity_verified(BOB));
    assert_eq!(
        alice.device_trust(BOB, "B1"),
        Some(DeviceTrust::CrossSigned)
    );
    assert_eq!(
        alice.device_trust(BOB, "B2"),
        Some(DeviceTrust::NotSignedByOwner)
    );
    assert_eq!(
        alice.device_trust(CAROL, "C1"),
        Some(DeviceTrust::Unverified)
    );
    assert_eq!(alice.device_trust(BOB, "NOPE"), None);
    // Local decisions come first.
    assert!(alice.set_local_trust(BOB, "B2", LocalTrust::Verified));
    assert_eq!(alice.device_trust(BOB, "B2"), Some(DeviceTrust::Verified));
    assert!(alice.set_local_trust(BOB, "B1", LocalTrust::Blocked));
    assert_eq!(alice.device_trust(BOB, "B1"), Some(DeviceTrust::Blocked));
    assert!(alice.set_local_trust(BOB, "B1", LocalTrust::Unset));

    // Identities and cross-signing survive a reload.
    let mut alice = reload(&mut alice);
    assert_eq!(alice.user_identity(BOB), Some(identity));
    assert_eq!(
        alice.device_trust(BOB, "B1"),
        Some(DeviceTrust::CrossSigned)
    );
    alice.take_events();

    // Bob resets cross-signing: a new master key is a new identity.
    let reset = Identity::new();
    let (master, ssk) = reset.keys(BOB);
    let mut response = response.clone();
    response["master_keys"][BOB] = master;
    response["self_signing_keys"][BOB] = ssk;
    changed(&mut alice, BOB);
    answer_query(&mut alice, &response);
    let events = alice.take_events();
    assert!(
        events.iter().any(|e| matches!(e,
            CryptoEvent::IdentityChanged { user_id, was_verified: false } if user_id == BOB)),
        "{events:?}"
    );
    // B1 was signed by the old self-signing key only.
    assert_eq!(
        alice.device_trust(BOB, "B1"),
        Some(DeviceTrust::NotSignedByOwner)
    );

    // A self-signing key the master did not sign is refused with the identity.
    let mut forged = cross_signing_key(BOB, "self_signing", &Ed25519SecretKey::new());
    sign(
        &mut forged,
        BOB,
        &key_id(&reset.master),
        &Ed25519SecretKey::new(),
    );
    response["self_signing_keys"][BOB] = forged;
    changed(&mut alice, BOB);
    answer_query(&mut alice, &response);
    let events = alice.take_events();
    assert!(
        events.iter().any(|e| matches!(e,
            CryptoEvent::InvalidCrossSigningKeys { user_id, .. } if user_id == BOB)),
        "{events:?}"
    );
    assert_eq!(
        alice.user_identity(BOB).unwrap().master,
        reset.master.public_key(),
        "the forged chain did not replace the identity"
    );
}

/// Save what changed into `saved` (as a store would) and rebuild the
/// machine from everything saved.
fn reload_saved(
    saved: &mut std::collections::BTreeMap<(String, String), Vec<u8>>,
    machine: &mut OlmMachine,
) -> OlmMachine {
    let changes = machine.pending_changes().unwrap();
    for record in changes.upserts {
        saved.insert(
            (record.kind.clone(), record.id.clone()),
            record.data.to_vec(),
        );
    }
    for key in changes.deletes {
        saved.remove(&key);
    }
    machine.mark_changes_saved();
    let records = saved.iter().map(|((kind, id), data)| CryptoRecord {
        kind: kind.clone(),
        id: id.clone(),
        data: Zeroizing::new(data.clone()),
    });
    OlmMachine::from_records(records).unwrap()
}

#[test]
fn bootstrap_keeps_its_keys_until_uploaded_and_through_a_reload() {
    let mut alice = OlmMachine::new(ALICE, "A1").unwrap();
    let mut saved = std::collections::BTreeMap::new();
    let first = alice.bootstrap_cross_signing(false).unwrap();
    let master = first.master_key.clone().unwrap();
    // Each key is signed by the master key and names its usage.
    assert_eq!(master["usage"], json!(["master"]));
    let master_id = master["keys"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    for (key, usage) in [
        (&first.self_signing_key, "self_signing"),
        (&first.user_signing_key, "user_signing"),
    ] {
        let key = key.as_ref().unwrap();
        assert_eq!(key["usage"], json!([usage]));
        assert!(key["signatures"][ALICE][&master_id].is_string(), "{key}");
    }
    // An upload cut short, and a restart: the same identity is offered.
    let mut alice = reload_saved(&mut saved, &mut alice);
    assert_eq!(alice.bootstrap_cross_signing(false).unwrap(), first);
    assert!(!alice.has_cross_signing_keys());
    alice.mark_cross_signing_uploaded().unwrap();
    assert!(alice.has_cross_signing_keys());
    // The signatures that follow: this device on the master key, and the
    // self-signing key on this device.
    let requests = alice.outgoing_requests().unwrap();
    let signed: Vec<(String, String)> = requests
        .iter()
        .filter_map(|r| match &r.body {
            RequestBody::SignaturesUpload(s) => Some(s.0.clone()),
            _ => None,
        })
        .flat_map(|users| {
            users
                .into_iter()
                .flat_map(|(user, keys)| keys.into_keys().map(move |k| (user.clone(), k)))
        })
        .collect();
    let master_key = master_id.trim_start_matches("ed25519:").to_owned();
    assert!(
        signed.contains(&(ALICE.to_owned(), master_key)),
        "{signed:?}"
    );
    assert!(
        signed.contains(&(ALICE.to_owned(), "A1".to_owned())),
        "{signed:?}"
    );
    // Once published, a second bootstrap needs an explicit reset.
    let mut alice = reload_saved(&mut saved, &mut alice);
    assert!(alice.has_cross_signing_keys());
    assert!(alice.bootstrap_cross_signing(false).is_err());
    let reset = alice.bootstrap_cross_signing(true).unwrap();
    assert_ne!(reset.master_key, first.master_key);
    // Until the server takes the new identity (it asks for the password),
    // the published one stays in use, also across a restart.
    let mut alice = reload_saved(&mut saved, &mut alice);
    assert!(alice.has_cross_signing_keys());
    assert_eq!(alice.bootstrap_cross_signing(true).unwrap(), reset);
}
