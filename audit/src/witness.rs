//! Witnesses: other parties that keep the newest checkpoint of the log they
//! saw, cosign a new one only if it extends that one, and so make a rollback
//! or a fork (two histories shown to two people) visible. Follows C2SP
//! `tlog-witness` (the `add-checkpoint` request and its answers) and
//! `tlog-cosignature` v1 with Ed25519:
//!
//! * a cosignature is a note signature line `— <witness name>
//!   base64(key id || u64 big-endian timestamp || Ed25519 signature)`;
//! * the key id is `SHA-256(name || "\n" || 0x04 || public key)[..4]`;
//! * the signed message is `cosignature/v1\ntime <seconds>\n` followed by
//!   the checkpoint's note text.
//!
//! Sans I/O like the rest of the crate: the witness's decision is
//! [`add_checkpoint`], a function of its key, the logs it follows, what it
//! stored and the request; the caller persists the new head atomically with
//! the check (the `cloister audit witness` command holds a lock around both).

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

use crate::checkpoint::{open_checkpoint, Checkpoint, VerifiedCheckpoint};
use crate::merkle::{self, Hash};
use crate::note::{
    key_string, parse_public_key, KeyId, NamedKey, NoteError, NoteSignature, NoteVerifier,
    SIG_PREFIX,
};

/// The algorithm byte of Ed25519 cosignature/v1 keys.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// At most this many consistency proof lines in a request (C2SP).
pub const MAX_PROOF_LINES: usize = 63;

fn cosigned_message(text: &str, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{text}")
}

/// A witness's private key. The Ed25519 key is wiped on drop.
#[derive(Clone, Debug)]
pub struct Cosigner(NamedKey);

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        NamedKey::new(name, key, ALG_COSIGNATURE_V1).map(Cosigner)
    }

    #[cfg(feature = "generate")]
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        NamedKey::generate(name, ALG_COSIGNATURE_V1).map(Cosigner)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>`.
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        NamedKey::parse(skey, ALG_COSIGNATURE_V1).map(Cosigner)
    }

    /// The private key string; keep it secret.
    pub fn to_key_string(&self) -> Zeroizing<String> {
        self.0.to_key_string()
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.0.name.clone(),
            id: self.0.id,
            key: self.0.key.verifying_key(),
        }
    }

    /// The cosignature line (with its newline) on a checkpoint's note text.
    pub fn cosign(&self, text: &str, time: u64) -> String {
        let signature = self.0.key.sign(cosigned_message(text, time).as_bytes());
        let mut blob = self.0.id.0.to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&signature.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.0.name, STANDARD.encode(blob))
    }
}

/// A witness's public key: `<name>+<hex id>+<base64(0x04 || key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: KeyId,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_public_key(vkey, ALG_COSIGNATURE_V1)?;
        if KeyId::of(name, ALG_COSIGNATURE_V1, &key) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(CosignatureVerifier {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The time of `sig`'s cosignature on `text`, if it is this witness's
    /// and valid.
    pub fn check(&self, text: &str, sig: &NoteSignature) -> Option<u64> {
        if sig.name != self.name || sig.id != self.id {
            return None;
        }
        let blob = STANDARD.decode(&sig.base64).ok()?;
        let (time, signature) = blob.get(4..)?.split_at_checked(8)?;
        let time = u64::from_be_bytes(time.try_into().ok()?);
        let signature = Signature::from_slice(signature).ok()?;
        self.key
            .verify_strict(cosigned_message(text, time).as_bytes(), &signature)
            .ok()
            .map(|()| time)
    }
}

impl std::fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = key_string(&self.name, self.id, ALG_COSIGNATURE_V1, self.key.as_bytes());
        f.write_str(&key)
    }
}

/// The witnesses among `witnesses` that validly cosigned `checkpoint`.
pub fn cosigned_by<'a>(
    checkpoint: &VerifiedCheckpoint,
    witnesses: &'a [CosignatureVerifier],
) -> Vec<&'a CosignatureVerifier> {
    let text = checkpoint.checkpoint().to_body();
    witnesses
        .iter()
        .filter(|w| {
            checkpoint
                .unverified_signatures()
                .iter()
                .any(|sig| w.check(&text, sig).is_some())
        })
        .collect()
}

/// Too few of the required witnesses cosigned the newest checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooFewCosignatures {
    pub found: usize,
    pub required: usize,
}

impl std::fmt::Display for TooFewCosignatures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the latest checkpoint carries {} of the {} witness cosignatures required: \
             no witness vouches that this is the history it saw",
            self.found, self.required
        )
    }
}

