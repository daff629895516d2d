//! What sliding sync says of a room besides its events, on both backends:
//! member counts, the avatar, the name, and for a room without a name its
//! heroes (up to five other members, with their display names), as Element
//! X shows them in its room list.

use cloister_tests::{both_backends, Backend, Client, TestServer};
use serde_json::{json, Value};

async fn room_entry(client: &Client, room: &str) -> Value {
    let body = json!({ "room_subscriptions": { room: { "timeline_limit": 1 } } });
    let (status, answer) = client.sliding_sync(None, 0, body).await;
    assert_eq!(status, 200, "{answer}");
    answer["rooms"][room].clone()
}

async fn heroes_name_and_counts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;
    let dave = Client::register(&url, "dave", "pw").await;
    let room = alice
        .create_room(json!({ "invite": [bob.user_id, carol.user_id, dave.user_id] }))
        .await;
    bob.join(&room).await;
    carol.join(&room).await;
    let (status, body) = bob
        .put_state(
            &room,
            "m.room.member",
            &bob.user_id,
            json!({ "membership": "join", "displayname": "Bob B." }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .put_state(
            &room,
            "m.room.avatar",
            "",
            json!({ "url": "mxc://x/avatar" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let got = room_entry(&alice, &room).await;
    assert_eq!(got["joined_count"], 3, "{got}");
    assert_eq!(got["invited_count"], 1, "{got}");
    assert_eq!(got["avatar"], "mxc://x/avatar", "{got}");
    assert!(got.get("name").is_none_or(Value::is_null), "{got}");
    // Everyone but the viewer, invited members too, in user id order.
    let heroes = got["heroes"].as_array().expect("heroes").clone();
    let ids: Vec<&str> = heroes
        .iter()
        .map(|h| h["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [&bob.user_id, &carol.user_id, &dave.user_id].map(String::as_str),
        "{got}"
    );
    assert_eq!(heroes[0]["displayname"], "Bob B.", "{got}");
    // Carol's view leaves Carol out.
    let from_carol = room_entry(&carol, &room).await;
    let ids: Vec<&str> = from_carol["heroes"]
        .as_array()
        .expect("heroes")
        .iter()
        .map(|h| h["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [&alice.user_id, &bob.user_id, &dave.user_id].map(String::as_str)
    );

    // A named room is shown by its name, without heroes.
    let (status, body) = alice
        .put_state(&room, "m.room.name", "", json!({ "name": "Planning" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let named = room_entry(&alice, &room).await;
    assert_eq!(named["name"], "Planning", "{named}");
    assert!(named.get("heroes").is_none_or(Value::is_null), "{named}");
}

both_backends!(heroes, heroes_name_and_counts);
