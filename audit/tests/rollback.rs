//! Rollback detection against a trusted checkpoint: truncation with the
//! covering checkpoints dropped verifies on its own but not against an
//! earlier checkpoint; dropped checkpoints, forks of the same size and of
//! other sizes, and another log's checkpoint are each refused.

use cloister_audit::checkpoint::{open_checkpoint, CheckpointSigner};
use cloister_audit::entry::{Action, Actor, Details, NewEntry};
use cloister_audit::export::AuditExport;
use cloister_audit::log::{AuditLog, MemoryStore};
use cloister_audit::trust::{verify_extends, RollbackFailure};
use cloister_audit::verify::verify_export;
use cloister_audit::VerifiedCheckpoint;

const ORIGIN: &str = "cloister.example/audit";

/// 23 entries, checkpoints at 5, 10, 15 and 20; entry `fork_at` (if any)
/// has another count than in the original history.
fn export(signer: &CheckpointSigner, fork_at: Option<u64>) -> AuditExport {
    let mut log = AuditLog::open(ORIGIN, MemoryStore::new()).unwrap();
    for i in 0..23 {
        let count = if Some(i) == fork_at { 999 } else { i };
        let entry = NewEntry::new(1_700_000_000_000 + i, Actor::system(), Action::PurgeRun)
            .details(Details::new().with("count", count).unwrap());
        log.append(entry).unwrap();
        if (i + 1) % 5 == 0 && i < 20 {
            log.checkpoint(signer).unwrap();
        }
    }
    log.export().unwrap()
}

/// The export's checkpoint of `size`, as a verifier kept it.
fn trusted(x: &AuditExport, signer: &CheckpointSigner, size: u64) -> VerifiedCheckpoint {
    x.checkpoints
        .iter()
        .map(|c| open_checkpoint(&c.note, &signer.verifier()).unwrap())
        .find(|c| c.checkpoint().size == size)
        .unwrap()
}

fn check(
    x: &AuditExport,
    signer: &CheckpointSigner,
    trusted: &VerifiedCheckpoint,
) -> Result<u64, RollbackFailure> {
    let report = verify_export(x, &signer.verifier());
    assert!(report.is_ok(), "{report}");
    verify_extends(x, &report, trusted).map(|latest| latest.size)
}

#[test]
fn a_grown_log_extends_what_was_trusted() {
    let signer = CheckpointSigner::generate(ORIGIN).unwrap();
    let x = export(&signer, None);
    for size in [5, 10, 20] {
        assert_eq!(check(&x, &signer, &trusted(&x, &signer, size)), Ok(20));
    }
    // The note to keep for next time is the newest checkpoint's.
    let report = verify_export(&x, &signer.verifier());
    let note = report.latest_note.unwrap();
    let kept = open_checkpoint(&note, &signer.verifier()).unwrap();
    assert_eq!(kept.checkpoint().size, 20);
}

#[test]
fn truncation_with_its_checkpoints_dropped_is_caught() {
    let signer = CheckpointSigner::generate(ORIGIN).unwrap();
    let full = export(&signer, None);
    let earlier = trusted(&full, &signer, 15);
    // What someone with the database can leave behind: 8 entries and the
    // one checkpoint that still matches them. On its own it verifies.
    let mut cut = full.clone();
    cut.entries.truncate(8);
    cut.checkpoints.truncate(1);
    assert_eq!(
        check(&cut, &signer, &earlier),
        Err(RollbackFailure::Truncated {
            trusted: 15,
            entries: 8
        })
    );
    // Entries kept, the newer checkpoints dropped.
    let mut dropped = full.clone();
    dropped.checkpoints.truncate(2);
    assert_eq!(
        check(&dropped, &signer, &earlier),
        Err(RollbackFailure::RolledBack {
            trusted: 15,
            latest: 10
        })
    );
    let message = check(&cut, &signer, &earlier).unwrap_err().to_string();
    assert!(message.contains("truncated"), "{message}");
}

#[test]
fn forks_are_caught() {
    let signer = CheckpointSigner::generate(ORIGIN).unwrap();
    let original = export(&signer, None);
    // Another history signed with the same key: entry 7 differs.
    let fork = export(&signer, Some(7));
    for size in [10, 20] {
        let got = check(&fork, &signer, &trusted(&original, &signer, size));
        assert!(
            matches!(got, Err(RollbackFailure::Forked { trusted, latest: 20, .. }) if trusted == size),
            "{size}: {got:?}"
        );
    }
    // Before the fork point both histories agree.
    assert_eq!(
        check(&fork, &signer, &trusted(&original, &signer, 5)),
        Ok(20)
    );
    let message = check(&fork, &signer, &trusted(&original, &signer, 20))
        .unwrap_err()
        .to_string();
    assert!(message.contains("forked"), "{message}");
}

#[test]
fn another_logs_checkpoint_is_refused() {
    let signer = CheckpointSigner::generate(ORIGIN).unwrap();
    let other = CheckpointSigner::generate("elsewhere.example/audit").unwrap();
    let x = export(&signer, None);
    let mut foreign_log = AuditLog::open("elsewhere.example/audit", MemoryStore::new()).unwrap();
    foreign_log
        .append(NewEntry::new(1, Actor::system(), Action::PurgeRun))
        .unwrap();
    foreign_log.checkpoint(&other).unwrap();
    let foreign = foreign_log.export().unwrap();
    let theirs = open_checkpoint(&foreign.checkpoints[0].note, &other.verifier()).unwrap();
    assert!(matches!(
        check(&x, &signer, &theirs),
        Err(RollbackFailure::OriginMismatch { .. })
    ));
}
