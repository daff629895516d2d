//! The audit log end to end: append, checkpoint, export, verify offline, and
//! each kind of tampering caught with its own failure.

use cloister_audit::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, CheckpointSigner};
use cloister_audit::entry::{Action, Actor, AuditEntry, Details, NewEntry, Pseudonymizer, Target};
use cloister_audit::export::{AuditExport, ExportError, ExportedCheckpoint};
use cloister_audit::log::{AuditLog, AuditStore, LogError, MemoryStore, StoreError};
use cloister_audit::merkle::ProofError;
use cloister_audit::note::NoteError;
use cloister_audit::verify::{
    verify_checkpoint_consistency, verify_export, verify_inclusion, Failure, ProofCheckError,
};

const ORIGIN: &str = "cloister.example/audit";

fn entry(i: u64, p: &Pseudonymizer) -> NewEntry {
    let actions = [
        Action::Login,
        Action::LoginFailed,
        Action::DeviceAdded,
        Action::AdminCall,
        Action::PurgeRun,
    ];
    let action = actions[(i % 5) as usize];
    let actor = if action == Action::PurgeRun {
        Actor::system()
    } else {
        p.actor(&format!("@user{}:example.org", i % 3))
    };
    let mut e = NewEntry::new(1_700_000_000_000 + i * 1000, actor, action)
        .details(Details::new().with("count", i).unwrap());
    if i.is_multiple_of(2) {
        e = e.target(Target::new(&format!("!room{i}:example.org")).unwrap());
    }
    e
}

/// 23 entries; checkpoints at sizes 5, 10, 15, 20; 3 entries unsigned.
fn build() -> (AuditLog<MemoryStore>, CheckpointSigner) {
    let signer = CheckpointSigner::generate(ORIGIN).unwrap();
    let p = Pseudonymizer::new([9; 32]);
    let mut log = AuditLog::open(ORIGIN, MemoryStore::new()).unwrap();
    for i in 0..23 {
        let a = log.append(entry(i, &p)).unwrap();
        assert_eq!(a.index, i);
        if (i + 1) % 5 == 0 && i < 20 {
            let c = log.checkpoint(&signer).unwrap();
            assert_eq!(c.checkpoint.size, i + 1);
        }
    }
    (log, signer)
}

fn export() -> (AuditExport, CheckpointSigner) {
    let (log, signer) = build();
    (log.export().unwrap(), signer)
}

fn failures(x: &AuditExport, s: &CheckpointSigner) -> Vec<Failure> {
    verify_export(x, &s.verifier()).failures
}

#[test]
fn untouched_export_verifies() {
    let (log, signer) = build();
    assert_eq!(log.size(), 23);
    let x = log.export().unwrap();
    let r = verify_export(&x, &signer.verifier());
    assert!(r.is_ok(), "{r}");
    assert_eq!(
        (r.entries, r.checkpoints, r.checkpoints_matching),
        (23, 4, 4)
    );
    assert_eq!(r.latest.as_ref().unwrap().size, 20);
    assert_eq!(r.latest.as_ref().unwrap().root, log.root_at(20).unwrap());
    assert_eq!(r.unsigned_entries, 3);
    assert!(r.to_string().contains("result: OK"));

    // Through JSON, as a DPO would receive it.
    let json = x.to_json();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["checkpoints", "entries", "format", "origin", "version"]
    );
    assert_eq!(v["format"], "cloister-audit-log");
    assert_eq!(v["version"], 1);
    let back = AuditExport::from_json(&json).unwrap();
    assert_eq!(back, x);
    assert!(verify_export(&back, &signer.verifier()).is_ok());
}

