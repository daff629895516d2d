//! End-to-end: cross-signing and emoji verification with the SDK's `Client`
//! against the real Cloister server. Alice bootstraps cross-signing on her
//! first device, verifies her second device by emoji over to-device (it
//! ends up signed by her self-signing key, as Bob sees), then verifies Bob
//! in their room (in-room verification, as Element does), whose identity
//! her user-signing key signs — so her second device trusts Bob without
//! verifying him itself. Her keys survive a restart; replacing the identity
//! needs her password.

use std::sync::Arc;
use std::time::Duration;

use cloister_sdk::client::{Client, CreateRoom};
use cloister_sdk::crypto::{DeviceTrust, VerificationPhase};
use cloister_sdk::store::{KdfParams, MemoryStore, SqliteStore};
use cloister_tests::{server_with_users, Backend};

mod common;

use common::PASSWORD;

async fn sync_all(clients: &[&Client]) {
    for client in clients {
        client.sync_once(Duration::ZERO).await.unwrap();
    }
}

/// Sync everyone until `done` holds (checked after each round).
async fn until<F, Fut>(clients: &[&Client], what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..40 {
        sync_all(clients).await;
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never reached: {what}");
}

async fn phase(client: &Client, flow: &str) -> Option<VerificationPhase> {
    client.verification(flow).await.map(|v| v.phase)
}

async fn emoji(client: &Client, flow: &str) -> Option<Vec<&'static str>> {
    match phase(client, flow).await {
        Some(VerificationPhase::ShowSas { emoji, .. }) => {
            Some(emoji.iter().map(|e| e.symbol).collect())
        }
        _ => None,
    }
}

