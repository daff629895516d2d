//! Thread-aware notification counts (issue #13) on both backends: each
//! notification counts in its thread (a reply's root, a reaction's parent's
//! thread, else `main`), threaded read receipts clear only their thread, an
//! unthreaded one clears all, and `/sync` reports per-thread counts only to
//! a filter that asks (`unread_thread_notifications`).

use std::time::{Duration, Instant};

use cloister_tests::{both_backends, encode, megolm_content, Backend, Client, TestServer};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(30);

/// Sends a Megolm event with `relates_to` as its cleartext relation.
async fn send(c: &Client, room: &str, txn: &str, relates_to: Option<Value>) -> String {
    let mut content = megolm_content("sender-key", &c.device_id);
    if let Some(relation) = relates_to {
        content["m.relates_to"] = relation;
    }
    let (status, body) = c.send_event(room, "m.room.encrypted", txn, content).await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn thread(root: &str) -> Option<Value> {
    Some(
        json!({ "rel_type": "m.thread", "event_id": root, "is_falling_back": true,
                 "m.in_reply_to": { "event_id": root } }),
    )
}

async fn receipt(c: &Client, room: &str, event: &str, thread_id: Option<&str>) {
    let body = thread_id.map_or(json!({}), |t| json!({ "thread_id": t }));
    let path = format!(
        "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
        encode(room),
        encode(event)
    );
    let (status, answer) = c.post(&path, body).await;
    assert_eq!(status, 200, "{answer}");
}

/// One `/sync`, thread-aware or not.
async fn sync(c: &Client, since: Option<&str>, thread_aware: bool, timeout_ms: u64) -> Value {
    let filter = json!({ "room": { "timeline": { "unread_thread_notifications": thread_aware } } });
    let mut path = format!(
        "/_matrix/client/v3/sync?timeout={timeout_ms}&filter={}",
        encode(&filter.to_string())
    );
    if let Some(since) = since {
        path.push_str(&format!("&since={}", encode(since)));
    }
    let (status, body) = c.get(&path).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn counts(n: i64, h: i64) -> Value {
    json!({ "notification_count": n, "highlight_count": h })
}

/// (`unread_notifications`, `unread_thread_notifications`) of `room`.
fn unread(sync: &Value, room: &str) -> (Value, Value) {
    let section = &sync["rooms"]["join"][room];
    (
        section["unread_notifications"].clone(),
        section["unread_thread_notifications"].clone(),
    )
}

/// Waits until an initial sync shows `aware` to a thread-aware filter and
/// `total` to one without the flag (the evaluator runs in the background).
async fn expect(c: &Client, room: &str, aware: (Value, Value), total: Value) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let seen_aware = unread(&sync(c, None, true, 0).await, room);
        let seen_total = unread(&sync(c, None, false, 0).await, room);
        if seen_aware == aware && seen_total == (total.clone(), Value::Null) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "counts stayed {seen_aware:?} / {seen_total:?}, expected {aware:?} / {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn threads_count_apart(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let since = sync(&bob, None, true, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let root = send(&alice, &room, "root", None).await;
    let t1 = send(&alice, &room, "t1", thread(&root)).await;
    send(&alice, &room, "t2", thread(&root)).await;
    // A reaction to a thread reply counts in that thread.
    let reaction = json!({ "rel_type": "m.annotation", "event_id": t1, "key": "👍" });
    let r1 = send(&alice, &room, "r1", Some(reaction)).await;

    // Counts are evaluated in the background, a moment after the events
    // commit: wait for them, then an incremental sync over the same events
    // carries them per thread.
    expect(
        &bob,
        &room,
        (counts(1, 0), json!({ &root: counts(3, 0) })),
        counts(4, 0),
    )
    .await;
    let incremental = sync(&bob, Some(&since), true, 0).await;
    assert_eq!(
        unread(&incremental, &room),
        (counts(1, 0), json!({ &root: counts(3, 0) })),
        "{incremental}"
    );

    // A receipt in the thread clears the thread, not the main timeline.
    receipt(&bob, &room, &r1, Some(&root)).await;
    expect(&bob, &room, (counts(1, 0), json!({})), counts(1, 0)).await;
    let (status, list) = bob.get("/_matrix/client/v3/notifications").await;
    assert_eq!(status, 200, "{list}");
    let read: Vec<(String, bool)> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let id = n["event"]["event_id"].as_str().unwrap().to_owned();
            (id, n["read"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(read.len(), 4, "{list}");
    for (id, is_read) in read {
        assert_eq!(is_read, id != root, "{id} in {list}");
    }

    // `main` clears the main timeline only.
    receipt(&bob, &room, &root, Some("main")).await;
    let t3 = send(&alice, &room, "t3", thread(&root)).await;
    expect(
        &bob,
        &room,
        (counts(0, 0), json!({ &root: counts(1, 0) })),
        counts(1, 0),
    )
    .await;

    // An unthreaded receipt clears every thread up to it.
    let m2 = send(&alice, &room, "m2", None).await;
    receipt(&bob, &room, &t3, None).await;
    expect(&bob, &room, (counts(1, 0), json!({})), counts(1, 0)).await;
    receipt(&bob, &room, &m2, None).await;
    expect(&bob, &room, (counts(0, 0), json!({})), counts(0, 0)).await;

    // `/notifications` reads them the same way.
    let (_, list) = bob.get("/_matrix/client/v3/notifications").await;
    assert!(
        list["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["read"] == true),
        "{list}"
    );
    server.stop().await;
}

both_backends!(
    threads, threads_count_apart;
);
