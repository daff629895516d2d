//! Interactive SAS verification between two devices through the crypto
//! core's public API, with the test double for the server's to-device and
//! key endpoints: both sides show the same emoji and end verified; a
//! mismatch, a key swapped in transit, silence and a stranger's messages
//! all end (or leave) the flow without trusting anything. The same in a
//! DM, as Element verifies other people: room events instead of to-device
//! messages.
//!
//! Cross-signing signatures after a verification need the server's key
//! storage and are tested against the real server in
//! `tests/tests/sdk_verification.rs`.

mod support;

use cloister_sdk::crypto::{DeviceTrust, OlmMachine, VerificationPhase};
use serde_json::{json, Value};
use support::{drive, login, sync, FakeHomeserver, ALICE, BOB, CAROL, ROOM, T0};

const MINUTE_MS: u64 = 60 * 1000;

fn pair(server: &mut FakeHomeserver) -> (OlmMachine, OlmMachine) {
    let mut alice = login(server, ALICE, "ALICE1");
    let mut bob = login(server, BOB, "BOB1");
    alice.update_tracked_users(&[BOB]).unwrap();
    bob.update_tracked_users(&[ALICE]).unwrap();
    sync(server, &mut alice, T0);
    sync(server, &mut bob, T0);
    (alice, bob)
}

/// Let both devices exchange what they have until nothing moves.
fn settle(server: &mut FakeHomeserver, a: &mut OlmMachine, b: &mut OlmMachine, now: u64) {
    for _ in 0..6 {
        drive(server, a);
        drive(server, b);
        sync(server, a, now);
        sync(server, b, now);
    }
}

fn phase(machine: &OlmMachine, flow: &str) -> VerificationPhase {
    machine.verification(flow).expect("a flow").phase
}

fn sas_of(machine: &OlmMachine, flow: &str) -> (Vec<&'static str>, (u16, u16, u16)) {
    match phase(machine, flow) {
        VerificationPhase::ShowSas { emoji, decimals } => {
            (emoji.iter().map(|e| e.symbol).collect(), decimals)
        }
        other => panic!("expected emoji, got {other:?}"),
    }
}

/// Request, accept and start SAS; returns the flow id once both show emoji.
fn until_emoji(
    server: &mut FakeHomeserver,
    alice: &mut OlmMachine,
    bob: &mut OlmMachine,
) -> String {
    let flow = alice.request_verification(BOB, &[], T0).unwrap();
    settle(server, alice, bob, T0);
    let incoming = bob.verification(&flow).expect("Bob sees the request");
    assert_eq!(incoming.other_user, ALICE);
    assert_eq!(incoming.other_device.as_deref(), Some("ALICE1"));
    assert!(!incoming.we_requested);
    assert_eq!(incoming.phase, VerificationPhase::Requested);
    // Starting before both are ready is refused without ending the flow.
    assert!(alice.start_sas(&flow).is_err());
    bob.accept_verification(&flow).unwrap();
    settle(server, alice, bob, T0);
    assert_eq!(phase(alice, &flow), VerificationPhase::Ready);
    alice.start_sas(&flow).unwrap();
    settle(server, alice, bob, T0);
    flow
}

#[test]
fn both_sides_show_the_same_emoji_and_end_verified() {
    let mut server = FakeHomeserver::new();
    let (mut alice, mut bob) = pair(&mut server);
    assert_eq!(
        alice.device_trust(BOB, "BOB1"),
        Some(DeviceTrust::Unverified)
    );
    let flow = until_emoji(&mut server, &mut alice, &mut bob);
    let (emoji, decimals) = sas_of(&alice, &flow);
    assert_eq!(sas_of(&bob, &flow), (emoji.clone(), decimals));
    assert_eq!(emoji.len(), 7);
    for n in [decimals.0, decimals.1, decimals.2] {
        assert!((1000..=9191).contains(&n), "{n}");
    }

    // Alice confirms first; Bob's MAC arrives after.
    alice.confirm_sas(&flow).unwrap();
    settle(&mut server, &mut alice, &mut bob, T0);
    assert_eq!(phase(&alice, &flow), VerificationPhase::Confirmed);
    assert_eq!(
        alice.device_trust(BOB, "BOB1"),
        Some(DeviceTrust::Unverified)
    );
    bob.confirm_sas(&flow).unwrap();
    settle(&mut server, &mut alice, &mut bob, T0);
    assert_eq!(phase(&alice, &flow), VerificationPhase::Done);
    assert_eq!(phase(&bob, &flow), VerificationPhase::Done);
    assert_eq!(alice.device_trust(BOB, "BOB1"), Some(DeviceTrust::Verified));
    assert_eq!(
        bob.device_trust(ALICE, "ALICE1"),
        Some(DeviceTrust::Verified)
    );
    // A finished flow takes no more steps.
    assert!(alice.confirm_sas(&flow).is_err());
}

