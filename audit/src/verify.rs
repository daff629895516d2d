//! Offline verification of an exported log, of one entry, and of two
//! checkpoints, with nothing but the log's public key.
//!
//! [`verify_export`] recomputes the Merkle tree from the entries in the order
//! given and checks, reporting every failure it finds:
//!
//! 1. the export's origin is the key's name;
//! 2. sequence numbers run 0, 1, 2, ... without gap, repeat or reordering;
//! 3. every checkpoint is signed by the key and names the origin;
//! 4. checkpoint sizes never decrease, and each checkpoint is consistent
//!    (RFC 9162 proof carried in the export) with the one before it;
//! 5. no checkpoint covers more entries than the export holds (truncation);
//! 6. every checkpoint's root equals the root recomputed at its size.
//!
//! A root mismatch is attributed: if a later checkpoint matches the entries,
//! or the checkpoint is not consistent with the one before it, the checkpoint
//! is the odd one out ([`Failure::CheckpointRootMismatch`]); otherwise the
//! signed history is intact and the entries since the last matching
//! checkpoint were altered ([`Failure::EntriesAltered`]).
//!
//! Entries after the last matching checkpoint are covered by no signature;
//! the report counts them. Removing entries *and* every checkpoint covering
//! them cannot be seen from inside one export: check the export against a
//! checkpoint obtained earlier with [`crate::trust::verify_extends`], or two
//! checkpoints with [`verify_checkpoint_consistency`].

use std::collections::HashMap;
use std::fmt;

use crate::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, VerifiedCheckpoint};
use crate::entry::AuditEntry;
use crate::export::AuditExport;
use crate::log::{ConsistencyProof, InclusionProof};
use crate::merkle::{self, MerkleTree, ProofError, EMPTY_ROOT};
use crate::note::NoteVerifier;

/// One failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The export's origin is not the name of the verifying key.
    OriginMismatch { export: String, key: String },
    /// There are no checkpoints at all: nothing is signed.
    NoCheckpoint,
    /// Sequence numbers are missing (entries removed).
    SequenceGap { first_missing: u64, missing: u64 },
    /// A sequence number appears twice (an entry inserted).
    SequenceDuplicate {
        seq: u64,
        first: usize,
        second: usize,
    },
    /// A sequence number is smaller than the one before it (reordered).
    SequenceOutOfOrder {
        position: usize,
        seq: u64,
        previous: u64,
    },
    /// A checkpoint's signature or contents were refused.
    CheckpointSignature {
        checkpoint: usize,
        error: CheckpointError,
    },
    /// A checkpoint is smaller than the one before it.
    CheckpointOrder {
        checkpoint: usize,
        size: u64,
        previous: u64,
    },
    /// The export's consistency proof does not link two checkpoints
    /// (`from == to == 0`: the first one's proof from the empty tree).
    CheckpointInconsistent {
        from: usize,
        to: usize,
        error: ProofError,
    },
    /// A checkpoint covers more entries than the export holds (truncated).
    CheckpointBeyondLog {
        checkpoint: usize,
        size: u64,
        entries: u64,
    },
    /// A validly signed checkpoint whose root disagrees with the entries and
    /// with the other checkpoints (a wrong or forked tree head).
    CheckpointRootMismatch { checkpoint: usize, size: u64 },
    /// The entries with `since <= seq < size` do not hash to the root that
    /// checkpoint signed, and the signed history is itself consistent.
    EntriesAltered {
        checkpoint: usize,
        since: u64,
        size: u64,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Failure::*;
        match self {
            OriginMismatch { export, key } => {
                write!(f, "export is for log {export:?} but the key is for {key:?}")
            }
            NoCheckpoint => write!(f, "the export has no signed checkpoint"),
            SequenceGap {
                first_missing,
                missing,
            } => write!(
                f,
                "{missing} entries are missing, the first is seq {first_missing}"
            ),
            SequenceDuplicate { seq, first, second } => write!(
                f,
                "seq {seq} appears twice (positions {first} and {second}): an entry was inserted"
            ),
            SequenceOutOfOrder {
                position,
                seq,
                previous,
            } => write!(
                f,
                "entries are reordered: seq {seq} at position {position} follows seq {previous}"
            ),
            CheckpointSignature { checkpoint, error } => {
                write!(f, "checkpoint #{checkpoint} refused: {error}")
            }
            CheckpointOrder {
                checkpoint,
                size,
                previous,
            } => write!(
                f,
                "checkpoint #{checkpoint} has size {size}, smaller than the {previous} before it"
            ),
            CheckpointInconsistent { from, to, error } => write!(
                f,
                "checkpoints #{from} and #{to} are not one append-only history: {error}"
            ),
            CheckpointBeyondLog {
                checkpoint,
                size,
                entries,
            } => write!(
                f,
                "checkpoint #{checkpoint} signs {size} entries but the export has {entries}: the log was truncated"
            ),
            CheckpointRootMismatch { checkpoint, size } => write!(
                f,
                "checkpoint #{checkpoint} (size {size}) is signed but its root matches neither the entries nor the other checkpoints"
            ),
            EntriesAltered {
                checkpoint,
                since,
                size,
            } => write!(
                f,
                "entries with seq {since}..{size} were changed after checkpoint #{checkpoint} signed them"
            ),
        }
    }
}

