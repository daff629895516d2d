//! End-to-end: a device that missed a room key asks the user's other,
//! verified device for it, against the real server. Alice's second device
//! signs in after Bob's message; its first sync finds no key and asks; her
//! first device keeps the request until the user verifies the new device,
//! then forwards the key; the waiting message decrypts on the next sync,
//! marked as decrypted with a forwarded key (not verified by its sender's
//! device).

use std::time::Duration;

use cloister_sdk::client::{CreateRoom, Encryption, TimelineEvent};
use cloister_sdk::crypto::{DeviceTrust, LocalTrust};
use cloister_tests::{server_with_users, Backend};

mod common;

use common::PASSWORD;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_is_asked_of_a_verified_own_device_and_the_message_decrypts() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario timed out");
}

async fn scenario() {
    let (server, names) = server_with_users(Backend::Sqlite, &["alice", "bob"], PASSWORD).await;
    let url = server.url();
    let (alice_name, bob_name) = (names[0].clone(), names[1].clone());
    let (alice, bob_id) = (server.user_id(&alice_name), server.user_id(&bob_name));
    let alice1 = common::login(&url, &alice_name).await;
    let bob = common::login(&url, &bob_name).await;
    let room = alice1
        .create_room(&CreateRoom {
            invite: vec![bob_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..20 {
        bob.sync_once(Duration::ZERO).await.unwrap();
        if bob.room(&room).await.is_some() {
            break;
        }
    }
    bob.join(&room).await.unwrap();
    alice1.sync_once(Duration::ZERO).await.unwrap();
    let sent = bob
        .send_text(&room, "before the second device")
        .await
        .unwrap();
    alice1.sync_once(Duration::ZERO).await.unwrap();

    // The second device signs in afterwards: Bob's key was never sent to it.
    // Its first sync finds the message undecryptable and asks; the first
    // device is not sure of it yet and keeps the request.
    let alice2 = common::login(&url, &alice_name).await;
    let a2 = alice2.device_id().to_owned();
    let first = alice1.device_id().to_owned();
    let summary = alice2.sync_once(Duration::ZERO).await.unwrap();
    assert!(summary.events.iter().all(|e| e.event_id != sent));
    assert!(alice2
        .undecrypted_events()
        .await
        .iter()
        .any(|e| e.event_id == sent));
    // The second trusts the first (it would after an emoji comparison).
    alice2
        .set_device_trust(&alice, &first, LocalTrust::Verified)
        .await
        .unwrap();
    for _ in 0..20 {
        alice1.sync_once(Duration::ZERO).await.unwrap();
        if alice1.device_trust(&alice, &a2).await.is_some() {
            break;
        }
    }
    // Only once the first device verifies the second does it answer the
    // request it kept.
    alice1
        .set_device_trust(&alice, &a2, LocalTrust::Verified)
        .await
        .unwrap();
    assert_eq!(
        alice1.device_trust(&alice, &a2).await,
        Some(DeviceTrust::Verified)
    );
    let mut decrypted: Option<TimelineEvent> = None;
    for _ in 0..40 {
        alice1.sync_once(Duration::ZERO).await.unwrap();
        let summary = alice2.sync_once(Duration::ZERO).await.unwrap();
        if let Some(event) = summary.events.into_iter().find(|e| e.event_id == sent) {
            decrypted = Some(event);
            break;
        }
    }
    let event = decrypted.expect("the message never decrypted on the second device");
    assert_eq!(event.body(), Some("before the second device"));
    match &event.encryption {
        Encryption::Decrypted {
            verified,
            unverified_reason,
            ..
        } => {
            assert!(!verified);
            assert_eq!(unverified_reason.as_deref(), Some("forwarded key"));
        }
        other => panic!("not decrypted: {other:?}"),
    }
}
