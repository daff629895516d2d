//! Key backup through the crypto core's public API, with the test double
//! for the server (`support`): sessions go up in batches to the backup's
//! public key and are marked as backed up (also across a restart); a new
//! device with the backup key restores them and reads the history, as
//! unverified; a key that is not the backup's, a tampered session and an
//! unsigned backup are refused or not trusted.
//!
//! The same against the real server, with secret storage and a recovery
//! key, is `e2e_recovery.rs`.

mod support;

use cloister_sdk::crypto::{
    CryptoRecord, LocalTrust, OlmMachine, RequestBody, VerificationState, MEGOLM_BACKUP_V1,
};
use serde_json::{json, Value};
use support::{
    body_of, drive, login, send_text, settings, sync, FakeHomeserver, ALICE, BOB, ROOM, T0,
};
use zeroize::Zeroizing;

fn reload(machine: &mut OlmMachine, saved: &mut Vec<(String, String, Vec<u8>)>) -> OlmMachine {
    let changes = machine.pending_changes().unwrap();
    for record in changes.upserts {
        saved.retain(|(k, i, _)| !(k == &record.kind && i == &record.id));
        saved.push((record.kind.clone(), record.id.clone(), record.data.to_vec()));
    }
    for (kind, id) in changes.deletes {
        saved.retain(|(k, i, _)| !(k == &kind && i == &id));
    }
    machine.mark_changes_saved();
    OlmMachine::from_records(saved.iter().map(|(kind, id, data)| CryptoRecord {
        kind: kind.clone(),
        id: id.clone(),
        data: Zeroizing::new(data.clone()),
    }))
    .unwrap()
}

fn backup_uploads(machine: &mut OlmMachine) -> usize {
    machine
        .outgoing_requests()
        .unwrap()
        .iter()
        .filter(|r| matches!(r.body, RequestBody::BackupKeys { .. }))
        .count()
}

#[test]
fn sessions_go_up_and_a_new_device_restores_the_history() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let first = send_text(
        &mut server,
        &mut bob,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "before the backup",
        T0,
    );
    sync(&mut server, &mut alice, T0);
    assert_eq!(body_of(&mut alice, ROOM, &first), "before the backup");

    // Alice turns the backup on: the version body is signed by her device.
    let mut version_info = alice.create_backup().unwrap();
    assert_eq!(version_info["algorithm"], MEGOLM_BACKUP_V1);
    version_info["version"] = json!("1");
    assert!(alice.is_backup_trusted(&version_info));
    assert_eq!(
        backup_uploads(&mut alice),
        0,
        "no version yet: nothing goes up"
    );
    alice.enable_backup("1").unwrap();
    let path = alice
        .outgoing_requests()
        .unwrap()
        .into_iter()
        .find(|r| matches!(r.body, RequestBody::BackupKeys { .. }))
        .map(|r| r.path())
        .expect("an upload");
    assert_eq!(path, "/_matrix/client/v3/room_keys/keys?version=1");
    drive(&mut server, &mut alice);
    assert_eq!(backup_uploads(&mut alice), 0, "everything is up");
    let stored = server.backup_keys();
    let sessions = stored["rooms"][ROOM]["sessions"].as_object().unwrap();
    assert_eq!(sessions.len(), 1);
    let data = sessions.values().next().unwrap();
    assert!(!data.to_string().contains("before the backup"));
    assert!(data["session_data"]["ephemeral"].is_string());

    // A second session is queued; a restart keeps the upload, and the
    // first session does not go up again.
    let mut saved = Vec::new();
    let mut alice = reload(&mut alice, &mut saved);
    bob.invalidate_group_session(ROOM);
    let second = send_text(
        &mut server,
        &mut bob,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "after a restart",
        T0,
    );
    let changes = server.sync(ALICE, "ALICE1", T0);
    alice.receive_sync_changes(changes);
    assert_eq!(backup_uploads(&mut alice), 1);
    let mut alice = reload(&mut alice, &mut saved);
    assert_eq!(backup_uploads(&mut alice), 1);
    drive(&mut server, &mut alice);
    assert_eq!(backup_uploads(&mut alice), 0);
    let stored = server.backup_keys();
    assert_eq!(
        stored["rooms"][ROOM]["sessions"].as_object().unwrap().len(),
        2
    );

    // A new device with the key (from secret storage) reads both.
    let mut fresh = login(&mut server, ALICE, "ALICE2");
    let key = alice.backup_key().unwrap();
    let wrong = OlmMachine::new(ALICE, "X")
        .unwrap()
        .create_backup()
        .unwrap();
    assert!(fresh
        .import_backup_key(
            &key,
            &json!({"algorithm": MEGOLM_BACKUP_V1, "version": "1", "auth_data": wrong["auth_data"]})
        )
        .is_err());
    fresh.import_backup_key(&key, &version_info).unwrap();
    let report = fresh.import_backup(&stored).unwrap();
    assert_eq!((report.imported, report.failed), (2, 0));
    for (event, text) in [(&first, "before the backup"), (&second, "after a restart")] {
        let decrypted = fresh.decrypt_room_event(ROOM, event).unwrap();
        assert_eq!(decrypted.event["content"]["body"], text);
        assert!(
            !matches!(decrypted.verification, VerificationState::Verified),
            "a key from the backup is not authenticated"
        );
    }
    // Restored sessions count as backed up already.
    assert_eq!(backup_uploads(&mut fresh), 0);

    // The new device trusts the backup once it trusts the device that
    // signed it.
    sync(&mut server, &mut fresh, T0);
    assert!(!fresh.is_backup_trusted(&version_info));
    assert!(fresh.set_local_trust(ALICE, "ALICE1", LocalTrust::Verified));
    assert!(fresh.is_backup_trusted(&version_info));
    let mut unsigned = version_info.clone();
    unsigned["auth_data"]["signatures"] = json!({});
    assert!(!fresh.is_backup_trusted(&unsigned));
}

