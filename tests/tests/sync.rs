//! /sync behaviour on both backends: long-poll wake-ups, limited timelines
//! with prev_batch, filters (inline and stored, lazy-loaded members),
//! invite/join/leave sections, ephemeral events, account data, and shutdown
//! while a long-poll is waiting.

use std::time::{Duration, Instant};

use cloister_tests::{
    alice_and_bob_in_a_room, both_backends, encode, errcode, Backend, Client, TestServer,
};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn token(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

fn timeline<'a>(sync: &'a Value, room: &str) -> &'a Value {
    &sync["rooms"]["join"][room]["timeline"]
}

async fn sync_with(client: &Client, since: &str, filter: &str) -> Value {
    let path = format!(
        "/_matrix/client/v3/sync?since={}&filter={}&timeout=0",
        encode(since),
        encode(filter)
    );
    let (status, body) = client.get(&path).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn long_poll_and_timelines(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let (alice, bob, room) = alice_and_bob_in_a_room(&url, &url).await;
    let since = token(&bob.sync(None, 0).await);

    // A long-poll returns as soon as an event arrives, not at its timeout.
    let waiting = {
        let bob = bob.clone();
        let since = since.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let response = bob.sync(Some(&since), 30_000).await;
            (response, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = alice.send_encrypted(&room, "wake").await;
    let (response, waited) = waiting.await.unwrap();
    assert!(
        waited < Duration::from_secs(15),
        "the sync waited {waited:?} for an event that arrived after 0.3 s"
    );
    assert_eq!(
        timeline(&response, &room)["events"][0]["event_id"],
        sent.as_str()
    );
    let since = token(&response);

    // An empty incremental sync with timeout=0 returns at once with nothing.
    let idle = bob.sync(Some(&since), 0).await;
    assert!(
        idle["rooms"]["join"].as_object().unwrap().is_empty(),
        "{idle}"
    );
    assert_eq!(token(&idle), since);

    // More events than the limit: the newest `limit`, `limited`, and a prev_batch to page back from.
    let mut sent = Vec::new();
    for i in 0..15 {
        sent.push(alice.send_encrypted(&room, &format!("e{i}")).await);
    }
    let limited = sync_with(&bob, &since, r#"{"room":{"timeline":{"limit":5}}}"#).await;
    let tl = timeline(&limited, &room);
    assert_eq!(tl["limited"], true);
    let got: Vec<&str> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        sent[10..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let prev = tl["prev_batch"].as_str().unwrap();
    let (_, page) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10&from={}",
            encode(&room),
            encode(prev)
        ))
        .await;
    let back: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = sent[..10].iter().rev().map(String::as_str).collect();
    assert_eq!(
        back, expected,
        "prev_batch continues exactly where the timeline starts"
    );

    // Stored filters work by id; unknown ids are refused.
    let (status, created) = bob
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", encode(&bob.user_id)),
            json!({ "room": { "timeline": { "limit": 2 } } }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let filter_id = created["filter_id"].as_str().unwrap();
    // The second read is from the node's copy, and holds the same.
    for _ in 0..2 {
        let by_id = sync_with(&bob, &since, filter_id).await;
        assert_eq!(
            timeline(&by_id, &room)["events"].as_array().unwrap().len(),
            2
        );
    }
    let (status, body) = alice
        .get(&format!(
            "/_matrix/client/v3/sync?filter={filter_id}&since={}",
            encode(&since)
        ))
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (400, Some("M_INVALID_PARAM")),
        "another user's filter id"
    );
    let (status, body) = bob
        .get(&format!(
            "/_matrix/client/v3/sync?filter=nope&since={}",
            encode(&since)
        ))
        .await;
    assert_eq!((status, errcode(&body)), (400, Some("M_INVALID_PARAM")));
    server.stop().await;
}

async fn sections_and_lazy_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;

    // The first sync carries the default push rules (clients read them from account data).
    let first = bob.sync(None, 0).await;
    let data = first["account_data"]["events"].as_array().unwrap();
    assert!(
        data.iter()
            .any(|e| e["type"] == "m.push_rules" && e["content"]["global"]["override"].is_array()),
        "{first}"
    );
    assert!(
        first["device_one_time_keys_count"]["signed_curve25519"] == 0,
        "present even with no keys: {first}"
    );
    assert_eq!(first["device_unused_fallback_key_types"], json!([]));
    let since = token(&first);

    // Invite → invite section; join → the whole room arrives in join, state included.
    let room = alice
        .create_room(json!({ "invite": [bob.user_id, carol.user_id], "name": "lazy" }))
        .await;
    let invited = bob
        .sync_until(Some(&since), WAIT, |s| {
            s["rooms"]["invite"][&room].is_object()
        })
        .await;
    bob.join(&room).await;
    carol.join(&room).await;
    let joined = bob
        .sync_until(Some(&token(&invited)), WAIT, |s| {
            s["rooms"]["join"][&room].is_object()
        })
        .await;
    let state = joined["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap();
    let timeline_events = timeline(&joined, &room)["events"].as_array().unwrap();
    let all: Vec<&Value> = state.iter().chain(timeline_events.iter()).collect();
    assert!(
        all.iter().any(|e| e["type"] == "m.room.encryption"),
        "a newly joined room comes with its encryption state"
    );
    assert!(all.iter().any(|e| e["type"] == "m.room.create"));
    assert_eq!(
        joined["rooms"]["join"][&room]["summary"]["m.joined_member_count"],
        3
    );

    // Lazy loading: only the members who speak in the timeline (and yourself).
    alice.send_encrypted(&room, "a").await;
    let lazy_filter = r#"{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}"#;
    let (_, lazy) = bob
        .get(&format!(
            "/_matrix/client/v3/sync?filter={}",
            encode(lazy_filter)
        ))
        .await;
    let members: Vec<&str> = lazy["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(
        members.contains(&alice.user_id.as_str()) && members.contains(&bob.user_id.as_str()),
        "{members:?}"
    );
    assert!(
        !members.contains(&carol.user_id.as_str()),
        "silent members are not loaded: {members:?}"
    );

    // Typing, receipts and room account data reach the other member.
    let since = token(&bob.sync(None, 0).await);
    let last = alice.send_encrypted(&room, "read-me").await;
    let typing = format!(
        "/_matrix/client/v3/rooms/{}/typing/{}",
        encode(&room),
        encode(&alice.user_id)
    );
    assert_eq!(
        alice
            .put(&typing, json!({ "typing": true, "timeout": 10000 }))
            .await
            .0,
        200
    );
    let receipt = format!(
        "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
        encode(&room),
        encode(&last)
    );
    assert_eq!(alice.post(&receipt, json!({})).await.0, 200);
    let seen = bob
        .sync_until(Some(&since), WAIT, |s| {
            let eph = s["rooms"]["join"][&room]["ephemeral"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            eph.iter().any(|e| e["type"] == "m.typing")
                && eph.iter().any(|e| e["type"] == "m.receipt")
        })
        .await;
    let eph = seen["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap();
    let typing_now = eph.iter().find(|e| e["type"] == "m.typing").unwrap();
    assert_eq!(typing_now["content"]["user_ids"], json!([alice.user_id]));
    let receipts = eph.iter().find(|e| e["type"] == "m.receipt").unwrap();
    assert!(
        receipts["content"][&last]["m.read"][&alice.user_id]["ts"].is_i64(),
        "{receipts}"
    );
    let data_path = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/account_data/org.example.tag",
        encode(&bob.user_id),
        encode(&room)
    );
    assert_eq!(
        bob.put(&data_path, json!({ "colour": "blue" })).await.0,
        200
    );
    let with_data = bob
        .sync_until(Some(&token(&seen)), WAIT, |s| {
            s["rooms"]["join"][&room]["account_data"]["events"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .await;
    assert_eq!(
        with_data["rooms"]["join"][&room]["account_data"]["events"][0]["content"]["colour"],
        "blue"
    );

    // Kicked: the room moves to `leave`, ending with the kick.
    let since = token(&with_data);
    let kick = format!("/_matrix/client/v3/rooms/{}/kick", encode(&room));
    assert_eq!(
        alice.post(&kick, json!({ "user_id": bob.user_id })).await.0,
        200
    );
    let left = bob
        .sync_until(Some(&since), WAIT, |s| {
            s["rooms"]["leave"][&room].is_object()
        })
        .await;
    let last_event = timeline(&left, &room).clone();
    let leave_tl = left["rooms"]["leave"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(
        leave_tl.last().unwrap()["content"]["membership"],
        "leave",
        "{last_event}"
    );
    // Events after the kick never reach him.
    let after = alice.send_encrypted(&room, "secret-after-kick").await;
    let later = bob.sync(Some(&token(&left)), 0).await;
    assert!(!later.to_string().contains(&after), "{later}");
    server.stop().await;
}

/// A typing notice that simply times out is announced, so clients stop
/// showing "typing…" without waiting for other activity in the room.
async fn typing_expires_by_itself(backend: Backend) {
    let clock = cloister_tests::ManualClock::new(1_800_000_000_000);
    let server = TestServer::start_with_clock(backend, clock.clone(), |_| {}).await;
    let url = server.url();
    let (alice, bob, room) = alice_and_bob_in_a_room(&url, &url).await;
    let typing_users = |s: &Value| {
        s["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .and_then(|events| events.iter().find(|e| e["type"] == "m.typing"))
            .map(|e| e["content"]["user_ids"].clone())
    };
    let since = token(&bob.sync(None, 0).await);
    let typing = format!(
        "/_matrix/client/v3/rooms/{}/typing/{}",
        encode(&room),
        encode(&alice.user_id)
    );
    assert_eq!(
        alice
            .put(&typing, json!({ "typing": true, "timeout": 30000 }))
            .await
            .0,
        200
    );
    let started = bob
        .sync_until(Some(&since), WAIT, |s| {
            typing_users(s) == Some(json!([alice.user_id]))
        })
        .await;
    clock.advance_ms(31_000);
    let stopped = bob
        .sync_until(Some(&token(&started)), WAIT, |s| typing_users(s).is_some())
        .await;
    assert_eq!(typing_users(&stopped), Some(json!([])), "{stopped}");
    server.stop().await;
}

async fn shutdown_ends_long_polls(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let since = token(&alice.sync(None, 0).await);
    let waiting = tokio::spawn(async move { alice.sync(Some(&since), 30_000).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.stop().await;
    let response = waiting
        .await
        .expect("the pending sync got an answer, not a dropped connection");
    assert!(response["next_batch"].is_string());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "graceful stop took {:?}",
        started.elapsed()
    );
}

both_backends!(
    long_poll_and_timelines, long_poll_and_timelines;
    sections_and_lazy_members, sections_and_lazy_members;
    shutdown_ends_long_polls, shutdown_ends_long_polls;
    typing_expires_by_itself, typing_expires_by_itself
);
