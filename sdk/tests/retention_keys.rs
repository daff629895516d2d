//! Retention in the crypto core: once a room's messages expire, the keys
//! that decrypt them are destroyed (crypto-shredding) — in memory, in the
//! records handed to the store, and in the SQLite file — while messages
//! still within the policy keep decrypting.

mod support;

use cloister_sdk::crypto::{
    CryptoError, OlmMachine, RetentionPolicy, RECORD_INBOUND, RECORD_OUTBOUND,
};
use cloister_sdk::store::{KdfParams, SqliteStore, StateStore, StoreChanges};
use serde_json::{json, Value};
use support::{
    body_of, login, send_text, session_id, settings, sync, FakeHomeserver, ALICE, BOB, HOUR_MS,
    ROOM, T0,
};

const MINUTE_MS: u64 = 60 * 1000;

/// Alice and Bob, both with their keys on the fake server and each other's
/// devices known.
fn alice_and_bob() -> (FakeHomeserver, OlmMachine, OlmMachine) {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    sync(&mut server, &mut bob, T0);
    (server, alice, bob)
}

fn text(server: &mut FakeHomeserver, alice: &mut OlmMachine, body: &str, at: u64) -> Value {
    send_text(server, alice, ROOM, &[ALICE, BOB], settings(), body, at)
}

fn inbound_id(event: &Value) -> String {
    format!("{ROOM}\n{}", session_id(event))
}

fn deletes_inbound(machine: &mut OlmMachine, record_id: &str) -> bool {
    let changes = machine.pending_changes().unwrap();
    changes
        .deletes
        .iter()
        .any(|(kind, id)| kind == RECORD_INBOUND && id == record_id)
}

#[test]
fn a_session_whose_messages_all_expired_is_destroyed() {
    let (mut server, mut alice, mut bob) = alice_and_bob();
    let saved = text(&mut server, &mut alice, "expires", T0);
    sync(&mut server, &mut bob, T0);
    assert_eq!(body_of(&mut bob, ROOM, &saved), "expires");
    bob.pending_changes().unwrap();
    bob.mark_changes_saved();

    // Not yet: the message is exactly one hour old.
    let report = bob.apply_retention(ROOM, HOUR_MS, T0 + HOUR_MS).unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert_eq!(body_of(&mut bob, ROOM, &saved), "expires");

    let report = bob
        .apply_retention(ROOM, HOUR_MS, T0 + HOUR_MS + 1)
        .unwrap();
    assert_eq!(report.discarded_sessions, [session_id(&saved)]);
    assert!(report.ratcheted_sessions.is_empty());
    // The policy alone refuses the event ...
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &saved),
        Err(CryptoError::Expired { .. })
    ));
    // ... and without it (a lifted policy, a server lying about the time)
    // the key is simply gone.
    assert!(bob.clear_retention(ROOM));
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &saved),
        Err(CryptoError::MissingRoomKey { .. })
    ));
    assert!(deletes_inbound(&mut bob, &inbound_id(&saved)));
}

#[test]
fn a_session_with_a_live_message_is_ratcheted_past_the_expired_ones() {
    let (mut server, mut alice, mut bob) = alice_and_bob();
    let old = text(&mut server, &mut alice, "old", T0);
    let live = text(&mut server, &mut alice, "live", T0 + 50 * MINUTE_MS);
    assert_eq!(session_id(&old), session_id(&live), "one Megolm session");
    sync(&mut server, &mut bob, T0 + 50 * MINUTE_MS);
    assert_eq!(body_of(&mut bob, ROOM, &old), "old");
    assert_eq!(body_of(&mut bob, ROOM, &live), "live");

    let report = bob
        .apply_retention(ROOM, HOUR_MS, T0 + HOUR_MS + 1)
        .unwrap();
    assert!(report.discarded_sessions.is_empty());
    assert_eq!(report.ratcheted_sessions, [(session_id(&old), 1)]);
    assert_eq!(body_of(&mut bob, ROOM, &live), "live");
    // The old message with a fresh timestamp (as a lying server would send
    // it) is not refused by the policy, and still does not decrypt: the
    // ratchet no longer reaches its index.
    let mut disguised = old.clone();
    disguised["origin_server_ts"] = json!(T0 + HOUR_MS);
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &disguised),
        Err(CryptoError::MegolmDecryption(_))
    ));

    // When the live message expires too, the session goes.
    let report = bob
        .apply_retention(ROOM, HOUR_MS, T0 + 50 * MINUTE_MS + HOUR_MS + 1)
        .unwrap();
    assert_eq!(report.discarded_sessions, [session_id(&old)]);
}

