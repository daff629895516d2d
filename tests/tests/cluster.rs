//! Several `cloister serve` nodes on one PostgreSQL database: long-polls
//! woken across nodes, a node killed mid-stream losing and duplicating
//! nothing, the background jobs running on one node at a time, and a
//! session ended on one node ending on the others at once.
//!
//! PostgreSQL only: several nodes need one database that several processes
//! write at once over the network, with LISTEN/NOTIFY and advisory locks;
//! a SQLite file belongs to one server process (its writers are serialized
//! by an in-process lock), so there is nothing to test there.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_tests::{
    alice_and_bob_in_a_room, encode, megolm_content, run_test, Backend, Client, ManualClock,
    ServerProcess, TestServer,
};
use serde_json::{json, Value};

/// Generous: a cross-node wake takes milliseconds; the long-poll's own
/// timeout (30 s) is what a missing wake-up would wait for.
const WAKE_BOUND: Duration = Duration::from_secs(5);
const LONG_POLL_MS: u64 = 30_000;
const HOUR: i64 = 3_600_000;

fn token(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// One number from the node's Prometheus text, by its whole name and labels.
fn metric(node: &TestServer, name: &str) -> u64 {
    let text = node.state().render_metrics();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a long-poll of `waiter` on `node`, lets it wait, runs `trigger`
/// (a write through another node) and returns the sync response, how long
/// it took from the start of the trigger, and the trigger's result.
async fn timed_wake<T>(
    waiter: &Client,
    node: &TestServer,
    since: &str,
    trigger: impl Future<Output = T>,
) -> (Value, Duration, T) {
    // Past what the waiter wrote itself since `since`: the long-poll must wait.
    let since = token(&waiter.sync(Some(since), 0).await);
    let waiting_before = metric(node, "cloister_sync_long_polls");
    let poll = {
        let waiter = waiter.clone();
        tokio::spawn(async move {
            let response = waiter.sync(Some(&since), LONG_POLL_MS).await;
            (response, Instant::now())
        })
    };
    wait_for("the long-poll waits", Duration::from_secs(10), || {
        if poll.is_finished() {
            return true;
        }
        metric(node, "cloister_sync_long_polls") > waiting_before
    })
    .await;
    if poll.is_finished() {
        let (response, _) = poll.await.expect("the long-poll task");
        panic!("the long-poll returned at once: {response}");
    }
    let started = Instant::now();
    let result = trigger.await;
    let (response, returned) = poll.await.expect("the long-poll task");
    (response, returned - started, result)
}

fn timeline_ids(sync: &Value, room: &str) -> Vec<String> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.room.encrypted")
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn wake_ups_cross_nodes(_: Backend) {
    let a = TestServer::start(Backend::Postgres).await;
    let b = a.start_peer().await;
    let (alice, bob, room) = alice_and_bob_in_a_room(&a.url(), &b.url()).await;
    let mut alice_since = token(&alice.sync(None, 0).await);
    let mut bob_since = token(&bob.sync(None, 0).await);

    let mut latencies = Vec::new();
    for round in 0..5 {
        // Sent through A, awaited on B …
        let txn = format!("a{round}");
        let send = alice.send_encrypted(&room, &txn);
        let (got, took, sent) = timed_wake(&bob, &b, &bob_since, send).await;
        assert_eq!(timeline_ids(&got, &room), [sent], "{got}");
        bob_since = token(&got);
        latencies.push(took);
        // … and the other way round.
        let txn = format!("b{round}");
        let send = bob.send_encrypted(&room, &txn);
        let (got, took, sent) = timed_wake(&alice, &a, &alice_since, send).await;
        assert_eq!(timeline_ids(&got, &room), [sent], "{got}");
        alice_since = token(&got);
        latencies.push(took);
    }

    // A to-device message through A wakes the device waiting on B.
    let path = "/_matrix/client/v3/sendToDevice/m.room.encrypted/td1";
    let olm = json!({ "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "k", "ciphertext": { "x": { "type": 0, "body": "AwoA" } } });
    let body = json!({ "messages": { &bob.user_id: { &bob.device_id: olm } } });
    let (got, took, (status, _)) = timed_wake(&bob, &b, &bob_since, alice.put(path, body)).await;
    assert_eq!(status, 200);
    let to_device = got["to_device"]["events"].as_array().unwrap();
    assert_eq!(to_device.len(), 1, "{got}");
    assert_eq!(to_device[0]["sender"], alice.user_id.as_str());
    bob_since = token(&got);
    latencies.push(took);

    // The wake-ups named their users: no node had to wake everyone.
    for node in [&a, &b] {
        assert!(metric(node, "cloister_cluster_notifications_received_total") > 0);
        assert!(metric(node, "cloister_cluster_notifications_sent_total") > 0);
        assert_eq!(
            metric(
                node,
                "cloister_cluster_wake_all_total{reason=\"peer_asked\"}"
            ),
            0
        );
    }

    // Its listening connection killed, B listens again and wakes keep crossing.
    let reconnect = "cloister_cluster_wake_all_total{reason=\"reconnect\"}";
    let reconnects = metric(&b, reconnect);
    let listener = format!("cloister-listen-{}", b.state().notifier.node_id());
    let killed = a
        .count(
            // In the select list, the function runs only for the rows the
            // WHERE clause kept (in WHERE, PostgreSQL may call it first).
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1",
            &listener,
        )
        .await;
    assert_eq!(killed, 1, "B's listener connection");
    wait_for("B listens again", Duration::from_secs(10), || {
        metric(&b, reconnect) > reconnects
    })
    .await;
    let send = alice.send_encrypted(&room, "after-reconnect");
    let (got, took, sent) = timed_wake(&bob, &b, &bob_since, send).await;
    assert_eq!(timeline_ids(&got, &room), [sent], "{got}");
    latencies.push(took);

    latencies.sort();
    let (min, median, max) = (
        latencies[0],
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    eprintln!(
        "cross-node wake, from the write request to the woken response, {} wakes: \
         min {min:?}, median {median:?}, max {max:?}",
        latencies.len()
    );
    assert!(
        max < WAKE_BOUND,
        "a long-poll of {LONG_POLL_MS} ms took {max:?} to wake"
    );
    b.stop().await;
    a.stop().await;
}

/// `PUT /send` without panicking when the node is gone: `None` when no
/// answer came (connection refused or reset).
async fn try_send(
    http: &reqwest::Client,
    base: &str,
    sender: &Client,
    room: &str,
    txn: &str,
    content: &Value,
) -> Option<(u16, Value)> {
    let url = format!(
        "{base}/_matrix/client/v3/rooms/{}/send/m.room.encrypted/{}",
        encode(room),
        encode(txn)
    );
    let response = http
        .put(url)
        .bearer_auth(&sender.access_token)
        .json(content)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Sends `count` messages, through `first` while it answers, then through
/// `second` with the same transaction id as the request that failed.
/// Returns (txn id, event id, node) for every message accepted with 200.
async fn send_through_failover(
    alice: Client,
    first: String,
    second: String,
    room: String,
    count: usize,
    accepted: Arc<AtomicUsize>,
) -> Vec<(String, String, &'static str)> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut on_first = true;
    let mut sent = Vec::new();
    for i in 0..count {
        let txn = format!("txn{i}");
        let content = megolm_content("sender-key", &alice.device_id);
        loop {
            let (base, node) = match on_first {
                true => (&first, "killed"),
                false => (&second, "survivor"),
            };
            match try_send(&http, base, &alice, &room, &txn, &content).await {
                Some((200, body)) => {
                    let id = body["event_id"].as_str().expect("event_id").to_owned();
                    sent.push((txn, id, node));
                    accepted.fetch_add(1, Ordering::SeqCst);
                    break;
                }
                // The dying node may still answer an error: same as no answer.
                Some(_) | None if on_first => on_first = false,
                other => panic!("the surviving node refused {txn}: {other:?}"),
            }
        }
    }
    sent
}

/// Follows the room on `node` until `count` messages arrived; returns
/// their ids in the order the timelines delivered them.
async fn follow_room(bob: Client, room: String, since: String, count: usize) -> Vec<String> {
    let filter = encode(r#"{"room":{"timeline":{"limit":1000}}}"#);
    let mut since = since;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while seen.len() < count {
        assert!(Instant::now() < deadline, "bob saw only {}", seen.len());
        let path = format!(
            "/_matrix/client/v3/sync?since={}&filter={filter}&timeout=5000",
            encode(&since)
        );
        let (status, got) = bob.get(&path).await;
        assert_eq!(status, 200, "{got}");
        let timeline = &got["rooms"]["join"][&room]["timeline"];
        assert_ne!(timeline["limited"], true, "no gap with this limit: {got}");
        seen.extend(timeline_ids(&got, &room));
        since = token(&got);
    }
    seen
}

async fn killed_node_loses_nothing(_: Backend) {
    const MESSAGES: usize = 150;
    let survivor = TestServer::start(Backend::Postgres).await;
    let mut doomed = ServerProcess::start_peer(&survivor).await;
    let (alice, bob, room) = alice_and_bob_in_a_room(&doomed.url(), &survivor.url()).await;
    let since = token(&bob.sync(None, 0).await);

    // Bob long-polls on the survivor throughout, woken by what the other
    // node commits until it dies.
    let follower = tokio::spawn(follow_room(bob.clone(), room.clone(), since, MESSAGES));
    let accepted = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn(send_through_failover(
        alice.clone(),
        doomed.url(),
        survivor.url(),
        room.clone(),
        MESSAGES,
        accepted.clone(),
    ));
    wait_for(
        "a third of the messages accepted",
        Duration::from_secs(60),
        || accepted.load(Ordering::SeqCst) >= MESSAGES / 3,
    )
    .await;
    doomed.kill().await;
    let sent = sender.await.expect("the sending task");

    let by_node = sent.iter().fold(BTreeMap::new(), |mut n, (_, _, node)| {
        *n.entry(*node).or_insert(0) += 1;
        n
    });
    eprintln!("accepted per node: {by_node:?}");
    assert!(by_node.len() == 2, "sent through both nodes: {by_node:?}");
    let ids: BTreeSet<&str> = sent.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), MESSAGES, "one event per transaction id");

    // Every accepted event is in the room exactly once, and nothing else is.
    let messages = alice.with_base(&survivor.url()).messages(&room, 1000).await;
    let mut in_room: BTreeMap<&str, usize> = BTreeMap::new();
    for event in messages["chunk"].as_array().unwrap() {
        if event["type"] == "m.room.encrypted" {
            *in_room
                .entry(event["event_id"].as_str().unwrap())
                .or_default() += 1;
        }
    }
    assert!(in_room.values().all(|n| *n == 1), "{in_room:?}");
    assert_eq!(in_room.keys().copied().collect::<BTreeSet<_>>(), ids);
    let stored = survivor
        .count(
            "SELECT COUNT(*) FROM events WHERE sender = $1 AND event_type = 'm.room.encrypted'",
            &alice.user_id,
        )
        .await;
    assert_eq!(stored, MESSAGES as i64);

    // Bob's timelines carried each exactly once too.
    let seen = follower.await.expect("the following task");
    assert_eq!(seen.len(), MESSAGES, "no duplicates in bob's timelines");
    assert_eq!(
        seen.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        ids
    );

    // The survivor noticed the silence and re-woke its long-polls, in case
    // the dead node committed something it never announced.
    wait_for("the survivor notices", Duration::from_secs(20), || {
        metric(
            &survivor,
            "cloister_cluster_wake_all_total{reason=\"peer_lost\"}",
        ) >= 1
    })
    .await;
    survivor.stop().await;
}

async fn jobs_run_on_one_node(_: Backend) {
    let clock = ManualClock::new(1_800_000_000_000);
    let mut first = TestServer::start_with_clock(Backend::Postgres, clock.clone(), |c| {
        c.retention.purge_interval = "1h".parse().unwrap();
    })
    .await;
    wait_for("the first node leads", Duration::from_secs(10), || {
        metric(&first, "cloister_jobs_leader") == 1
    })
    .await;
    let second = first.start_peer().await;
    let purge_runs = "SELECT COUNT(*) FROM audit_entries WHERE entry LIKE $1";
    let count_runs = || second.count(purge_runs, "%\"purge_run\"%");

    for round in 1..=2 {
        clock.advance_ms(HOUR + 1);
        let deadline = Instant::now() + Duration::from_secs(20);
        while count_runs().await < round {
            assert!(Instant::now() < deadline, "purge run {round}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Both nodes' schedules are due, and several ticks pass: one node runs.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count_runs().await, 2);
    assert_eq!(metric(&first, "cloister_purge_runs_total"), 2);
    assert_eq!(metric(&second, "cloister_purge_runs_total"), 0);
    assert_eq!(metric(&second, "cloister_jobs_leader"), 0);

    // The leader stops: the other node takes the lock and, its own
    // schedule overdue, purges at once.
    first.stop_node().await;
    wait_for(
        "the second node takes over",
        Duration::from_secs(15),
        || metric(&second, "cloister_jobs_leader") == 1,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_runs().await < 3 {
        assert!(Instant::now() < deadline, "purge after the takeover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&second, "cloister_purge_runs_total"), 1);
    second.stop().await;
    first.stop().await;
}

/// Each node keeps copies of token rows (`store::token_cache`), here for an
/// hour, so only the node that ended a session telling the others can end
/// it there.
async fn sessions_end_on_every_node(_: Backend) {
    let a = TestServer::start_with(Backend::Postgres, |c| {
        c.limits.access_token_cache_ms = HOUR as u64;
    })
    .await;
    let b = a.start_peer().await;
    let whoami = "/_matrix/client/v3/account/whoami";
    let carol = Client::register(&a.url(), "carol", "pw").await;
    let phone = Client::login(&a.url(), "carol", "pw", Some("PHONE")).await;
    for client in [&carol, &phone] {
        assert_eq!(client.with_base(&b.url()).get(whoami).await.0, 200);
    }

    // Logged out through A: B refuses the token within a wake-up's time.
    assert_eq!(carol.logout().await.0, 200);
    let on_b = carol.with_base(&b.url());
    let deadline = Instant::now() + WAKE_BOUND;
    while on_b.get(whoami).await.0 != 401 {
        assert!(
            Instant::now() < deadline,
            "B still accepts a token logged out on A"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only the session that ended: the copies B dropped are read again.
    assert_eq!(phone.with_base(&b.url()).get(whoami).await.0, 200);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_on_one_node_ends_on_the_others() {
    run_test(Backend::Postgres, sessions_end_on_every_node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_polls_wake_across_nodes() {
    run_test(Backend::Postgres, wake_ups_cross_nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_loses_and_duplicates_nothing() {
    run_test(Backend::Postgres, killed_node_loses_nothing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_jobs_run_on_one_node_and_move_when_it_stops() {
    run_test(Backend::Postgres, jobs_run_on_one_node).await;
}
