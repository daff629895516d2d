//! The versioned JSON export of an audit log.
//!
//! ```json
//! {
//!   "format": "cloister-audit-log",
//!   "version": 1,
//!   "origin": "<log origin = checkpoint key name>",
//!   "entries": [ <AuditEntry>, ... ],
//!   "checkpoints": [
//!     { "note": "<signed checkpoint note>", "consistency": ["<base64 hash>", ...] },
//!     ...
//!   ]
//! }
//! ```
//!
//! * `entries` are in log order; entry `i` has `seq` `i`. Each is hashed as
//!   the leaf `SHA-256(0x00 || canonical JSON)` (see [`crate::entry`]), so
//!   whitespace and key order inside the export do not matter.
//! * `checkpoints` are in increasing tree size. `consistency` is the RFC 9162
//!   consistency proof from the previous checkpoint in the list (the empty
//!   tree for the first) to this one. It lets a verifier check that the
//!   signed tree heads form one append-only history independently of the
//!   entries, and so tell altered entries from a checkpoint that disagrees.
//! * Unknown fields are refused; other `format`s and `version`s are refused.

use serde::{Deserialize, Serialize};

use crate::entry::AuditEntry;
use crate::merkle::Hash;

pub const FORMAT: &str = "cloister-audit-log";
pub const VERSION: u32 = 1;

/// Why an export could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("not a cloister-audit-log export (format: {0})")]
    WrongFormat(String),
    #[error("unsupported export version {0}")]
    UnsupportedVersion(u64),
    #[error("malformed export: {0}")]
    Json(#[from] serde_json::Error),
}

/// One checkpoint in an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedCheckpoint {
    pub note: String,
    #[serde(with = "crate::b64::hashes")]
    pub consistency: Vec<Hash>,
}

/// A whole exported log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditExport {
    pub format: String,
    pub version: u32,
    pub origin: String,
    pub entries: Vec<AuditEntry>,
    pub checkpoints: Vec<ExportedCheckpoint>,
}

impl AuditExport {
    pub fn new(
        origin: &str,
        entries: Vec<AuditEntry>,
        checkpoints: Vec<ExportedCheckpoint>,
    ) -> Self {
        AuditExport {
            format: FORMAT.to_owned(),
            version: VERSION,
            origin: origin.to_owned(),
            entries,
            checkpoints,
        }
    }

    /// Pretty-printed JSON, for people to read.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("an export always serialises")
    }

    /// Reads an export, checking `format` and `version` first so that a
    /// file of another kind or version gets a clear error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ExportError> {
        #[derive(Deserialize)]
        struct Head {
            format: Option<serde_json::Value>,
            version: Option<serde_json::Value>,
        }
        let head: Head = serde_json::from_slice(bytes)?;
        match head.format {
            Some(serde_json::Value::String(f)) if f == FORMAT => {}
            other => {
                let found = other.map(|v| v.to_string()).unwrap_or_default();
                return Err(ExportError::WrongFormat(found));
            }
        }
        match head.version.as_ref().and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => return Err(ExportError::UnsupportedVersion(v)),
            None => return Err(ExportError::UnsupportedVersion(0)),
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}
