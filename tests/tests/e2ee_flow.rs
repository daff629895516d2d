//! The main scenario, on SQLite and PostgreSQL: two users with three devices
//! register, share an encrypted room, publish keys, claim one-time keys under
//! contention, exchange to-device messages and encrypted events, and see every
//! event in /sync exactly once, across a server restart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn timeline_ids(sync: &Value, room_id: &str) -> Vec<String> {
    sync["rooms"]["join"][room_id]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Syncs from `since` until every id in `expected` was seen; returns the
/// count of each id seen and the last token.
async fn collect(
    client: &Client,
    since: &str,
    room_id: &str,
    expected: &BTreeSet<String>,
    seen: &mut BTreeMap<String, usize>,
) -> String {
    let mut token = since.to_owned();
    let deadline = std::time::Instant::now() + WAIT;
    while !expected.iter().all(|id| seen.contains_key(id)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}: missing events {:?}",
            client.user_id,
            expected
                .iter()
                .filter(|id| !seen.contains_key(*id))
                .collect::<Vec<_>>()
        );
        let response = client.sync(Some(&token), 2_000).await;
        for id in timeline_ids(&response, room_id) {
            *seen.entry(id).or_default() += 1;
        }
        token = response["next_batch"]
            .as_str()
            .expect("next_batch")
            .to_owned();
    }
    token
}

