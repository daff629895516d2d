//! The stores: the encrypted SQLite store survives a reopen (a message
//! decrypts with the reloaded keys), refuses a wrong passphrase with a clear
//! error, and keeps no secret or identifier in the clear in its file; the
//! in-memory store behaves the same through the same trait.

mod support;

use base64::Engine as _;
use cloister_sdk::crypto::{OlmMachine, RECORD_ACCOUNT, RECORD_INBOUND};
use cloister_sdk::store::{
    KdfParams, MemoryStore, SqliteStore, StateStore, StoreChanges, StoreError,
};
use serde_json::Value;
use support::{body_of, login, send_text, settings, sync, FakeHomeserver, ALICE, BOB, ROOM, T0};

const PASSPHRASE: &str = "correct horse battery staple";

async fn save(store: &dyn StateStore, machine: &mut OlmMachine, token: &str) {
    let changes = machine.pending_changes().unwrap();
    store
        .commit(StoreChanges {
            upserts: changes.upserts,
            deletes: changes.deletes,
            sync_token: Some(token.to_owned()),
        })
        .await
        .unwrap();
    machine.mark_changes_saved();
}

async fn load(store: &dyn StateStore) -> (OlmMachine, Option<String>) {
    let state = store.load().await.unwrap();
    (
        OlmMachine::from_records(state.records).unwrap(),
        state.sync_token,
    )
}

/// Alice sends Bob a message; Bob has received the key. Returns the event.
fn bob_received_a_message(server: &mut FakeHomeserver, bob: &mut OlmMachine, text: &str) -> Value {
    let mut alice = login(server, ALICE, "ALICE1");
    sync(server, &mut alice, T0);
    let event = send_text(
        server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        text,
        T0,
    );
    sync(server, bob, T0);
    event
}

fn params() -> KdfParams {
    KdfParams::insecure_for_tests()
}

#[tokio::test]
async fn the_sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut server = FakeHomeserver::new();
    let mut bob = login(&mut server, BOB, "BOB1");
    let event = bob_received_a_message(&mut server, &mut bob, "see you after the restart");
    let bob_keys = bob.identity_keys();

    let store = SqliteStore::open_with(&path, PASSPHRASE, params())
        .await
        .unwrap();
    save(&store, &mut bob, "s42_7").await;
    drop(bob);
    store.close().await;

    let store = SqliteStore::open_with(&path, PASSPHRASE, params())
        .await
        .unwrap();
    let (mut bob, token) = load(&store).await;
    assert_eq!(token.as_deref(), Some("s42_7"));
    assert_eq!(bob.identity_keys().curve25519, bob_keys.curve25519);
    assert_eq!(body_of(&mut bob, ROOM, &event), "see you after the restart");

    // Later changes land on top of what was there.
    let next = bob_received_a_message(&mut server, &mut bob, "and another");
    save(&store, &mut bob, "s43_8").await;
    store.close().await;
    let store = SqliteStore::open(&path, PASSPHRASE).await.unwrap();
    let (mut bob, token) = load(&store).await;
    assert_eq!(token.as_deref(), Some("s43_8"));
    assert_eq!(body_of(&mut bob, ROOM, &event), "see you after the restart");
    assert_eq!(body_of(&mut bob, ROOM, &next), "and another");
}

#[tokio::test]
async fn a_wrong_passphrase_fails_cleanly_and_harms_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut server = FakeHomeserver::new();
    let mut bob = login(&mut server, BOB, "BOB1");
    let store = SqliteStore::open_with(&path, PASSPHRASE, params())
        .await
        .unwrap();
    save(&store, &mut bob, "s1").await;
    store.close().await;

    let error = SqliteStore::open(&path, "correct horse battery stapler")
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::WrongPassphrase), "{error:?}");
    assert_eq!(
        error.to_string(),
        "wrong passphrase: it does not unlock this store"
    );
    assert!(matches!(
        SqliteStore::open(&path, "").await,
        Err(StoreError::WrongPassphrase)
    ));

    let store = SqliteStore::open(&path, PASSPHRASE).await.unwrap();
    let (reloaded, _) = load(&store).await;
    assert_eq!(
        reloaded.identity_keys().ed25519,
        bob.identity_keys().ed25519
    );

    // While open, a second opener is refused instead of forking the state.
    assert!(matches!(
        SqliteStore::open(&path, PASSPHRASE).await,
        Err(StoreError::InUse(_))
    ));
}

