//! End-to-end retention against the real server: a data-protection officer
//! (a server admin) gives an encrypted room a one-hour `m.room.retention`
//! policy through the admin API; an hour later the server no longer serves
//! the old message, Bob's client no longer shows it, and Bob's device can no
//! longer decrypt a copy of its ciphertext (the room key was shredded), while
//! a message sent within the hour is still shown.
//!
//! The server runs on a manual clock; both clients are given the same time
//! (`Client::set_clock`), as if their clocks agreed with the server's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloister_sdk::client::{Client, ClientError, CreateRoom, Direction, TimelineEvent};
use cloister_sdk::crypto::{CryptoError, OlmMachine, RECORD_INBOUND};
use cloister_sdk::store::{MemoryStore, StateStore};
use cloister_tests::{encode, unique, Backend, Client as RawClient, ManualClock, TestServer};
use serde_json::json;

const PASSWORD: &str = "a long enough password";
const HOUR_MS: u64 = 60 * 60 * 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_message_is_gone_from_the_server_the_client_and_the_keys() {
    tokio::time::timeout(Duration::from_secs(240), scenario(Backend::Sqlite))
        .await
        .expect("the scenario timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_on_postgresql() {
    tokio::time::timeout(Duration::from_secs(240), scenario(Backend::Postgres))
        .await
        .expect("the scenario timed out");
}

/// The server's clock and the clients' view of it, moved together.
#[derive(Clone)]
struct Time {
    server: ManualClock,
    now: Arc<AtomicU64>,
}

impl Time {
    fn start() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        Self {
            server: ManualClock::new(now as i64),
            now: Arc::new(AtomicU64::new(now)),
        }
    }

    fn advance(&self, ms: u64) {
        self.server.advance_ms(ms as i64);
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    fn give_to(&self, client: &Client) {
        let now = self.now.clone();
        client.set_clock(move || now.load(Ordering::SeqCst));
    }
}

async fn sync_until(client: &Client, what: &str, done: impl AsyncFn(&Client) -> bool) {
    for _ in 0..30 {
        client.sync_once(Duration::from_millis(300)).await.unwrap();
        if done(client).await {
            return;
        }
    }
    panic!("{} never saw {what}", client.user_id());
}

fn bodies(events: &[TimelineEvent]) -> Vec<&str> {
    events.iter().filter_map(TimelineEvent::body).collect()
}

async fn scenario(backend: Backend) {
    let time = Time::start();
    let server = TestServer::start_with_clock(backend, time.server.clone(), |_| {}).await;
    let url = server.url();
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    RawClient::register(&url, &alice_name, PASSWORD).await;
    let raw_bob = RawClient::register(&url, &bob_name, PASSWORD).await;
    let dpo = server.register_admin(&unique("dpo")).await;

    let alice = Client::login(
        &url,
        &alice_name,
        PASSWORD,
        Arc::new(MemoryStore::new()),
        None,
    )
    .await
    .unwrap();
    let bob_store = MemoryStore::new();
    let bob = Client::login(&url, &bob_name, PASSWORD, Arc::new(bob_store.clone()), None)
        .await
        .unwrap();
    time.give_to(&alice);
    time.give_to(&bob);

    let room = alice
        .create_room(&CreateRoom {
            invite: vec![bob.user_id().to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    sync_until(&bob, "the invite", async |c: &Client| {
        c.room(&room).await.is_some()
    })
    .await;
    bob.join(&room).await.unwrap();
    alice.sync_once(Duration::ZERO).await.unwrap();

    // Alice writes; Bob reads it and keeps the ciphertext event.
    let old_id = alice.send_text(&room, "this expires").await.unwrap();
    let event_path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode(&room),
        encode(&old_id)
    );
    sync_until(&bob, "the first message", async |c: &Client| {
        c.event(&room, &old_id)
            .await
            .is_ok_and(|e| e.body() == Some("this expires"))
    })
    .await;
    let page = bob
        .messages(&room, None, Direction::Backward, 20)
        .await
        .unwrap();
    assert!(bodies(&page.events).contains(&"this expires"), "{page:?}");
    let (status, saved) = raw_bob.get(&event_path).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["type"], "m.room.encrypted");

    // The DPO sets a one-hour policy; both clients learn it from sync.
    let (status, body) = dpo
        .put(
            &format!("/_cloister/admin/v1/rooms/{}/retention", encode(&room)),
            json!({"max_lifetime": HOUR_MS}),
        )
        .await;
    assert_eq!(status, 200, "the admin retention endpoint: {body}");
    assert!(body["event_id"].is_string(), "{body}");
    for client in [&alice, &bob] {
        sync_until(client, "the retention policy", async |c: &Client| {
            let known = c.room(&room).await.unwrap();
            known.retention_policy().max_lifetime_ms == Some(HOUR_MS)
        })
        .await;
    }
    // Within the hour nothing is lost.
    let page = bob
        .messages(&room, None, Direction::Backward, 20)
        .await
        .unwrap();
    assert!(bodies(&page.events).contains(&"this expires"), "{page:?}");
    let old_event = page
        .events
        .iter()
        .find(|e| e.event_id == old_id)
        .unwrap()
        .clone();
    assert!(!bob.is_expired(&old_event).await);

    // An hour and a minute later Alice writes again: a new room key, since
    // everything her old one encrypted has expired.
    time.advance(HOUR_MS + 60_000);
    let fresh_id = alice.send_text(&room, "still fresh").await.unwrap();
    sync_until(&bob, "the fresh message", async |c: &Client| {
        c.event(&room, &fresh_id)
            .await
            .is_ok_and(|e| e.body() == Some("still fresh"))
    })
    .await;

    // The server no longer serves the old message.
    let (status, _) = raw_bob.get(&event_path).await;
    assert_eq!(status, 404, "the server still serves the expired event");
    let served = raw_bob.messages(&room, 50).await;
    let ids: Vec<&str> = served["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert!(!ids.contains(&old_id.as_str()), "{served}");
    assert!(ids.contains(&fresh_id.as_str()), "{served}");

    // Bob's client shows only the fresh one, and tells apps that kept the
    // old one to drop it.
    assert!(bob.is_expired(&old_event).await);
    let page = bob
        .messages(&room, None, Direction::Backward, 50)
        .await
        .unwrap();
    assert_eq!(bodies(&page.events), ["still fresh"], "{page:?}");
    assert!(matches!(
        bob.event(&room, &old_id).await,
        Err(ClientError::Expired { .. } | ClientError::Server { status: 404, .. })
    ));
    let fresh = bob.event(&room, &fresh_id).await.unwrap();
    assert_eq!(fresh.body(), Some("still fresh"));
    assert!(fresh.is_decrypted());

    // Enforcement already ran after the sync: running it again finds
    // nothing left to destroy.
    assert!(bob.enforce_retention().await.unwrap().is_empty());

    // Bob's device, as stored, cannot decrypt the saved ciphertext: refused
    // under the policy, and without the policy the key is gone.
    let session_id = saved["content"]["session_id"].as_str().unwrap().to_owned();
    let records = bob_store.load().await.unwrap().records;
    assert!(
        !records
            .iter()
            .any(|r| r.kind == RECORD_INBOUND && r.id.ends_with(&session_id)),
        "the expired room key is still in Bob's store"
    );
    let crypto = records
        .into_iter()
        .filter(|r| r.kind.starts_with("crypto."));
    let mut device = OlmMachine::from_records(crypto).unwrap();
    assert!(matches!(
        device.decrypt_room_event(&room, &saved),
        Err(CryptoError::Expired { .. })
    ));
    device.clear_retention(&room);
    assert!(matches!(
        device.decrypt_room_event(&room, &saved),
        Err(CryptoError::MissingRoomKey { .. })
    ));
    assert_ne!(
        fresh_session(&fresh),
        session_id,
        "Alice rotated her room key"
    );

    server.stop().await;
}

fn fresh_session(event: &TimelineEvent) -> String {
    match &event.encryption {
        cloister_sdk::client::Encryption::Decrypted { session_id, .. } => session_id.clone(),
        other => panic!("not decrypted: {other:?}"),
    }
}
