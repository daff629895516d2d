//! Megolm room keys with two and three simulated devices talking through
//! the in-memory test double in `support` (which stands in for the
//! homeserver): sharing, rotation, membership and device changes, replay.

mod support;

use cloister_sdk::crypto::{
    CryptoError, CryptoEvent, EncryptionSettings, LocalTrust, RequestBody, UnverifiedReason,
    VerificationState, MEGOLM_V1,
};
use serde_json::json;
use support::{
    body_of, login, send_text, session_id, settings, sync, FakeHomeserver, ALICE, BOB, CAROL,
    HOUR_MS, ROOM, T0,
};

#[test]
fn first_message_decrypts_for_the_other_device_and_the_sender() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);

    let event = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "hello bob",
        T0,
    );
    assert_eq!(event["content"]["algorithm"], MEGOLM_V1);
    assert!(!event.to_string().contains("hello bob"), "plaintext leaked");

    // Before Bob's sync he has no key for this session.
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &event),
        Err(CryptoError::MissingRoomKey { .. })
    ));
    sync(&mut server, &mut bob, T0);
    let decrypted = bob.decrypt_room_event(ROOM, &event).unwrap();
    assert_eq!(decrypted.event["type"], "m.room.message");
    assert_eq!(decrypted.event["content"]["body"], "hello bob");
    assert_eq!(decrypted.event["event_id"], event["event_id"]);
    assert_eq!(decrypted.sender, ALICE);
    let device = decrypted
        .sender_device
        .expect("Alice's device is known to Bob");
    assert_eq!(device.device_id, "ALICE1");
    assert_eq!(device.ed25519, alice.identity_keys().ed25519);
    assert_eq!(
        decrypted.verification,
        VerificationState::Unverified(UnverifiedReason::DeviceNotVerified)
    );
    assert!(bob
        .take_events()
        .iter()
        .any(|e| matches!(e, CryptoEvent::RoomKeyReceived { sender, forwarded: false, .. } if sender == ALICE)));

    // Once Bob verifies the device the same event shows as verified.
    assert!(bob.set_local_trust(ALICE, "ALICE1", LocalTrust::Verified));
    let again = bob.decrypt_room_event(ROOM, &event).unwrap();
    assert_eq!(again.verification, VerificationState::Verified);

    // The sender can read its own message.
    assert_eq!(body_of(&mut alice, ROOM, &event), "hello bob");

    // Bob answers in the same room over his own session.
    let reply = send_text(
        &mut server,
        &mut bob,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "hi alice",
        T0,
    );
    sync(&mut server, &mut alice, T0);
    assert_eq!(body_of(&mut alice, ROOM, &reply), "hi alice");
    assert_ne!(session_id(&reply), session_id(&event));
}

#[test]
fn encrypting_before_the_key_is_shared_is_an_error() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let _bob = login(&mut server, BOB, "BOB1");
    let content = json!({"msgtype": "m.text", "body": "x"});
    assert!(matches!(
        alice.encrypt_room_event(ROOM, "m.room.message", &content, T0),
        Err(CryptoError::RoomKeyNotShared { .. })
    ));
    // The key's to-device messages were produced but not yet sent.
    let mut requests = Vec::new();
    for _ in 0..5 {
        requests = alice
            .share_room_key(ROOM, &[ALICE, BOB], settings(), T0)
            .unwrap();
        if requests
            .iter()
            .all(|r| matches!(r.body, RequestBody::ToDevice(_)))
        {
            break;
        }
        for request in &requests {
            let response = server.handle(ALICE, "ALICE1", request);
            alice
                .mark_request_as_sent(&request.request_id, &response)
                .unwrap();
        }
    }
    assert_eq!(requests.len(), 1);
    assert!(matches!(
        alice.encrypt_room_event(ROOM, "m.room.message", &content, T0),
        Err(CryptoError::RoomKeyNotShared { .. })
    ));
    let response = server.handle(ALICE, "ALICE1", &requests[0]);
    alice
        .mark_request_as_sent(&requests[0].request_id, &response)
        .unwrap();
    alice
        .encrypt_room_event(ROOM, "m.room.message", &content, T0)
        .unwrap();
}

