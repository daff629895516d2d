//! Server-side key backup.

use cloister_tests::{encode, errcode, Backend, TestServer};
use serde_json::{json, Value};

use crate::common::register;

// ----- key backup --------------------------------------------------------------

fn backup_key(fmi: i64, fc: i64, verified: bool, tag: &str) -> Value {
    json!({"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified, "session_data": {"tag": tag}})
}

pub(crate) async fn backup_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = register(&url, "alice").await;
    let bob = register(&url, "bob").await;
    let room = encode("!r:localhost");
    let other = encode("!other:localhost");
    let keys = "/_matrix/client/v3/room_keys/keys";
    let algorithm = "m.megolm_backup.v1.curve25519-aes-sha2";

    // No backup yet: 404 M_NOT_FOUND, which clients rely on.
    let (s, r) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!((s, errcode(&r)), (404, Some("M_NOT_FOUND")), "{r}");
    let (s, r) = alice
        .put(
            &format!("{keys}/{room}/S1?version=1"),
            backup_key(0, 0, false, "x"),
        )
        .await;
    assert_eq!((s, errcode(&r)), (404, Some("M_NOT_FOUND")), "{r}");

    let (s, r) = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({"algorithm": algorithm, "auth_data": {"public_key": "abc"}}),
        )
        .await;
    assert_eq!((s, r), (200, json!({"version": "1"})));
    let (s, r) = alice
        .put(
            &format!("{keys}/{room}/S1?version=1"),
            backup_key(5, 1, false, "a"),
        )
        .await;
    assert_eq!((s, r), (200, json!({"count": 1, "etag": "1"})));
    // A worse copy of a stored key is ignored: the etag stays.
    let (s, r) = alice
        .put(
            &format!("{keys}/{room}/S1?version=1"),
            backup_key(6, 0, false, "worse"),
        )
        .await;
    assert_eq!((s, r), (200, json!({"count": 1, "etag": "1"})));
    let (s, r) = alice
        .put(
            &format!("{keys}?version=1"),
            json!({"rooms": {"!r:localhost": {"sessions": {"S1": backup_key(9, 9, true, "verified"), "S2": backup_key(0, 0, false, "b")}}}}),
        )
        .await;
    assert_eq!((s, r), (200, json!({"count": 2, "etag": "2"})));
    let (s, r) = alice
        .put(&format!("{keys}?version=2"), json!({"rooms": {}}))
        .await;
    assert_eq!(
        (s, errcode(&r), r["current_version"].as_str()),
        (403, Some("M_WRONG_ROOM_KEYS_VERSION"), Some("1")),
        "{r}"
    );
    let (s, r) = alice.get(&format!("{keys}/{room}/S1?version=1")).await;
    assert_eq!(
        (s, r["session_data"]["tag"].as_str()),
        (200, Some("verified"))
    );
    assert_eq!(r, backup_key(9, 9, true, "verified"));
    let (s, r) = alice.get(&format!("{keys}?version=1")).await;
    assert_eq!(s, 200);
    assert_eq!(
        r["rooms"]["!r:localhost"]["sessions"]
            .as_object()
            .unwrap()
            .len(),
        2
    );
    let (s, r) = alice.get(&format!("{keys}/{other}?version=1")).await;
    assert_eq!((s, r), (200, json!({"sessions": {}})));
    let (s, r) = alice.get(&format!("{keys}/{other}/S9?version=1")).await;
    assert_eq!((s, errcode(&r)), (404, Some("M_NOT_FOUND")), "{r}");
    let (s, r) = alice.get(&format!("{keys}?version=7")).await;
    assert_eq!(s, 404, "{r}");
    let (s, r) = alice.get(keys).await;
    assert_eq!((s, errcode(&r)), (400, Some("M_MISSING_PARAM")), "{r}");
    let (s, r) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(
        (s, &r["count"], &r["etag"], &r["version"]),
        (200, &json!(2), &json!("2"), &json!("1"))
    );
    let (s, r) = alice
        .delete(&format!("{keys}/{room}/S2?version=1"), Value::Null)
        .await;
    assert_eq!((s, r), (200, json!({"count": 1, "etag": "3"})));
    let (s, r) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!((s, &r["count"], &r["etag"]), (200, &json!(1), &json!("3")));
    let (s, r) = alice
        .put(
            "/_matrix/client/v3/room_keys/version/1",
            json!({"algorithm": algorithm, "auth_data": {"public_key": "def"}, "version": "1"}),
        )
        .await;
    assert_eq!((s, r), (200, json!({})));
    let (s, _) = alice
        .put(
            "/_matrix/client/v3/room_keys/version/1",
            json!({"algorithm": "other", "auth_data": {}}),
        )
        .await;
    assert_eq!(s, 400);
    let (s, r) = alice.get("/_matrix/client/v3/room_keys/version/1").await;
    assert_eq!((s, &r["auth_data"]["public_key"]), (200, &json!("def")));
    let (s, r) = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({"algorithm": "x", "auth_data": {}}),
        )
        .await;
    assert_eq!((s, r), (200, json!({"version": "2"})));
    let (s, r) = alice
        .delete("/_matrix/client/v3/room_keys/version/2", Value::Null)
        .await;
    assert_eq!((s, r), (200, json!({})));
    let (s, r) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!((s, &r["version"]), (200, &json!("1")));
    // Backups are per user; versions are decimal numbers.
    let (s, r) = bob.get("/_matrix/client/v3/room_keys/version/1").await;
    assert_eq!(s, 404, "{r}");
    let (s, r) = alice.get("/_matrix/client/v3/room_keys/version/abc").await;
    assert_eq!(s, 404, "{r}");
    let (s, r) = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({"algorithm": "x", "auth_data": {}}),
        )
        .await;
    assert_eq!((s, r), (200, json!({"version": "3"})));

    server.stop().await;
}
