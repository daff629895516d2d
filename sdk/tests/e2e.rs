//! End-to-end: the SDK's `Client` against the real Cloister server (the
//! `cloister-tests` harness runs it over HTTP on SQLite). Alice with two
//! devices and Bob exchange messages and a file; Bob's client is dropped
//! and rebuilt from its encrypted SQLite store and still decrypts the
//! history, and goes on from where its sync left off.

use std::sync::Arc;
use std::time::Duration;

use cloister_sdk::client::{Client, CreateRoom, Direction, Encryption, Membership, TimelineEvent};
use cloister_sdk::store::{KdfParams, MemoryStore, SqliteStore, StateStore};
use cloister_tests::{unique, Backend, Client as RawClient, TestServer};
use futures::StreamExt;

const PASSWORD: &str = "a long enough password";
const STORE_PASSPHRASE: &str = "bob's store passphrase";

/// Sync until `wanted` events with these bodies (or file names) arrived.
async fn receive(client: &Client, wanted: &[&str]) -> Vec<TimelineEvent> {
    let mut got: Vec<TimelineEvent> = Vec::new();
    for _ in 0..30 {
        let summary = client.sync_once(Duration::from_millis(500)).await.unwrap();
        got.extend(
            summary
                .events
                .into_iter()
                .filter(|e| e.event_type == "m.room.message"),
        );
        if wanted
            .iter()
            .all(|w| got.iter().any(|e| e.body() == Some(w)))
        {
            return got;
        }
    }
    panic!(
        "{} never received {wanted:?}; got {:?}, waiting for keys: {:?}",
        client.user_id(),
        got.iter().map(TimelineEvent::body).collect::<Vec<_>>(),
        client.undecrypted_events().await
    );
}

fn find<'a>(events: &'a [TimelineEvent], body: &str) -> &'a TimelineEvent {
    events.iter().find(|e| e.body() == Some(body)).unwrap()
}