#[test]
fn changed_entry_is_detected() {
    let (mut x, s) = export();
    x.entries[7].ts += 1;
    assert_eq!(
        failures(&x, &s),
        vec![
            Failure::EntriesAltered {
                checkpoint: 1,
                since: 5,
                size: 10
            },
            Failure::EntriesAltered {
                checkpoint: 2,
                since: 5,
                size: 15
            },
            Failure::EntriesAltered {
                checkpoint: 3,
                since: 5,
                size: 20
            },
        ]
    );
    // Any field counts, including the details and the actor.
    let (mut x, s) = export();
    x.entries[17].details = Details::new().with("count", 999).unwrap();
    assert_eq!(
        failures(&x, &s),
        vec![Failure::EntriesAltered {
            checkpoint: 3,
            since: 15,
            size: 20
        }]
    );
    let (mut x, s) = export();
    x.entries[0].actor = Actor::system();
    assert_eq!(failures(&x, &s).len(), 4);
    // A change in the unsigned tail cannot be detected, and is reported as unsigned.
    let (mut x, s) = export();
    x.entries[21].ts += 1;
    let r = verify_export(&x, &s.verifier());
    assert!(r.is_ok());
    assert_eq!(r.unsigned_entries, 3);
}

#[test]
fn removed_entry_is_detected() {
    let (mut x, s) = export();
    x.entries.remove(7);
    let f = failures(&x, &s);
    assert_eq!(
        f[0],
        Failure::SequenceGap {
            first_missing: 7,
            missing: 1
        }
    );
    assert!(!f.iter().any(|x| matches!(
        x,
        Failure::SequenceDuplicate { .. } | Failure::SequenceOutOfOrder { .. }
    )));
    assert!(f.contains(&Failure::EntriesAltered {
        checkpoint: 1,
        since: 5,
        size: 10
    }));
}

#[test]
fn reordered_entries_are_detected() {
    let (mut x, s) = export();
    x.entries.swap(7, 8);
    let f = failures(&x, &s);
    assert_eq!(
        f[0],
        Failure::SequenceOutOfOrder {
            position: 8,
            seq: 7,
            previous: 8
        }
    );
    assert!(!f.iter().any(|x| matches!(
        x,
        Failure::SequenceGap { .. } | Failure::SequenceDuplicate { .. }
    )));
    assert!(f.contains(&Failure::EntriesAltered {
        checkpoint: 1,
        since: 5,
        size: 10
    }));
    // Swapping and renumbering so the sequence looks right still fails.
    let (mut x, s) = export();
    x.entries.swap(7, 8);
    x.entries[7].seq = 7;
    x.entries[8].seq = 8;
    assert_eq!(
        failures(&x, &s)[0],
        Failure::EntriesAltered {
            checkpoint: 1,
            since: 5,
            size: 10
        }
    );
}

#[test]
fn inserted_entry_is_detected() {
    let (mut x, s) = export();
    let p = Pseudonymizer::new([9; 32]);
    let forged = NewEntry::new(
        1_700_000_007_500,
        p.actor("@mallory:example.org"),
        Action::Login,
    )
    .with_seq(7);
    x.entries.insert(8, forged.clone());
    let f = failures(&x, &s);
    assert_eq!(
        f[0],
        Failure::SequenceDuplicate {
            seq: 7,
            first: 7,
            second: 8
        }
    );
    assert!(!f.iter().any(|x| matches!(
        x,
        Failure::SequenceGap { .. } | Failure::SequenceOutOfOrder { .. }
    )));
    assert!(f.contains(&Failure::EntriesAltered {
        checkpoint: 1,
        since: 5,
        size: 10
    }));
    // Inserted and everything after renumbered: the roots give it away.
    let (mut x, s) = export();
    x.entries.insert(8, forged);
    for (i, e) in x.entries.iter_mut().enumerate() {
        e.seq = i as u64;
    }
    assert_eq!(
        failures(&x, &s)[0],
        Failure::EntriesAltered {
            checkpoint: 1,
            since: 5,
            size: 10
        }
    );
}