/// The outcome of [`verify_export`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub origin: String,
    pub entries: u64,
    pub checkpoints: usize,
    /// Checkpoints signed by the key and matching the entries.
    pub checkpoints_matching: usize,
    /// The largest checkpoint that is signed and matches the entries.
    pub latest: Option<Checkpoint>,
    /// That checkpoint's signed note, to keep as the next trusted one
    /// (see [`crate::trust`]).
    pub latest_note: Option<String>,
    /// Entries after `latest`, covered by no signature yet.
    pub unsigned_entries: u64,
    /// Every failed check; empty when the export verifies.
    pub failures: Vec<Failure>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "log: {}", self.origin)?;
        writeln!(f, "entries: {}", self.entries)?;
        writeln!(
            f,
            "checkpoints: {} ({} signed and matching)",
            self.checkpoints, self.checkpoints_matching
        )?;
        if let Some(c) = &self.latest {
            writeln!(f, "latest verified tree size: {}", c.size)?;
        }
        if self.unsigned_entries > 0 {
            writeln!(
                f,
                "entries not yet covered by a checkpoint: {}",
                self.unsigned_entries
            )?;
        }
        if self.is_ok() {
            writeln!(f, "result: OK")
        } else {
            writeln!(f, "result: FAILED")?;
            for x in &self.failures {
                writeln!(f, "  - {x}")?;
            }
            Ok(())
        }
    }
}

fn check_sequence(entries: &[AuditEntry], failures: &mut Vec<Failure>) {
    let mut seen: HashMap<u64, usize> = HashMap::with_capacity(entries.len());
    let mut duplicate = None;
    let mut out_of_order = None;
    let mut previous: Option<u64> = None;
    for (position, e) in entries.iter().enumerate() {
        if let Some(&first) = seen.get(&e.seq) {
            duplicate.get_or_insert(Failure::SequenceDuplicate {
                seq: e.seq,
                first,
                second: position,
            });
        } else {
            seen.insert(e.seq, position);
            if let Some(p) = previous.filter(|p| e.seq < *p) {
                out_of_order.get_or_insert(Failure::SequenceOutOfOrder {
                    position,
                    seq: e.seq,
                    previous: p,
                });
            }
        }
        previous = Some(e.seq);
    }
    // Distinct values sorted: the first index whose value is not the index
    // is the first missing number. No loop over the values themselves, so a
    // hostile seq of u64::MAX costs nothing.
    let mut seqs: Vec<u64> = seen.into_keys().collect();
    seqs.sort_unstable();
    let present = seqs.len() as u64;
    if let Some(&max) = seqs.last().filter(|m| **m >= present) {
        let first_missing = seqs
            .iter()
            .enumerate()
            .find(|(i, s)| **s != *i as u64)
            .map_or(present, |(i, _)| i as u64);
        failures.push(Failure::SequenceGap {
            first_missing,
            missing: max - present + 1,
        });
    }
    failures.extend(duplicate);
    failures.extend(out_of_order);
}

