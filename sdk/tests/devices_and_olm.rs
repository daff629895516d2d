//! Devices and Olm with simulated devices talking through the in-memory
//! test double in `support` (which stands in for the homeserver): device
//! key checks, Olm payload checks, wedged sessions, one-time keys, and key
//! forwarding between a user's own devices.

mod support;

use cloister_sdk::crypto::{
    CryptoError, CryptoEvent, LocalTrust, OlmMachine, RequestBody, SyncChanges, UnverifiedReason,
    VerificationState, MEGOLM_V1,
};
use serde_json::{json, Value};
use support::{
    body_of, drive, login, send_text, session_id, settings, sync, FakeHomeserver, ALICE, BOB,
    CAROL, ROOM, T0,
};

#[test]
fn a_changed_device_key_is_refused_and_reported() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let members = [ALICE, BOB];
    let _ = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "hi",
        T0,
    );
    let original = alice
        .get_device(BOB, "BOB1")
        .expect("Bob's device is known");
    assert_eq!(original.ed25519, bob.identity_keys().ed25519);
    alice.take_events();

    // An impostor publishes its own (validly self-signed) keys under Bob's
    // device id, and the server announces the change.
    let mut impostor = OlmMachine::new(BOB, "BOB1").unwrap();
    server.replace_device_keys(BOB, "BOB1", impostor.device_keys().unwrap());
    sync(&mut server, &mut alice, T0 + 1);

    let warnings: Vec<_> = alice
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            CryptoEvent::KeyChange(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(warnings.len(), 1, "the change is reported once");
    let warning = &warnings[0];
    assert_eq!(
        (warning.user_id.as_str(), warning.device_id.as_str()),
        (BOB, "BOB1")
    );
    assert_eq!(
        warning.known_ed25519,
        bob.identity_keys().ed25519.to_base64()
    );
    assert_eq!(
        warning.offered_ed25519,
        impostor.identity_keys().ed25519.to_base64()
    );
    assert_eq!(
        alice.get_device(BOB, "BOB1"),
        Some(original),
        "old keys kept"
    );

    // New room keys still go to the real device only.
    let room2 = "!second:cloister.test";
    let secret = send_text(
        &mut server,
        &mut alice,
        room2,
        &members,
        settings(),
        "for bob only",
        T0 + 2,
    );
    let inbox = server.peek_to_device(BOB, "BOB1");
    let impostor_changes = server.sync(BOB, "BOB1", T0 + 2);
    assert_eq!(impostor_changes.to_device_events, inbox);
    impostor.receive_sync_changes(impostor_changes);
    assert!(impostor.decrypt_room_event(room2, &secret).is_err());
    bob.receive_sync_changes(support_changes(inbox, T0 + 2));
    assert_eq!(body_of(&mut bob, room2, &secret), "for bob only");
}

fn support_changes(to_device_events: Vec<Value>, now_ms: u64) -> SyncChanges {
    SyncChanges {
        to_device_events,
        now_ms,
        ..Default::default()
    }
}

#[test]
fn device_keys_with_a_bad_signature_are_ignored() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let bob = login(&mut server, BOB, "BOB1");
    let mut forged = bob.device_keys().unwrap();
    forged["keys"]["curve25519:BOB2"] = forged["keys"]["curve25519:BOB1"].clone();
    forged["keys"]["ed25519:BOB2"] = forged["keys"]["ed25519:BOB1"].clone();
    forged["device_id"] = json!("BOB2");
    server.replace_device_keys(BOB, "BOB2", forged);
    sync(&mut server, &mut alice, T0);
    alice.update_tracked_users(&[BOB]).unwrap();
    drive(&mut server, &mut alice);
    assert!(alice.get_device(BOB, "BOB1").is_some());
    assert!(alice.get_device(BOB, "BOB2").is_none());
    assert!(alice.take_events().iter().any(|e| matches!(
        e,
        CryptoEvent::InvalidDeviceKeys { device_id, .. } if device_id == "BOB2"
    )));
}

#[test]
fn olm_payload_with_a_forged_sender_is_refused() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    let _carol = login(&mut server, CAROL, "CAROL1");
    sync(&mut server, &mut alice, T0);
    let event = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "x",
        T0,
    );

    // The server rewrites the sender of Alice's room key to Carol.
    let mut changes = server.sync(BOB, "BOB1", T0);
    assert_eq!(changes.to_device_events.len(), 1);
    changes.to_device_events[0]["sender"] = json!(CAROL);
    bob.receive_sync_changes(changes);
    assert!(bob.take_events().iter().any(|e| matches!(
        e,
        CryptoEvent::UndecryptableToDevice { reason, .. } if reason.contains("sender")
    )));
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &event),
        Err(CryptoError::MissingRoomKey { .. })
    ));

    // A room key sent without Olm is never accepted.
    server.inject_to_device(
        BOB,
        "BOB1",
        json!({
            "type": "m.room_key",
            "sender": ALICE,
            "content": {"algorithm": MEGOLM_V1, "room_id": ROOM,
                        "session_id": session_id(&event), "session_key": "AAAA"},
        }),
    );
    sync(&mut server, &mut bob, T0);
    assert!(bob
        .take_events()
        .iter()
        .any(|e| matches!(e, CryptoEvent::RoomKeyRejected { .. })));
}