#[test]
fn checkpoint_with_wrong_root_is_detected() {
    // Signed by the log's own key, but over a root these entries never had.
    let (mut x, s) = export();
    x.checkpoints[1].note = s.sign(10, [0x42; 32]).unwrap().note;
    let f = failures(&x, &s);
    assert!(
        f.contains(&Failure::CheckpointRootMismatch {
            checkpoint: 1,
            size: 10
        }),
        "{f:?}"
    );
    assert!(f
        .iter()
        .any(|x| matches!(x, Failure::CheckpointInconsistent { from: 0, to: 1, .. })));
    assert!(f
        .iter()
        .any(|x| matches!(x, Failure::CheckpointInconsistent { from: 1, to: 2, .. })));
    assert!(!f
        .iter()
        .any(|x| matches!(x, Failure::EntriesAltered { .. })));
    // The last checkpoint.
    let (mut x, s) = export();
    x.checkpoints[3].note = s.sign(20, [0x42; 32]).unwrap().note;
    let f = failures(&x, &s);
    assert!(
        f.contains(&Failure::CheckpointRootMismatch {
            checkpoint: 3,
            size: 20
        }),
        "{f:?}"
    );
    assert!(!f
        .iter()
        .any(|x| matches!(x, Failure::EntriesAltered { .. })));
    // Its text edited: the signature breaks.
    let (mut x, s) = export();
    let root_line = x.checkpoints[2].note.lines().nth(2).unwrap().to_owned();
    let other_body = Checkpoint::new(ORIGIN, 15, [0x42; 32]).unwrap().to_body();
    let other_root = other_body.lines().nth(2).unwrap();
    x.checkpoints[2].note = x.checkpoints[2].note.replace(&root_line, other_root);
    let f = failures(&x, &s);
    assert!(
        matches!(f[0], Failure::CheckpointSignature { checkpoint: 2, .. }),
        "{f:?}"
    );
}

#[test]
fn checkpoint_signed_by_another_key_is_detected() {
    let (log, s) = build();
    let mut x = log.export().unwrap();
    let other = CheckpointSigner::generate(ORIGIN).unwrap();
    x.checkpoints[2].note = other.sign(15, log.root_at(15).unwrap()).unwrap().note;
    let f = failures(&x, &s);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(matches!(
        &f[0],
        Failure::CheckpointSignature {
            checkpoint: 2,
            error: CheckpointError::Note(NoteError::UnknownKey { .. })
        }
    ));
    // Verifying the whole export with the wrong key fails everywhere.
    let f = verify_export(&log.export().unwrap(), &other.verifier()).failures;
    assert_eq!(
        f.iter()
            .filter(|x| matches!(x, Failure::CheckpointSignature { .. }))
            .count(),
        4
    );
    let elsewhere = CheckpointSigner::generate("other.example/log").unwrap();
    let f = verify_export(&log.export().unwrap(), &elsewhere.verifier()).failures;
    assert!(matches!(f[0], Failure::OriginMismatch { .. }));
}

#[test]
fn truncated_log_is_detected() {
    let (mut x, s) = export();
    x.entries.truncate(17);
    assert_eq!(
        failures(&x, &s),
        vec![Failure::CheckpointBeyondLog {
            checkpoint: 3,
            size: 20,
            entries: 17
        }]
    );
    let (mut x, s) = export();
    x.entries.truncate(3);
    assert_eq!(
        failures(&x, &s)
            .iter()
            .filter(|f| matches!(f, Failure::CheckpointBeyondLog { .. }))
            .count(),
        4
    );
}

#[test]
fn checkpoint_list_problems_are_detected() {
    let (mut x, s) = export();
    x.checkpoints.swap(1, 2);
    let f = failures(&x, &s);
    assert!(
        f.iter().any(|f| matches!(
            f,
            Failure::CheckpointOrder {
                checkpoint: 2,
                size: 10,
                previous: 15
            }
        )),
        "{f:?}"
    );
    let (mut x, s) = export();
    x.checkpoints.clear();
    assert_eq!(failures(&x, &s), vec![Failure::NoCheckpoint]);
    // A consistency proof damaged in the export.
    let (mut x, s) = export();
    x.checkpoints[2].consistency[0][0] ^= 1;
    let f = failures(&x, &s);
    assert!(
        matches!(
            f[..],
            [Failure::CheckpointInconsistent { from: 1, to: 2, .. }]
        ),
        "{f:?}"
    );
}

