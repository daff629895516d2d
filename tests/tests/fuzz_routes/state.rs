//! The known state: set up before the fuzz, compared after it.

use cloister_tests::{encode, Backend, Client, TestServer};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::route::R;

// ----- the known state -------------------------------------------------------

/// Real values for path parameters, query values and JSON strings.
pub(crate) struct Ids {
    pub(crate) rooms: Vec<String>,
    pub(crate) aliases: Vec<String>,
    pub(crate) events: Vec<String>,
    pub(crate) users: Vec<String>,
    pub(crate) devices: Vec<String>,
    pub(crate) media: Vec<String>,
    pub(crate) filters: Vec<String>,
}

pub(crate) struct World {
    pub(crate) server: TestServer,
    pub(crate) alice: Client,
    pub(crate) bob: Client,
    pub(crate) carol: Client,
    pub(crate) room: String,
    pub(crate) media: String,
    pub(crate) media_bytes: Vec<u8>,
    pub(crate) ids: Ids,
}

pub(crate) const ALICE_PW: &str = "alice-password";
pub(crate) const BOB_PW: &str = "bob-password";
pub(crate) const CAROL_PW: &str = "carol-password";

pub(crate) async fn setup(backend: Backend) -> World {
    let server = TestServer::start_with(backend, |c| {
        // Any `timeout` the fuzzer picks returns quickly.
        c.limits.max_sync_timeout_ms = 50;
    })
    .await;
    let url = server.url();
    let alice = Client::register_device(&url, "alice", ALICE_PW, "ALICE1").await;
    let bob = Client::register_device(&url, "bob", BOB_PW, "BOB1").await;
    let carol = Client::register_device(&url, "carol", CAROL_PW, "CAROL1").await;
    for c in [&alice, &bob, &carol] {
        c.upload_keys(&c.device_keys(), 10).await;
    }
    // Alice also has cross-signing keys and a backup.
    let master = ed25519_dalek::SigningKey::from_bytes(&[41; 32]);
    let ssk = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let cs = |usage: &str, key: &ed25519_dalek::SigningKey| {
        let p = cloister_tests::keys::b64(key.verifying_key().as_bytes());
        json!({ "user_id": alice.user_id, "usage": [usage], "keys": { format!("ed25519:{p}"): p } })
    };
    let master_json = cs("master", &master);
    let master_id = format!(
        "ed25519:{}",
        cloister_tests::keys::b64(master.verifying_key().as_bytes())
    );
    let ssk_json = cloister_tests::keys::sign_json(
        &cs("self_signing", &ssk),
        &alice.user_id,
        &master_id,
        &master,
    );
    let (s, r) = alice
        .post(
            &format!("{R}/keys/device_signing/upload"),
            json!({ "master_key": master_json, "self_signing_key": ssk_json }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = alice
        .post(
            &format!("{R}/room_keys/version"),
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "pk" } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // The encrypted room shared by Alice and Bob, with a few events.
    let room = alice
        .create_room(
            json!({ "invite": [bob.user_id], "name": "fuzz target", "room_alias_name": "target" }),
        )
        .await;
    bob.join(&room).await;
    let mut events = Vec::new();
    for i in 0..4 {
        events.push(alice.send_encrypted(&room, &format!("a{i}")).await);
        events.push(bob.send_encrypted(&room, &format!("b{i}")).await);
    }
    let (s, r) = alice
        .put(
            &format!("{R}/room_keys/keys?version=1"),
            json!({ "rooms": { &room: { "sessions": { "S1": { "first_message_index": 0, "forwarded_count": 0, "is_verified": true, "session_data": { "c": "x" } } } } } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // Account data, global and per room, and profiles.
    for c in [&alice, &bob] {
        let uid = encode(&c.user_id);
        for path in [
            format!("{R}/user/{uid}/account_data/org.example.secret"),
            format!(
                "{R}/user/{uid}/rooms/{}/account_data/org.example.secret",
                encode(&room)
            ),
        ] {
            let (s, r) = c
                .put(&path, json!({ "owner": c.user_id, "ciphertext": "opaque" }))
                .await;
            assert_eq!(s, 200, "{r}");
        }
        let (s, r) = c
            .put(
                &format!("{R}/profile/{uid}/displayname"),
                json!({ "displayname": c.user_id.to_uppercase() }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }

    // Carol, whose valid token the fuzzer uses, has a room of her own.
    let carol_room = carol
        .create_room(json!({ "name": "carol's", "room_alias_name": "carols" }))
        .await;
    events.push(carol.send_encrypted(&carol_room, "c0").await);
    let filter = carol
        .post(
            &format!("{R}/user/{}/filter", encode(&carol.user_id)),
            json!({ "room": { "timeline": { "limit": 5 } } }),
        )
        .await
        .1["filter_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let media_bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let media = alice
        .upload_media(
            media_bytes.clone(),
            "application/octet-stream",
            "secret.bin",
        )
        .await;
    let ids = Ids {
        rooms: vec![room.clone(), carol_room],
        aliases: vec!["#target:localhost".into(), "#carols:localhost".into()],
        events,
        users: vec![
            alice.user_id.clone(),
            bob.user_id.clone(),
            carol.user_id.clone(),
        ],
        devices: vec!["ALICE1".into(), "BOB1".into(), "CAROL1".into()],
        media: vec![media.trim_start_matches("mxc://localhost/").to_owned()],
        filters: vec![filter],
    };
    World {
        server,
        alice,
        bob,
        carol,
        room,
        media,
        media_bytes,
        ids,
    }
}

/// What must survive the fuzzing exactly.
pub(crate) async fn snapshot(w: &World) -> Value {
    let mut out = Map::new();
    let history = w.alice.messages(&w.room, 1000).await;
    out.insert(
        "messages".into(),
        Value::Array(
            history["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].clone())
                .collect(),
        ),
    );
    for c in [&w.alice, &w.bob] {
        let uid = encode(&c.user_id);
        let room = encode(&w.room);
        let mut mine = Map::new();
        for (name, path) in [
            ("state", format!("{R}/rooms/{room}/state")),
            (
                "data",
                format!("{R}/user/{uid}/account_data/org.example.secret"),
            ),
            (
                "room_data",
                format!("{R}/user/{uid}/rooms/{room}/account_data/org.example.secret"),
            ),
            ("profile", format!("{R}/profile/{uid}")),
            ("devices", format!("{R}/devices")),
            ("joined", format!("{R}/joined_rooms")),
            ("pushrules", format!("{R}/pushrules/")),
            ("whoami", format!("{R}/account/whoami")),
            ("backup", format!("{R}/room_keys/version")),
            ("backup_keys", format!("{R}/room_keys/keys?version=1")),
            ("aliases", format!("{R}/rooms/{room}/aliases")),
        ] {
            let (s, mut body) = c.get(&path).await;
            assert!(s == 200 || s == 404, "{} {path}: {s} {body}", c.user_id);
            if let Value::Array(items) = &mut body {
                // State events: what they are, not how old they are.
                for item in items.iter_mut() {
                    if let Some(unsigned) = item.get_mut("unsigned").and_then(Value::as_object_mut)
                    {
                        unsigned.remove("age");
                    }
                }
                items.sort_by_key(|v| v.to_string());
            }
            mine.insert(name.into(), json!([s, body]));
        }
        let keys = c
            .expect_ok(
                Method::POST,
                &format!("{R}/keys/query"),
                json!({ "device_keys": { &w.alice.user_id: [], &w.bob.user_id: [] } }),
            )
            .await;
        mine.insert("keys".into(), keys);
        out.insert(c.user_id.clone(), Value::Object(mine));
    }
    Value::Object(out)
}
