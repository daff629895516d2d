//! User-interactive auth sessions: anyone can start one (a `/register`
//! without `auth`), so the housekeeping job deletes them once they are too
//! old to complete, and keeps those still in time.

use std::time::Duration;

use cloister_server::service::housekeeping;
use cloister_tests::{both_backends, Backend, Client, ManualClock, TestServer};
use serde_json::{json, Value};

const START: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

/// Starts a registration and returns its session id.
async fn start_registration(server: &TestServer, username: &str) -> String {
    let (status, body) = Client::anonymous(&server.url())
        .post(
            "/_matrix/client/v3/register",
            json!({ "username": username, "password": "pw" }),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    body["session"].as_str().expect("a UIA session").to_owned()
}

async fn stored_sessions(server: &TestServer) -> Vec<String> {
    sqlx::query_scalar("SELECT session_id FROM uia_sessions ORDER BY session_id")
        .fetch_all(server.state().store.pool())
        .await
        .expect("read uia_sessions")
}

async fn expired_sessions_are_purged(backend: Backend) {
    let server = TestServer::start_with_clock(backend, ManualClock::new(START), |_| {}).await;
    let clock = server.clock().unwrap();
    let old = start_registration(&server, "old").await;
    clock.advance_ms(10 * MINUTE);
    let recent = start_registration(&server, "recent").await;
    clock.advance_ms(6 * MINUTE); // `old` is 16 minutes old, `recent` 6

    // The housekeeping task ticks each second; wait for it to get there.
    for _ in 0..300 {
        if !stored_sessions(&server).await.contains(&old) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored_sessions(&server).await, vec![recent.clone()]);

    // The one still in time completes.
    let (status, body): (u16, Value) = Client::anonymous(&server.url())
        .post(
            "/_matrix/client/v3/register",
            json!({
                "username": "recent",
                "password": "pw",
                "auth": { "type": "m.login.dummy", "session": recent },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Exactly at the lifetime a session no longer completes, and goes.
    let edge = start_registration(&server, "edge").await;
    clock.advance_ms(15 * MINUTE);
    // Called directly (the scheduled run may get there first, which is fine).
    housekeeping::purge_expired_uia_sessions(server.state())
        .await
        .unwrap();
    assert!(!stored_sessions(&server).await.contains(&edge));
    server.stop().await;
}

both_backends!(uia_purge, expired_sessions_are_purged);