#[test]
fn malformed_exports_are_refused() {
    let (x, _) = export();
    let json = String::from_utf8(x.to_json()).unwrap();
    let wrong_format = json.replacen("cloister-audit-log", "something-else", 1);
    assert!(matches!(
        AuditExport::from_json(wrong_format.as_bytes()),
        Err(ExportError::WrongFormat(_))
    ));
    let v2 = json.replacen("\"version\": 1", "\"version\": 2", 1);
    assert!(matches!(
        AuditExport::from_json(v2.as_bytes()),
        Err(ExportError::UnsupportedVersion(2))
    ));
    let extra = json.replacen("\"version\": 1", "\"version\": 1, \"note\": 0", 1);
    assert!(matches!(
        AuditExport::from_json(extra.as_bytes()),
        Err(ExportError::Json(_))
    ));
    let content = json.replacen("\"count\": 3", "\"count\": 3, \"body\": \"hello\"", 1);
    assert!(matches!(
        AuditExport::from_json(content.as_bytes()),
        Err(ExportError::Json(_))
    ));
    assert!(AuditExport::from_json(b"[]").is_err());
}

#[test]
fn inclusion_of_every_entry_in_every_checkpoint() {
    let (log, s) = build();
    let x = log.export().unwrap();
    let mut checked = 0;
    for c in &x.checkpoints {
        let vc = open_checkpoint(&c.note, &s.verifier()).unwrap();
        let size = vc.checkpoint().size;
        for e in &x.entries[..size as usize] {
            let proof = log.inclusion_proof(e.seq, size).unwrap();
            verify_inclusion(e, &proof, &vc).unwrap();
            // A changed entry, another entry or another checkpoint all fail.
            let mut changed = e.clone();
            changed.ts += 1;
            assert_eq!(
                verify_inclusion(&changed, &proof, &vc),
                Err(ProofCheckError::Proof(ProofError::RootMismatch))
            );
            let other = &x.entries[((e.seq + 1) % size) as usize];
            assert!(verify_inclusion(other, &proof, &vc).is_err());
            checked += 1;
        }
        let first = open_checkpoint(&x.checkpoints[0].note, &s.verifier()).unwrap();
        if size != 5 {
            let proof = log.inclusion_proof(0, size).unwrap();
            assert!(matches!(
                verify_inclusion(&x.entries[0], &proof, &first),
                Err(ProofCheckError::SizeMismatch { .. })
            ));
        }
    }
    assert_eq!(checked, 5 + 10 + 15 + 20);
    // Proofs travel as JSON.
    let p = log.inclusion_proof(3, 10).unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(
        serde_json::from_str::<cloister_audit::InclusionProof>(&json).unwrap(),
        p
    );
}

#[test]
fn consistency_between_two_checkpoints() {
    let (log, s) = build();
    let x = log.export().unwrap();
    let open = |i: usize| open_checkpoint(&x.checkpoints[i].note, &s.verifier()).unwrap();
    for (a, b) in [(0, 3), (1, 2), (0, 0), (2, 3)] {
        let (old, new) = (open(a), open(b));
        let p = log
            .consistency_proof(old.checkpoint().size, new.checkpoint().size)
            .unwrap();
        verify_checkpoint_consistency(&old, &new, &p).unwrap();
        if !p.hashes.is_empty() {
            let mut bad = p.clone();
            bad.hashes[0][5] ^= 0x10;
            assert!(verify_checkpoint_consistency(&old, &new, &bad).is_err());
        }
    }
    // A fork: a signed checkpoint of size 20 over a different history.
    let fork = s.sign(20, [7; 32]).unwrap();
    let fork = open_checkpoint(&fork.note, &s.verifier()).unwrap();
    let p = log.consistency_proof(10, 20).unwrap();
    assert!(verify_checkpoint_consistency(&open(1), &fork, &p).is_err());
    // Sizes that do not match the proof.
    let p = log.consistency_proof(5, 15).unwrap();
    assert!(matches!(
        verify_checkpoint_consistency(&open(1), &open(3), &p),
        Err(ProofCheckError::SizeMismatch { .. })
    ));
}

/// A store that lets the test rewrite history behind the log's back.
#[derive(Default)]
struct EditableStore(MemoryStore, Vec<AuditEntry>);

