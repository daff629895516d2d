//! Per-user settings over HTTP on both backends: push rules, filters,
//! global account data in /sync, profile changes reaching room member
//! events, and full-state syncs.

use std::time::Duration;

use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

async fn settings(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;

    // Push rules: the server defaults, then a rule of our own, toggled and removed.
    let (status, rules) = alice.get("/_matrix/client/v3/pushrules/").await;
    assert_eq!(status, 200);
    let ids = |kind: &str, rules: &Value| -> Vec<String> {
        rules["global"][kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(ids("override", &rules).contains(&".m.rule.master".to_owned()));
    assert!(ids("underride", &rules).contains(&".m.rule.encrypted".to_owned()));
    let rule = "/_matrix/client/v3/pushrules/global/room/!quiet:localhost";
    assert_eq!(alice.put(rule, json!({ "actions": [] })).await.0, 200);
    assert_eq!(
        alice
            .put(&format!("{rule}/enabled"), json!({ "enabled": false }))
            .await
            .0,
        200
    );
    let (_, enabled) = alice.get(&format!("{rule}/enabled")).await;
    assert_eq!(enabled["enabled"], false);
    assert_eq!(
        alice
            .put(&format!("{rule}/actions"), json!({ "actions": ["notify"] }))
            .await
            .0,
        200
    );
    let (_, actions) = alice.get(&format!("{rule}/actions")).await;
    assert_eq!(actions["actions"], json!(["notify"]));
    assert_eq!(alice.delete(rule, json!({})).await.0, 200);
    assert_eq!(alice.get(rule).await.0, 404);
    let (status, body) = alice
        .delete(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master",
            json!({}),
        )
        .await;
    assert!(
        status == 400 || status == 403,
        "server-default rules cannot be deleted: {status} {body}"
    );

    // Filters are stored per user and read back.
    let me = encode(&alice.user_id);
    let (_, created) = alice
        .post(
            &format!("/_matrix/client/v3/user/{me}/filter"),
            json!({ "room": { "timeline": { "limit": 7 } } }),
        )
        .await;
    let filter_id = created["filter_id"].as_str().unwrap();
    let (status, filter) = alice
        .get(&format!(
            "/_matrix/client/v3/user/{me}/filter/{}",
            encode(filter_id)
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(filter["room"]["timeline"]["limit"], 7);
    let (status, body) = bob
        .get(&format!(
            "/_matrix/client/v3/user/{me}/filter/{}",
            encode(filter_id)
        ))
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );

    // Global account data reaches /sync.
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = format!("/_matrix/client/v3/user/{me}/account_data/org.example.settings");
    assert_eq!(alice.put(&data, json!({ "theme": "dark" })).await.0, 200);
    let synced = alice
        .sync_until(Some(&since), WAIT, |s| {
            s["account_data"]["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["type"] == "org.example.settings"))
        })
        .await;
    let event = synced["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "org.example.settings")
        .unwrap();
    assert_eq!(event["content"]["theme"], "dark");

    // A new display name shows up in the member events of joined rooms.
    let room = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    bob.join(&room).await;
    let bob_since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let name = format!("/_matrix/client/v3/profile/{me}/displayname");
    assert_eq!(
        alice
            .put(&name, json!({ "displayname": "Alice A." }))
            .await
            .0,
        200
    );
    let (_, profile) = bob.get(&format!("/_matrix/client/v3/profile/{me}")).await;
    assert_eq!(profile["displayname"], "Alice A.");
    let (_, member) = bob.get_state(&room, "m.room.member", &alice.user_id).await;
    assert_eq!(member["displayname"], "Alice A.");
    assert_eq!(member["membership"], "join");
    let renamed = bob
        .sync_until(Some(&bob_since), WAIT, |s| {
            s["rooms"]["join"][&room]["timeline"]["events"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["content"]["displayname"] == "Alice A."))
        })
        .await;
    // A full-state sync from the same token carries the room's whole state,
    // but its timeline repeats nothing the client already has.
    let token = renamed["next_batch"].as_str().unwrap();
    let (_, full) = bob
        .get(&format!(
            "/_matrix/client/v3/sync?full_state=true&since={}",
            encode(token)
        ))
        .await;
    let section = &full["rooms"]["join"][&room];
    let state = section["state"]["events"].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{full}");
    assert!(state.iter().any(|e| e["type"] == "m.room.encryption"));
    let alice_member = state
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == alice.user_id.as_str())
        .unwrap();
    assert_eq!(alice_member["content"]["displayname"], "Alice A.");
    assert_eq!(section["timeline"]["events"], json!([]), "{full}");
    server.stop().await;
}

both_backends!(settings, settings);