/// Checks an export against the log's public key. Never panics on hostile
/// input; every problem found ends up in [`Report::failures`].
pub fn verify_export(export: &AuditExport, key: &NoteVerifier) -> Report {
    let mut failures = Vec::new();
    if export.origin != key.name() {
        failures.push(Failure::OriginMismatch {
            export: export.origin.clone(),
            key: key.name().to_owned(),
        });
    }
    if export.checkpoints.is_empty() {
        failures.push(Failure::NoCheckpoint);
    }
    check_sequence(&export.entries, &mut failures);

    let mut tree = MerkleTree::new();
    for e in &export.entries {
        tree.push(e.leaf_hash());
    }
    let n = tree.size();

    // Signatures, order and the consistency chain.
    let opened: Vec<Option<Checkpoint>> = export
        .checkpoints
        .iter()
        .enumerate()
        .map(|(i, c)| match open_checkpoint(&c.note, key) {
            Ok(v) => Some(v.checkpoint().clone()),
            Err(error) => {
                failures.push(Failure::CheckpointSignature {
                    checkpoint: i,
                    error,
                });
                None
            }
        })
        .collect();
    let empty = Checkpoint {
        origin: key.name().to_owned(),
        size: 0,
        root: EMPTY_ROOT,
        extensions: Vec::new(),
    };
    let mut inconsistent = vec![false; opened.len()];
    for i in 0..opened.len() {
        let Some(cur) = &opened[i] else { continue };
        let prev = if i == 0 {
            Some(&empty)
        } else {
            opened[i - 1].as_ref()
        };
        let Some(prev) = prev else { continue };
        if cur.size < prev.size {
            failures.push(Failure::CheckpointOrder {
                checkpoint: i,
                size: cur.size,
                previous: prev.size,
            });
            inconsistent[i] = true;
            continue;
        }
        let proof = &export.checkpoints[i].consistency;
        if let Err(error) =
            merkle::verify_consistency(prev.size, cur.size, &prev.root, &cur.root, proof)
        {
            if i > 0 {
                inconsistent[i - 1] = true;
                failures.push(Failure::CheckpointInconsistent {
                    from: i - 1,
                    to: i,
                    error,
                });
            } else {
                failures.push(Failure::CheckpointInconsistent {
                    from: i,
                    to: i,
                    error,
                });
            }
            inconsistent[i] = true;
        }
    }

    // Each checkpoint against the recomputed tree.
    let mut matches = vec![None; opened.len()];
    for (i, c) in opened.iter().enumerate() {
        let Some(c) = c else { continue };
        if c.size > n {
            failures.push(Failure::CheckpointBeyondLog {
                checkpoint: i,
                size: c.size,
                entries: n,
            });
            continue;
        }
        matches[i] = Some(tree.root_at(c.size).ok() == Some(c.root));
    }
    let mut latest: Option<Checkpoint> = None;
    let mut latest_note = None;
    let mut matching = 0;
    for (i, m) in matches.iter().enumerate() {
        let Some(c) = &opened[i] else { continue };
        match m {
            Some(true) => {
                matching += 1;
                if latest.as_ref().is_none_or(|l| c.size >= l.size) {
                    latest = Some(c.clone());
                    latest_note = Some(export.checkpoints[i].note.clone());
                }
            }
            Some(false) => {
                let later_match = (i + 1..matches.len()).any(|j| {
                    matches[j] == Some(true) && opened[j].as_ref().is_some_and(|d| d.size >= c.size)
                });
                if later_match || inconsistent[i] {
                    failures.push(Failure::CheckpointRootMismatch {
                        checkpoint: i,
                        size: c.size,
                    });
                } else {
                    let since = latest.as_ref().map_or(0, |l| l.size.min(c.size));
                    failures.push(Failure::EntriesAltered {
                        checkpoint: i,
                        since,
                        size: c.size,
                    });
                }
            }
            None => {}
        }
    }
    let unsigned_entries = n - latest.as_ref().map_or(0, |l| l.size);
    Report {
        origin: export.origin.clone(),
        entries: n,
        checkpoints: export.checkpoints.len(),
        checkpoints_matching: matching,
        latest,
        latest_note,
        unsigned_entries,
        failures,
    }
}

/// Why a single proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofCheckError {
    #[error("the proof is for index {proof} but the entry has seq {entry}")]
    IndexMismatch { entry: u64, proof: u64 },
    #[error("the proof is for tree size {proof} but the checkpoint has size {checkpoint}")]
    SizeMismatch { checkpoint: u64, proof: u64 },
    #[error("the checkpoints are for different logs")]
    OriginMismatch,
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Checks that `entry` is in the tree signed by `checkpoint`.
pub fn verify_inclusion(
    entry: &AuditEntry,
    proof: &InclusionProof,
    checkpoint: &VerifiedCheckpoint,
) -> Result<(), ProofCheckError> {
    let c = checkpoint.checkpoint();
    if proof.index != entry.seq {
        return Err(ProofCheckError::IndexMismatch {
            entry: entry.seq,
            proof: proof.index,
        });
    }
    if proof.tree_size != c.size {
        return Err(ProofCheckError::SizeMismatch {
            checkpoint: c.size,
            proof: proof.tree_size,
        });
    }
    merkle::verify_inclusion(
        &entry.leaf_hash(),
        proof.index,
        proof.tree_size,
        &proof.hashes,
        &c.root,
    )?;
    Ok(())
}

/// Checks that `new` extends `old`: the log only grew between them.
pub fn verify_checkpoint_consistency(
    old: &VerifiedCheckpoint,
    new: &VerifiedCheckpoint,
    proof: &ConsistencyProof,
) -> Result<(), ProofCheckError> {
    let (o, n) = (old.checkpoint(), new.checkpoint());
    if o.origin != n.origin {
        return Err(ProofCheckError::OriginMismatch);
    }
    for (c, p) in [(o, proof.old_size), (n, proof.new_size)] {
        if c.size != p {
            return Err(ProofCheckError::SizeMismatch {
                checkpoint: c.size,
                proof: p,
            });
        }
    }
    merkle::verify_consistency(o.size, n.size, &o.root, &n.root, &proof.hashes)?;
    Ok(())
}
