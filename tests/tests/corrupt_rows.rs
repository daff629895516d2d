//! A row the database hands back damaged (a truncated JSON column) fails
//! the request that reads it with a logged error: never an empty object
//! served as if it were the event.

use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::json;

async fn corrupt_event_content_is_an_error(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let event_id = alice.send_encrypted(&room, "t1").await;
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode(&room),
        encode(&event_id)
    );
    assert_eq!(alice.get(&path).await.0, 200);

    let mut conn = server.state().store.read().await.unwrap();
    sqlx::query("UPDATE events SET content = $1 WHERE event_id = $2")
        .bind("{\"algorithm\": \"m.megolm.v1.aes-sha2\", \"ciphertext\": \"Aw")
        .bind(&event_id)
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);

    let (status, body) = alice.get(&path).await;
    assert_eq!((status, errcode(&body)), (500, Some("M_UNKNOWN")), "{body}");
    let messages = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        encode(&room)
    );
    let (status, body) = alice.get(&messages).await;
    assert_eq!((status, errcode(&body)), (500, Some("M_UNKNOWN")), "{body}");
    // Other rooms are unaffected.
    let other = alice.create_room(json!({})).await;
    alice.send_encrypted(&other, "t2").await;
    server.stop().await;
}

both_backends!(corrupt_event, corrupt_event_content_is_an_error);
