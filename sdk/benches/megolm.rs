//! Megolm through the SDK next to the same work done with raw vodozemac
//! calls, so the SDK's overhead shows as a ratio:
//!
//! - `encrypt`: one room message (`OlmMachine::encrypt_room_event` vs
//!   `GroupSession::encrypt` + base64);
//! - `decrypt`: one room event (`OlmMachine::decrypt_room_event` vs
//!   `InboundGroupSession::decrypt` + parsing the payload);
//! - `sync_1000`: a sync batch of 1,000 encrypted events, through the
//!   crypto core alone and through the client's whole sync processing
//!   (rooms, decryption, replay log, state serialization; no HTTP, no disk),
//!   vs 1,000 raw decryptions.
//!
//! Run: `cargo bench -p cloister-sdk --bench megolm`. Figures:
//! docs/performance.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;

use cloister_sdk::crypto::{CryptoRecord, EncryptionSettings, OlmMachine, RECORD_INBOUND};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use support::{login, share, sync, FakeHomeserver, ALICE, BOB, ROOM, T0};
use vodozemac::megolm::{GroupSession, InboundGroupSession, MegolmMessage, SessionConfig};
use zeroize::Zeroizing;

const BATCH: usize = 1000;

fn settings() -> EncryptionSettings {
    EncryptionSettings {
        rotation_period_msgs: 10_000,
        rotation_period_ms: 7 * 24 * 3_600_000,
    }
}

/// A text message whose encrypted payload is about 256 bytes.
fn content(i: usize) -> Value {
    json!({"msgtype": "m.text", "body": format!("{i:06} {}", "lorem ipsum dolor sit amet ".repeat(7))})
}

struct World {
    server: FakeHomeserver,
    alice: OlmMachine,
    bob: OlmMachine,
    /// Bob's state after he received the key, before decrypting anything.
    bob_records: Vec<(String, String, Vec<u8>)>,
    events: Vec<Value>,
}

fn world() -> World {
    let mut server = FakeHomeserver::new();
    let mut alice = login(&mut server, ALICE, "ALICE1");
    let mut bob = login(&mut server, BOB, "BOB1");
    sync(&mut server, &mut alice, T0);
    share(&mut server, &mut alice, ROOM, &[ALICE, BOB], settings(), T0);
    let events: Vec<Value> = (0..BATCH)
        .map(|i| {
            let content = alice
                .encrypt_room_event(ROOM, "m.room.message", &content(i), T0)
                .unwrap();
            json!({
                "type": "m.room.encrypted",
                "event_id": format!("$event{i}"),
                "sender": ALICE,
                "origin_server_ts": T0,
                "room_id": ROOM,
                "content": content,
            })
        })
        .collect();
    sync(&mut server, &mut bob, T0);
    let changes = bob.pending_changes().unwrap();
    assert!(changes.upserts.iter().any(|r| r.kind == RECORD_INBOUND));
    bob.mark_changes_saved();
    let mut bob_records: Vec<(String, String, Vec<u8>)> = changes
        .upserts
        .iter()
        .map(|r| (r.kind.clone(), r.id.clone(), r.data.to_vec()))
        .collect();
    bob_records.sort();
    World {
        server,
        alice,
        bob,
        bob_records,
        events,
    }
}

fn fresh_bob(records: &[(String, String, Vec<u8>)]) -> OlmMachine {
    OlmMachine::from_records(records.iter().map(|(kind, id, data)| CryptoRecord {
        kind: kind.clone(),
        id: id.clone(),
        data: Zeroizing::new(data.clone()),
    }))
    .unwrap()
}

/// A raw Megolm pair carrying the same payloads as the SDK's events.
fn raw_pair() -> (GroupSession, InboundGroupSession) {
    let outbound = GroupSession::new(SessionConfig::version_1());
    let inbound = InboundGroupSession::new(&outbound.session_key(), SessionConfig::version_1());
    (outbound, inbound)
}

fn payload(i: usize) -> String {
    json!({"type": "m.room.message", "content": content(i), "room_id": ROOM}).to_string()
}