fn assert_decrypted_from(event: &TimelineEvent, sender: &str, device: &str) {
    assert_eq!(event.sender, sender);
    match &event.encryption {
        Encryption::Decrypted { sender_device, .. } => {
            assert_eq!(sender_device.as_deref(), Some(device), "{event:?}")
        }
        other => panic!("not decrypted: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_and_bob_exchange_messages_and_a_file_and_bob_restarts() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario timed out");
}

async fn scenario() {
    let server = TestServer::start(Backend::Sqlite).await;
    let url = server.url();
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    RawClient::register(&url, &alice_name, PASSWORD).await;
    let raw_bob = RawClient::register(&url, &bob_name, PASSWORD).await;
    let alice_id = server.user_id(&alice_name);
    let bob_id = server.user_id(&bob_name);

    let alice1 = Client::login(
        &url,
        &alice_name,
        PASSWORD,
        Arc::new(MemoryStore::new()),
        Some("alice one"),
    )
    .await
    .unwrap();
    let alice2 = Client::login(
        &url,
        &alice_name,
        PASSWORD,
        Arc::new(MemoryStore::new()),
        Some("alice two"),
    )
    .await
    .unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store_path = store_dir.path().join("bob.db");
    let bob_store = SqliteStore::open_with(
        &store_path,
        STORE_PASSPHRASE,
        KdfParams::insecure_for_tests(),
    )
    .await
    .unwrap();
    let bob = Client::login(&url, &bob_name, PASSWORD, Arc::new(bob_store), Some("bob"))
        .await
        .unwrap();
    assert_eq!(bob.user_id(), bob_id);
    let bob_device = bob.device_id().to_owned();
    let bob_fingerprint = bob.fingerprint().await;
    let devices = alice1.devices().await.unwrap();
    assert!(devices.iter().any(|d| d.device_id == alice2.device_id()));
    assert_eq!(devices.iter().filter(|d| d.is_current).count(), 1);

    // Alice creates the room and invites Bob; Bob joins.
    let room = alice1
        .create_room(&CreateRoom {
            name: Some("e2e".into()),
            invite: vec![bob_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let mut invited = false;
    for _ in 0..20 {
        let summary = bob.sync_once(Duration::from_millis(500)).await.unwrap();
        if summary.invites.contains(&room) {
            invited = true;
            break;
        }
    }
    assert!(invited, "Bob never saw the invite");
    assert_eq!(
        bob.room(&room).await.unwrap().membership,
        Membership::Invite
    );
    assert_eq!(bob.join(&room).await.unwrap(), room);
    alice2.sync_once(Duration::ZERO).await.unwrap();
    assert!(alice2.room(&room).await.unwrap().is_encrypted());
    // Apps keep a sync loop running; here each device syncs by hand.
    alice1.sync_once(Duration::ZERO).await.unwrap();

    // Alice's first device writes; Bob and Alice's second device read.
    let mut alice2_stream = Box::pin(alice2.event_stream());
    let first = alice1
        .send_text(&room, "hello from alice one")
        .await
        .unwrap();
    let got = receive(&bob, &["hello from alice one"]).await;
    let event = find(&got, "hello from alice one");
    assert_eq!(event.event_id, first);
    assert_decrypted_from(event, &alice_id, alice1.device_id());
    receive(&alice2, &["hello from alice one"]).await;
    let streamed = alice2_stream.next().await.unwrap();
    assert_eq!(
        streamed.body(),
        Some("hello from alice one"),
        "{streamed:?}"
    );

    // Bob answers with text and a file; both of Alice's devices decrypt.
    let file: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    bob.send_text(&room, "hi alice").await.unwrap();
    let file_event = bob
        .send_file(&room, "report.bin", "application/octet-stream", &file)
        .await
        .unwrap();
    for alice in [&alice1, &alice2] {
        let got = receive(alice, &["hi alice", "report.bin"]).await;
        assert_decrypted_from(find(&got, "hi alice"), &bob_id, &bob_device);
        let attachment = find(&got, "report.bin");
        assert_eq!(attachment.event_id, file_event);
        assert_eq!(attachment.msgtype(), Some("m.file"));
        let encrypted = attachment.encrypted_file().expect("an encrypted file");
        assert_eq!(alice.download_attachment(&encrypted).await.unwrap(), file);
        assert!(attachment.content.get("url").is_none(), "no plaintext url");
    }
    // The server holds ciphertext: the raw download is not the file.
    let file_url = find(&receive(&bob, &["report.bin"]).await, "report.bin")
        .encrypted_file()
        .unwrap()
        .url;
    let (status, raw) = raw_bob.download_media(&file_url).await;
    assert_eq!(status, 200);
    assert_eq!(raw.len(), file.len());
    assert_ne!(raw, file);
    // The event told the server which upload it carries, so retention can
    // delete the file with the event.
    let media_id = file_url.rsplit('/').next().unwrap();

    let linked: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM event_media WHERE media_id = $1")
            .bind(media_id)
            .fetch_all(server.state().store.pool())
            .await
            .unwrap();
    assert_eq!(linked, vec![file_event.clone()]);

    // Alice's second device writes too.
    alice2.send_text(&room, "alice two here").await.unwrap();
    let got = receive(&bob, &["alice two here"]).await;
    assert_decrypted_from(find(&got, "alice two here"), &alice_id, alice2.device_id());

    // Bob goes away; his client is rebuilt from the store on disk, which
    // holds neither the messages, nor his token, nor who he talks to.
    let token = bob.session().access_token.clone();
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let on_disk = std::fs::read(&store_path).unwrap();
    for needle in [
        token.as_str(),
        "hello from alice one",
        "report.bin",
        &bob_id,
        &alice_id,
        &room,
    ] {
        assert!(
            !on_disk
                .windows(needle.len())
                .any(|w| w == needle.as_bytes()),
            "the store file contains {needle:?}"
        );
    }
    let store = SqliteStore::open(&store_path, STORE_PASSPHRASE)
        .await
        .unwrap();
    let store: Arc<dyn StateStore> = Arc::new(store);
    let bob = Client::restore(store)
        .await
        .unwrap()
        .expect("a stored session");
    assert_eq!(bob.device_id(), bob_device);
    assert_eq!(bob.fingerprint().await, bob_fingerprint);
    assert_eq!(bob.room(&room).await.unwrap().membership, Membership::Join);

    // The whole history decrypts from the stored keys.
    let page = bob
        .messages(&room, None, Direction::Backward, 100)
        .await
        .unwrap();
    let bodies: Vec<&str> = page.events.iter().filter_map(TimelineEvent::body).collect();
    for wanted in [
        "hello from alice one",
        "hi alice",
        "report.bin",
        "alice two here",
    ] {
        assert!(bodies.contains(&wanted), "{wanted} missing from {bodies:?}");
    }
    for event in page
        .events
        .iter()
        .filter(|e| e.event_type == "m.room.message")
    {
        assert!(event.is_decrypted(), "{event:?}");
    }
    let old_file = find(&page.events, "report.bin").encrypted_file().unwrap();
    assert_eq!(bob.download_attachment(&old_file).await.unwrap(), file);

    // Sync resumes from the stored token: nothing old again, new things
    // decrypt, and Bob can still write over his existing sessions.
    let summary = bob.sync_once(Duration::ZERO).await.unwrap();
    assert!(
        summary
            .events
            .iter()
            .all(|e| e.body() != Some("hello from alice one")),
        "the stored sync token was not used"
    );
    alice1.send_text(&room, "after the restart").await.unwrap();
    let got = receive(&bob, &["after the restart"]).await;
    assert_decrypted_from(
        find(&got, "after the restart"),
        &alice_id,
        alice1.device_id(),
    );
    bob.send_text(&room, "back again").await.unwrap();
    receive(&alice1, &["back again"]).await;
    assert_eq!(
        bob.devices().await.unwrap().len(),
        2,
        "no new device was made"
    );

    server.stop().await;
}