impl AuditStore for EditableStore {
    fn append(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        self.1.push(entry.clone());
        Ok(())
    }
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(self.1[start as usize..end as usize].to_vec())
    }
    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.1.len() as u64)
    }
    fn append_checkpoint(&mut self, note: &str) -> Result<(), StoreError> {
        self.0.append_checkpoint(note)
    }
    fn checkpoints(&self) -> Result<Vec<String>, StoreError> {
        self.0.checkpoints()
    }
}

#[test]
fn reopening_rebuilds_and_detects_rewritten_storage() {
    let signer = CheckpointSigner::generate(ORIGIN).unwrap();
    let p = Pseudonymizer::new([3; 32]);
    let mut log = AuditLog::open(ORIGIN, EditableStore::default()).unwrap();
    for i in 0..12 {
        log.append(entry(i, &p)).unwrap();
        if i == 5 || i == 11 {
            log.checkpoint(&signer).unwrap();
        }
    }
    let root = log.root();
    let reopened = AuditLog::open(ORIGIN, log_into_store(log)).unwrap();
    assert_eq!(reopened.root(), root);
    assert!(verify_export(&reopened.export().unwrap(), &signer.verifier()).is_ok());

    // Someone with database access edits entry 8 and the server restarts.
    let mut store = log_into_store(reopened);
    store.1[8].actor = Actor::system();
    let tampered = AuditLog::open(ORIGIN, store).unwrap();
    assert_ne!(tampered.root(), root);
    let r = verify_export(&tampered.export().unwrap(), &signer.verifier());
    assert!(!r.is_ok());
    assert!(r
        .failures
        .iter()
        .any(|f| matches!(f, Failure::CheckpointRootMismatch { checkpoint: 1, .. })));

    // A store whose sequence numbers skip is refused on open.
    let mut store = log_into_store(tampered);
    store.1.remove(4);
    assert!(matches!(
        AuditLog::open(ORIGIN, store),
        Err(LogError::Corrupt {
            position: 4,
            seq: 5
        })
    ));
}

fn log_into_store(log: AuditLog<EditableStore>) -> EditableStore {
    let mut s = EditableStore(MemoryStore::new(), log.store().1.clone());
    for c in log.store().checkpoints().unwrap() {
        s.0.append_checkpoint(&c).unwrap();
    }
    s
}

#[test]
fn log_refuses_a_signer_for_another_origin() {
    let mut log = AuditLog::open(ORIGIN, MemoryStore::new()).unwrap();
    let other = CheckpointSigner::generate("other.example/log").unwrap();
    assert!(matches!(
        log.checkpoint(&other),
        Err(LogError::Checkpoint(CheckpointError::OriginMismatch { .. }))
    ));
    // The empty log's checkpoint is the empty root and verifies.
    let s = CheckpointSigner::generate(ORIGIN).unwrap();
    let c = log.checkpoint(&s).unwrap();
    assert_eq!(c.checkpoint.root, cloister_audit::merkle::EMPTY_ROOT);
    assert!(verify_export(&log.export().unwrap(), &s.verifier()).is_ok());
}

#[test]
fn hostile_values_do_not_panic_and_are_reported() {
    let (mut x, s) = export();
    x.entries[3].seq = u64::MAX;
    x.checkpoints.push(ExportedCheckpoint {
        note: s.sign(u64::MAX, [0; 32]).unwrap().note,
        consistency: vec![[1; 32]; 70],
    });
    let r = verify_export(&x, &s.verifier());
    assert!(r.failures.contains(&Failure::SequenceGap {
        first_missing: 3,
        missing: u64::MAX - 23 + 1
    }));
    assert!(r.failures.contains(&Failure::CheckpointBeyondLog {
        checkpoint: 4,
        size: u64::MAX,
        entries: 23
    }));
    assert!(r
        .failures
        .iter()
        .any(|f| matches!(f, Failure::CheckpointInconsistent { from: 3, to: 4, .. })));
    let text = r.to_string();
    assert!(text.contains("result: FAILED"), "{text}");
    assert!(text.contains("the log was truncated"), "{text}");
    assert!(text.contains("the first is seq 3"), "{text}");
}
