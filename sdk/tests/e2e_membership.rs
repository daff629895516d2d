//! End-to-end against the real server: the room key rotates when a member
//! leaves, so what is sent afterwards uses a session the departed member
//! never got; and a background sync loop feeds the event stream.

use std::sync::Arc;
use std::time::Duration;

use cloister_sdk::client::{Client, CreateRoom, Encryption, TimelineEvent};
use cloister_sdk::store::MemoryStore;
use cloister_tests::{unique, Backend, Client as RawClient, TestServer};
use futures::StreamExt;

const PASSWORD: &str = "a long enough password";

async fn user(url: &str) -> Client {
    let name = unique("u");
    RawClient::register(url, &name, PASSWORD).await;
    Client::login(url, &name, PASSWORD, Arc::new(MemoryStore::new()), None)
        .await
        .unwrap()
}

fn session_of(event: &TimelineEvent) -> String {
    match &event.encryption {
        Encryption::Decrypted { session_id, .. } => session_id.clone(),
        other => panic!("not decrypted: {other:?}"),
    }
}

/// The next message event from the stream, within 20 s.
async fn next_message(
    stream: &mut (impl futures::Stream<Item = TimelineEvent> + Unpin),
) -> TimelineEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("no event within 20 s")
            .expect("the stream ended");
        if event.event_type == "m.room.message" {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_rotates_when_a_member_leaves() {
    let server = TestServer::start(Backend::Sqlite).await;
    let url = server.url();
    let (alice, bob, carol) = (user(&url).await, user(&url).await, user(&url).await);
    let room = alice
        .create_room(&CreateRoom {
            invite: vec![bob.user_id().to_owned(), carol.user_id().to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    for member in [&bob, &carol] {
        member.sync_once(Duration::ZERO).await.unwrap();
        member.join(&room).await.unwrap();
    }
    let mut bob_events = Box::pin(bob.event_stream());
    let bob_sync = bob.spawn_sync_loop(Duration::from_secs(5));
    alice.sync_once(Duration::ZERO).await.unwrap();

    alice.send_text(&room, "to both").await.unwrap();
    alice.send_text(&room, "still both").await.unwrap();
    let first = next_message(&mut bob_events).await;
    let second = next_message(&mut bob_events).await;
    assert_eq!(first.body(), Some("to both"));
    assert_eq!(second.body(), Some("still both"));
    assert_eq!(
        session_of(&first),
        session_of(&second),
        "no rotation without a reason"
    );

    carol.leave(&room).await.unwrap();
    alice.sync_once(Duration::ZERO).await.unwrap();
    alice.send_text(&room, "only bob").await.unwrap();
    let third = next_message(&mut bob_events).await;
    assert_eq!(third.body(), Some("only bob"));
    assert_ne!(
        session_of(&third),
        session_of(&second),
        "the key must rotate when a member leaves"
    );
    assert!(
        bob_sync.last_error().is_none(),
        "{:?}",
        bob_sync.last_error()
    );
    bob_sync.stop().await;
    server.stop().await;
}
