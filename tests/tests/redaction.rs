//! What redaction may not touch, and what it must remove, on both
//! backends: the room's encryption, the notices and policies the server
//! posts on its own authority, and (on SQLite) the redacted ciphertext in
//! the database files themselves.

use std::time::{Duration, Instant};

use cloister_tests::{
    alice_and_bob_in_a_room, assert_refused, both_backends, encode, megolm_content, metric,
    Backend, Client, TestServer,
};
use serde_json::{json, Value};

const MEGOLM: &str = "m.megolm.v1.aes-sha2";

async fn redactions_in(server: &TestServer, room: &str) -> i64 {
    server
        .count(
            "SELECT COUNT(*) FROM events WHERE room_id = $1 AND event_type = 'm.room.redaction'",
            room,
        )
        .await
}

async fn redact(c: &Client, room: &str, event_id: &str, txn: &str) -> (u16, Value) {
    c.put(
        &format!(
            "/_matrix/client/v3/rooms/{}/redact/{}/{txn}",
            encode(room),
            encode(event_id)
        ),
        json!({ "reason": "testing" }),
    )
    .await
}

/// The event id of the room's current `(type, state_key)` state.
async fn state_event_id(c: &Client, room: &str, event_type: &str, state_key: &str) -> String {
    let (status, all) = c
        .get(&format!("/_matrix/client/v3/rooms/{}/state", encode(room)))
        .await;
    assert_eq!(status, 200, "{all}");
    all.as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == event_type && e["state_key"] == state_key)
        .and_then(|e| e["event_id"].as_str())
        .unwrap_or_else(|| panic!("no {event_type} state in {all}"))
        .to_owned()
}

async fn encryption_cannot_be_redacted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let room = alice
        .create_room(json!({ "invite": [bob.user_id], "preset": "private_chat" }))
        .await;
    bob.join(&room).await;
    let (_, mut power) = alice.get_state(&room, "m.room.power_levels", "").await;
    power["users"][&bob.user_id] = json!(50);
    let (status, body) = alice
        .put_state(&room, "m.room.power_levels", "", power)
        .await;
    assert_eq!(status, 200, "{body}");

    let encryption = state_event_id(&alice, &room, "m.room.encryption", "").await;
    for (who, client, txn) in [
        ("a moderator", &bob, "r1"),
        ("the room admin", &alice, "r2"),
    ] {
        assert_refused(
            redact(client, &room, &encryption, txn).await,
            403,
            "M_FORBIDDEN",
            &format!("{who} redacting m.room.encryption"),
        );
    }
    assert_eq!(redactions_in(&server, &room).await, 0, "nothing stored");
    let (_, content) = alice.get_state(&room, "m.room.encryption", "").await;
    assert_eq!(content["algorithm"], MEGOLM, "{content}");

    // Other redactions by a moderator still work.
    let message = alice.send_encrypted(&room, "m1").await;
    assert_eq!(redact(&bob, &room, &message, "r3").await.0, 200);
    server.stop().await;
}

