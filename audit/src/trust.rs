//! Rollback detection: does an export extend a checkpoint the verifier
//! already trusts (one it verified earlier and kept)?
//!
//! [`crate::verify_export`] checks an export against the checkpoints inside
//! it. Someone with the database can truncate the log *and* drop every
//! checkpoint covering the removed entries; what remains verifies. Against a
//! trusted checkpoint of size `m`, [`verify_extends`] refuses an export
//!
//! 1. of another log (origin);
//! 2. that holds fewer than `m` entries (truncated);
//! 3. whose newest signed, matching checkpoint is smaller than `m`
//!    (checkpoints removed: the signed history was rolled back);
//! 4. whose newest checkpoint is not an append-only extension of the
//!    trusted one, checked with the RFC 9162 consistency proof computed from
//!    the export's entries (a fork: another history of the same log).

use std::fmt;

use crate::checkpoint::{Checkpoint, VerifiedCheckpoint};
use crate::export::AuditExport;
use crate::merkle::{self, ProofError};
use crate::verify::Report;

/// Why an export does not extend the trusted checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackFailure {
    /// The trusted checkpoint is of another log.
    OriginMismatch { trusted: String, export: String },
    /// The export has no signed checkpoint matching its entries.
    NothingSigned,
    /// Fewer entries than the trusted checkpoint signed.
    Truncated { trusted: u64, entries: u64 },
    /// The newest valid checkpoint is older than the trusted one.
    RolledBack { trusted: u64, latest: u64 },
    /// The consistency proof from the trusted checkpoint to the newest one
    /// fails: the log's history is not the one that was trusted.
    Forked {
        trusted: u64,
        latest: u64,
        error: ProofError,
    },
}

impl fmt::Display for RollbackFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use RollbackFailure::*;
        match self {
            OriginMismatch { trusted, export } => write!(
                f,
                "the trusted checkpoint is of log {trusted:?}, the export of {export:?}"
            ),
            NothingSigned => write!(
                f,
                "the export has no valid checkpoint to compare with the trusted one"
            ),
            Truncated { trusted, entries } => write!(
                f,
                "the log was truncated: the trusted checkpoint signed {trusted} entries, this export holds {entries}"
            ),
            RolledBack { trusted, latest } => write!(
                f,
                "the log was rolled back: its newest checkpoint signs {latest} entries, fewer than the {trusted} of the trusted one"
            ),
            Forked {
                trusted,
                latest,
                error,
            } => write!(
                f,
                "the log forked: its checkpoint of {latest} entries does not extend the trusted checkpoint of {trusted} ({error})"
            ),
        }
    }
}

/// Checks that `export`, already verified into `report`, extends `trusted`.
/// On success returns the newest checkpoint, to be trusted from now on.
pub fn verify_extends<'a>(
    export: &AuditExport,
    report: &'a Report,
    trusted: &VerifiedCheckpoint,
) -> Result<&'a Checkpoint, RollbackFailure> {
    let t = trusted.checkpoint();
    if t.origin != export.origin {
        return Err(RollbackFailure::OriginMismatch {
            trusted: t.origin.clone(),
            export: export.origin.clone(),
        });
    }
    let entries = export.entries.len() as u64;
    if t.size > entries {
        return Err(RollbackFailure::Truncated {
            trusted: t.size,
            entries,
        });
    }
    let latest = report
        .latest
        .as_ref()
        .ok_or(RollbackFailure::NothingSigned)?;
    if latest.size < t.size {
        return Err(RollbackFailure::RolledBack {
            trusted: t.size,
            latest: latest.size,
        });
    }
    // The latest checkpoint matches the export's entries (that is what
    // `report.latest` means), so the proof is computed from them.
    let leaves: Vec<_> = export.entries[..latest.size as usize]
        .iter()
        .map(|e| e.leaf_hash())
        .collect();
    let forked = |error| RollbackFailure::Forked {
        trusted: t.size,
        latest: latest.size,
        error,
    };
    let proof = merkle::consistency_proof(&leaves, t.size).map_err(forked)?;
    merkle::verify_consistency(t.size, latest.size, &t.root, &latest.root, &proof)
        .map_err(forked)?;
    Ok(latest)
}