#[test]
fn an_expired_event_is_refused_even_while_its_key_is_held() {
    let (mut server, mut alice, mut bob) = alice_and_bob();
    let old = text(&mut server, &mut alice, "old", T0);
    // Bob gets the key two hours later: it is judged by its arrival.
    let later = T0 + 2 * HOUR_MS;
    sync(&mut server, &mut bob, later);
    let report = bob.apply_retention(ROOM, HOUR_MS, later).unwrap();
    assert!(report.is_empty(), "{report:?}");
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &old),
        Err(CryptoError::Expired { .. })
    ));
    let live = text(&mut server, &mut alice, "live", later);
    assert_eq!(body_of(&mut bob, ROOM, &live), "live");
    // Seeing the expired message told the key when that message was sent:
    // the key was ratcheted past it, so even with the policy lifted it no
    // longer decrypts — shredded, not refused as a replay.
    bob.clear_retention(ROOM);
    let error = bob.decrypt_room_event(ROOM, &old).unwrap_err();
    assert!(!matches!(error, CryptoError::Replay { .. }), "{error:?}");
    assert_eq!(body_of(&mut bob, ROOM, &live), "live");
}

#[test]
fn an_unused_session_is_judged_by_when_it_arrived() {
    let (mut server, mut alice, mut bob) = alice_and_bob();
    let event = text(&mut server, &mut alice, "unread", T0);
    sync(&mut server, &mut bob, T0 + 10 * MINUTE_MS);
    let report = bob
        .apply_retention(ROOM, HOUR_MS, T0 + 10 * MINUTE_MS + HOUR_MS)
        .unwrap();
    assert!(report.is_empty(), "{report:?}");
    let report = bob
        .apply_retention(ROOM, HOUR_MS, T0 + 10 * MINUTE_MS + HOUR_MS + 1)
        .unwrap();
    assert_eq!(report.discarded_sessions, [session_id(&event)]);
}

#[test]
fn our_outbound_session_rotates_once_its_messages_expired() {
    let (mut server, mut alice, mut bob) = alice_and_bob();
    let first = text(&mut server, &mut alice, "first", T0);
    alice.pending_changes().unwrap();
    alice.mark_changes_saved();

    let report = alice.apply_retention(ROOM, HOUR_MS, T0 + HOUR_MS).unwrap();
    assert!(report.is_empty(), "{report:?}");
    let report = alice
        .apply_retention(ROOM, HOUR_MS, T0 + HOUR_MS + 1)
        .unwrap();
    assert!(report.rotated_outbound);
    // Alice's own copy of the key goes with it.
    assert_eq!(report.discarded_sessions, [session_id(&first)]);
    let changes = alice.pending_changes().unwrap();
    assert!(changes
        .deletes
        .iter()
        .any(|(kind, id)| kind == RECORD_OUTBOUND && id == ROOM));
    drop(changes);
    alice.mark_changes_saved();

    let next = text(&mut server, &mut alice, "next", T0 + HOUR_MS + 2);
    assert_ne!(session_id(&next), session_id(&first), "a new session");
    sync(&mut server, &mut bob, T0 + HOUR_MS + 2);
    assert_eq!(body_of(&mut bob, ROOM, &next), "next");
}