#[test]
fn session_rotates_after_the_rooms_message_limit_and_old_messages_still_decrypt() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let settings = EncryptionSettings::from_room_encryption_content(&json!({
        "algorithm": MEGOLM_V1, "rotation_period_msgs": 3
    }));

    let members = [ALICE, BOB];
    let mut events = Vec::new();
    for i in 0..7 {
        events.push(send_text(
            &mut server,
            &mut alice,
            ROOM,
            &members,
            settings,
            &format!("m{i}"),
            T0,
        ));
    }
    let ids: Vec<String> = events.iter().map(session_id).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_ne!(ids[2], ids[3], "no rotation after 3 messages");
    assert_eq!(ids[3], ids[5]);
    assert_ne!(ids[5], ids[6]);

    // Without a new share the expired session is not used.
    let content = json!({"msgtype": "m.text", "body": "x"});
    let _ = send_text(&mut server, &mut alice, ROOM, &members, settings, "m7", T0);
    let _ = send_text(&mut server, &mut alice, ROOM, &members, settings, "m8", T0);
    assert!(matches!(
        alice.encrypt_room_event(ROOM, "m.room.message", &content, T0),
        Err(CryptoError::RoomKeyNotShared { .. })
    ));

    sync(&mut server, &mut bob, T0);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(body_of(&mut bob, ROOM, event), format!("m{i}"));
    }
}

#[test]
fn session_rotates_after_the_rooms_time_limit() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let settings = EncryptionSettings::from_room_encryption_content(&json!({
        "rotation_period_ms": 2 * HOUR_MS
    }));
    let members = [ALICE, BOB];
    let a = send_text(&mut server, &mut alice, ROOM, &members, settings, "a", T0);
    let b = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings,
        "b",
        T0 + 2 * HOUR_MS - 1,
    );
    let c = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings,
        "c",
        T0 + 2 * HOUR_MS,
    );
    assert_eq!(session_id(&a), session_id(&b));
    assert_ne!(session_id(&b), session_id(&c));
    sync(&mut server, &mut bob, T0 + 2 * HOUR_MS);
    assert_eq!(body_of(&mut bob, ROOM, &a), "a");
    assert_eq!(body_of(&mut bob, ROOM, &c), "c");
}

#[test]
fn a_member_who_leaves_cannot_decrypt_anything_sent_after() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    let mut carol = login(&mut server, CAROL, "CAROL1");
    sync(&mut server, &mut alice, T0);

    let before = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB, CAROL],
        settings(),
        "all three",
        T0,
    );
    sync(&mut server, &mut bob, T0);
    sync(&mut server, &mut carol, T0);
    assert_eq!(body_of(&mut bob, ROOM, &before), "all three");
    assert_eq!(body_of(&mut carol, ROOM, &before), "all three");

    // Carol leaves: the next message must use a key she never got.
    let after = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "just us",
        T0 + 1,
    );
    assert_ne!(session_id(&before), session_id(&after));
    sync(&mut server, &mut bob, T0 + 1);
    sync(&mut server, &mut carol, T0 + 1);
    assert_eq!(body_of(&mut bob, ROOM, &after), "just us");
    assert!(matches!(
        carol.decrypt_room_event(ROOM, &after),
        Err(CryptoError::MissingRoomKey { .. })
    ));
    // What she could read before, she still can.
    assert_eq!(body_of(&mut carol, ROOM, &before), "all three");

    // Bob's messages after Carol left are closed to her too.
    let from_bob = send_text(
        &mut server,
        &mut bob,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "bob here",
        T0 + 2,
    );
    sync(&mut server, &mut carol, T0 + 2);
    sync(&mut server, &mut alice, T0 + 2);
    assert!(carol.decrypt_room_event(ROOM, &from_bob).is_err());
    assert_eq!(body_of(&mut alice, ROOM, &from_bob), "bob here");
}