#[test]
fn a_wedged_olm_session_is_replaced_and_a_dummy_sent() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    sync(&mut server, &mut bob, T0);
    let _ = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "one",
        T0,
    );

    // Bob receives Alice's Olm message twice: the second copy cannot be
    // decrypted, which is what a wedged session looks like.
    let inbox = server.peek_to_device(BOB, "BOB1");
    assert_eq!(inbox.len(), 1);
    let duplicate = inbox[0].clone();
    sync(&mut server, &mut bob, T0);
    bob.take_events();
    let otks_before = server.one_time_key_count(ALICE, "ALICE1");
    server.inject_to_device(BOB, "BOB1", duplicate.clone());
    sync(&mut server, &mut bob, T0 + 1);
    let events = bob.take_events();
    assert!(events.iter().any(|e| matches!(
        e,
        CryptoEvent::WedgedSessionRecovery { user_id, device_id } if user_id == ALICE && device_id == "ALICE1"
    )));
    assert_eq!(
        server.one_time_key_count(ALICE, "ALICE1"),
        otks_before - 1,
        "Bob claimed one of Alice's keys for a new session"
    );
    // The m.dummy reached Alice over the new session and decrypted.
    let inbox = server.peek_to_device(ALICE, "ALICE1");
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        inbox[0]["content"]["ciphertext"][alice.identity_keys().curve25519.to_base64()]["type"],
        0
    );
    let for_app = sync(&mut server, &mut alice, T0 + 1);
    assert!(
        for_app.is_empty(),
        "m.dummy is not handed to the application"
    );
    assert!(!alice
        .take_events()
        .iter()
        .any(|e| matches!(e, CryptoEvent::UndecryptableToDevice { .. })));

    // Recovery is rate limited: another failure within the hour does not
    // claim another key.
    let otks_topped_up = server.one_time_key_count(ALICE, "ALICE1");
    server.inject_to_device(BOB, "BOB1", duplicate);
    sync(&mut server, &mut bob, T0 + 2);
    assert!(!bob
        .take_events()
        .iter()
        .any(|e| matches!(e, CryptoEvent::WedgedSessionRecovery { .. })));
    assert_eq!(server.one_time_key_count(ALICE, "ALICE1"), otks_topped_up);

    // Both sides still talk: a new room's key reaches Bob.
    let room2 = "!two:cloister.test";
    let event = send_text(
        &mut server,
        &mut alice,
        room2,
        &[ALICE, BOB],
        settings(),
        "after",
        T0 + 3,
    );
    sync(&mut server, &mut bob, T0 + 3);
    assert_eq!(body_of(&mut bob, room2, &event), "after");
}

#[test]
fn one_time_keys_are_replenished_and_a_used_fallback_key_replaced() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    assert_eq!(server.one_time_key_count(BOB, "BOB1"), 50);
    sync(&mut server, &mut alice, T0);
    let _ = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "x",
        T0,
    );
    assert_eq!(server.one_time_key_count(BOB, "BOB1"), 49);
    sync(&mut server, &mut bob, T0);
    assert_eq!(server.one_time_key_count(BOB, "BOB1"), 50);

    server.exhaust_keys(BOB, "BOB1");
    let changes = server.sync(BOB, "BOB1", T0);
    assert_eq!(changes.unused_fallback_key_types, Some(vec![]));
    bob.receive_sync_changes(changes);
    let requests = bob.outgoing_requests().unwrap();
    let upload = requests
        .iter()
        .find_map(|r| match &r.body {
            RequestBody::KeysUpload(u) => Some(u),
            _ => None,
        })
        .expect("an upload");
    assert_eq!(upload.one_time_keys.len(), 50);
    assert_eq!(upload.fallback_keys.len(), 1);
    assert!(upload.device_keys.is_none());
    drive(&mut server, &mut bob);
    assert_eq!(server.one_time_key_count(BOB, "BOB1"), 50);
}