/// `requester` asks `responder` (a device of `user`) to verify — over
/// to-device, or in the DM `room` — and both compare emoji and confirm, as
/// two people would.
async fn verify(
    requester: &Client,
    responder: &Client,
    user: &str,
    device: &str,
    room: Option<&str>,
) {
    let both = [requester, responder];
    let flow = match room {
        Some(room) => requester
            .request_verification_in_room(room, user)
            .await
            .unwrap(),
        None => requester
            .request_verification(user, &[device.to_owned()])
            .await
            .unwrap(),
    };
    until(&both, "the request arrives", || async {
        phase(responder, &flow).await == Some(VerificationPhase::Requested)
    })
    .await;
    responder.accept_verification(&flow).await.unwrap();
    until(&both, "ready", || async {
        phase(requester, &flow).await == Some(VerificationPhase::Ready)
    })
    .await;
    // The responder shows a QR code first, and the requester picks emoji
    // anyway, as people do when the camera is elsewhere: the code is void.
    assert!(responder.verification_qr_code(&flow).await.is_ok());
    requester.start_sas(&flow).await.unwrap();
    until(&both, "both show emoji", || async {
        emoji(requester, &flow).await.is_some() && emoji(responder, &flow).await.is_some()
    })
    .await;
    assert_eq!(emoji(requester, &flow).await, emoji(responder, &flow).await);
    requester.confirm_sas(&flow).await.unwrap();
    responder.confirm_sas(&flow).await.unwrap();
    until(&both, "both done", || async {
        phase(requester, &flow).await == Some(VerificationPhase::Done)
            && phase(responder, &flow).await == Some(VerificationPhase::Done)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_signing_and_emoji_verification_against_the_server() {
    tokio::time::timeout(Duration::from_secs(240), scenario())
        .await
        .expect("the scenario timed out");
}

async fn scenario() {
    let (server, names) = server_with_users(Backend::Sqlite, &["alice", "bob"], PASSWORD).await;
    let url = server.url();
    let (alice_name, bob_name) = (names[0].clone(), names[1].clone());
    let (alice, bob_id) = (server.user_id(&alice_name), server.user_id(&bob_name));

    let store_dir = tempfile::tempdir().unwrap();
    let store_path = store_dir.path().join("alice1.db");
    let open =
        || SqliteStore::open_with(&store_path, "passphrase", KdfParams::insecure_for_tests());
    let alice1 = Client::login(
        &url,
        &alice_name,
        PASSWORD,
        Arc::new(open().await.unwrap()),
        None,
    )
    .await
    .unwrap();
    let memory = || Arc::new(MemoryStore::new());
    let alice2 = Client::login(&url, &alice_name, PASSWORD, memory(), None)
        .await
        .unwrap();
    let bob = Client::login(&url, &bob_name, PASSWORD, memory(), None)
        .await
        .unwrap();
    let everyone = [&alice1, &alice2, &bob];
    let (a1, a2, b1) = (
        alice1.device_id().to_owned(),
        alice2.device_id().to_owned(),
        bob.device_id().to_owned(),
    );

    // The first bootstrap needs no password; this device then vouches for
    // the identity and is signed by it.
    alice1.bootstrap_cross_signing(None, false).await.unwrap();
    assert!(alice1.has_cross_signing_keys().await);
    until(&everyone, "Alice's identity is read back", || async {
        alice1.is_identity_verified(&alice).await
    })
    .await;
    assert_eq!(
        alice1.device_trust(&alice, &a1).await,
        Some(DeviceTrust::Verified)
    );
    // A second bootstrap on a device that knows the identity is refused.
    assert!(alice2.bootstrap_cross_signing(None, false).await.is_err());
    assert!(!alice2.is_identity_verified(&alice).await);
    assert_eq!(
        alice1.device_trust(&alice, &a2).await,
        Some(DeviceTrust::NotSignedByOwner)
    );

    // A room, so that Alice's and Bob's devices track each other.
    let room = alice1
        .create_room(&CreateRoom {
            invite: vec![bob_id.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    until(&everyone, "Bob is invited", || async {
        bob.room(&room).await.is_some()
    })
    .await;
    bob.join(&room).await.unwrap();
    until(&everyone, "everyone knows everyone's devices", || async {
        bob.device_trust(&alice, &a2).await.is_some()
            && alice1.device_trust(&bob_id, &b1).await.is_some()
            && alice2.device_trust(&bob_id, &b1).await.is_some()
    })
    .await;
    assert_eq!(
        bob.device_trust(&alice, &a2).await,
        Some(DeviceTrust::NotSignedByOwner)
    );

    // Alice's new device asks her first one.
    verify(&alice2, &alice1, &alice, &a1, None).await;
    until(&everyone, "the new device is cross-signed", || async {
        bob.user_devices(&alice)
            .await
            .iter()
            .any(|d| d.device_id == a2 && d.cross_signed)
            && alice2.is_identity_verified(&alice).await
    })
    .await;
    assert_eq!(
        alice1.device_trust(&alice, &a2).await,
        Some(DeviceTrust::Verified)
    );
    assert_eq!(
        alice2.device_trust(&alice, &a1).await,
        Some(DeviceTrust::Verified)
    );
    // Bob has not verified Alice: cross-signed, but not verified by him.
    assert_eq!(
        bob.device_trust(&alice, &a2).await,
        Some(DeviceTrust::CrossSigned)
    );

    // Bob sets up cross-signing; Alice verifies him from her first device.
    bob.bootstrap_cross_signing(None, false).await.unwrap();
    until(&everyone, "Bob's identity is known", || async {
        alice2
            .user_devices(&bob_id)
            .await
            .iter()
            .any(|d| d.cross_signed)
    })
    .await;
    assert_eq!(
        alice2.device_trust(&bob_id, &b1).await,
        Some(DeviceTrust::CrossSigned)
    );
    // Other people are verified in a DM, as Element does.
    verify(&alice1, &bob, &bob_id, &b1, Some(&room)).await;
    until(&everyone, "Alice's user-signing key signed Bob", || async {
        alice1.is_identity_verified(&bob_id).await && alice2.is_identity_verified(&bob_id).await
    })
    .await;
    // Her second device trusts Bob through cross-signing alone.
    assert_eq!(
        alice2.device_trust(&bob_id, &b1).await,
        Some(DeviceTrust::Verified)
    );

    // A third device of Alice's shows a QR code; her first scans it.
    let alice3 = common::login(&url, &alice_name).await;
    let a3 = alice3.device_id().to_owned();
    let three = [&alice1, &alice3];
    until(&three, "Alice's devices know each other", || async {
        alice1.device_trust(&alice, &a3).await.is_some()
            && alice3.device_trust(&alice, &a1).await.is_some()
            // Cross-signed, as its identity (now known) says; not verified.
            && alice3.device_trust(&alice, &a1).await == Some(DeviceTrust::CrossSigned)
    })
    .await;
    let flow = alice3
        .request_verification(&alice, std::slice::from_ref(&a1))
        .await
        .unwrap();
    until(&three, "the request arrives", || async {
        phase(&alice1, &flow).await == Some(VerificationPhase::Requested)
    })
    .await;
    alice1.accept_verification(&flow).await.unwrap();
    until(&three, "ready", || async {
        phase(&alice3, &flow).await == Some(VerificationPhase::Ready)
    })
    .await;
    let code = alice3.verification_qr_code(&flow).await.unwrap();
    assert!(
        code.starts_with(b"MATRIX\x02\x02"),
        "a new device shows mode 2"
    );
    // A code for another flow is refused.
    assert!(alice1
        .scan_verification_qr_code("other", &code)
        .await
        .is_err());
    alice1
        .scan_verification_qr_code(&flow, &code)
        .await
        .unwrap();
    until(&three, "the scan reaches the new device", || async {
        phase(&alice3, &flow).await == Some(VerificationPhase::QrScanned)
    })
    .await;
    alice3.confirm_qr_scanned(&flow).await.unwrap();
    until(&three, "both done, the new device cross-signed", || async {
        phase(&alice1, &flow).await == Some(VerificationPhase::Done)
            && phase(&alice3, &flow).await == Some(VerificationPhase::Done)
            && alice3.is_identity_verified(&alice).await
            && alice1
                .user_devices(&alice)
                .await
                .iter()
                .any(|d| d.device_id == a3 && d.cross_signed)
    })
    .await;
    assert_eq!(
        alice1.device_trust(&alice, &a3).await,
        Some(DeviceTrust::Verified)
    );
    assert_eq!(
        alice3.device_trust(&alice, &a1).await,
        Some(DeviceTrust::Verified)
    );

    // The private keys were stored with the rest of the device.
    drop(alice1);
    let restored = Client::restore(Arc::new(open().await.unwrap()))
        .await
        .unwrap()
        .expect("a stored session");
    assert!(restored.has_cross_signing_keys().await);
    // Replacing the identity asks for the password.
    let refused = restored
        .bootstrap_cross_signing(None, true)
        .await
        .unwrap_err();
    assert!(matches!(
        refused,
        cloister_sdk::client::ClientError::Server { status: 401, .. }
    ));
    restored
        .bootstrap_cross_signing(Some(PASSWORD), true)
        .await
        .unwrap();
    until(
        &[&restored, &alice2],
        "the new identity is read",
        || async { restored.is_identity_verified(&alice).await },
    )
    .await;
    // Alice's other device learns that her identity changed.
    assert!(!alice2.is_identity_verified(&alice).await);
}