#[test]
fn policies_are_read_leniently() {
    let policy = RetentionPolicy::from_content(&json!({"max_lifetime": 3_600_000}));
    assert_eq!(policy.max_lifetime_ms, Some(3_600_000));
    assert_eq!(policy.min_lifetime_ms, None);
    assert!(policy.is_expired(T0 - HOUR_MS - 1, T0));
    assert!(!policy.is_expired(T0 - HOUR_MS, T0));
    for ignored in [json!(-5), json!(1.5), json!("3600000"), json!(null)] {
        let policy = RetentionPolicy::from_content(&json!({
            "max_lifetime": ignored, "min_lifetime": ignored
        }));
        assert_eq!(policy, RetentionPolicy::default(), "{ignored}");
        assert!(!policy.is_expired(0, u64::MAX));
    }
}

#[tokio::test]
async fn shredding_is_deleted_from_the_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (mut server, mut alice, mut bob) = alice_and_bob();
    let old = text(&mut server, &mut alice, "old", T0);
    sync(&mut server, &mut bob, T0);
    assert_eq!(body_of(&mut bob, ROOM, &old), "old");

    let store = SqliteStore::open_with(&path, "passphrase", KdfParams::insecure_for_tests())
        .await
        .unwrap();
    commit(&store, &mut bob).await;
    // The sealed row as it sits in the file, to look for afterwards.
    let sealed = inbound_rows(&store).await;
    assert_eq!(sealed.len(), 1);

    let report = bob
        .apply_retention(ROOM, HOUR_MS, T0 + HOUR_MS + 1)
        .unwrap();
    assert_eq!(report.discarded_sessions.len(), 1);
    commit(&store, &mut bob).await;
    assert!(inbound_rows(&store).await.is_empty());
    drop(bob);
    store.close().await;

    let file = std::fs::read(&path).unwrap();
    assert!(
        !file.windows(sealed[0].len()).any(|w| w == sealed[0]),
        "the deleted session's sealed value is still in the file"
    );
    let store = SqliteStore::open(&path, "passphrase").await.unwrap();
    let records = store.load().await.unwrap().records;
    assert!(!records.iter().any(|r| r.kind == RECORD_INBOUND));
    let mut bob = OlmMachine::from_records(records).unwrap();
    // The policy survived the restart ...
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &old),
        Err(CryptoError::Expired { .. })
    ));
    // ... and so did the shredding.
    bob.clear_retention(ROOM);
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &old),
        Err(CryptoError::MissingRoomKey { .. })
    ));
}

#[tokio::test]
async fn a_ratcheted_session_is_stored_ratcheted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let (mut server, mut alice, mut bob) = alice_and_bob();
    let old = text(&mut server, &mut alice, "old", T0);
    let live = text(&mut server, &mut alice, "live", T0 + 50 * MINUTE_MS);
    sync(&mut server, &mut bob, T0 + 50 * MINUTE_MS);
    assert_eq!(body_of(&mut bob, ROOM, &old), "old");
    assert_eq!(body_of(&mut bob, ROOM, &live), "live");
    let store = SqliteStore::open_with(&path, "passphrase", KdfParams::insecure_for_tests())
        .await
        .unwrap();
    commit(&store, &mut bob).await;
    bob.apply_retention(ROOM, HOUR_MS, T0 + HOUR_MS + 1)
        .unwrap();
    commit(&store, &mut bob).await;
    drop(bob);

    let mut bob = OlmMachine::from_records(store.load().await.unwrap().records).unwrap();
    assert_eq!(body_of(&mut bob, ROOM, &live), "live");
    bob.clear_retention(ROOM);
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &old),
        Err(CryptoError::MegolmDecryption(_))
    ));
}

async fn commit(store: &SqliteStore, machine: &mut OlmMachine) {
    let changes = machine.pending_changes().unwrap();
    store
        .commit(StoreChanges {
            upserts: changes.upserts,
            deletes: changes.deletes,
            sync_token: None,
        })
        .await
        .unwrap();
    machine.mark_changes_saved();
}

/// The sealed values of the inbound-session rows, read behind the store's
/// back.
async fn inbound_rows(store: &SqliteStore) -> Vec<Vec<u8>> {
    use sqlx::Row as _;
    let url = format!("sqlite://{}?mode=ro", store.path().display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let rows = sqlx::query("SELECT value FROM records WHERE kind = ?")
        .bind(RECORD_INBOUND)
        .fetch_all(&mut conn)
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<Vec<u8>, _>(0)).collect()
}