/// Whether the newest checkpoint of a verified export (its signed note,
/// `latest_note` of the report) carries at least `required` cosignatures
/// from `witnesses`: the names of those that cosigned it, or the shortfall.
/// The one rule the command-line and the in-browser verifiers share.
pub fn require_cosignatures(
    latest_note: Option<&str>,
    key: &NoteVerifier,
    witnesses: &[CosignatureVerifier],
    required: usize,
) -> Result<Vec<String>, TooFewCosignatures> {
    let cosigned: Vec<String> = latest_note
        .and_then(|note| open_checkpoint(note, key).ok())
        .map(|c| {
            cosigned_by(&c, witnesses)
                .into_iter()
                .map(|w| w.name().to_owned())
                .collect()
        })
        .unwrap_or_default();
    if cosigned.len() >= required {
        Ok(cosigned)
    } else {
        Err(TooFewCosignatures {
            found: cosigned.len(),
            required,
        })
    }
}

/// The body of an `add-checkpoint` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the witness last cosigned (0 at first).
    pub old_size: u64,
    /// Consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note.
    pub note: String,
}

impl AddCheckpoint {
    pub fn to_body(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        for hash in &self.proof {
            out.push_str(&STANDARD.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.note);
        out
    }

    pub fn parse(body: &str) -> Result<Self, Refusal> {
        let bad = |why: &str| Refusal::BadRequest(why.to_owned());
        let (head, note) = body
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or_else(|| bad("the first line must be `old <size>`"))?;
        if old.len() > 1 && old.starts_with('0') {
            return Err(bad("the old size has a leading zero"));
        }
        let old_size = old
            .parse()
            .map_err(|_| bad("the old size is not a number"))?;
        let proof = lines
            .map(|l| {
                STANDARD
                    .decode(l)
                    .ok()
                    .and_then(|h| Hash::try_from(h).ok())
                    .ok_or_else(|| bad("a proof line is not the base64 of 32 bytes"))
            })
            .collect::<Result<Vec<Hash>, Refusal>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            note: note.to_owned(),
        })
    }
}

/// What a witness remembers of one log: the newest head it cosigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WitnessedHead {
    pub size: u64,
    pub root: Hash,
}

/// Why a witness refused to cosign, with the HTTP answer C2SP prescribes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("this witness does not follow that log")]
    UnknownLog,
    #[error("the checkpoint is not signed by the log's key")]
    NotSigned,
    /// The request's old size is not what the witness cosigned last.
    #[error("the witness last cosigned size {latest}")]
    OldSizeMismatch { latest: u64 },
    /// Same size as the head the witness holds, other root: a fork.
    #[error("the witness holds another tree of size {size}: the log forked")]
    Forked { size: u64 },
    #[error("the consistency proof does not verify")]
    BadProof,
}

impl Refusal {
    /// The HTTP status of the answer.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::NotSigned => 403,
            Refusal::UnknownLog => 404,
            Refusal::OldSizeMismatch { .. } | Refusal::Forked { .. } => 409,
            Refusal::BadProof => 422,
        }
    }

    /// The answer's body and content type: for an old size mismatch, the
    /// size the witness holds (`text/x.tlog.size`), so the log can retry.
    pub fn body(&self) -> (String, &'static str) {
        match self {
            Refusal::OldSizeMismatch { latest } => (format!("{latest}\n"), "text/x.tlog.size"),
            other => (format!("{other}\n"), "text/plain; charset=utf-8"),
        }
    }
}

