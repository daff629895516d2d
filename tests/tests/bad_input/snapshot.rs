//! The world the bad requests run against, and its snapshot.

use cloister_tests::{encode, Backend, Client, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{MAX_BODY, MAX_UPLOAD, R};

// ----- the world and its snapshot --------------------------------------------

pub(crate) struct World {
    pub(crate) server: TestServer,
    pub(crate) alice: Client,
    pub(crate) bob: Client,
    /// Registered, but in no room with Alice and Bob.
    pub(crate) carol: Client,
    /// Encrypted; Alice (creator, power 100) and Bob (power 0) are joined.
    pub(crate) room: String,
    /// Ids of Alice's encrypted events in `room`.
    pub(crate) events: Vec<String>,
    pub(crate) media: String,
}

pub(crate) async fn setup(backend: Backend) -> World {
    let server = TestServer::start_with(backend, |c| {
        c.limits.max_request_body = MAX_BODY;
        c.limits.max_upload_size = MAX_UPLOAD;
    })
    .await;
    let url = server.url();
    let alice = Client::register_device(&url, "alice", "alice-pw", "ALICE1").await;
    let bob = Client::register_device(&url, "bob", "bob-pw", "BOB1").await;
    let carol = Client::register_device(&url, "carol", "carol-pw", "CAROL1").await;
    for (c, name) in [(&alice, "Alice"), (&bob, "Bob"), (&carol, "Carol")] {
        let (s, r) = c
            .put(
                &format!("{R}/profile/{}/displayname", encode(&c.user_id)),
                json!({ "displayname": name }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
        c.upload_keys(&c.device_keys(), 5).await;
        let (s, r) = c
            .put(
                &format!(
                    "{R}/user/{}/account_data/org.example.data",
                    encode(&c.user_id)
                ),
                json!({ "owner": c.user_id, "n": 1 }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
    let room = alice
        .create_room(json!({ "invite": [bob.user_id], "name": "bad input", "topic": "t" }))
        .await;
    bob.join(&room).await;
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(alice.send_encrypted(&room, &format!("setup-{i}")).await);
    }
    let bytes: Vec<u8> = (0..MAX_UPLOAD).map(|i| (i % 251) as u8).collect();
    let media = alice
        .upload_media(bytes, "application/octet-stream", "blob.bin")
        .await;
    World {
        server,
        alice,
        bob,
        carol,
        room,
        events,
        media,
    }
}

/// Everything the bad requests must leave alone, as seen through the API.
pub(crate) async fn snapshot(w: &World) -> Value {
    let mut out = serde_json::Map::new();
    let history = w.alice.messages(&w.room, 1000).await;
    let ids: Vec<Value> = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    out.insert("messages".into(), Value::Array(ids));
    let (s, state) = w
        .alice
        .get(&format!("{R}/rooms/{}/state", encode(&w.room)))
        .await;
    assert_eq!(s, 200, "{state}");
    let mut state: Vec<Value> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["type"], e["state_key"], e["event_id"], e["content"]]))
        .collect();
    state.sort_by_key(|v| v.to_string());
    out.insert("state".into(), Value::Array(state));
    for c in [&w.alice, &w.bob, &w.carol] {
        let mut me = serde_json::Map::new();
        let uid = encode(&c.user_id);
        for (name, path) in [
            ("profile", format!("{R}/profile/{uid}")),
            (
                "data",
                format!("{R}/user/{uid}/account_data/org.example.data"),
            ),
            (
                "room_data",
                format!(
                    "{R}/user/{uid}/rooms/{}/account_data/org.example.data",
                    encode(&w.room)
                ),
            ),
            ("devices", format!("{R}/devices")),
            ("joined", format!("{R}/joined_rooms")),
            ("whoami", format!("{R}/account/whoami")),
            ("pushrules", format!("{R}/pushrules/")),
            ("backup", format!("{R}/room_keys/version")),
        ] {
            let (s, body) = c.get(&path).await;
            me.insert(name.into(), json!([s, body]));
        }
        let keys = c
            .expect_ok(
                Method::POST,
                &format!("{R}/keys/query"),
                json!({ "device_keys": { &w.alice.user_id: [], &w.bob.user_id: [], &w.carol.user_id: [] } }),
            )
            .await;
        me.insert("keys".into(), keys);
        let sync = c.sync(None, 0).await;
        me.insert(
            "one_time_keys".into(),
            sync["device_one_time_keys_count"].clone(),
        );
        out.insert(c.user_id.clone(), Value::Object(me));
    }
    let (s, bytes) = w.bob.download_media(&w.media).await;
    assert_eq!(s, 200);
    out.insert("media".into(), json!(bytes.len()));
    out.insert(
        "media_ok".into(),
        json!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8)),
    );
    Value::Object(out)
}

#[track_caller]
pub(crate) fn assert_unchanged(before: &Value, after: &Value) {
    if before != after {
        let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
        for (k, v) in b {
            assert_eq!(Some(v), a.get(k), "{k} changed");
        }
        panic!("snapshots differ: {before} vs {after}");
    }
}
