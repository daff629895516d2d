//! Concurrent sends, as group commit on SQLite batches them: every accepted
//! event and to-device message arrives exactly once, retries of a
//! transaction id answer with the first event, and a send that is refused
//! in the middle of a batch costs the others nothing — on both backends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const SENDS_PER_USER: usize = 15;
const TO_DEVICE: usize = 12;

async fn concurrent_sends_arrive_once(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let carol = Client::register(&server.url(), "carol", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut sends = tokio::task::JoinSet::new();
    for (who, client) in [("a", &alice), ("b", &bob)] {
        for i in 0..SENDS_PER_USER {
            // Each transaction twice at once: a client's retry racing the
            // original, possibly into the same batch.
            for _ in 0..2 {
                let (client, room) = (client.clone(), room.clone());
                sends.spawn(async move {
                    let txn = format!("{who}{i}");
                    let content = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": txn, "session_id": "s"});
                    let (status, body) = client
                        .send_event(&room, "m.room.encrypted", &txn, content)
                        .await;
                    assert_eq!(status, 200, "{body}");
                    (txn, body["event_id"].as_str().unwrap().to_owned())
                });
            }
        }
    }
    // Refused sends in between: not a member.
    let mut refused = tokio::task::JoinSet::new();
    for i in 0..5 {
        let (carol, room) = (carol.clone(), room.clone());
        refused.spawn(async move {
            carol
                .send_event(&room, "m.room.encrypted", &format!("c{i}"), json!({}))
                .await
        });
    }
    let mut to_device = tokio::task::JoinSet::new();
    for n in 0..TO_DEVICE {
        let (alice, bob_user, bob_device) =
            (alice.clone(), bob.user_id.clone(), bob.device_id.clone());
        to_device.spawn(async move {
            let body = json!({"messages": {bob_user: {bob_device: {"n": n}}}});
            let path = format!(
                "/_matrix/client/v3/sendToDevice/m.test/{}",
                encode(&format!("td{n}"))
            );
            let (status, answer) = alice.put(&path, body).await;
            assert_eq!(status, 200, "{answer}");
        });
    }

    let mut by_txn: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    while let Some(sent) = sends.join_next().await {
        let (txn, event_id) = sent.unwrap();
        by_txn.entry(txn).or_default().insert(event_id);
    }
    while let Some(answer) = refused.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 403, "{body}");
        assert_eq!(errcode(&body), Some("M_FORBIDDEN"));
    }
    while let Some(done) = to_device.join_next().await {
        done.unwrap();
    }
    assert_eq!(by_txn.len(), 2 * SENDS_PER_USER);
    for (txn, ids) in &by_txn {
        assert_eq!(
            ids.len(),
            1,
            "the retry of {txn} sent a second event: {ids:?}"
        );
    }
    let expected: BTreeSet<String> = by_txn.values().flatten().cloned().collect();

    // Bob's /sync: every event and to-device message once, nothing else.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut messages: BTreeMap<u64, usize> = BTreeMap::new();
    let mut token = since;
    let deadline = Instant::now() + WAIT;
    while seen.len() < expected.len() || messages.len() < TO_DEVICE {
        assert!(Instant::now() < deadline, "missing: {seen:?} {messages:?}");
        // A timeline limit above the batch: a limited timeline would
        // leave the rest to /messages.
        let (status, sync) = bob
            .get(&format!(
                "/_matrix/client/v3/sync?since={}&timeout=1000&filter={}",
                encode(&token),
                encode(r#"{"room":{"timeline":{"limit":100}}}"#)
            ))
            .await;
        assert_eq!(status, 200, "{sync}");
        assert_ne!(sync["rooms"]["join"][&room]["timeline"]["limited"], true);
        for event in sync["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .into_iter()
            .flatten()
        {
            *seen
                .entry(event["event_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        for message in sync["to_device"]["events"].as_array().into_iter().flatten() {
            assert_eq!(message["sender"], alice.user_id.as_str());
            *messages
                .entry(message["content"]["n"].as_u64().unwrap())
                .or_default() += 1;
        }
        token = sync["next_batch"].as_str().unwrap().to_owned();
    }
    let seen_ids: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(seen_ids, expected);
    assert!(
        seen.values().all(|&n| n == 1),
        "an event came twice: {seen:?}"
    );
    assert_eq!(
        messages.keys().copied().collect::<Vec<_>>(),
        (0..TO_DEVICE as u64).collect::<Vec<_>>()
    );
    assert!(
        messages.values().all(|&n| n == 1),
        "a message came twice: {messages:?}"
    );

    // And after a restart, from the same token: nothing new, nothing lost.
    server.restart().await;
    let again = bob.sync(Some(&token), 0).await;
    assert!(again["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .is_none_or(|e| e.is_empty()));
    assert!(again["to_device"]["events"]
        .as_array()
        .is_none_or(|e| e.is_empty()));
    let history = alice.messages(&room, 100).await;
    let stored = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .count();
    assert_eq!(stored, expected.len());
    server.stop().await;
}

both_backends!(group_commit, concurrent_sends_arrive_once);
