//! End-to-end: secret storage and key backup with the SDK's `Client`
//! against the real Cloister server. Alice's first device sets up
//! cross-signing and recovery (a recovery key); her room keys go to the
//! backup. A device she signs in on later, with nothing but the recovery
//! key, reads the history she had before, and is trusted through
//! cross-signing without an emoji comparison. A wrong recovery key is
//! refused and changes nothing.

use std::time::Duration;

use cloister_sdk::client::{Client, CreateRoom, Direction};
use cloister_sdk::crypto::{DeviceTrust, LocalTrust};
use cloister_tests::{server_with_users, Backend};

mod common;

use common::PASSWORD;

async fn sync_until<F, Fut>(clients: &[&Client], what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..40 {
        for client in clients {
            client.sync_once(Duration::ZERO).await.unwrap();
        }
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never reached: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_recovers_history_and_trust_with_the_recovery_key() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario timed out");
}

async fn history(client: &Client, room: &str) -> Vec<String> {
    let page = client
        .messages(room, None, Direction::Backward, 50)
        .await
        .unwrap();
    page.events
        .iter()
        .filter_map(|e| e.body().map(str::to_owned))
        .collect()
}

async fn scenario() {
    let (server, names) = server_with_users(Backend::Sqlite, &["alice", "bob"], PASSWORD).await;
    let url = server.url();
    let (alice_name, bob_name) = (names[0].clone(), names[1].clone());
    let (alice, bob_id) = (server.user_id(&alice_name), server.user_id(&bob_name));
    let alice1 = common::login(&url, &alice_name).await;
    let bob = common::login(&url, &bob_name).await;
    alice1.bootstrap_cross_signing(None, false).await.unwrap();

    let room = alice1
        .create_room(&CreateRoom {
            invite: vec![bob_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    sync_until(&[&alice1, &bob], "Bob is invited", || async {
        bob.room(&room).await.is_some()
    })
    .await;
    bob.join(&room).await.unwrap();
    sync_until(&[&alice1, &bob], "Bob's device is known", || async {
        alice1
            .device_trust(&bob_id, bob.device_id())
            .await
            .is_some()
    })
    .await;
    bob.send_text(&room, "from Bob, before recovery")
        .await
        .unwrap();
    alice1
        .send_text(&room, "from Alice, before recovery")
        .await
        .unwrap();
    sync_until(&[&alice1, &bob], "Alice reads Bob", || async {
        history(&alice1, &room)
            .await
            .contains(&"from Bob, before recovery".to_owned())
    })
    .await;

    let recovery_key = alice1.setup_recovery(None).await.unwrap();
    assert!(
        recovery_key.starts_with("Es"),
        "a recovery key as Element shows it"
    );
    assert_eq!(recovery_key.split(' ').count(), 12);
    assert!(alice1.backup_version().await.is_some());
    assert!(alice1.is_backup_trusted().await.unwrap());
    // A message after setup goes to the backup too.
    bob.send_text(&room, "from Bob, after setup").await.unwrap();
    sync_until(&[&alice1, &bob], "Alice reads Bob again", || async {
        history(&alice1, &room)
            .await
            .contains(&"from Bob, after setup".to_owned())
    })
    .await;
    alice1.send_crypto_requests().await.unwrap();

    // A new device: nothing but the recovery key.
    let alice2 = common::login(&url, &alice_name).await;
    alice2.sync_once(Duration::ZERO).await.unwrap();
    let before = history(&alice2, &room).await;
    assert!(
        !before.contains(&"from Bob, before recovery".to_owned()),
        "{before:?}"
    );
    let wrong = cloister_sdk::crypto::SecretStorageKey::new().recovery_key();
    let refused = alice2.recover(&wrong).await.unwrap_err();
    assert!(refused.to_string().contains("wrong"), "{refused}");
    assert!(!alice2.is_identity_verified(&alice).await);

    let report = alice2.recover(&recovery_key).await.unwrap();
    assert!(report.cross_signing);
    assert!(report.keys.imported >= 2, "{report:?}");
    assert_eq!(report.keys.failed, 0);
    let after = history(&alice2, &room).await;
    for text in [
        "from Bob, before recovery",
        "from Alice, before recovery",
        "from Bob, after setup",
    ] {
        assert!(
            after.contains(&text.to_owned()),
            "{text} missing: {after:?}"
        );
    }
    // Trusted through cross-signing: it signed itself with the restored
    // self-signing key, and vouches for the identity.
    sync_until(
        &[&alice1, &alice2, &bob],
        "the new device is cross-signed",
        || async {
            alice1.device_trust(&alice, alice2.device_id()).await == Some(DeviceTrust::Verified)
                && alice2.is_identity_verified(&alice).await
        },
    )
    .await;
    // And it uploads what it receives to the same backup.
    assert_eq!(alice2.backup_version().await, alice1.backup_version().await);
    assert!(alice2.has_cross_signing_keys().await);

    // A key that never reaches the new device (Bob blocked it) is fetched
    // from the backup, where the first device put it, as soon as the
    // message arrives; the first device is not syncing, so no forwarded key
    // can be what decrypts it. A new room, so that no key the new device
    // restored already covers the message.
    sync_until(&[&bob], "Bob knows the new device", || async {
        bob.device_trust(&alice, alice2.device_id()).await.is_some()
    })
    .await;
    bob.set_device_trust(&alice, alice2.device_id(), LocalTrust::Blocked)
        .await
        .unwrap();
    let second = bob
        .create_room(&CreateRoom {
            invite: vec![alice.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    sync_until(&[&alice1], "Alice is invited", || async {
        alice1.room(&second).await.is_some()
    })
    .await;
    alice1.join(&second).await.unwrap();
    sync_until(&[&bob], "Bob sees Alice join", || async {
        bob.active_members(&second)
            .await
            .map(|m| m.contains(&alice))
            .unwrap_or(false)
    })
    .await;
    let sent = bob.send_text(&second, "only in the backup").await.unwrap();
    sync_until(&[&alice1], "the first device has the key", || async {
        history(&alice1, &second)
            .await
            .contains(&"only in the backup".to_owned())
    })
    .await;
    alice1.send_crypto_requests().await.unwrap();
    let mut decrypted = None;
    for _ in 0..20 {
        let summary = alice2.sync_once(Duration::ZERO).await.unwrap();
        if let Some(event) = summary.events.into_iter().find(|e| e.event_id == sent) {
            decrypted = Some(event);
            break;
        }
    }
    let event = decrypted.expect("the new device never fetched the key from the backup");
    assert_eq!(event.body(), Some("only in the backup"));
}
