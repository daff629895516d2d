//! Backward `/messages` pages served from the node's kept recent events
//! (`service::sync::recent`), on both backends: they must be exactly the
//! pages the database gives — the same events for each reader's history
//! visibility, the same aggregations (edits, threads), as many as asked
//! for (the older rest read from the database) — and a redaction must stop
//! them being used.

use cloister_tests::{
    alice_and_bob_in_a_room, both_backends, encode, megolm_content, metric, Backend, Client,
    TestServer,
};
use serde_json::{json, Value};

const KEPT: &str = "cloister_messages_pages_from_kept_total";

/// Removes every `age` (it grows between two reads of one event).
fn without_age(mut v: Value) -> Value {
    match &mut v {
        Value::Object(map) => {
            map.remove("age");
            for value in map.values_mut() {
                *value = without_age(value.take());
            }
        }
        Value::Array(list) => {
            for value in list.iter_mut() {
                *value = without_age(value.take());
            }
        }
        _ => {}
    }
    v
}

/// Every page of `dir` from the first (`from` absent), following `end`;
/// the events oldest first.
async fn history(client: &Client, room: &str, dir: &str, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..200 {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir={dir}&limit={limit}",
            encode(room)
        );
        if let Some(token) = &from {
            path.push_str(&format!("&from={}", encode(token)));
        }
        let (status, page) = client.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let chunk = page["chunk"].as_array().expect("chunk");
        assert!(chunk.len() <= limit as usize, "{page}");
        events.extend(chunk.iter().cloned().map(without_age));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => {
                if dir == "b" {
                    events.reverse();
                }
                return events;
            }
        }
    }
    panic!("no end after 200 pages");
}

/// An `m.room.encrypted` event (the room is encrypted), with a relation
/// in the clear as clients send them.
async fn send(client: &Client, room: &str, txn: &str, relates_to: Option<Value>) -> String {
    let mut content = megolm_content("c2VuZGVyIGtleQ", &client.device_id);
    if let Some(relation) = relates_to {
        content["m.relates_to"] = relation;
    }
    let (status, body) = client
        .send_event(room, "m.room.encrypted", txn, content)
        .await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

async fn kept_pages(server: &TestServer) -> f64 {
    metric(&server.metrics().await, KEPT)
}

async fn backward_pages_from_kept_events(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let (alice, bob, room) = alice_and_bob_in_a_room(&url, &url).await;
    let (status, body) = alice
        .put_state(
            &room,
            "m.room.history_visibility",
            "",
            json!({"history_visibility": "joined"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(send(&alice, &room, &format!("t{i}"), None).await);
    }
    // Carol joins halfway: she may read only what follows.
    let carol = Client::register(&url, "carol", "pw").await;
    let (status, body) = alice.invite(&room, &carol.user_id).await;
    assert_eq!(status, 200, "{body}");
    carol.join(&room).await;
    for i in 6..12 {
        ids.push(send(&alice, &room, &format!("t{i}"), None).await);
    }
    let edit = json!({"rel_type": "m.replace", "event_id": ids[2]});
    let edit_id = send(&alice, &room, "edit", Some(edit)).await;
    let reply = json!({"rel_type": "m.thread", "event_id": ids[8]});
    send(&bob, &room, "reply", Some(reply)).await;

    // Bob's incremental sync comes back limited, and its read keeps every
    // event since his last sync on the node.
    let filter = r#"{"room":{"timeline":{"limit":3}}}"#;
    let (status, sync) = bob
        .get(&format!(
            "/_matrix/client/v3/sync?since={}&filter={}&timeout=0",
            encode(&since),
            encode(filter)
        ))
        .await;
    assert_eq!(status, 200, "{sync}");
    let timeline = &sync["rooms"]["join"][&room]["timeline"];
    assert_eq!(timeline["limited"], true, "{timeline}");
    let prev_batch = timeline["prev_batch"].as_str().unwrap().to_owned();
    // The gap's first page, as a client filling it asks for it.
    let gap_page = |client: &Client| {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=4&from={}",
            encode(&room),
            encode(&prev_batch)
        );
        let client = client.clone();
        async move {
            let (status, page) = client.get(&path).await;
            assert_eq!(status, 200, "{page}");
            without_age(page)
        }
    };
    let before = kept_pages(&server).await;
    let first = gap_page(&bob).await;
    assert_eq!(
        kept_pages(&server).await,
        before + 1.0,
        "from the kept events"
    );
    let got: Vec<&str> = first["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(got, [&ids[10], &ids[9], &ids[8], &ids[7]], "{first}");

    for reader in [&bob, &carol] {
        let before = kept_pages(&server).await;
        let backward = history(reader, &room, "b", 4).await;
        let used = kept_pages(&server).await - before;
        assert!(
            used >= 1.0,
            "{} read no page from the kept events",
            reader.user_id
        );
        let forward = history(reader, &room, "f", 1000).await;
        assert_eq!(backward, forward, "{}'s history both ways", reader.user_id);
        // One long page is as long as the database alone makes it: the
        // copies' part, then the older rest.
        let mut whole = reader.messages(&room, 1000).await;
        assert!(whole.get("end").is_none(), "{whole}");
        let mut one_page: Vec<Value> = whole["chunk"]
            .as_array_mut()
            .unwrap()
            .drain(..)
            .map(without_age)
            .collect();
        one_page.reverse();
        assert_eq!(
            one_page, forward,
            "{}'s history in one page",
            reader.user_id
        );
        let seen: Vec<&str> = forward
            .iter()
            .filter_map(|e| e["event_id"].as_str())
            .collect();
        let sees_m0 = seen.contains(&ids[0].as_str());
        assert_eq!(sees_m0, reader.user_id == bob.user_id, "{seen:?}");
        assert!(seen.contains(&ids[11].as_str()), "{seen:?}");
        let m8 = forward.iter().find(|e| e["event_id"] == ids[8].as_str());
        let thread = &m8.expect("m8")["unsigned"]["m.relations"]["m.thread"];
        assert_eq!(thread["count"], 1, "{thread}");
    }
    let m2 = history(&bob, &room, "b", 4)
        .await
        .into_iter()
        .find(|e| e["event_id"] == ids[2].as_str())
        .expect("m2");
    let edit = &m2["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(edit["event_id"], edit_id.as_str(), "{m2}");

    // A redaction rewrites a kept event: the copies no longer serve.
    let (status, body) = alice
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/redact/{}/r1",
                encode(&room),
                encode(&ids[10])
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let before = kept_pages(&server).await;
    let again = gap_page(&bob).await;
    assert_eq!(
        kept_pages(&server).await,
        before,
        "no page from stale copies"
    );
    let m10 = &again["chunk"][0];
    assert_eq!(m10["event_id"], ids[10].as_str(), "{again}");
    assert_eq!(m10["content"], json!({}), "{m10}");
    // The others as the copies gave them, the thread's summary on m8 too.
    let chunk = |page: &Value| page["chunk"].as_array().unwrap()[1..].to_vec();
    assert_eq!(chunk(&again), chunk(&first));
    let backward = history(&bob, &room, "b", 4).await;
    assert_eq!(backward, history(&bob, &room, "f", 1000).await);
}

both_backends!(
    backward_pages_from_kept_events,
    backward_pages_from_kept_events
);
