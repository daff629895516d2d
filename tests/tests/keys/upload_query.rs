//! `/keys/upload`, `/keys/query`, `/keys/claim`, `/keys/changes`,
//! cross-signing and signature upload, `device_lists` in `/sync`.

use std::collections::BTreeMap;

use cloister_tests::keys::verify_json;
use cloister_tests::{encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Map};

use crate::common::{
    cs_key, device_keys, device_list, key, otk, password_auth, public, query, register, sign,
    token, upload, wait_device_list, PW, SIGNATURES_UPLOAD, SIGNING_UPLOAD,
};

// ----- keys: upload, query, claim, changes, cross-signing ------------------

pub(crate) async fn keys_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = register(&url, "alice").await;
    let alice2 = Client::login(&url, "alice", PW, Some("ALICE2")).await;
    let bob = register(&url, "bob").await;
    assert_eq!(
        (alice.device_id.as_str(), bob.device_id.as_str()),
        ("ALICE1", "BOB1")
    );

    // Alice and Bob share one (encrypted) room.
    let room = alice
        .create_room(json!({ "invite": [bob.user_id], "name": "keys" }))
        .await;
    bob.join(&room).await;
    let mut a_tok = token(&alice).await;
    let mut b_tok = token(&bob).await;
    let changes_from = b_tok.clone();

    // Upload: device keys, ten signed one-time keys, a fallback key.
    let ak = key(1);
    let dk = device_keys(&alice, &ak, 5);
    let mut otks = Map::new();
    for i in 0..10u8 {
        otks.insert(format!("signed_curve25519:AAAA{i}"), otk(&alice, &ak, i));
    }
    let mut fb = otk(&alice, &ak, 99);
    fb["fallback"] = json!(true);
    sign(&mut fb, &alice.user_id, "ed25519:ALICE1", &ak);
    let (s, r) = upload(
        &alice,
        json!({"device_keys": dk, "one_time_keys": otks, "fallback_keys": {"signed_curve25519:FB1": fb}}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["one_time_key_counts"]["signed_curve25519"], 10, "{r}");

    // Everyone sharing a room with Alice hears of it in /sync, Alice included.
    b_tok = wait_device_list(&bob, &b_tok, "changed", &alice.user_id).await;
    a_tok = wait_device_list(&alice, &a_tok, "changed", &alice.user_id).await;

    // An empty upload still reports the counts; a new device has zero.
    let (s, r) = upload(&alice2, json!({})).await;
    assert_eq!(
        (s, &r["one_time_key_counts"]),
        (200, &json!({"signed_curve25519": 0})),
        "{r}"
    );

    // An identical re-upload is fine; changed key material is refused.
    let (s, r) = upload(&alice, json!({ "device_keys": dk })).await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = upload(
        &alice,
        json!({ "device_keys": device_keys(&alice, &ak, 6) }),
    )
    .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");

    // The same one-time key id with other content.
    let (s, r) = upload(
        &alice,
        json!({"one_time_keys": {"signed_curve25519:AAAA1": otk(&alice, &ak, 77)}}),
    )
    .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");
    // A one-time key not signed by the device.
    let bad = otk(&alice, &key(2), 50);
    let (s, r) = upload(
        &alice,
        json!({"one_time_keys": {"signed_curve25519:BAD": bad}}),
    )
    .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");
    // Someone else's user id.
    let (s, r) = upload(&bob, json!({ "device_keys": dk })).await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");
    // Another device's id (Alice's second device uploading the first's keys).
    let (s, r) = upload(&alice2, json!({ "device_keys": dk })).await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");
    // A bad self-signature: ALICE2's keys signed by a key that is not in them.
    let mut forged = device_keys(&alice2, &key(7), 8);
    sign(&mut forged, &alice.user_id, "ed25519:ALICE2", &key(8));
    let (s, r) = upload(&alice2, json!({ "device_keys": forged })).await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");
    // A tampered field after signing.
    let mut tampered = device_keys(&alice2, &key(7), 8);
    tampered["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    let (s, r) = upload(&alice2, json!({ "device_keys": tampered })).await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");
    // None of the refused uploads reached /sync as a device-list change.
    let quiet = bob.sync(Some(&b_tok), 0).await;
    assert!(device_list(&quiet, "changed").is_empty(), "{quiet}");

    // Query: the stored keys, the display name, no keys for ALICE2.
    let r = query(&bob, &[&alice.user_id]).await;
    let got = &r["device_keys"][&alice.user_id]["ALICE1"];
    assert_eq!(got["unsigned"]["device_display_name"], "Phone", "{r}");
    assert_eq!(got["keys"], dk["keys"]);
    assert_eq!(got["user_id"], dk["user_id"]);
    assert_eq!(got["device_id"], "ALICE1");
    assert_eq!(got["algorithms"], dk["algorithms"]);
    assert!(verify_json(
        got,
        &alice.user_id,
        "ed25519:ALICE1",
        &public(&ak)
    ));
    assert!(
        r["device_keys"][&alice.user_id].get("ALICE2").is_none(),
        "{r}"
    );
    assert_eq!(r["failures"], json!({}));
    // Unknown and remote users are simply absent.
    let r = query(&bob, &["@nobody:localhost", "@x:elsewhere"]).await;
    assert_eq!(r["device_keys"]["@nobody:localhost"], json!({}), "{r}");
    assert!(r["device_keys"].get("@x:elsewhere").is_none(), "{r}");

    // 50 concurrent claims on 10 keys: each key once, then the fallback key.
    let claims = (0..50).map(|_| {
        let b = bob.clone();
        let body = json!({"one_time_keys": {&alice.user_id: {"ALICE1": "signed_curve25519"}}});
        tokio::spawn(async move { b.post("/_matrix/client/v3/keys/claim", body).await })
    });
    let mut ids = BTreeMap::<String, usize>::new();
    for claim in futures::future::join_all(claims).await {
        let (s, r) = claim.unwrap();
        assert_eq!(s, 200, "{r}");
        let m = r["one_time_keys"][&alice.user_id]["ALICE1"]
            .as_object()
            .unwrap_or_else(|| panic!("no key claimed: {r}"))
            .clone();
        assert_eq!(m.len(), 1, "{r}");
        *ids.entry(m.keys().next().unwrap().clone()).or_default() += 1;
    }
    assert_eq!(ids.len(), 11, "{ids:?}");
    assert_eq!(ids["signed_curve25519:FB1"], 40);
    assert!(ids
        .iter()
        .filter(|(k, _)| !k.ends_with("FB1"))
        .all(|(_, n)| *n == 1));
    let s = alice.sync(None, 0).await;
    assert_eq!(
        s["device_one_time_keys_count"]["signed_curve25519"], 0,
        "{s}"
    );
    assert_eq!(s["device_unused_fallback_key_types"], json!([]), "{s}");

    // Re-uploading the same fallback key keeps it used; a new one is unused.
    let (st, r) = upload(
        &alice,
        json!({"fallback_keys": {"signed_curve25519:FB1": fb}}),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let s = alice.sync(None, 0).await;
    assert_eq!(s["device_unused_fallback_key_types"], json!([]), "{s}");
    let fb2 = otk(&alice, &ak, 98);
    let (st, r) = upload(
        &alice,
        json!({"fallback_keys": {"signed_curve25519:FB2": fb2}}),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    let s = alice.sync(None, 0).await;
    assert_eq!(
        s["device_unused_fallback_key_types"],
        json!(["signed_curve25519"]),
        "{s}"
    );

    // Unknown device and remote users: nothing, and no failures.
    let (s, r) = bob
        .post(
            "/_matrix/client/v3/keys/claim",
            json!({"one_time_keys": {&alice.user_id: {"NOPE": "signed_curve25519"}, "@x:elsewhere": {"D": "signed_curve25519"}}}),
        )
        .await;
    assert_eq!((s, r), (200, json!({"one_time_keys": {}, "failures": {}})));

    // /keys/changes between two of Bob's sync tokens.
    let now = token(&bob).await;
    let (s, r) = bob
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={}&to={}",
            encode(&changes_from),
            encode(&now)
        ))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["changed"], json!([alice.user_id]), "{r}");
    let (s, r) = bob
        .get("/_matrix/client/v3/keys/changes?from=x&to=s1_0")
        .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")), "{r}");

    // Cross-signing: the first upload needs no auth.
    let am = key(10);
    let ass = key(11);
    let aus = key(12);
    let am_pub = public(&am);
    let master = cs_key(&alice.user_id, "master", &am);
    let mut ssk = cs_key(&alice.user_id, "self_signing", &ass);
    sign(&mut ssk, &alice.user_id, &format!("ed25519:{am_pub}"), &am);
    let mut usk = cs_key(&alice.user_id, "user_signing", &aus);
    sign(&mut usk, &alice.user_id, &format!("ed25519:{am_pub}"), &am);
    let body = json!({"master_key": master, "self_signing_key": ssk, "user_signing_key": usk});
    let (s, r) = alice.post(SIGNING_UPLOAD, body.clone()).await;
    assert_eq!(s, 200, "{r}");
    b_tok = wait_device_list(&bob, &b_tok, "changed", &alice.user_id).await;
    a_tok = wait_device_list(&alice, &a_tok, "changed", &alice.user_id).await;
    let (s, r) = alice.post(SIGNING_UPLOAD, body.clone()).await;
    assert_eq!(s, 200, "identical re-upload: {r}");
    // A self-signing key the master key did not sign.
    let (s, r) = alice
        .post(
            SIGNING_UPLOAD,
            json!({"self_signing_key": cs_key(&alice.user_id, "self_signing", &ass)}),
        )
        .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_SIGNATURE")), "{r}");
    // Replacing keys needs user-interactive auth with the password.
    let new_master = cs_key(&alice.user_id, "master", &key(13));
    let (s, r) = alice
        .post(SIGNING_UPLOAD, json!({"master_key": new_master}))
        .await;
    assert_eq!(s, 401, "{r}");
    assert!(r["flows"].is_array(), "{r}");
    assert!(
        r["flows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["stages"] == json!(["m.login.password"])),
        "{r}"
    );
    let auth = password_auth(&alice.user_id, "wrong", &r["session"]);
    let (s, r) = alice
        .post(
            SIGNING_UPLOAD,
            json!({"master_key": new_master, "auth": auth}),
        )
        .await;
    assert_eq!((s, errcode(&r)), (401, Some("M_FORBIDDEN")), "{r}");
    let auth = password_auth(&alice.user_id, PW, &r["session"]);
    let (s, r) = alice
        .post(
            SIGNING_UPLOAD,
            json!({"master_key": new_master, "auth": auth}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let r = query(&bob, &[&alice.user_id]).await;
    assert_eq!(r["master_keys"][&alice.user_id]["keys"], new_master["keys"]);
    b_tok = wait_device_list(&bob, &b_tok, "changed", &alice.user_id).await;
    // Back to the first keys, with auth again.
    let (s, r) = alice.post(SIGNING_UPLOAD, body.clone()).await;
    assert_eq!(s, 401, "{r}");
    let mut with_auth = body.clone();
    with_auth["auth"] = password_auth(&alice.user_id, PW, &r["session"]);
    let (s, r) = alice.post(SIGNING_UPLOAD, with_auth).await;
    assert_eq!(s, 200, "{r}");
    a_tok = wait_device_list(&alice, &a_tok, "changed", &alice.user_id).await;

    // Signatures: Alice's self-signing key signs her device; her device
    // signs her master key. A signature by the wrong key is reported.
    let ssk_id = format!("ed25519:{}", public(&ass));
    let mut signed_dev = dk.clone();
    sign(&mut signed_dev, &alice.user_id, &ssk_id, &ass);
    let mut signed_master = master.clone();
    sign(&mut signed_master, &alice.user_id, "ed25519:ALICE1", &ak);
    let mut bad_dev = dk.clone();
    sign(&mut bad_dev, &alice.user_id, &ssk_id, &aus);
    let (s, r) = alice
        .post(
            SIGNATURES_UPLOAD,
            json!({&alice.user_id: {"ALICE1": signed_dev, &am_pub: signed_master}}),
        )
        .await;
    assert_eq!((s, &r), (200, &json!({"failures": {}})));
    b_tok = wait_device_list(&bob, &b_tok, "changed", &alice.user_id).await;
    let (s, r) = alice
        .post(
            SIGNATURES_UPLOAD,
            json!({&alice.user_id: {"ALICE1": bad_dev, "NOPE": {"a": 1}}}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["failures"][&alice.user_id]["ALICE1"]["errcode"], "M_INVALID_SIGNATURE",
        "{r}"
    );
    assert_eq!(
        r["failures"][&alice.user_id]["NOPE"]["errcode"],
        "M_NOT_FOUND"
    );

    // Bob sets up cross-signing and signs Alice's master key.
    let bm = key(20);
    let bus = key(22);
    let bm_pub = public(&bm);
    let mut b_usk = cs_key(&bob.user_id, "user_signing", &bus);
    sign(&mut b_usk, &bob.user_id, &format!("ed25519:{bm_pub}"), &bm);
    let (s, r) = bob
        .post(
            SIGNING_UPLOAD,
            json!({"master_key": cs_key(&bob.user_id, "master", &bm), "user_signing_key": b_usk}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    a_tok = wait_device_list(&alice, &a_tok, "changed", &bob.user_id).await;
    b_tok = wait_device_list(&bob, &b_tok, "changed", &bob.user_id).await;
    let mut bob_signs = master.clone();
    sign(
        &mut bob_signs,
        &bob.user_id,
        &format!("ed25519:{}", public(&bus)),
        &bus,
    );
    let (s, r) = bob
        .post(
            SIGNATURES_UPLOAD,
            json!({&alice.user_id: {&am_pub: bob_signs}}),
        )
        .await;
    assert_eq!((s, &r), (200, &json!({"failures": {}})));
    a_tok = wait_device_list(&alice, &a_tok, "changed", &alice.user_id).await;

    let by_bob = query(&bob, &[&alice.user_id, &bob.user_id]).await;
    let by_alice = query(&alice, &[&alice.user_id, &bob.user_id]).await;
    assert!(
        by_bob["device_keys"][&alice.user_id]["ALICE1"]["signatures"][&alice.user_id][&ssk_id]
            .is_string(),
        "{by_bob}"
    );
    assert!(
        by_bob["master_keys"][&alice.user_id]["signatures"][&alice.user_id]["ed25519:ALICE1"]
            .is_string()
    );
    assert!(by_bob["master_keys"][&alice.user_id]["signatures"][&bob.user_id].is_object());
    assert!(
        by_alice["master_keys"][&alice.user_id]["signatures"]
            .get(&bob.user_id)
            .is_none(),
        "{by_alice}"
    );
    assert!(by_bob["self_signing_keys"][&alice.user_id].is_object());
    assert!(by_bob["user_signing_keys"].get(&alice.user_id).is_none());
    assert!(by_bob["user_signing_keys"][&bob.user_id].is_object());
    assert!(by_alice["user_signing_keys"][&alice.user_id].is_object());
    // The stored signatures verify.
    let signed = &by_bob["device_keys"][&alice.user_id]["ALICE1"];
    assert!(verify_json(signed, &alice.user_id, &ssk_id, &public(&ass)));
    assert!(verify_json(
        &by_bob["master_keys"][&alice.user_id],
        &bob.user_id,
        &format!("ed25519:{}", public(&bus)),
        &public(&bus)
    ));

    // Left: Bob leaves the only room he shares with Alice.
    let from = token(&alice).await;
    let (s, r) = bob.leave(&room).await;
    assert_eq!(s, 200, "{r}");
    wait_device_list(&alice, &a_tok, "left", &bob.user_id).await;
    wait_device_list(&bob, &b_tok, "left", &alice.user_id).await;
    let to = token(&alice).await;
    let (s, r) = alice
        .get(&format!(
            "/_matrix/client/v3/keys/changes?from={}&to={}",
            encode(&from),
            encode(&to)
        ))
        .await;
    assert_eq!((s, r), (200, json!({"changed": [], "left": [bob.user_id]})));

    // A reused device id does not inherit the old device's signatures.
    let path = "/_matrix/client/v3/devices/ALICE1";
    let (s, r) = alice2.delete(path, json!({})).await;
    assert_eq!(s, 401, "{r}");
    let (s, r) = alice2
        .delete(
            path,
            json!({ "auth": password_auth(&alice.user_id, PW, &r["session"]) }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let again = Client::login(&url, "alice", PW, Some("ALICE1")).await;
    let (s, r) = upload(
        &again,
        json!({"device_keys": device_keys(&again, &key(3), 9)}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let (_, r) = again
        .post(
            "/_matrix/client/v3/keys/query",
            json!({"device_keys": {&alice.user_id: ["ALICE1"]}}),
        )
        .await;
    let sigs = r["device_keys"][&alice.user_id]["ALICE1"]["signatures"][&alice.user_id]
        .as_object()
        .unwrap_or_else(|| panic!("{r}"))
        .clone();
    assert_eq!(sigs.len(), 1, "{r}");

    server.stop().await;
}