/// What a witness does with one `add-checkpoint` request: on success, the
/// checkpoint's origin, the head to store (atomically with the check) and
/// the response body (the cosignature line).
pub fn add_checkpoint(
    cosigner: &Cosigner,
    logs: &[NoteVerifier],
    stored: impl FnOnce(&str) -> Option<WitnessedHead>,
    request: &str,
    now_secs: u64,
) -> Result<(String, WitnessedHead, String), Refusal> {
    let request = AddCheckpoint::parse(request)?;
    let origin = Checkpoint::origin_of_note(&request.note)
        .ok_or_else(|| Refusal::BadRequest("no checkpoint after the empty line".into()))?;
    let log = logs
        .iter()
        .find(|l| l.name() == origin)
        .ok_or(Refusal::UnknownLog)?;
    let opened = open_checkpoint(&request.note, log).map_err(|_| Refusal::NotSigned)?;
    let new = opened.checkpoint();
    if request.old_size > new.size {
        return Err(Refusal::BadRequest("old size beyond the checkpoint".into()));
    }
    let held = stored(&new.origin);
    let latest = held.map_or(0, |h| h.size);
    if request.old_size != latest {
        return Err(Refusal::OldSizeMismatch { latest });
    }
    if let Some(held) = held {
        if held.size == new.size && held.root != new.root {
            return Err(Refusal::Forked { size: new.size });
        }
        merkle::verify_consistency(held.size, new.size, &held.root, &new.root, &request.proof)
            .map_err(|_| Refusal::BadProof)?;
    } else if !request.proof.is_empty() {
        return Err(Refusal::BadProof);
    }
    let head = WitnessedHead {
        size: new.size,
        root: new.root,
    };
    let line = cosigner.cosign(&new.to_body(), now_secs);
    Ok((new.origin.clone(), head, line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::CheckpointSigner;
    use crate::merkle::leaf_hash;

    fn tree(n: u64, fork_at: Option<u64>) -> Vec<Hash> {
        (0..n)
            .map(|i| {
                let data = if Some(i) == fork_at { 999 } else { i };
                leaf_hash(&data.to_be_bytes())
            })
            .collect()
    }

    #[test]
    fn keys_round_trip_and_ids_use_0x04() {
        let c = Cosigner::generate("witness.example/w1").unwrap();
        let again = Cosigner::parse(&c.to_key_string()).unwrap();
        assert_eq!(again.verifier(), c.verifier());
        let v = CosignatureVerifier::parse(&c.verifier().to_string()).unwrap();
        assert_eq!(v, c.verifier());
        assert_eq!(
            v.id,
            KeyId::of("witness.example/w1", 0x04, &c.0.key.verifying_key())
        );
        // A log's note key is not a cosigner key, and the other way round.
        let log = CheckpointSigner::generate("log.example").unwrap();
        assert!(CosignatureVerifier::parse(&log.verifier().to_string()).is_err());
        assert!(NoteVerifier::parse(&v.to_string()).is_err());
    }

    #[test]
    fn the_witness_follows_one_history() {
        let log = CheckpointSigner::generate("log.example/audit").unwrap();
        let w = Cosigner::generate("witness.example/w1").unwrap();
        let logs = [log.verifier()];
        let leaves = tree(20, None);
        let sign = |n: u64| log.sign(n, merkle::root_of(&leaves[..n as usize])).unwrap();
        let request = |old: u64, new: u64| AddCheckpoint {
            old_size: old,
            proof: merkle::consistency_proof(&leaves[..new as usize], old).unwrap(),
            note: sign(new).note,
        };

        // First contact: old 0, no proof.
        let first = request(0, 5).to_body();
        let (origin, head, line) = add_checkpoint(&w, &logs, |_| None, &first, 1000).unwrap();
        assert_eq!((origin.as_str(), head.size), ("log.example/audit", 5));
        // The cosignature verifies on the checkpoint it was made for.
        let cosigned = format!("{}{line}", sign(5).note);
        let opened = open_checkpoint(&cosigned, &log.verifier()).unwrap();
        assert_eq!(cosigned_by(&opened, &[w.verifier()]).len(), 1);
        let other = Cosigner::generate("witness.example/w2").unwrap();
        assert!(cosigned_by(&opened, &[other.verifier()]).is_empty());

        // Growth with a proof from what it holds.
        let grown = request(5, 12).to_body();
        let (_, head, _) = add_checkpoint(&w, &logs, |_| Some(head), &grown, 1001).unwrap();
        assert_eq!(head.size, 12);

        // A stale old size: 409 with the size it holds.
        let stale = request(5, 15).to_body();
        let refused = add_checkpoint(&w, &logs, |_| Some(head), &stale, 1002).unwrap_err();
        assert_eq!(refused, Refusal::OldSizeMismatch { latest: 12 });
        assert_eq!(refused.status(), 409);
        assert_eq!(refused.body(), ("12\n".into(), "text/x.tlog.size"));

        // A fork of the same size, validly signed by the log's own key.
        let forked = tree(20, Some(3));
        let fork_note = log.sign(12, merkle::root_of(&forked[..12])).unwrap().note;
        let same_size = AddCheckpoint {
            old_size: 12,
            proof: vec![],
            note: fork_note,
        }
        .to_body();
        let refused = add_checkpoint(&w, &logs, |_| Some(head), &same_size, 1003).unwrap_err();
        assert_eq!(refused, Refusal::Forked { size: 12 });
        // A fork that grew: its proof cannot link it to what the witness holds.
        let fork_grown = AddCheckpoint {
            old_size: 12,
            proof: merkle::consistency_proof(&forked[..16], 12).unwrap(),
            note: log.sign(16, merkle::root_of(&forked[..16])).unwrap().note,
        }
        .to_body();
        let refused = add_checkpoint(&w, &logs, |_| Some(head), &fork_grown, 1004).unwrap_err();
        assert_eq!(refused.status(), 422);

        // Unknown log, bad signature, malformed bodies.
        let stranger = CheckpointSigner::generate("other.example/log").unwrap();
        let unknown = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: stranger.sign(1, leaves[0]).unwrap().note,
        };
        let err = add_checkpoint(&w, &logs, |_| None, &unknown.to_body(), 1).unwrap_err();
        assert_eq!(err.status(), 404);
        let impostor = CheckpointSigner::generate("log.example/audit").unwrap();
        let unsigned = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            note: impostor.sign(1, leaves[0]).unwrap().note,
        };
        let err = add_checkpoint(&w, &logs, |_| None, &unsigned.to_body(), 1).unwrap_err();
        assert_eq!(err.status(), 403);
        for bad in ["", "old 1\n", "old 01\n\nx", "new 1\n\nx", "old 1\n!!\n\nx"] {
            let err = add_checkpoint(&w, &logs, |_| None, bad, 1).unwrap_err();
            assert_eq!(err.status(), 400, "{bad:?}");
        }
    }
}
