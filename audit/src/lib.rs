//! Cloister's tamper-evident audit log, as a self-contained cryptographic core.
//!
//! Audit entries (pseudonymous, counts only, never message content) are the
//! leaves of an RFC 6962 / RFC 9162 Merkle tree; the log signs tree heads
//! with Ed25519 as C2SP tlog-checkpoints in C2SP signed notes; an export of
//! the log can be verified offline with nothing but the log's public key; and
//! exports can be sealed to a recipient's X25519 key. A verifier that kept an
//! earlier checkpoint can prove a later export extends it (no rollback), and
//! witnesses (C2SP tlog-witness) cosign only checkpoints that extend what
//! they saw, so a fork shown to two parties is caught. No I/O, no clock: the
//! server supplies storage ([`log::AuditStore`]) and timestamps.
//!
//! Formats are specified in the module docs and in `audit/FORMAT.md`.

mod b64;
pub mod checkpoint;
pub mod entry;
pub mod export;
pub mod log;
pub mod merkle;
pub mod note;
#[cfg(feature = "generate")]
pub mod seal;
pub mod trust;
pub mod verify;
pub mod witness;

pub use checkpoint::{
    open_checkpoint, Checkpoint, CheckpointSigner, SignedCheckpoint, VerifiedCheckpoint,
};
pub use entry::{Action, Actor, AuditEntry, Details, NewEntry, Pseudonymizer, Target};
pub use export::AuditExport;
pub use log::{AuditLog, AuditStore, ConsistencyProof, InclusionProof, MemoryStore};
pub use merkle::Hash;
pub use note::{NoteSigner, NoteVerifier};
pub use trust::{verify_extends, RollbackFailure};
pub use verify::{verify_checkpoint_consistency, verify_export, verify_inclusion, Failure, Report};