#[test]
fn a_device_added_later_reads_what_follows_but_not_what_came_before() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob1 = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let members = [ALICE, BOB];

    let early = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "early",
        T0,
    );
    let early2 = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "early 2",
        T0,
    );

    let mut bob2 = login(&mut server, BOB, "BOB2");
    // Alice learns of the new device from device_lists.changed.
    sync(&mut server, &mut alice, T0 + 1);
    let late = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "late",
        T0 + 1,
    );
    // A new device does not force a rotation: it gets the key from here on.
    assert_eq!(session_id(&early), session_id(&late));

    sync(&mut server, &mut bob2, T0 + 1);
    sync(&mut server, &mut bob1, T0 + 1);
    assert_eq!(body_of(&mut bob2, ROOM, &late), "late");
    for event in [&early, &early2] {
        match bob2.decrypt_room_event(ROOM, event) {
            Err(CryptoError::MegolmDecryption(_)) => {}
            other => panic!("the new device read an earlier message: {other:?}"),
        }
    }
    for (event, body) in [(&early, "early"), (&early2, "early 2"), (&late, "late")] {
        assert_eq!(body_of(&mut bob1, ROOM, event), body);
    }
}

#[test]
fn a_deleted_device_forces_a_new_session() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let _bob1 = login(&mut server, BOB, "BOB1");
    let bob2 = login(&mut server, BOB, "BOB2");
    sync(&mut server, &mut alice, T0);
    let members = [ALICE, BOB];
    let first = send_text(&mut server, &mut alice, ROOM, &members, settings(), "1", T0);

    let bob2_keys = bob2.device_keys().unwrap();
    server.delete_device(BOB, "BOB2");
    sync(&mut server, &mut alice, T0 + 1);
    assert!(alice
        .take_events()
        .iter()
        .any(|e| matches!(e, CryptoEvent::DeviceRemoved { device_id, .. } if device_id == "BOB2")));
    // Even if the device's keys reappear before Alice sends again, the
    // session it held is not used any more.
    server.replace_device_keys(BOB, "BOB2", bob2_keys);
    sync(&mut server, &mut alice, T0 + 1);
    assert!(alice.get_device(BOB, "BOB2").is_some());
    let second = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "2",
        T0 + 1,
    );
    assert_ne!(session_id(&first), session_id(&second));
}

#[test]
fn blocked_devices_get_no_keys_and_blocking_rotates() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob1 = login(&mut server, BOB, "BOB1");
    let mut bob2 = login(&mut server, BOB, "BOB2");
    sync(&mut server, &mut alice, T0);
    let members = [ALICE, BOB];
    let first = send_text(&mut server, &mut alice, ROOM, &members, settings(), "1", T0);
    assert!(alice.set_local_trust(BOB, "BOB2", LocalTrust::Blocked));
    let second = send_text(&mut server, &mut alice, ROOM, &members, settings(), "2", T0);
    assert_ne!(session_id(&first), session_id(&second));
    sync(&mut server, &mut bob1, T0);
    sync(&mut server, &mut bob2, T0);
    assert_eq!(body_of(&mut bob1, ROOM, &second), "2");
    assert_eq!(body_of(&mut bob2, ROOM, &first), "1");
    assert!(bob2.decrypt_room_event(ROOM, &second).is_err());
}

#[test]
fn replayed_or_reattributed_ciphertext_is_refused() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let event = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &[ALICE, BOB],
        settings(),
        "pay 10",
        T0,
    );
    sync(&mut server, &mut bob, T0);
    assert_eq!(body_of(&mut bob, ROOM, &event), "pay 10");
    // Decrypting the same event again (e.g. on a second timeline load) is fine.
    assert_eq!(body_of(&mut bob, ROOM, &event), "pay 10");

    let mut replay = event.clone();
    replay["event_id"] = json!("$replayed");
    match bob.decrypt_room_event(ROOM, &replay) {
        Err(CryptoError::Replay {
            index,
            first_event_id,
            ..
        }) => {
            assert_eq!(index, 0);
            assert_eq!(first_event_id, event["event_id"].as_str().unwrap());
        }
        other => panic!("replay accepted: {other:?}"),
    }

    // Attributing Alice's ciphertext to another sender is refused.
    let mut forged = event.clone();
    forged["sender"] = json!(BOB);
    match bob.decrypt_room_event(ROOM, &forged) {
        Err(CryptoError::SenderMismatch {
            event_sender,
            key_owner,
        }) => {
            assert_eq!((event_sender.as_str(), key_owner.as_str()), (BOB, ALICE));
        }
        other => panic!("forged sender accepted: {other:?}"),
    }

    // The same ciphertext moved into another room is refused as well.
    let other_room = "!other:cloister.test";
    assert!(bob.decrypt_room_event(other_room, &event).is_err());
}
