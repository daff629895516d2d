//! Legal-hold notices over simplified sliding sync, on both backends, as
//! over `/v3/sync`: a hold placed on a room a connection holds reaches it
//! as the room's new `org.cloister.legal_hold` state event, in the
//! timeline and, when asked for, in `required_state`; a room first sent
//! after the hold carries the notice in its state.

use cloister_tests::{both_backends, Backend, Client, TestServer};
use serde_json::{json, Value};

fn body() -> Value {
    json!({
        "lists": { "all": {
            "ranges": [[0, 9]],
            "required_state": [["org.cloister.legal_hold", ""]],
            "timeline_limit": 5,
        } },
    })
}

async fn ok(client: &Client, pos: Option<&str>, body: &Value) -> Value {
    let (status, answer) = client.sliding_sync(pos, 0, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect()
}

async fn hold_notices_reach_sliding_sync(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dpo = server.register_admin("dpo").await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({ "name": "case" })).await;
    let first = ok(&alice, None, &body()).await;
    assert_eq!(first["rooms"][&room]["initial"], true, "{first}");
    assert!(
        types(&first["rooms"][&room]["required_state"]).is_empty(),
        "{first}"
    );

    let (status, hold) = dpo
        .post(
            "/_cloister/admin/v1/holds",
            json!({ "scope": "room", "target": room, "case_id": "C-7", "reason": "court order" }),
        )
        .await;
    assert_eq!(status, 200, "{hold}");
    let pos = first["pos"].as_str().unwrap();
    let next = ok(&alice, Some(pos), &body()).await;
    let held = &next["rooms"][&room];
    assert!(
        types(&held["timeline"]).contains(&"org.cloister.legal_hold".to_owned()),
        "{next}"
    );
    assert_eq!(
        types(&held["required_state"]),
        vec!["org.cloister.legal_hold"],
        "{next}"
    );
    // What the DPO keeps to themselves stays with them.
    let text = next.to_string();
    assert!(
        !text.contains("C-7") && !text.contains("court order"),
        "{text}"
    );

    // A connection started after the hold gets the notice with the room.
    let fresh = ok(&alice, None, &body()).await;
    assert_eq!(
        types(&fresh["rooms"][&room]["required_state"]),
        vec!["org.cloister.legal_hold"],
        "{fresh}"
    );
    server.stop().await;
}

both_backends!(
    hold_notices_reach_sliding_sync,
    hold_notices_reach_sliding_sync
);