#[test]
fn a_mismatch_cancels_on_both_sides_and_trusts_nothing() {
    let mut server = FakeHomeserver::new();
    let (mut alice, mut bob) = pair(&mut server);
    let flow = until_emoji(&mut server, &mut alice, &mut bob);
    alice.confirm_sas(&flow).unwrap();
    bob.sas_mismatch(&flow).unwrap();
    settle(&mut server, &mut alice, &mut bob, T0);
    let cancelled = |by_us| VerificationPhase::Cancelled {
        code: "m.mismatched_sas".into(),
        reason: "the short authentication strings differ".into(),
        by_us,
    };
    assert_eq!(phase(&bob, &flow), cancelled(true));
    assert_eq!(phase(&alice, &flow), cancelled(false));
    assert_eq!(
        alice.device_trust(BOB, "BOB1"),
        Some(DeviceTrust::Unverified)
    );
    assert_eq!(
        bob.device_trust(ALICE, "ALICE1"),
        Some(DeviceTrust::Unverified)
    );
}

/// Take what the server holds for `machine`, let `edit` change it, and
/// hand it over as that sync's to-device events.
fn sync_edited(server: &mut FakeHomeserver, machine: &mut OlmMachine, edit: impl Fn(&mut Value)) {
    let mut changes = server.sync(machine.user_id(), machine.device_id(), T0);
    changes.to_device_events.iter_mut().for_each(edit);
    machine.receive_sync_changes(changes);
    drive(server, machine);
}

