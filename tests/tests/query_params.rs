//! Pagination limits and filters are checked, not quietly repaired, on both
//! backends: a negative `limit` is 400 `M_INVALID_PARAM`, a filter field of
//! the wrong type 400 `M_BAD_JSON`, and a refused filter is not stored.

use cloister_tests::{assert_refused, both_backends, encode, Backend, Client, TestServer};
use serde_json::json;

const R: &str = "/_matrix/client/v3";

async fn stored_filters(server: &TestServer, user_id: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM filters WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(server.state().store.pool())
        .await
        .unwrap()
}

async fn limits_and_filters_are_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let event = alice.send_encrypted(&room, "m1").await;
    let (room_q, event_q) = (encode(&room), encode(&event));

    assert_refused(
        alice
            .get(&format!("{R}/rooms/{room_q}/messages?dir=b&limit=-1"))
            .await,
        400,
        "M_INVALID_PARAM",
        "/messages with limit -1",
    );
    assert_refused(
        alice
            .get(&format!("{R}/rooms/{room_q}/context/{event_q}?limit=-5"))
            .await,
        400,
        "M_INVALID_PARAM",
        "/context with limit -5",
    );
    let (status, page) = alice
        .get(&format!("{R}/rooms/{room_q}/messages?dir=b&limit=0"))
        .await;
    assert_eq!(status, 200, "{page}");
    let (status, context) = alice
        .get(&format!("{R}/rooms/{room_q}/context/{event_q}?limit=0"))
        .await;
    assert_eq!(status, 200, "{context}");
    assert_eq!(context["events_before"], json!([]));
    assert_eq!(context["events_after"], json!([]));

    let filter_path = format!("{R}/user/{}/filter", encode(&alice.user_id));
    for (filter, status, code) in [
        (
            json!({ "room": { "timeline": { "limit": -1 } } }),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({ "presence": { "limit": -1 } }),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({ "room": { "timeline": { "limit": "10" } } }),
            400,
            "M_BAD_JSON",
        ),
        (
            json!({ "room": { "state": { "lazy_load_members": "true" } } }),
            400,
            "M_BAD_JSON",
        ),
        (json!({ "room": { "include_leave": 1 } }), 400, "M_BAD_JSON"),
        (
            json!({ "room": { "rooms": "!a:localhost" } }),
            400,
            "M_BAD_JSON",
        ),
        (json!({ "event_fields": "content.body" }), 400, "M_BAD_JSON"),
        (json!({ "event_format": "html" }), 400, "M_BAD_JSON"),
        (json!({ "room": [] }), 400, "M_BAD_JSON"),
    ] {
        assert_refused(
            alice.post(&filter_path, filter.clone()).await,
            status,
            code,
            &format!("uploading {filter}"),
        );
        assert_refused(
            alice
                .get(&format!(
                    "{R}/sync?timeout=0&filter={}",
                    encode(&filter.to_string())
                ))
                .await,
            status,
            code,
            &format!("syncing with {filter}"),
        );
    }
    assert_eq!(
        stored_filters(&server, &alice.user_id).await,
        0,
        "no refused filter was stored"
    );

    // Well-typed filters pass, limit 0 and unknown fields included.
    let good = json!({
        "event_fields": ["type", "content"],
        "event_format": "client",
        "presence": { "not_types": ["*"] },
        "room": {
            "timeline": { "limit": 0, "unread_thread_notifications": true },
            "state": { "lazy_load_members": true },
            "include_leave": false,
        },
        "org.example.extension": { "anything": 1 },
    });
    let (status, body) = alice.post(&filter_path, good.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .get(&format!(
            "{R}/sync?timeout=0&filter={}",
            encode(&good.to_string())
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored_filters(&server, &alice.user_id).await, 1);
    server.stop().await;
}

both_backends!(limits_and_filters, limits_and_filters_are_checked);
