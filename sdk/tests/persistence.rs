//! The crypto core's state survives being exported as records and rebuilt:
//! keys, Olm and Megolm sessions (at their ratchet positions), the replay
//! log, device lists and queued requests. Only changed records are handed
//! out again.

mod support;

use std::collections::BTreeMap;

use cloister_sdk::crypto::{
    CryptoError, CryptoRecord, OlmMachine, RequestBody, RECORD_ACCOUNT, RECORD_INBOUND,
    RECORD_OUTBOUND, RECORD_STATE,
};
use support::{
    body_of, login, send_text, session_id, settings, share, sync, FakeHomeserver, ALICE, BOB,
    CAROL, ROOM, T0,
};
use zeroize::Zeroizing;

/// A stand-in for a store: the latest data of every record.
#[derive(Default)]
struct Records(BTreeMap<(String, String), Vec<u8>>);

impl Records {
    /// Save what changed; returns the kinds written.
    fn save(&mut self, machine: &mut OlmMachine) -> Vec<String> {
        let changes = machine.pending_changes().unwrap();
        let mut kinds = Vec::new();
        for record in changes.upserts {
            kinds.push(record.kind.clone());
            self.0
                .insert((record.kind, record.id), record.data.to_vec());
        }
        for key in changes.deletes {
            kinds.push(format!("-{}", key.0));
            self.0.remove(&key);
        }
        machine.mark_changes_saved();
        kinds
    }

    fn load(&self) -> OlmMachine {
        OlmMachine::from_records(self.0.iter().map(|((kind, id), data)| CryptoRecord {
            kind: kind.clone(),
            id: id.clone(),
            data: Zeroizing::new(data.clone()),
        }))
        .unwrap()
    }
}

#[test]
fn a_reloaded_machine_decrypts_old_messages_and_continues_its_sessions() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let members = [ALICE, BOB];
    let first = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "one",
        T0,
    );
    sync(&mut server, &mut bob, T0);
    assert_eq!(body_of(&mut bob, ROOM, &first), "one");

    let (mut alice_store, mut bob_store) = (Records::default(), Records::default());
    alice_store.save(&mut alice);
    bob_store.save(&mut bob);
    let alice_keys = alice.identity_keys();
    drop(alice);
    drop(bob);

    let mut alice = alice_store.load();
    let mut bob = bob_store.load();
    assert_eq!(alice.identity_keys().ed25519, alice_keys.ed25519);
    assert_eq!(alice.identity_keys().curve25519, alice_keys.curve25519);
    assert_eq!(bob.user_id(), BOB);
    assert_eq!(bob.device_id(), "BOB1");
    assert_eq!(
        bob.get_device(ALICE, "ALICE1").unwrap().ed25519,
        alice_keys.ed25519,
        "device lists survive"
    );

    // History still decrypts, and the replay log survived: the same
    // ciphertext under another event id is refused.
    assert_eq!(body_of(&mut bob, ROOM, &first), "one");
    let mut replay = first.clone();
    replay["event_id"] = serde_json::json!("$replayed");
    assert!(matches!(
        bob.decrypt_room_event(ROOM, &replay),
        Err(CryptoError::Replay { .. })
    ));

    // Alice continues the same Megolm session at the next index, without
    // sharing again.
    let otks_before = server.one_time_key_count(BOB, "BOB1");
    let second = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "two",
        T0,
    );
    assert_eq!(session_id(&second), session_id(&first));
    assert!(
        server.peek_to_device(BOB, "BOB1").is_empty(),
        "no key re-shared"
    );
    let decrypted = bob.decrypt_room_event(ROOM, &second).unwrap();
    assert_eq!(decrypted.message_index, 1);
    assert_eq!(decrypted.event["content"]["body"], "two");

    // Bob's Olm session with Alice continues too: his reply's key goes over
    // it, and no one-time key of Alice's is claimed.
    let alice_otks = server.one_time_key_count(ALICE, "ALICE1");
    let reply = send_text(
        &mut server,
        &mut bob,
        ROOM,
        &members,
        settings(),
        "three",
        T0,
    );
    assert_eq!(server.one_time_key_count(ALICE, "ALICE1"), alice_otks);
    sync(&mut server, &mut alice, T0);
    assert_eq!(body_of(&mut alice, ROOM, &reply), "three");
    assert_eq!(server.one_time_key_count(BOB, "BOB1"), otks_before);
}

#[test]
fn only_changed_records_are_saved_again() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    let mut store = Records::default();
    let kinds = store.save(&mut bob);
    assert!(kinds.contains(&RECORD_ACCOUNT.to_owned()));
    assert!(kinds.contains(&RECORD_STATE.to_owned()));
    assert!(store.save(&mut bob).is_empty(), "nothing changed");

    let members = [ALICE, BOB];
    let event = send_text(&mut server, &mut alice, ROOM, &members, settings(), "x", T0);
    sync(&mut server, &mut bob, T0);
    let kinds = store.save(&mut bob);
    assert!(kinds.contains(&RECORD_INBOUND.to_owned()), "{kinds:?}");
    body_of(&mut bob, ROOM, &event);
    assert_eq!(
        store.save(&mut bob),
        [RECORD_INBOUND],
        "the replay log grew"
    );
    body_of(&mut bob, ROOM, &event);
    assert!(
        store.save(&mut bob).is_empty(),
        "decrypting again changes nothing"
    );

    // A changes list that was not confirmed as saved is handed out again.
    let mut alice_store = Records::default();
    alice_store.save(&mut alice);
    send_text(&mut server, &mut alice, ROOM, &members, settings(), "y", T0);
    let unsaved = alice.pending_changes().unwrap();
    assert!(unsaved.upserts.iter().any(|r| r.kind == RECORD_OUTBOUND));
    let again = alice.pending_changes().unwrap();
    assert!(again.upserts.iter().any(|r| r.kind == RECORD_OUTBOUND));

    // A rotated-away outbound session is deleted.
    alice.mark_changes_saved();
    assert!(alice.invalidate_group_session(ROOM));
    let changes = alice.pending_changes().unwrap();
    assert_eq!(
        changes.deletes,
        [(RECORD_OUTBOUND.to_owned(), ROOM.to_owned())]
    );
}

#[test]
fn queued_requests_survive_a_restart() {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut carol = login(&mut server, CAROL, "CAROL1");
    sync(&mut server, &mut alice, T0);
    // Run the share until only the room-key to-device message is left, and
    // "crash" before it is sent.
    let members = [ALICE, CAROL];
    let mut pending = Vec::new();
    for _ in 0..5 {
        pending = alice
            .share_room_key(ROOM, &members, settings(), T0)
            .unwrap();
        if pending
            .iter()
            .all(|r| matches!(r.body, RequestBody::ToDevice(_)))
        {
            break;
        }
        for request in &pending {
            let response = server.handle(ALICE, "ALICE1", request);
            alice
                .mark_request_as_sent(&request.request_id, &response)
                .unwrap();
        }
    }
    assert_eq!(pending.len(), 1);
    let mut store = Records::default();
    store.save(&mut alice);
    drop(alice);

    let mut alice = store.load();
    let again = alice.outgoing_requests().unwrap();
    assert!(again.contains(&pending[0]), "the same request, same txn id");
    share(&mut server, &mut alice, ROOM, &members, settings(), T0);
    let event = send_text(
        &mut server,
        &mut alice,
        ROOM,
        &members,
        settings(),
        "hi",
        T0,
    );
    sync(&mut server, &mut carol, T0);
    assert_eq!(body_of(&mut carol, ROOM, &event), "hi");
}
