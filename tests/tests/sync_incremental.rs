//! What an incremental /sync carries besides the timeline, on both
//! backends: the state before a limited timeline (the gap), lazy-loaded
//! members (the speakers and the viewer, not the whole room), and a room
//! summary that is sent when membership may have changed and left empty
//! otherwise. The server reads only parts of the room's state for these, so
//! the answers are pinned here.

use cloister_tests::{
    alice_and_bob_in_a_room, both_backends, encode, metric, Backend, Client, TestServer,
};
use serde_json::{json, Value};

const LAZY: &str = r#"{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true}}}"#;

fn token(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
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

/// (type, state key) of a room's `state` section, in order.
fn state_of(sync: &Value, room: &str) -> Vec<(String, String)> {
    sync["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no state section: {sync}"))
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["state_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn members(state: &[(String, String)]) -> Vec<&str> {
    let mut keys: Vec<&str> = state
        .iter()
        .filter(|(t, _)| t == "m.room.member")
        .map(|(_, k)| k.as_str())
        .collect();
    keys.sort_unstable();
    keys
}

async fn gap_state_lazy_members_and_summary(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;
    let room = alice
        .create_room(json!({ "invite": [bob.user_id, carol.user_id] }))
        .await;
    bob.join(&room).await;
    carol.join(&room).await;
    let since = token(&bob.sync(None, 0).await);

    // In the window: a state change and carol's message, then two of alice's.
    let (status, body) = alice
        .put_state(&room, "m.room.name", "", json!({ "name": "Gap" }))
        .await;
    assert_eq!(status, 200, "{body}");
    carol.send_encrypted(&room, "c1").await;
    alice.send_encrypted(&room, "a1").await;
    alice.send_encrypted(&room, "a2").await;

    // Limited and lazy: the gap's state, and only the speakers' and the
    // viewer's member events.
    let lazy = sync_with(&bob, &since, LAZY).await;
    let section = &lazy["rooms"]["join"][&room];
    assert_eq!(section["timeline"]["limited"], true, "{lazy}");
    let state = state_of(&lazy, &room);
    assert!(
        state.contains(&("m.room.name".into(), String::new())),
        "{state:?}"
    );
    let mut want = vec![alice.user_id.as_str(), bob.user_id.as_str()];
    want.sort_unstable();
    assert_eq!(members(&state), want, "carol spoke only in the gap");
    // The gap could have held membership changes: the summary comes along.
    assert_eq!(section["summary"]["m.joined_member_count"], 3, "{lazy}");

    // Limited, not lazy: the gap's state alone (nobody joined in it).
    let full = sync_with(&bob, &since, r#"{"room":{"timeline":{"limit":2}}}"#).await;
    assert_eq!(
        state_of(&full, &room),
        vec![("m.room.name".to_owned(), String::new())]
    );

    // Not limited: every speaker's member event and the viewer's, no gap
    // state, and an empty summary since no membership changed.
    let all = r#"{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}}}"#;
    let whole = sync_with(&bob, &since, all).await;
    let section = &whole["rooms"]["join"][&room];
    assert_eq!(section["timeline"]["limited"], false, "{whole}");
    assert_eq!(section["timeline"]["events"].as_array().unwrap().len(), 4);
    let state = state_of(&whole, &room);
    let mut want = vec![
        alice.user_id.as_str(),
        bob.user_id.as_str(),
        carol.user_id.as_str(),
    ];
    want.sort_unstable();
    assert_eq!(members(&state), want, "{state:?}");
    assert_eq!(section["summary"], json!({}), "{whole}");

    // A departure in the window: the summary is sent again, up to date.
    let since = token(&whole);
    let (status, body) = carol.leave(&room).await;
    assert_eq!(status, 200, "{body}");
    let after = sync_with(&bob, &since, all).await;
    let summary = &after["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.joined_member_count"], 2, "{after}");
    assert_eq!(summary["m.invited_member_count"], 0, "{after}");
    assert_eq!(summary["m.heroes"], json!([alice.user_id]), "{after}");
}

both_backends!(
    gap_state_lazy_members_and_summary,
    gap_state_lazy_members_and_summary
);

/// The first member event of `user` in a room's `state` section.
fn member_event<'a>(sync: &'a Value, room: &str, user: &str) -> &'a Value {
    sync["rooms"]["join"][room]["state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no state section: {sync}"))
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
        .unwrap_or_else(|| panic!("no member event of {user}: {sync}"))
}

/// Lazily loaded member events are kept per node between syncs
/// (`service::sync::members`); a change of the member event must replace
/// the kept one, or a client would be sent the old name after the new one.
async fn kept_member_events_follow_the_room_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let (alice, bob, room) = alice_and_bob_in_a_room(&url, &url).await;
    let lazy = r#"{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}}}"#;
    let mut since = token(&bob.sync(None, 0).await);

    alice.send_encrypted(&room, "m1").await;
    let first = sync_with(&bob, &since, lazy).await;
    let old_id = member_event(&first, &room, &alice.user_id)["event_id"].clone();
    since = token(&first);
    // Asked again with nothing new in the room's state: the same event,
    // from the node's copy.
    let copies = |text: &str| {
        (
            metric(text, "cloister_sync_member_copies_used_total"),
            metric(text, "cloister_sync_member_reads_total"),
        )
    };
    let (used, reads) = copies(&server.metrics().await);
    alice.send_encrypted(&room, "m2").await;
    let again = sync_with(&bob, &since, lazy).await;
    assert_eq!(
        member_event(&again, &room, &alice.user_id)["event_id"],
        old_id
    );
    assert_eq!(copies(&server.metrics().await), (used + 1.0, reads));
    since = token(&again);

    let (status, body) = alice
        .put_state(
            &room,
            "m.room.member",
            &alice.user_id,
            json!({ "membership": "join", "displayname": "Alice Renamed" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let new_id = body["event_id"].clone();
    since = token(&sync_with(&bob, &since, lazy).await);

    alice.send_encrypted(&room, "m3").await;
    let after = sync_with(&bob, &since, lazy).await;
    let member = member_event(&after, &room, &alice.user_id);
    assert_eq!(member["event_id"], new_id, "{after}");
    assert_eq!(member["content"]["displayname"], "Alice Renamed");
    let (_, reads_after) = copies(&server.metrics().await);
    assert!(
        reads_after > reads,
        "the renamed member was read, not copied"
    );
}

both_backends!(
    kept_member_events_follow_the_room_state,
    kept_member_events_follow_the_room_state
);