#[test]
fn forwarded_keys_move_only_between_own_verified_devices() {
    let mut server = FakeHomeserver::new();
    let mut alice1 = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice1, T0);
    let old = send_text(
        &mut server,
        &mut alice1,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "old news",
        T0,
    );
    sync(&mut server, &mut bob, T0);

    let mut alice2 = login(&mut server, ALICE, "ALICE2");
    sync(&mut server, &mut alice1, T0 + 1);
    sync(&mut server, &mut alice2, T0 + 1);
    assert!(matches!(
        alice2.decrypt_room_event(ROOM, &old),
        Err(CryptoError::MissingRoomKey { .. })
    ));

    // Another user asking for Alice's key is ignored.
    bob.request_room_key(ROOM, &old).unwrap();
    drive(&mut server, &mut bob);
    // (Bob's request goes to his own devices; deliver a copy to Alice too.)
    let mut request = json!({"type": "m.room_key_request", "sender": BOB, "content": {
        "action": "request", "requesting_device_id": "BOB1", "request_id": "r1",
        "body": {"algorithm": MEGOLM_V1, "room_id": ROOM, "session_id": session_id(&old)}}});
    server.inject_to_device(ALICE, "ALICE1", request.clone());
    sync(&mut server, &mut alice1, T0 + 2);
    assert!(
        server
            .peek_to_device(BOB, "BOB1")
            .iter()
            .all(|e| e["type"] != "m.room.encrypted"),
        "nothing forwarded to Bob"
    );
    assert!(alice1.take_events().iter().any(|e| matches!(
        e,
        CryptoEvent::KeyRequestIgnored { user_id, .. } if user_id == BOB
    )));

    // Alice's new device asks; the old one has not verified it yet.
    alice2.request_room_key(ROOM, &old).unwrap();
    drive(&mut server, &mut alice2);
    sync(&mut server, &mut alice1, T0 + 3);
    assert!(alice1.take_events().iter().any(|e| matches!(
        e,
        CryptoEvent::KeyRequestIgnored { device_id, .. } if device_id == "ALICE2"
    )));
    sync(&mut server, &mut alice2, T0 + 3);
    assert!(alice2.decrypt_room_event(ROOM, &old).is_err());

    // Verified on one side only: ALICE1 forwards, ALICE2 refuses the key
    // because it has not verified ALICE1.
    assert!(alice1.set_local_trust(ALICE, "ALICE2", LocalTrust::Verified));
    alice2.request_room_key(ROOM, &old).unwrap();
    drive(&mut server, &mut alice2);
    sync(&mut server, &mut alice1, T0 + 4);
    sync(&mut server, &mut alice2, T0 + 4);
    assert!(alice2.take_events().iter().any(|e| matches!(
        e,
        CryptoEvent::RoomKeyRejected { reason, .. } if reason.contains("verified")
    )));
    assert!(alice2.decrypt_room_event(ROOM, &old).is_err());

    // Verified both ways: the key arrives and the old message decrypts,
    // flagged as coming from a forwarded key.
    assert!(alice2.set_local_trust(ALICE, "ALICE1", LocalTrust::Verified));
    alice2.request_room_key(ROOM, &old).unwrap();
    drive(&mut server, &mut alice2);
    sync(&mut server, &mut alice1, T0 + 5);
    sync(&mut server, &mut alice2, T0 + 5);
    let decrypted = alice2.decrypt_room_event(ROOM, &old).unwrap();
    assert_eq!(decrypted.event["content"]["body"], "old news");
    assert_eq!(
        decrypted.verification,
        VerificationState::Unverified(UnverifiedReason::ForwardedKey)
    );

    // An unsolicited forwarded key would be refused even from ALICE1: the
    // request is settled, so a second answer finds no open request.
    request["sender"] = json!(ALICE);
    request["content"]["requesting_device_id"] = json!("ALICE2");
    server.inject_to_device(ALICE, "ALICE1", request);
    sync(&mut server, &mut alice1, T0 + 6);
    sync(&mut server, &mut alice2, T0 + 6);
    assert!(alice2.take_events().iter().any(|e| matches!(
        e,
        CryptoEvent::RoomKeyRejected { reason, .. } if reason.contains("not requested")
    )));
}

#[test]
fn a_one_time_key_with_a_bad_signature_is_not_used() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    let mallory = OlmMachine::new(CAROL, "MALLORY").unwrap();
    server.tamper_one_time_keys(BOB, "BOB1", &mallory.identity_keys().curve25519.to_base64());
    sync(&mut server, &mut alice, T0);
    let event = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "x",
        T0,
    );
    assert!(alice.take_events().iter().any(|e| matches!(
        e,
        CryptoEvent::OlmSessionUnavailable { device_id, reason, .. }
            if device_id == "BOB1" && reason.contains("signature")
    )));
    assert!(
        server.peek_to_device(BOB, "BOB1").is_empty(),
        "no key sent to Bob"
    );
    sync(&mut server, &mut bob, T0);
    assert!(bob.decrypt_room_event(ROOM, &event).is_err());
}
