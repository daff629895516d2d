//! The append-only audit log: storage, tree, proofs and checkpoints.
//!
//! [`AuditLog`] keeps the Merkle tree of all leaf hashes in memory and writes
//! entries and signed checkpoints through an [`AuditStore`]. On start it
//! reads the whole store back, re-derives every leaf hash from the canonical
//! entry bytes and refuses a store whose sequence numbers have a gap.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{CheckpointError, CheckpointSigner, SignedCheckpoint};
use crate::entry::{AuditEntry, NewEntry};
use crate::export::{AuditExport, ExportedCheckpoint};
use crate::merkle::{Hash, MerkleTree, ProofError};

/// A storage failure, from whatever backs the store.
#[derive(Debug, thiserror::Error)]
#[error("audit store: {0}")]
pub struct StoreError(pub Box<dyn std::error::Error + Send + Sync>);

impl StoreError {
    pub fn msg(s: impl Into<String>) -> Self {
        StoreError(s.into().into())
    }
}

/// Where entries and signed checkpoints are kept. The in-memory
/// [`MemoryStore`] is the only implementation here; the server will back it
/// with SQL. Implementations must be append-only and keep entry order.
pub trait AuditStore {
    /// Stores `entry`, whose `seq` is the current size.
    fn append(&mut self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// Entries with `start <= seq < end`, in order.
    fn read_range(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>, StoreError>;
    /// The number of entries.
    fn size(&self) -> Result<u64, StoreError>;
    /// Stores a signed checkpoint note.
    fn append_checkpoint(&mut self, note: &str) -> Result<(), StoreError>;
    /// All stored checkpoint notes, oldest first.
    fn checkpoints(&self) -> Result<Vec<String>, StoreError>;
}

/// Keeps everything in memory.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    entries: Vec<AuditEntry>,
    checkpoints: Vec<String>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl AuditStore for MemoryStore {
    fn append(&mut self, entry: &AuditEntry) -> Result<(), StoreError> {
        if entry.seq != self.entries.len() as u64 {
            return Err(StoreError::msg("entry out of sequence"));
        }
        self.entries.push(entry.clone());
        Ok(())
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>, StoreError> {
        let len = self.entries.len() as u64;
        if start > end || end > len {
            return Err(StoreError::msg("range outside the log"));
        }
        Ok(self.entries[start as usize..end as usize].to_vec())
    }

    fn size(&self) -> Result<u64, StoreError> {
        Ok(self.entries.len() as u64)
    }

    fn append_checkpoint(&mut self, note: &str) -> Result<(), StoreError> {
        self.checkpoints.push(note.to_owned());
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.checkpoints.clone())
    }
}

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("stored entry at position {position} has seq {seq}")]
    Corrupt { position: u64, seq: u64 },
}

/// What [`AuditLog::append`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub leaf_hash: Hash,
}

/// An inclusion proof of entry `index` in the tree of size `tree_size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    pub index: u64,
    pub tree_size: u64,
    #[serde(with = "crate::b64::hashes")]
    pub hashes: Vec<Hash>,
}

/// A consistency proof from `old_size` to `new_size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    #[serde(with = "crate::b64::hashes")]
    pub hashes: Vec<Hash>,
}

/// The audit log over a store.
#[derive(Debug)]
pub struct AuditLog<S: AuditStore> {
    origin: String,
    store: S,
    tree: MerkleTree,
}

impl<S: AuditStore> AuditLog<S> {
    /// Opens the log named `origin` over `store`, rebuilding the tree.
    pub fn open(origin: &str, store: S) -> Result<Self, LogError> {
        let size = store.size()?;
        let mut tree = MerkleTree::new();
        const BATCH: u64 = 4096;
        let mut start = 0;
        while start < size {
            let end = size.min(start + BATCH);
            for (i, e) in store.read_range(start, end)?.iter().enumerate() {
                let position = start + i as u64;
                if e.seq != position {
                    return Err(LogError::Corrupt {
                        position,
                        seq: e.seq,
                    });
                }
                tree.push(e.leaf_hash());
            }
            start = end;
        }
        if tree.size() != size {
            return Err(StoreError::msg("store returned fewer entries than its size").into());
        }
        Ok(AuditLog {
            origin: origin.to_owned(),
            store,
            tree,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    /// The number of entries.
    pub fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The current root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }

    /// The root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Hash, LogError> {
        Ok(self.tree.root_at(size)?)
    }

    /// Appends an entry with the next sequence number.
    pub fn append(&mut self, entry: NewEntry) -> Result<Appended, LogError> {
        let entry = entry.with_seq(self.size());
        let leaf_hash = entry.leaf_hash();
        self.store.append(&entry)?;
        let index = self.tree.push(leaf_hash);
        Ok(Appended { index, leaf_hash })
    }

    /// Entries with `start <= seq < end`.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<AuditEntry>, LogError> {
        Ok(self.store.read_range(start, end)?)
    }

    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<InclusionProof, LogError> {
        Ok(InclusionProof {
            index,
            tree_size,
            hashes: self.tree.inclusion_proof(index, tree_size)?,
        })
    }

    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<ConsistencyProof, LogError> {
        Ok(ConsistencyProof {
            old_size,
            new_size,
            hashes: self.tree.consistency_proof(old_size, new_size)?,
        })
    }

    /// Signs a checkpoint of the current tree and stores it.
    pub fn checkpoint(&mut self, signer: &CheckpointSigner) -> Result<SignedCheckpoint, LogError> {
        if signer.origin() != self.origin {
            return Err(CheckpointError::OriginMismatch {
                expected: self.origin.clone(),
                found: signer.origin().to_owned(),
            }
            .into());
        }
        let signed = signer.sign(self.size(), self.root())?;
        self.store.append_checkpoint(&signed.note)?;
        Ok(signed)
    }

    /// The whole log with all stored checkpoints, each carrying the
    /// consistency proof from the checkpoint before it.
    pub fn export(&self) -> Result<AuditExport, LogError> {
        let entries = self.store.read_range(0, self.size())?;
        let mut checkpoints = Vec::new();
        let mut prev: Option<u64> = None;
        for note in self.store.checkpoints()? {
            // The size is read from the note's body without trusting it:
            // the verifier checks signatures and roots.
            let size = note
                .lines()
                .nth(1)
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|s| *s <= self.size());
            let consistency = match (prev, size) {
                (Some(p), Some(s)) if p <= s => self.tree.consistency_proof(p, s)?,
                _ => Vec::new(),
            };
            prev = size.or(prev);
            checkpoints.push(ExportedCheckpoint { note, consistency });
        }
        Ok(AuditExport::new(&self.origin, entries, checkpoints))
    }
}