async fn flow(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let url = server.url();
    let alice1 = Client::register_device(&url, "alice", "alice-pw", "ALICE1").await;
    let alice2 = Client::login(&url, "alice", "alice-pw", Some("ALICE2")).await;
    let bob = Client::register_device(&url, "bob", "bob-pw", "BOB1").await;

    // Keys: every device publishes device keys, ten one-time keys and a fallback key.
    let bob_keys = bob.device_keys();
    for (client, keys) in [
        (&alice1, &alice1.device_keys()),
        (&alice2, &alice2.device_keys()),
        (&bob, &bob_keys),
    ] {
        let counts = client.upload_keys(keys, 10).await;
        assert_eq!(counts["signed_curve25519"], 10, "{counts}");
    }
    let first = bob.sync(None, 0).await;
    assert_eq!(
        first["device_one_time_keys_count"]["signed_curve25519"], 10,
        "{first}"
    );
    assert_eq!(
        first["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );
    let mut bob_token = first["next_batch"].as_str().unwrap().to_owned();
    let mut a1_token = alice1.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // An encrypted room, with Bob invited.
    let room = alice1
        .create_room(json!({ "invite": [bob.user_id], "is_direct": true, "name": "plans" }))
        .await;
    let (status, encryption) = alice1.get_state(&room, "m.room.encryption", "").await;
    assert_eq!(status, 200);
    assert_eq!(encryption["algorithm"], "m.megolm.v1.aes-sha2");
    let invited = bob
        .sync_until(Some(&bob_token), WAIT, |s| {
            s["rooms"]["invite"][&room].is_object()
        })
        .await;
    let stripped = invited["rooms"]["invite"][&room]["invite_state"]["events"]
        .as_array()
        .unwrap();
    assert!(
        stripped.iter().any(|e| e["type"] == "m.room.encryption"),
        "invitees see that the room is encrypted"
    );
    bob_token = invited["next_batch"].as_str().unwrap().to_owned();
    bob.join(&room).await;

    // Alice learns that Bob's devices are now relevant to her.
    let changed = alice1
        .sync_until(Some(&a1_token), WAIT, |s| {
            s["device_lists"]["changed"]
                .as_array()
                .is_some_and(|c| c.iter().any(|u| u == bob.user_id.as_str()))
        })
        .await;
    a1_token = changed["next_batch"].as_str().unwrap().to_owned();
    let query = alice1
        .expect_ok(
            reqwest::Method::POST,
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { &bob.user_id: [] } }),
        )
        .await;
    assert_eq!(
        query["device_keys"][&bob.user_id]["BOB1"]["keys"][bob_keys.ed25519_key_id()],
        bob_keys.ed25519()
    );

    // 50 concurrent claims on Bob's 10 one-time keys: 10 distinct keys, then the fallback.
    let claims = (0..50).map(|_| {
        let alice = alice1.clone();
        let bob_id = bob.user_id.clone();
        tokio::spawn(async move {
            let (status, body) = alice
                .post(
                    "/_matrix/client/v3/keys/claim",
                    json!({ "one_time_keys": { &bob_id: { "BOB1": "signed_curve25519" } } }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            let keys = body["one_time_keys"][&bob_id]["BOB1"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            assert_eq!(keys.len(), 1, "each claim returns one key: {body}");
            let (id, key) = keys.into_iter().next().unwrap();
            (id, key["fallback"].as_bool().unwrap_or(false))
        })
    });
    let mut one_time = BTreeSet::new();
    let mut fallbacks = BTreeSet::new();
    for claim in futures::future::join_all(claims).await {
        let (id, is_fallback) = claim.unwrap();
        if is_fallback {
            fallbacks.insert(id);
        } else {
            assert!(
                one_time.insert(id.clone()),
                "one-time key {id} handed out twice"
            );
        }
    }
    assert_eq!(
        one_time.len(),
        10,
        "every one-time key handed out exactly once"
    );
    assert_eq!(fallbacks.len(), 1, "then the one fallback key, repeatedly");
    let after = bob.sync(Some(&bob_token), 0).await;
    assert_eq!(
        after["device_one_time_keys_count"]["signed_curve25519"], 0,
        "zero counts are reported: {after}"
    );
    assert_eq!(
        after["device_unused_fallback_key_types"],
        json!([]),
        "a used fallback key is no longer unused"
    );

    // To-device: idempotent per transaction id, delivered until acknowledged, then gone.
    let olm = json!({ "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "k", "ciphertext": { "x": { "type": 0, "body": "AwoA" } } });
    let path = "/_matrix/client/v3/sendToDevice/m.room.encrypted/td1";
    let body = json!({ "messages": { &bob.user_id: { "BOB1": olm } } });
    assert_eq!(alice1.put(path, body.clone()).await.0, 200);
    assert_eq!(
        alice1.put(path, body).await.0,
        200,
        "a retried to-device PUT is accepted"
    );
    let got = bob
        .sync_until(Some(&bob_token), WAIT, |s| {
            !s["to_device"]["events"].as_array().unwrap().is_empty()
        })
        .await;
    let events = got["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "delivered once despite the retry: {got}");
    assert_eq!(events[0]["sender"], alice1.user_id.as_str());
    assert_eq!(events[0]["type"], "m.room.encrypted");
    let again = bob.sync(Some(&bob_token), 0).await;
    assert_eq!(
        again["to_device"]["events"].as_array().unwrap().len(),
        1,
        "not acknowledged yet, so delivered again"
    );
    let acked = bob.sync(Some(got["next_batch"].as_str().unwrap()), 0).await;
    assert!(
        acked["to_device"]["events"].as_array().unwrap().is_empty(),
        "acknowledged messages are deleted"
    );
    let stale = bob.sync(Some(&bob_token), 0).await;
    assert!(
        stale["to_device"]["events"].as_array().unwrap().is_empty(),
        "and stay deleted"
    );
    bob_token = acked["next_batch"].as_str().unwrap().to_owned();
    let mut a2_token = alice2.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Plaintext is refused in the encrypted room; ciphertext goes through.
    let (status, refused) = alice1
        .send_event(
            &room,
            "m.room.message",
            "plain",
            json!({ "msgtype": "m.text", "body": "secret" }),
        )
        .await;
    assert_eq!(
        (status, errcode(&refused)),
        (403, Some("M_FORBIDDEN")),
        "{refused}"
    );
    let mut expected = BTreeSet::new();
    for i in 0..5 {
        expected.insert(alice1.send_encrypted(&room, &format!("a1-{i}")).await);
    }
    for i in 0..3 {
        expected.insert(bob.send_encrypted(&room, &format!("b-{i}")).await);
    }
    // A retried send returns the same event, stored once.
    let content = cloister_tests::megolm_content("k", "ALICE2");
    let (_, first_try) = alice2
        .send_event(&room, "m.room.encrypted", "retry-me", content.clone())
        .await;
    let (_, second_try) = alice2
        .send_event(&room, "m.room.encrypted", "retry-me", content)
        .await;
    assert_eq!(first_try["event_id"], second_try["event_id"]);
    expected.insert(first_try["event_id"].as_str().unwrap().to_owned());

    // Every device sees each event once before the restart...
    let mut seen: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    bob_token = collect(
        &bob,
        &bob_token,
        &room,
        &expected,
        seen.entry("bob").or_default(),
    )
    .await;
    a1_token = collect(
        &alice1,
        &a1_token,
        &room,
        &expected,
        seen.entry("a1").or_default(),
    )
    .await;
    a2_token = collect(
        &alice2,
        &a2_token,
        &room,
        &expected,
        seen.entry("a2").or_default(),
    )
    .await;

    // ...and after it, continuing from the same tokens.
    server.restart().await;
    let url = server.url();
    let (alice1, alice2, bob) = (
        alice1.with_base(&url),
        alice2.with_base(&url),
        bob.with_base(&url),
    );
    for i in 0..4 {
        expected.insert(bob.send_encrypted(&room, &format!("after-{i}")).await);
    }
    expected.insert(alice2.send_encrypted(&room, "after-a2").await);
    collect(
        &bob,
        &bob_token,
        &room,
        &expected,
        seen.get_mut("bob").unwrap(),
    )
    .await;
    collect(
        &alice1,
        &a1_token,
        &room,
        &expected,
        seen.get_mut("a1").unwrap(),
    )
    .await;
    collect(
        &alice2,
        &a2_token,
        &room,
        &expected,
        seen.get_mut("a2").unwrap(),
    )
    .await;
    for (device, counts) in &seen {
        for id in &expected {
            assert_eq!(
                counts.get(id),
                Some(&1),
                "{device} saw {id} {:?} times",
                counts.get(id)
            );
        }
    }

    // The server kept only ciphertext: no stored event in the room is a plaintext message.
    let history = bob.messages(&room, 100).await;
    let chunk = history["chunk"].as_array().unwrap();
    assert!(
        chunk.iter().all(|e| e["type"] != "m.room.message"),
        "no plaintext stored"
    );
    assert_eq!(
        chunk
            .iter()
            .filter(|e| e["type"] == "m.room.encrypted")
            .count(),
        expected.len()
    );

    // Device names from login are visible; a foreign device id is not.
    let (status, body) = alice1
        .get(&format!("/_matrix/client/v3/devices/{}", encode("BOB1")))
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (404, Some("M_NOT_FOUND")),
        "{body}"
    );
    server.stop().await;
}

both_backends!(e2ee_flow, flow);