#[tokio::test]
async fn an_altered_record_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut server = FakeHomeserver::new();
    let mut bob = login(&mut server, BOB, "BOB1");
    let store = SqliteStore::open_with(&path, PASSPHRASE, params())
        .await
        .unwrap();
    save(&store, &mut bob, "s1").await;
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    // The last byte changed, whatever it was: writing a fixed byte left the
    // record intact whenever it already ended in that byte (1 run in 256).
    sqlx::query(
        "UPDATE records SET value = substr(value, 1, length(value) - 1) || \
         CASE WHEN substr(value, -1) = x'00' THEN x'01' ELSE x'00' END WHERE kind = ?",
    )
    .bind(RECORD_ACCOUNT)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let store = SqliteStore::open(&path, PASSPHRASE).await.unwrap();
    assert!(matches!(store.load().await, Err(StoreError::Corrupted(_))));
}

/// Every secret-looking piece of a record's plaintext: strings, and byte
/// arrays (how vodozemac pickles keys) as raw bytes and as base64.
fn needles(value: &Value, out: &mut Vec<Vec<u8>>) {
    match value {
        Value::String(s) if s.len() >= 8 => out.push(s.as_bytes().to_vec()),
        Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            match bytes {
                Some(bytes) if bytes.len() >= 16 => {
                    let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&bytes);
                    out.push(b64.into_bytes());
                    out.push(bytes);
                }
                _ => items.iter().for_each(|v| needles(v, out)),
            }
        }
        Value::Object(map) => map.values().for_each(|v| needles(v, out)),
        _ => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_database_file_holds_no_plaintext_secrets_or_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut server = FakeHomeserver::new();
    let mut bob = login(&mut server, BOB, "BOB1");
    bob_received_a_message(&mut server, &mut bob, "plaintext that must not leak");

    // What will be written, in the clear, to look for afterwards.
    let changes = bob.pending_changes().unwrap();
    assert!(changes.upserts.iter().any(|r| r.kind == RECORD_INBOUND));
    let mut secrets: Vec<Vec<u8>> = vec![
        PASSPHRASE.as_bytes().to_vec(),
        BOB.as_bytes().to_vec(),
        ALICE.as_bytes().to_vec(),
        ROOM.as_bytes().to_vec(),
        b"s99_sync_token".to_vec(),
        bob.identity_keys().curve25519.to_base64().into_bytes(),
    ];
    for record in &changes.upserts {
        let plain: Value = serde_json::from_slice(&record.data).unwrap();
        needles(&plain, &mut secrets);
        secrets.push(record.id.as_bytes().to_vec());
    }
    secrets.retain(|s| s.len() >= 8);
    assert!(
        secrets.len() > 50,
        "the scan must look for real key material"
    );
    drop(changes);

    let store = SqliteStore::open_with(&path, PASSPHRASE, params())
        .await
        .unwrap();
    save(&store, &mut bob, "s99_sync_token").await;
    store.close().await;

    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        files.push((entry.path(), std::fs::read(entry.path()).unwrap()));
    }
    let db = &files.iter().find(|(p, _)| p == &path).unwrap().1;
    assert!(db.len() > 4096, "the database was written");
    for (file, bytes) in &files {
        for secret in &secrets {
            assert!(
                !contains(bytes, secret),
                "{} contains {:?} in the clear",
                file.display(),
                String::from_utf8_lossy(secret)
            );
        }
    }
}

#[tokio::test]
async fn the_memory_store_keeps_state_across_clients() {
    let store = MemoryStore::new();
    let mut server = FakeHomeserver::new();
    let mut bob = login(&mut server, BOB, "BOB1");
    let event = bob_received_a_message(&mut server, &mut bob, "in memory");
    save(&store, &mut bob, "t1").await;
    drop(bob);
    let (mut bob, token) = load(&store.clone()).await;
    assert_eq!(token.as_deref(), Some("t1"));
    assert_eq!(body_of(&mut bob, ROOM, &event), "in memory");
    store.clear().await.unwrap();
    assert!(store.load().await.unwrap().records.is_empty());
}