async fn server_notices_are_protected(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dpo = server.register_admin("dpo").await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let (status, hold) = dpo
        .post(
            "/_cloister/admin/v1/holds",
            json!({ "scope": "room", "target": room, "case_id": "C-1", "reason": "r" }),
        )
        .await;
    assert_eq!(status, 200, "{hold}");
    let (status, policy) = dpo
        .put(
            &format!("/_cloister/admin/v1/rooms/{}/retention", encode(&room)),
            json!({ "max_lifetime": 30 * 86_400_000i64 }),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    let events_in_room = "SELECT COUNT(*) FROM events WHERE room_id = $1";
    let before = server.count(events_in_room, &room).await;

    // The room's admin (power 100) can neither overwrite, add nor redact
    // a hold notice, nor redact the DPO's policy.
    let notice = state_event_id(&alice, &room, "org.cloister.legal_hold", "").await;
    assert_refused(
        alice
            .put_state(
                &room,
                "org.cloister.legal_hold",
                "",
                json!({ "held": false }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "overwriting the hold notice",
    );
    assert_refused(
        alice
            .put_state(
                &room,
                "org.cloister.legal_hold",
                &alice.user_id,
                json!({ "held": true, "body": "fake" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "posting a hold notice",
    );
    assert_refused(
        alice
            .send_event(
                &room,
                "org.cloister.legal_hold",
                "n1",
                json!({ "held": false }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "a hold notice as a message",
    );
    assert_refused(
        redact(&alice, &room, &notice, "r1").await,
        403,
        "M_FORBIDDEN",
        "redacting the hold notice",
    );
    let retention = state_event_id(&alice, &room, "m.room.retention", "").await;
    assert_refused(
        redact(&alice, &room, &retention, "r2").await,
        403,
        "M_FORBIDDEN",
        "redacting the DPO's retention policy",
    );
    assert_eq!(
        server.count(events_in_room, &room).await,
        before,
        "nothing stored"
    );
    let (_, shown) = alice.get_state(&room, "org.cloister.legal_hold", "").await;
    assert_eq!(shown["held"], json!(true), "{shown}");
    let (_, kept) = alice.get_state(&room, "m.room.retention", "").await;
    assert_eq!(kept["max_lifetime"], json!(30 * 86_400_000i64), "{kept}");

    // Room admins may still set the room's policy themselves.
    let (status, body) = alice
        .put_state(
            &room,
            "m.room.retention",
            "",
            json!({ "max_lifetime": 7 * 86_400_000i64 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

async fn redacted_ciphertext_leaves_the_files(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let content = megolm_content("sender-key", &alice.device_id);
    let ciphertext = content["ciphertext"].as_str().unwrap().to_owned();
    let (status, sent) = alice
        .send_event(&room, "m.room.encrypted", "m1", content)
        .await;
    assert_eq!(status, 200, "{sent}");
    let event_id = sent["event_id"].as_str().unwrap();
    assert_eq!(redact(&alice, &room, event_id, "r1").await.0, 200);

    let stored: String = sqlx::query_scalar("SELECT content FROM events WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(server.state().store.pool())
        .await
        .unwrap();
    assert_eq!(stored, "{}", "the row keeps nothing");
    if backend == Backend::Sqlite {
        // The old page stays in the write-ahead log until a checkpoint,
        // which runs shortly after the redaction, off the request.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let holding: Vec<String> = ["", "-wal"]
                .iter()
                .map(|suffix| server.data_dir().join(format!("cloister.db{suffix}")))
                .filter(|path| {
                    std::fs::read(path)
                        .unwrap_or_default()
                        .windows(ciphertext.len())
                        .any(|w| w == ciphertext.as_bytes())
                })
                .map(|path| path.display().to_string())
                .collect();
            if holding.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the redacted ciphertext is still in {holding:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    server.stop().await;
}

/// The event `event_id` in the room's timeline of an incremental sync.
fn timeline_event(sync: &Value, room: &str, event_id: &str) -> Value {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["event_id"] == event_id))
        .unwrap_or_else(|| panic!("{event_id} not in {sync}"))
        .clone()
}

/// Incremental syncs, `/v3/sync` and sliding sync alike, share a node's
/// copies of a room's recent events (`service::sync::recent`); a
/// redaction must end the copy of what it redacted, or a client that had not yet seen the message would be sent
/// its ciphertext after the redaction.
async fn kept_recent_events_follow_redactions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let (alice, bob, room) = alice_and_bob_in_a_room(&url, &url).await;
    let since = |sync: &Value| sync["next_batch"].as_str().unwrap().to_owned();
    let incremental = |client: &Client, token: &str| {
        let path = format!("/_matrix/client/v3/sync?since={}&timeout=0", encode(token));
        let client = client.clone();
        async move {
            let (status, body) = client.get(&path).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let kept = |text: &str| {
        (
            metric(text, "cloister_sync_recent_events_used_total"),
            metric(text, "cloister_sync_recent_events_reads_total"),
        )
    };
    let alice_since = since(&alice.sync(None, 0).await);
    let bob_since = since(&bob.sync(None, 0).await);
    // Bob's phone holds the room on a sliding sync connection.
    let lists = json!({ "lists": { "all": { "ranges": [[0, 9]], "timeline_limit": 5 } } });
    let (status, opened) = bob.sliding_sync(None, 0, lists.clone()).await;
    assert_eq!(status, 200, "{opened}");
    let message = alice.send_encrypted(&room, "m1").await;

    // Alice's sync reads the message and keeps it; Bob's, from a later
    // position, is served the same copy.
    let (used, reads) = kept(&server.metrics().await);
    let first = incremental(&alice, &alice_since).await;
    assert!(timeline_event(&first, &room, &message)["content"]["ciphertext"].is_string());
    assert_eq!(kept(&server.metrics().await), (used, reads + 1.0));
    let seen = incremental(&bob, &bob_since).await;
    assert!(timeline_event(&seen, &room, &message)["content"]["ciphertext"].is_string());
    assert_eq!(kept(&server.metrics().await), (used + 1.0, reads + 1.0));
    // So is his sliding sync connection's.
    let pos = opened["pos"].as_str().unwrap();
    let (status, slid) = bob.sliding_sync(Some(pos), 0, lists).await;
    assert_eq!(status, 200, "{slid}");
    let timeline = &slid["rooms"][&room]["timeline"];
    assert!(
        timeline.as_array().is_some_and(|events| events
            .iter()
            .any(|e| e["event_id"] == message && e["content"]["ciphertext"].is_string())),
        "{slid}"
    );
    assert_eq!(kept(&server.metrics().await), (used + 2.0, reads + 1.0));

    let (status, body) = redact(&alice, &room, &message, "r1").await;
    assert_eq!(status, 200, "{body}");
    // Bob asks again from the same position, as a client whose response
    // was lost would: the message comes redacted.
    let again = incremental(&bob, &bob_since).await;
    let redacted = timeline_event(&again, &room, &message);
    assert_eq!(redacted["content"], json!({}), "{again}");
}

both_backends!(
    kept_recent_events, kept_recent_events_follow_redactions;
    encryption_redaction, encryption_cannot_be_redacted;
    server_notices, server_notices_are_protected;
    redacted_ciphertext, redacted_ciphertext_leaves_the_files;
);
