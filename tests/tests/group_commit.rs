//! Concurrent sends, as group commit on SQLite batches them: every accepted
//! event and to-device message arrives exactly once, retries of a
//! transaction id answer with the first event, and a send that is refused
//! in the middle of a batch costs the others nothing — on both backends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cloister_tests::{both_backends, encode, errcode, megolm_content, Backend, Client, TestServer};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(20);
const SENDS_PER_USER: usize = 15;
const TO_DEVICE: usize = 12;
/// A refusal takes no wait; an admitted write would wait for the held writer.
const REFUSED_AT_ONCE: Duration = Duration::from_secs(5);

async fn concurrent_sends_arrive_once(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let carol = Client::register(&server.url(), "carol", "pw").await;
    let room = alice.create_room(json!({})).await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut sends = tokio::task::JoinSet::new();
    for (who, client) in [("a", &alice), ("b", &bob)] {
        for i in 0..SENDS_PER_USER {
            // Each transaction twice at once: a client's retry racing the
            // original, possibly into the same batch.
            for _ in 0..2 {
                let (client, room) = (client.clone(), room.clone());
                sends.spawn(async move {
                    let txn = format!("{who}{i}");
                    let content = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": txn, "session_id": "s"});
                    let (status, body) = client
                        .send_event(&room, "m.room.encrypted", &txn, content)
                        .await;
                    assert_eq!(status, 200, "{body}");
                    (txn, body["event_id"].as_str().unwrap().to_owned())
                });
            }
        }
    }
    // Refused sends in between: not a member.
    let mut refused = tokio::task::JoinSet::new();
    for i in 0..5 {
        let (carol, room) = (carol.clone(), room.clone());
        refused.spawn(async move {
            carol
                .send_event(&room, "m.room.encrypted", &format!("c{i}"), json!({}))
                .await
        });
    }
    let mut to_device = tokio::task::JoinSet::new();
    for n in 0..TO_DEVICE {
        let (alice, bob_user, bob_device) =
            (alice.clone(), bob.user_id.clone(), bob.device_id.clone());
        to_device.spawn(async move {
            let body = json!({"messages": {bob_user: {bob_device: {"n": n}}}});
            let path = format!(
                "/_matrix/client/v3/sendToDevice/m.test/{}",
                encode(&format!("td{n}"))
            );
            let (status, answer) = alice.put(&path, body).await;
            assert_eq!(status, 200, "{answer}");
        });
    }

    let mut by_txn: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    while let Some(sent) = sends.join_next().await {
        let (txn, event_id) = sent.unwrap();
        by_txn.entry(txn).or_default().insert(event_id);
    }
    while let Some(answer) = refused.join_next().await {
        let (status, body) = answer.unwrap();
        assert_eq!(status, 403, "{body}");
        assert_eq!(errcode(&body), Some("M_FORBIDDEN"));
    }
    while let Some(done) = to_device.join_next().await {
        done.unwrap();
    }
    assert_eq!(by_txn.len(), 2 * SENDS_PER_USER);
    for (txn, ids) in &by_txn {
        assert_eq!(
            ids.len(),
            1,
            "the retry of {txn} sent a second event: {ids:?}"
        );
    }
    let expected: BTreeSet<String> = by_txn.values().flatten().cloned().collect();

    // Bob's /sync: every event and to-device message once, nothing else.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut messages: BTreeMap<u64, usize> = BTreeMap::new();
    let mut token = since;
    let deadline = Instant::now() + WAIT;
    while seen.len() < expected.len() || messages.len() < TO_DEVICE {
        assert!(Instant::now() < deadline, "missing: {seen:?} {messages:?}");
        // A timeline limit above the batch: a limited timeline would
        // leave the rest to /messages.
        let (status, sync) = bob
            .get(&format!(
                "/_matrix/client/v3/sync?since={}&timeout=1000&filter={}",
                encode(&token),
                encode(r#"{"room":{"timeline":{"limit":100}}}"#)
            ))
            .await;
        assert_eq!(status, 200, "{sync}");
        assert_ne!(sync["rooms"]["join"][&room]["timeline"]["limited"], true);
        for event in sync["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .into_iter()
            .flatten()
        {
            *seen
                .entry(event["event_id"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
        for message in sync["to_device"]["events"].as_array().into_iter().flatten() {
            assert_eq!(message["sender"], alice.user_id.as_str());
            *messages
                .entry(message["content"]["n"].as_u64().unwrap())
                .or_default() += 1;
        }
        token = sync["next_batch"].as_str().unwrap().to_owned();
    }
    let seen_ids: BTreeSet<String> = seen.keys().cloned().collect();
    assert_eq!(seen_ids, expected);
    assert!(
        seen.values().all(|&n| n == 1),
        "an event came twice: {seen:?}"
    );
    assert_eq!(
        messages.keys().copied().collect::<Vec<_>>(),
        (0..TO_DEVICE as u64).collect::<Vec<_>>()
    );
    assert!(
        messages.values().all(|&n| n == 1),
        "a message came twice: {messages:?}"
    );

    // And after a restart, from the same token: nothing new, nothing lost.
    server.restart().await;
    let again = bob.sync(Some(&token), 0).await;
    assert!(again["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .is_none_or(|e| e.is_empty()));
    assert!(again["to_device"]["events"]
        .as_array()
        .is_none_or(|e| e.is_empty()));
    let history = alice.messages(&room, 100).await;
    let stored = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .count();
    assert_eq!(stored, expected.len());
    server.stop().await;
}

both_backends!(group_commit, concurrent_sends_arrive_once);

/// Holds what `write_grouped` waits for: SQLite's writer lock, or every
/// connection of PostgreSQL's pool.
enum Held {
    Writer(#[allow(dead_code)] cloister_server::store::WriteTx),
    Pool(#[allow(dead_code)] Vec<sqlx::pool::PoolConnection<sqlx::Any>>),
}

async fn hold_the_writer(store: &cloister_server::store::Store) -> Held {
    match store.backend() {
        cloister_server::store::Backend::Sqlite => Held::Writer(store.write().await.unwrap()),
        cloister_server::store::Backend::Postgres => {
            let mut held = Vec::new();
            for _ in 0..store.pool_stats().max {
                held.push(store.read().await.unwrap());
            }
            Held::Pool(held)
        }
    }
}

async fn until_queued(store: &cloister_server::store::Store, n: usize) {
    let deadline = Instant::now() + WAIT;
    while store.pool_stats().writes_queued < n {
        assert!(Instant::now() < deadline, "no write queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One grouped write that takes a stream position, refusable or not.
async fn write_one(store: cloister_server::store::Store, refusable: bool) {
    let mut tx = if refusable {
        store.write_grouped_or_busy().await.expect("admitted")
    } else {
        store.write_grouped().await.unwrap()
    };
    tx.next_pos().await.unwrap();
    tx.commit().await.unwrap();
}

/// `limits.max_write_wait_ms`: once the oldest queued write has waited
/// longer, the next is refused at once and the queue takes it back when it
/// has cleared; the queued one is not disturbed, and a write that must not
/// be refused waits in the queue instead.
async fn writes_past_the_bound_are_refused(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.limits.max_write_wait_ms = 100;
    })
    .await;
    let store = server.state().store.clone();
    let held = hold_the_writer(&store).await;
    let queued = tokio::spawn(write_one(store.clone(), true));
    until_queued(&store, 1).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Admitted, it would wait behind the held writer: the timeout says so.
    let refused = tokio::time::timeout(REFUSED_AT_ONCE, store.write_grouped_or_busy()).await;
    match refused {
        Ok(Err(cloister_server::store::WriteError::Busy(busy))) => {
            assert_eq!(busy.retry_after, Duration::from_millis(100))
        }
        Ok(Err(e)) => panic!("refused for another reason: {e}"),
        Ok(Ok(_)) | Err(_) => panic!("a write joined a queue older than its bound"),
    }
    assert_eq!(store.pool_stats().writes_refused, 1);
    // A write that must not be refused joins the old queue all the same.
    let must = tokio::spawn(write_one(store.clone(), false));
    until_queued(&store, 2).await;
    drop(held);
    for write in [queued, must] {
        tokio::time::timeout(WAIT, write)
            .await
            .expect("the queued write went on")
            .unwrap();
    }
    write_one(store.clone(), true).await;
    assert_eq!(store.pool_stats().writes_queued, 0);
    assert_eq!(store.pool_stats().writes_refused, 1);
    server.stop().await;
}

both_backends!(bounded_queue, writes_past_the_bound_are_refused);

/// Answered at once (admitted, the request would wait for the held
/// writer) with 429 and the bound as `retry_after_ms`.
async fn assert_refused_for_now(
    request: impl std::future::Future<Output = (u16, serde_json::Value)>,
) {
    let (status, body) = tokio::time::timeout(REFUSED_AT_ONCE, request)
        .await
        .expect("refused at once, not queued");
    assert_eq!(
        (status, errcode(&body)),
        (429, Some("M_LIMIT_EXCEEDED")),
        "{body}"
    );
    assert_eq!(body["retry_after_ms"], 100);
}

/// Over HTTP (SQLite, where holding the writer leaves reads free: on
/// PostgreSQL, holding the pool would stop the request at its token check
/// first): a send and a to-device message refused while the queue is past
/// its bound get 429 `M_LIMIT_EXCEEDED` with `retry_after_ms`; the retried
/// send, same transaction id, is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_refused_for_a_full_queue_is_a_429_and_its_retry_lands_once() {
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.limits.max_write_wait_ms = 100;
    })
    .await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let room = alice.create_room(json!({})).await;
    let since = alice.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let store = server.state().store.clone();

    let held = hold_the_writer(&store).await;
    let first = tokio::spawn({
        let (alice, room) = (alice.clone(), room.clone());
        async move {
            let content = megolm_content("first-key", &alice.device_id);
            alice
                .send_event(&room, "m.room.encrypted", "first", content)
                .await
        }
    });
    until_queued(&store, 1).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let second = megolm_content("second-key", &alice.device_id);
    assert_refused_for_now(alice.send_event(&room, "m.room.encrypted", "second", second.clone()))
        .await;
    let to_device = json!({"messages": {bob.user_id.clone(): {bob.device_id.clone(): {"n": 1}}}});
    assert_refused_for_now(alice.put(
        "/_matrix/client/v3/sendToDevice/m.test/td1",
        to_device.clone(),
    ))
    .await;
    assert!(server
        .metrics()
        .await
        .contains("cloister_db_writes_refused_total 2\n"));

    drop(held);
    let (status, body) = first.await.unwrap();
    assert_eq!(status, 200, "{body}");
    let mut sent = vec![body["event_id"].as_str().unwrap().to_owned()];
    for _ in 0..2 {
        let (status, body) = alice
            .send_event(&room, "m.room.encrypted", "second", second.clone())
            .await;
        assert_eq!(status, 200, "{body}");
        sent.push(body["event_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(sent[1], sent[2], "the retry sent a second event");
    sent.pop();
    let (status, body) = alice
        .put("/_matrix/client/v3/sendToDevice/m.test/td1", to_device)
        .await;
    assert_eq!(status, 200, "{body}");

    let sync = alice.sync(Some(&since), 0).await;
    let stored: Vec<&str> = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(stored, sent);
    let messages = bob.sync(None, 0).await["to_device"]["events"].clone();
    assert_eq!(messages.as_array().map(Vec::len), Some(1), "{messages}");
    server.stop().await;
}

/// A message checked against the room as read (`store::checked_append`)
/// while a state change is open in the writer: it waits for the change (on
/// PostgreSQL, for the stream counter's lock), finds the room moved once
/// the change has committed, and stores nothing; read again, it goes in
/// after the change.
async fn a_message_waiting_behind_a_state_change_sees_it(backend: Backend) {
    use cloister_server::store::checked_append::{append_message, Expected};
    use cloister_server::store::events::{self, NewEvent};
    use cloister_server::store::readable::Class;
    use cloister_server::store::{room_snapshot, txn_ids};

    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let store = server.state().store.clone();
    let serial = |store: cloister_server::store::Store, room: String, user: String| async move {
        let mut c = store.read().await.unwrap();
        room_snapshot::read(&mut c, &room, &user)
            .await
            .unwrap()
            .unwrap()
            .state_serial
    };
    let read = serial(store.clone(), room.clone(), alice.user_id.clone()).await;

    let topic = json!({"topic": "moved"});
    let mut change = store.write().await.unwrap();
    let changed = events::append(
        &mut change,
        &NewEvent::state(&room, &alice.user_id, "m.room.topic", "", &topic),
        0,
    )
    .await
    .unwrap();
    let send = |serial: i64, txn: &'static str| {
        let (store, room, user) = (store.clone(), room.clone(), alice.user_id.clone());
        tokio::spawn(async move {
            let content = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": txn});
            let event = NewEvent {
                room_id: &room,
                sender: &user,
                sender_device: Some("D"),
                txn_id: Some(txn),
                event_type: "m.room.encrypted",
                state_key: None,
                content: &content,
                redacts: None,
            };
            let expected = Expected {
                state_serial: serial,
                device_id: "D",
                txn_id: txn,
            };
            let id = format!("$checked-{txn}");
            append_message(&store, &event, id, 7, Class::Shared, &expected).await
        })
    };
    let waiting = send(read, "t1");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the message did not wait");
    change.commit().await.unwrap();
    let outcome = tokio::time::timeout(WAIT, waiting).await.unwrap();
    assert!(
        outcome.unwrap().unwrap().is_none(),
        "stored against a room that had moved"
    );
    let mut c = store.read().await.unwrap();
    assert!(events::get(&mut c, "$checked-t1").await.unwrap().is_none());
    let recorded = txn_ids::result(&mut c, &alice.user_id, "D", "event", "t1").await;
    assert_eq!(recorded.unwrap(), None);
    drop(c);

    let now = serial(store.clone(), room.clone(), alice.user_id.clone()).await;
    assert!(now > read);
    let stored = send(now, "t1").await.unwrap().unwrap();
    let stored = stored.expect("the room as read now");
    assert!(stored.pos > changed.pos);
    let mut c = store.read().await.unwrap();
    let again = events::get(&mut c, "$checked-t1").await.unwrap().unwrap();
    assert_eq!((again.pos, again.txn_id), (stored.pos, Some("t1".into())));
    let bump: i64 = sqlx::query_scalar("SELECT bump_pos FROM rooms WHERE room_id = $1")
        .bind(&room)
        .fetch_one(&mut *c)
        .await
        .unwrap();
    assert_eq!(bump, stored.pos, "an encrypted message bumps the room");
    drop(c);
    // A retry of the same transaction id stores nothing more.
    match send(now, "t1").await.unwrap() {
        Err(cloister_server::store::WriteError::Db(err)) => {
            assert!(cloister_server::store::is_unique_violation(&err), "{err}")
        }
        other => panic!("a retry was {other:?}"),
    }
    let mut c = store.read().await.unwrap();
    let last = cloister_server::store::current_pos(&mut c).await.unwrap();
    assert_eq!(last, stored.pos, "the retry took no position");
    drop(c);
    server.stop().await;
}

both_backends!(
    checked_message,
    a_message_waiting_behind_a_state_change_sees_it
);
