//! The metrics endpoint counts traffic by route template and names nobody:
//! request latency histograms per route, events sent, /sync responses and
//! deliveries, and the database pool — on both backends.

use cloister_tests::{both_backends, encode, metric as sample, Backend, Client, TestServer};
use serde_json::json;

async fn traffic_is_counted_by_route(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = server.metrics().await;

    for i in 0..3 {
        alice.send_encrypted(&room, &format!("m{i}")).await;
    }
    let delivered = bob.sync(Some(&since), 0).await;
    let in_timeline = delivered["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(in_timeline, 3, "{delivered}");
    let (status, _) = bob.get("/_matrix/client/v3/no/such/endpoint").await;
    assert_eq!(status, 404);
    let after = server.metrics().await;

    let send =
        "method=\"PUT\",route=\"/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}\"";
    assert_eq!(
        sample(
            &after,
            &format!("cloister_http_request_duration_seconds_count{{{send}}}")
        ),
        3.0
    );
    assert_eq!(
        sample(
            &after,
            &format!("cloister_http_request_duration_seconds_bucket{{{send},le=\"+Inf\"}}")
        ),
        3.0
    );
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(delta("cloister_events_sent_total"), 3.0);
    assert_eq!(delta("cloister_sync_responses_total"), 1.0);
    assert_eq!(delta("cloister_sync_events_delivered_total"), 3.0);
    assert!(delta("cloister_db_acquired_total{kind=\"write\"}") >= 3.0);
    // Group commit (SQLite only): one after the other, each send is a batch
    // of its own and commits at once. The push evaluator, which polls every
    // quarter second, writes through the group too: when it runs inside
    // this window it adds a batch of its own or joins a send's.
    let (commits, writes) = (
        delta("cloister_db_group_commits_total"),
        delta("cloister_db_group_commit_writes_total"),
    );
    if backend == Backend::Sqlite {
        assert!(
            commits >= 3.0 && writes >= commits,
            "{commits} commits of {writes} writes"
        );
    } else {
        assert_eq!((commits, writes), (0.0, 0.0));
    }
    assert!(sample(&after, "cloister_db_connections{state=\"max\"}") >= 1.0);
    assert!(sample(&after, "cloister_db_wait_seconds_total{kind=\"read\"}") >= 0.0);
    assert!(
        sample(
            &after,
            "cloister_http_request_duration_seconds_count{method=\"ANY\",route=\"<unmatched>\"}"
        ) >= 1.0
    );
    // Templates only: no room or user id, no concrete path.
    let encoded = encode(&room);
    for secret in [room.as_str(), &alice.user_id, &encoded, "/no/such/endpoint"] {
        assert!(!after.contains(secret), "metrics name {secret}");
    }
    server.stop().await;
}

both_backends!(traffic, traffic_is_counted_by_route);