#[test]
fn a_tampered_session_fails_alone() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    send_text(
        &mut server,
        &mut bob,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "one",
        T0,
    );
    sync(&mut server, &mut alice, T0);
    alice.create_backup().unwrap();
    alice.enable_backup("1").unwrap();
    drive(&mut server, &mut alice);
    let mut stored: Value = server.backup_keys();
    let sessions = stored["rooms"][ROOM]["sessions"].as_object_mut().unwrap();
    let good = sessions.values().next().unwrap().clone();
    let mut bad = good.clone();
    bad["session_data"]["ciphertext"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
    sessions.insert("forged".into(), bad);
    let mut other = OlmMachine::new(ALICE, "ALICE3").unwrap();
    let info = json!({
        "algorithm": MEGOLM_BACKUP_V1,
        "version": "1",
        "auth_data": { "public_key": public_key_of(&alice) },
    });
    other
        .import_backup_key(&alice.backup_key().unwrap(), &info)
        .unwrap();
    let report = other.import_backup(&stored).unwrap();
    assert_eq!((report.imported, report.failed), (1, 1));
}

/// The backup public key Alice's machine uses, from a version body it
/// makes for the same key (test helper: the core does not expose it).
fn public_key_of(machine: &OlmMachine) -> String {
    let key = machine.backup_key().unwrap();
    let bytes: [u8; 32] = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        key.as_str(),
    )
    .unwrap()
    .try_into()
    .unwrap();
    vodozemac::pk_encryption::PkDecryption::from_key(vodozemac::Curve25519SecretKey::from_slice(
        &bytes,
    ))
    .public_key()
    .to_base64()
}

#[test]
fn a_restored_key_for_expired_messages_is_not_kept() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let old = send_text(
        &mut server,
        &mut bob,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "expires in an hour",
        T0,
    );
    sync(&mut server, &mut alice, T0);
    let mut version_info = alice.create_backup().unwrap();
    version_info["version"] = json!("1");
    alice.enable_backup("1").unwrap();
    drive(&mut server, &mut alice);

    // Two hours later a new device restores the backup; the room keeps
    // messages for one hour.
    let later = T0 + 2 * support::HOUR_MS;
    let mut fresh = login(&mut server, ALICE, "ALICE2");
    sync(&mut server, &mut fresh, later);
    fresh
        .import_backup_key(&alice.backup_key().unwrap(), &version_info)
        .unwrap();
    assert_eq!(
        fresh.import_backup(&server.backup_keys()).unwrap().imported,
        1
    );
    fresh
        .apply_retention(ROOM, support::HOUR_MS, later)
        .unwrap();
    // The expired message is refused, and its key does not survive that.
    assert!(matches!(
        fresh.decrypt_room_event(ROOM, &old),
        Err(cloister_sdk::crypto::CryptoError::Expired { .. })
    ));
    assert!(fresh.clear_retention(ROOM));
    // With the policy lifted, the key no longer reaches that message.
    let error = fresh.decrypt_room_event(ROOM, &old).unwrap_err();
    assert!(
        matches!(
            error,
            cloister_sdk::crypto::CryptoError::MegolmDecryption(_)
                | cloister_sdk::crypto::CryptoError::MissingRoomKey { .. }
        ),
        "the restored key was not shredded: {error:?}"
    );
}