#[test]
fn a_key_swapped_in_transit_breaks_the_commitment() {
    let mut server = FakeHomeserver::new();
    let (mut alice, mut bob) = pair(&mut server);
    let flow = alice.request_verification(BOB, &[], T0).unwrap();
    settle(&mut server, &mut alice, &mut bob, T0);
    bob.accept_verification(&flow).unwrap();
    settle(&mut server, &mut alice, &mut bob, T0);
    alice.start_sas(&flow).unwrap();
    drive(&mut server, &mut alice);
    sync(&mut server, &mut bob, T0); // Bob accepts with a commitment.
    sync(&mut server, &mut alice, T0); // Alice sends her key.
    sync(&mut server, &mut bob, T0); // Bob sends his.
                                     // Someone in the middle replaces Bob's key with their own.
    let intruder = vodozemac::sas::Sas::new().public_key().to_base64();
    sync_edited(&mut server, &mut alice, |event| {
        if event["type"] == "m.key.verification.key" {
            event["content"]["key"] = json!(intruder);
        }
    });
    match phase(&alice, &flow) {
        VerificationPhase::Cancelled { code, by_us, .. } => {
            assert_eq!(code, "m.mismatched_commitment");
            assert!(by_us);
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    settle(&mut server, &mut alice, &mut bob, T0);
    assert!(matches!(
        phase(&bob, &flow),
        VerificationPhase::Cancelled { by_us: false, .. }
    ));
}

#[test]
fn a_forged_mac_is_a_key_mismatch() {
    let mut server = FakeHomeserver::new();
    let (mut alice, mut bob) = pair(&mut server);
    let flow = until_emoji(&mut server, &mut alice, &mut bob);
    bob.confirm_sas(&flow).unwrap();
    drive(&mut server, &mut bob);
    alice.confirm_sas(&flow).unwrap();
    sync_edited(&mut server, &mut alice, |event| {
        if event["type"] == "m.key.verification.mac" {
            let macs = event["content"]["mac"].as_object_mut().unwrap();
            for tag in macs.values_mut() {
                *tag = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
            }
        }
    });
    assert!(matches!(
        phase(&alice, &flow),
        VerificationPhase::Cancelled { ref code, .. } if code == "m.key_mismatch"
    ));
    assert_eq!(
        alice.device_trust(BOB, "BOB1"),
        Some(DeviceTrust::Unverified)
    );
}

#[test]
fn silence_times_out_and_stale_or_foreign_messages_are_ignored() {
    let mut server = FakeHomeserver::new();
    let (mut alice, mut bob) = pair(&mut server);
    let flow = alice.request_verification(BOB, &[], T0).unwrap();
    settle(&mut server, &mut alice, &mut bob, T0);

    // Carol cannot cancel Alice and Bob's flow.
    let mut carol = login(&mut server, CAROL, "CAROL1");
    server.inject_to_device(
        BOB,
        "BOB1",
        json!({"type": "m.key.verification.cancel", "sender": CAROL,
               "content": {"transaction_id": flow, "code": "m.user", "reason": "x"}}),
    );
    sync(&mut server, &mut bob, T0);
    assert_eq!(phase(&bob, &flow), VerificationPhase::Requested);

    // Nothing for eleven minutes: both ends give up, Alice says so.
    sync(&mut server, &mut alice, T0 + 11 * MINUTE_MS);
    assert!(matches!(
        phase(&alice, &flow),
        VerificationPhase::Cancelled { ref code, by_us: true, .. } if code == "m.timeout"
    ));
    assert!(alice.accept_verification(&flow).is_err());
    // A request that was sent long ago is not shown at all.
    let stale = carol.request_verification(BOB, &[], T0).unwrap_err();
    assert!(stale.to_string().contains("no known device"), "{stale}");
    carol.update_tracked_users(&[BOB]).unwrap();
    sync(&mut server, &mut carol, T0);
    let old = carol.request_verification(BOB, &[], T0).unwrap();
    drive(&mut server, &mut carol);
    sync(&mut server, &mut bob, T0 + 11 * MINUTE_MS);
    assert!(bob.verification(&old).is_none());
    // Finished flows are forgotten after the same time.
    sync(&mut server, &mut alice, T0 + 30 * MINUTE_MS);
    assert!(alice.verification(&flow).is_none());
}

/// Send what both have and hand every room event to both (each sees its
/// own echo, as in a real timeline), until nothing moves.
fn settle_room(server: &mut FakeHomeserver, a: &mut OlmMachine, b: &mut OlmMachine) {
    for _ in 0..8 {
        drive(server, a);
        drive(server, b);
        for event in server.take_room_events() {
            a.receive_verification_room_event(ROOM, &event, T0);
            b.receive_verification_room_event(ROOM, &event, T0);
        }
    }
}

#[test]
fn in_a_dm_both_sides_show_the_same_emoji_and_end_verified() {
    let mut server = FakeHomeserver::new();
    let (mut alice, mut bob) = pair(&mut server);
    let provisional = alice.request_verification_in_room(ROOM, BOB, T0).unwrap();
    drive(&mut server, &mut alice);
    let flow = alice.verification_id(&provisional);
    assert!(
        flow.starts_with('$'),
        "named after the request event: {flow}"
    );
    let request = server.take_room_events();
    assert_eq!(
        request[0]["content"]["msgtype"],
        "m.key.verification.request"
    );
    assert_eq!(request[0]["content"]["to"], BOB);
    for event in &request {
        alice.receive_verification_room_event(ROOM, event, T0);
        bob.receive_verification_room_event(ROOM, event, T0);
    }
    let incoming = bob.verification(&flow).expect("Bob sees the request");
    assert_eq!(incoming.room_id.as_deref(), Some(ROOM));
    assert!(!alice.verification(&flow).unwrap().phase.is_final());
    bob.accept_verification(&flow).unwrap();
    settle_room(&mut server, &mut alice, &mut bob);
    assert_eq!(phase(&alice, &flow), VerificationPhase::Ready);
    alice.start_sas(&flow).unwrap();
    settle_room(&mut server, &mut alice, &mut bob);
    assert_eq!(sas_of(&alice, &flow), sas_of(&bob, &flow));
    alice.confirm_sas(&flow).unwrap();
    bob.confirm_sas(&flow).unwrap();
    settle_room(&mut server, &mut alice, &mut bob);
    assert_eq!(phase(&alice, &flow), VerificationPhase::Done);
    assert_eq!(phase(&bob, &flow), VerificationPhase::Done);
    assert_eq!(alice.device_trust(BOB, "BOB1"), Some(DeviceTrust::Verified));
    assert_eq!(
        bob.device_trust(ALICE, "ALICE1"),
        Some(DeviceTrust::Verified)
    );
    // No to-device message was used, and a stranger's event for the flow
    // in the room is ignored.
    let carol_cancel = json!({
        "type": "m.key.verification.cancel", "sender": CAROL, "event_id": "$x",
        "content": {"code": "m.user", "reason": "x",
                    "m.relates_to": {"rel_type": "m.reference", "event_id": flow}},
    });
    bob.receive_verification_room_event(ROOM, &carol_cancel, T0);
    assert_eq!(phase(&bob, &flow), VerificationPhase::Done);
}