fn encrypt(c: &mut Criterion) {
    let mut w = world();
    let mut group = c.benchmark_group("encrypt");
    group.throughput(Throughput::Elements(1));
    let (mut outbound, _) = raw_pair();
    let plaintext = payload(1);
    group.bench_function("vodozemac", |b| {
        b.iter(|| black_box(outbound.encrypt(black_box(&plaintext)).to_base64()))
    });
    let message = content(1);
    group.bench_function("sdk", |b| {
        b.iter(|| {
            let result =
                w.alice
                    .encrypt_room_event(ROOM, "m.room.message", black_box(&message), T0);
            match result {
                Ok(content) => black_box(content),
                // Every 10,000 messages the session rotates: share anew.
                Err(_) => {
                    share(
                        &mut w.server,
                        &mut w.alice,
                        ROOM,
                        &[ALICE, BOB],
                        settings(),
                        T0,
                    );
                    Value::Null
                }
            }
        })
    });
    group.finish();
}

fn decrypt(c: &mut Criterion) {
    let mut w = world();
    let mut group = c.benchmark_group("decrypt");
    group.throughput(Throughput::Elements(1));
    let (mut outbound, mut inbound) = raw_pair();
    let ciphertexts: Vec<String> = (0..BATCH)
        .map(|i| outbound.encrypt(payload(i)).to_base64())
        .collect();
    let mut i = 0;
    group.bench_function("vodozemac", |b| {
        b.iter(|| {
            i = (i + 1) % BATCH;
            let message = MegolmMessage::from_base64(&ciphertexts[i]).unwrap();
            let plain = inbound.decrypt(&message).unwrap();
            black_box(serde_json::from_slice::<Value>(&plain.plaintext).unwrap())
        })
    });
    let mut i = 0;
    group.bench_function("sdk", |b| {
        b.iter(|| {
            i = (i + 1) % BATCH;
            black_box(w.bob.decrypt_room_event(ROOM, &w.events[i]).unwrap())
        })
    });
    group.finish();
}

fn sync_batch(c: &mut Criterion) {
    let w = world();
    let mut group = c.benchmark_group("sync_1000");
    group.sample_size(20);
    group.throughput(Throughput::Elements(BATCH as u64));
    let (mut outbound, mut inbound) = raw_pair();
    let exported = inbound.export_at(0).unwrap();
    let raw_events: Vec<Value> = (0..BATCH)
        .map(|i| json!({"content": {"ciphertext": outbound.encrypt(payload(i)).to_base64()}}))
        .collect();
    group.bench_function("vodozemac", |b| {
        b.iter_batched(
            || InboundGroupSession::import(&exported, SessionConfig::version_1()),
            |mut inbound| {
                for event in &raw_events {
                    let ciphertext = event["content"]["ciphertext"].as_str().unwrap();
                    let message = MegolmMessage::from_base64(ciphertext).unwrap();
                    let plain = inbound.decrypt(&message).unwrap();
                    black_box(serde_json::from_slice::<Value>(&plain.plaintext).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("sdk_core", |b| {
        b.iter_batched(
            || fresh_bob(&w.bob_records),
            |mut bob| {
                for event in &w.events {
                    black_box(bob.decrypt_room_event(ROOM, event).unwrap());
                }
                bob
            },
            BatchSize::PerIteration,
        )
    });
    let sync_response = json!({
        "next_batch": "s2_0",
        "rooms": {"join": {ROOM: {"timeline": {"events": w.events, "limited": false}}}},
        "to_device": {"events": []},
        "device_lists": {"changed": [], "left": []},
        "device_one_time_keys_count": {"signed_curve25519": 50},
        "device_unused_fallback_key_types": ["signed_curve25519"],
    });
    group.bench_function("sdk_client_sync", |b| {
        b.iter_batched(
            || fresh_bob(&w.bob_records),
            |mut bob| {
                let decrypted =
                    cloister_sdk::client::process_sync_without_io(&mut bob, BOB, &sync_response);
                assert_eq!(decrypted, BATCH);
                bob
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    drop(w.bob);
}

criterion_group!(benches, encrypt, decrypt, sync_batch);
criterion_main!(benches);
