//! C2SP tlog-checkpoints: signed tree heads of the audit log.
//!
//! The checkpoint body is the text of a signed note (see [`crate::note`]):
//!
//! ```text
//! <origin>\n
//! <tree size, decimal, no leading zeros>\n
//! <base64 of the 32-byte root hash>\n
//! [<extension line>\n ...]
//! ```
//!
//! Cloister writes no extension lines; parsing accepts non-empty ones as the
//! spec allows and keeps them (they are covered by the signature).
//!
//! A log signs with one Ed25519 key whose key name *is* the origin, and
//! [`open_checkpoint`] insists on that: a checkpoint only counts if the log's
//! key signed it and it names the log's origin.

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use crate::merkle::Hash;
use crate::note::{self, is_valid_name, NoteError, NoteSignature, NoteSigner, NoteVerifier};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error("checkpoint origin {found:?} is not the log's origin {expected:?}")]
    OriginMismatch { expected: String, found: String },
}

/// A tree head: origin, size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Optional extension lines, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        if !is_valid_name(origin) {
            return Err(CheckpointError::Malformed(
                "origin must be a valid key name",
            ));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n` and any extensions.
    pub fn to_body(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body strictly.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("body must end in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::Malformed(
                "body needs origin, size and root",
            ));
        };
        if !is_valid_name(origin) {
            return Err(CheckpointError::Malformed("invalid origin line"));
        }
        let canonical = size == "0" || (!size.starts_with('0') && !size.is_empty());
        if !canonical || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CheckpointError::Malformed(
                "size is not a canonical decimal",
            ));
        }
        let size = size
            .parse::<u64>()
            .map_err(|_| CheckpointError::Malformed("size does not fit 64 bits"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "root is not canonical base64 of 32 bytes",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

impl Checkpoint {
    /// The origin line of a signed checkpoint note, before any check: to
    /// pick the key to check it with.
    pub fn origin_of_note(note: &str) -> Option<&str> {
        note.split_once('\n')
            .map(|(origin, _)| origin)
            .filter(|o| !o.is_empty())
    }
}

/// A checkpoint together with the signed note that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    /// The whole signed note, as published and exported.
    pub note: String,
}

/// A checkpoint whose signature by the log's key was checked. Only
/// [`open_checkpoint`] makes one, so holding one proves the check was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
    cosignatures: Vec<NoteSignature>,
}

impl VerifiedCheckpoint {
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub fn note(&self) -> &str {
        &self.note
    }

    /// Signatures by other keys (e.g. witnesses), not verified here.
    pub fn unverified_signatures(&self) -> &[NoteSignature] {
        &self.cosignatures
    }
}

/// Opens a signed checkpoint: the log key `verifier` must have signed it and
/// its origin must be the key's name.
pub fn open_checkpoint(
    signed_note: &str,
    verifier: &NoteVerifier,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let opened = note::open(signed_note, std::slice::from_ref(verifier))?;
    let checkpoint = Checkpoint::parse_body(&opened.text)?;
    if checkpoint.origin != verifier.name() {
        return Err(CheckpointError::OriginMismatch {
            expected: verifier.name().to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        note: signed_note.to_owned(),
        cosignatures: opened.unverified,
    })
}

/// The log's signing key: an Ed25519 key named after the log's origin.
#[derive(Debug, Clone)]
pub struct CheckpointSigner {
    signer: NoteSigner,
}

impl CheckpointSigner {
    pub fn new(origin: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        Ok(CheckpointSigner {
            signer: NoteSigner::new(origin, key)?,
        })
    }

    #[cfg(feature = "generate")]
    /// A fresh random key for `origin`.
    pub fn generate(origin: &str) -> Result<Self, CheckpointError> {
        Ok(CheckpointSigner {
            signer: NoteSigner::generate(origin)?,
        })
    }

    /// Loads a Go-style signer key string; its key name becomes the origin.
    pub fn from_signer_key(skey: &str) -> Result<Self, CheckpointError> {
        Ok(CheckpointSigner {
            signer: NoteSigner::parse(skey)?,
        })
    }

    /// The signer key string to store (secret).
    pub fn to_signer_key(&self) -> Zeroizing<String> {
        self.signer.to_signer_key_string()
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The public key that verifies this log's checkpoints.
    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Signs the tree head `(size, root)`.
    pub fn sign(&self, size: u64, root: Hash) -> Result<SignedCheckpoint, CheckpointError> {
        let checkpoint = Checkpoint::new(self.origin(), size, root)?;
        let note = note::sign(&checkpoint.to_body(), &[&self.signer])?;
        Ok(SignedCheckpoint { checkpoint, note })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::EMPTY_ROOT;

    #[test]
    fn body_layout_is_exact() {
        let c = Checkpoint::new("cloister.example/audit", 0, EMPTY_ROOT).unwrap();
        assert_eq!(
            c.to_body(),
            "cloister.example/audit\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(Checkpoint::parse_body(&c.to_body()).unwrap(), c);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        for bad in [
            format!("o\n1\n{root}"),                      // no final newline
            format!("o\n01\n{root}\n"),                   // leading zero
            format!("o\n+1\n{root}\n"),                   // sign
            format!("o\n\n{root}\n"),                     // empty size
            format!("o\n18446744073709551616\n{root}\n"), // overflow
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n".to_owned(), // trailing bits
            "o\n1\nAAAA\n".to_owned(),                    // 3 bytes
            format!("o\n1\n{root}\n\n"),                  // empty extension
            format!("\n1\n{root}\n"),                     // empty origin
            format!("a b\n1\n{root}\n"),                  // space in origin
            "o\n1\n".to_owned(),                          // no root
        ] {
            assert!(Checkpoint::parse_body(&bad).is_err(), "{bad:?}");
        }
        let ext =
            Checkpoint::parse_body(&format!("o\n18446744073709551615\n{root}\nx y\n")).unwrap();
        assert_eq!(ext.size, u64::MAX);
        assert_eq!(ext.extensions, vec!["x y".to_owned()]);
    }
}
