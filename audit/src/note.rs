//! C2SP signed notes (`golang.org/x/mod/sumdb/note`) with Ed25519 keys.
//!
//! A signed note is its text (UTF-8, ending in `\n`), a blank line, then one
//! or more signature lines:
//!
//! ```text
//! <text ending in \n>
//! \n
//! — <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>\n
//! ```
//!
//! The dash is U+2014 EM DASH followed by a space. The signed message is the
//! text alone, up to and including its final newline. For Ed25519 the key id
//! is the first 4 bytes of `SHA-256(key name || 0x0A || 0x01 || public key)`.
//!
//! Key strings (both as Go's `note.GenerateKey` writes them):
//! * verifier: `<name>+<8 hex key id>+<base64(0x01 || 32-byte public key)>`
//! * signer: `PRIVATE+KEY+<name>+<8 hex key id>+<base64(0x01 || 32-byte seed)>`
//!
//! Parsing is strict: base64 must be canonical standard base64 with padding,
//! key ids lowercase hex, names free of whitespace and `+`.

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The algorithm byte of Ed25519 keys in key strings and key ids.
pub const ALG_ED25519: u8 = 0x01;
/// Signature lines start with this: U+2014 EM DASH and a space.
pub const SIG_PREFIX: &str = "\u{2014} ";
/// A note with more signature lines than this is refused (as Go does).
pub const MAX_SIGNATURES: usize = 100;

/// A 4-byte key id, printed as 8 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 4]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:08x}", u32::from_be_bytes(self.0))
    }
}

impl KeyId {
    /// The id of an Ed25519 key: `SHA-256(name || "\n" || 0x01 || key)[..4]`.
    pub fn ed25519(name: &str, key: &VerifyingKey) -> KeyId {
        KeyId::of(name, ALG_ED25519, key)
    }

    /// `SHA-256(name || "\n" || alg || key)[..4]`: `alg` is 0x01 for note
    /// signatures, 0x04 for Ed25519 cosignatures (`crate::witness`).
    pub fn of(name: &str, alg: u8, key: &VerifyingKey) -> KeyId {
        let mut h = Sha256::new();
        h.update(name.as_bytes());
        h.update([b'\n', alg]);
        h.update(key.as_bytes());
        let d = h.finalize();
        KeyId([d[0], d[1], d[2], d[3]])
    }

    fn parse(hex: &str) -> Option<KeyId> {
        let ok = hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !ok {
            return None;
        }
        Some(KeyId(u32::from_str_radix(hex, 16).ok()?.to_be_bytes()))
    }
}

/// Why a key string, a note or a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key string")]
    MalformedKey,
    #[error("unknown key algorithm {0:#04x}")]
    UnknownAlgorithm(u8),
    #[error("the key id in the key string does not match its name and key")]
    KeyIdMismatch,
    #[error("invalid key name {0:?}")]
    InvalidName(String),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("signature by unknown key {name}+{id}")]
    UnknownKey { name: String, id: KeyId },
    #[error("signature line names {found:?} but key {id} belongs to {expected:?}")]
    KeyNameMismatch {
        expected: String,
        found: String,
        id: KeyId,
    },
    #[error("invalid signature by key {name}+{id}")]
    BadSignature { name: String, id: KeyId },
}

/// Names must be non-empty and contain no Unicode whitespace and no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    // The STANDARD engine insists on padding and zero trailing bits, so every
    // byte string has exactly one accepted encoding.
    STANDARD.decode(s).ok()
}

/// Splits `<name>+<hex id>+<base64(alg || 32 bytes)>` (a verifier key, or
/// a signer key after `PRIVATE+KEY+`): the name, the id as written, and
/// the 32 bytes, which must follow the algorithm byte `alg`.
pub(crate) fn split_key_string(
    key: &str,
    alg: u8,
) -> Result<(&str, KeyId, Zeroizing<[u8; 32]>), NoteError> {
    let mut parts = key.splitn(3, '+');
    let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey);
    };
    if !is_valid_name(name) {
        return Err(NoteError::InvalidName(name.to_owned()));
    }
    let id = KeyId::parse(hex).ok_or(NoteError::MalformedKey)?;
    let raw = Zeroizing::new(decode_b64(b64).ok_or(NoteError::MalformedKey)?);
    match raw.split_first() {
        Some((&found, bytes)) if found == alg => {
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| NoteError::MalformedKey)?;
            Ok((name, id, Zeroizing::new(bytes)))
        }
        Some((&found, _)) => Err(NoteError::UnknownAlgorithm(found)),
        None => Err(NoteError::MalformedKey),
    }
}

/// [`split_key_string`] for a verifier key: the name, id and public key.
pub(crate) fn parse_public_key(
    vkey: &str,
    alg: u8,
) -> Result<(&str, KeyId, VerifyingKey), NoteError> {
    let (name, id, bytes) = split_key_string(vkey, alg)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::MalformedKey)?;
    Ok((name, id, key))
}

/// `<name>+<hex id>+<base64(alg || bytes)>`; wiped when dropped, as it
/// may hold a private key.
pub(crate) fn key_string(name: &str, id: KeyId, alg: u8, bytes: &[u8; 32]) -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; 33]);
    raw[0] = alg;
    raw[1..].copy_from_slice(bytes);
    let encoded = Zeroizing::new(STANDARD.encode(raw.as_ref()));
    let id = id.to_string();
    // Sized up front so that no reallocation leaves a copy behind.
    let mut out = Zeroizing::new(String::with_capacity(
        name.len() + 1 + id.len() + 1 + encoded.len(),
    ));
    for part in [name, "+", &id, "+", &encoded] {
        out.push_str(part);
    }
    out
}

/// A public key that checks signatures on notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: KeyId,
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::InvalidName(name.to_owned()));
        }
        Ok(NoteVerifier {
            name: name.to_owned(),
            id: KeyId::ed25519(name, &key),
            key,
        })
    }

    /// Parses `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_public_key(vkey, ALG_ED25519)?;
        let v = NoteVerifier::new(name, key)?;
        if v.id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(v)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> KeyId {
        self.id
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks one raw 64-byte signature over `msg` (strict Ed25519).
    pub(crate) fn check(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify_strict(msg, &sig).is_ok()
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = key_string(&self.name, self.id, ALG_ED25519, self.key.as_bytes());
        f.write_str(&key)
    }
}

/// An Ed25519 private key under a name, with the algorithm byte its key
/// id and key strings carry: 0x01 for note signatures, 0x04 for witness
/// cosignatures (`crate::witness`). The key is wiped on drop.
#[derive(Clone)]
pub(crate) struct NamedKey {
    pub(crate) name: String,
    pub(crate) id: KeyId,
    pub(crate) key: SigningKey,
    alg: u8,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedKey")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NamedKey {
    pub(crate) fn new(name: &str, key: SigningKey, alg: u8) -> Result<Self, NoteError> {
        if !is_valid_name(name) {
            return Err(NoteError::InvalidName(name.to_owned()));
        }
        Ok(NamedKey {
            name: name.to_owned(),
            id: KeyId::of(name, alg, &key.verifying_key()),
            key,
            alg,
        })
    }

    #[cfg(feature = "generate")]
    /// A new key from the operating system's random number generator.
    pub(crate) fn generate(name: &str, alg: u8) -> Result<Self, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).expect("the operating system has no random numbers");
        NamedKey::new(name, SigningKey::from_bytes(&seed), alg)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(alg || seed)>`.
    pub(crate) fn parse(skey: &str, alg: u8) -> Result<Self, NoteError> {
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey)?;
        let (name, id, seed) = split_key_string(rest, alg)?;
        let key = NamedKey::new(name, SigningKey::from_bytes(&seed), alg)?;
        if key.id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(key)
    }

    /// The private key string; keep it secret. Wiped when dropped.
    pub(crate) fn to_key_string(&self) -> Zeroizing<String> {
        let key = key_string(&self.name, self.id, self.alg, self.key.as_bytes());
        let mut out = Zeroizing::new(String::with_capacity("PRIVATE+KEY+".len() + key.len()));
        out.push_str("PRIVATE+KEY+");
        out.push_str(&key);
        out
    }
}

/// A private key that signs notes. The Ed25519 key is wiped on drop.
#[derive(Clone, Debug)]
pub struct NoteSigner(NamedKey);

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        NamedKey::new(name, key, ALG_ED25519).map(NoteSigner)
    }

    #[cfg(feature = "generate")]
    /// A new key from the operating system's random number generator.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        NamedKey::generate(name, ALG_ED25519).map(NoteSigner)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>`.
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        NamedKey::parse(skey, ALG_ED25519).map(NoteSigner)
    }

    /// The signer key string; keep it secret. Wiped when dropped.
    pub fn to_signer_key_string(&self) -> Zeroizing<String> {
        self.0.to_key_string()
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.0.name.clone(),
            id: self.0.id,
            key: self.0.key.verifying_key(),
        }
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn key_id(&self) -> KeyId {
        self.0.id
    }

    /// The signature line (with its newline) for `text`.
    fn signature_line(&self, text: &str) -> String {
        let mut blob = self.0.id.0.to_vec();
        blob.extend_from_slice(&self.0.key.sign(text.as_bytes()).to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.0.name, STANDARD.encode(blob))
    }
}

/// A signature line as found in a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: KeyId,
    /// The base64 of key id and signature, as written in the note.
    pub base64: String,
}

/// A note whose signatures were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, ending in `\n`.
    pub text: String,
    /// Signatures by known keys, all valid.
    pub verified: Vec<NoteSignature>,
    /// Signatures by keys the caller did not supply (e.g. witnesses).
    pub unverified: Vec<NoteSignature>,
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed(
            "text must be non-empty and end in a newline",
        ));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

/// Signs `text` with each signer and returns the whole note.
pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    check_text(text)?;
    if signers.is_empty() || signers.len() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("a note needs 1 to 100 signatures"));
    }
    let mut out = format!("{text}\n");
    for s in signers {
        out.push_str(&s.signature_line(text));
    }
    Ok(out)
}

/// Parses `msg` and checks its signatures against `known`.
///
/// Like Go's `note.Open`: a signature by a known key (same name and key id)
/// must be valid; signatures by other keys are returned as unverified; at
/// least one signature must verify, else the error names the first unknown
/// key. Identical repeated lines are ignored.
/// Stricter than Go: a signature line carrying a known key id under a
/// different name is an error, base64 must be canonical.
pub fn open(msg: &str, known: &[NoteVerifier]) -> Result<OpenedNote, NoteError> {
    if msg.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    let split = msg
        .rfind("\n\n")
        .ok_or(NoteError::Malformed("no blank line before the signatures"))?;
    let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::Malformed(
            "signature block must end in a newline",
        ));
    }
    let mut note = OpenedNote {
        text: text.to_owned(),
        verified: Vec::new(),
        unverified: Vec::new(),
    };
    let lines: Vec<&str> = sigs[..sigs.len() - 1].split('\n').collect();
    if lines.len() > MAX_SIGNATURES {
        return Err(NoteError::Malformed("too many signatures"));
    }
    for line in lines {
        let body = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
            "signature line without the em dash prefix",
        ))?;
        let (name, b64) = body
            .split_once(' ')
            .ok_or(NoteError::Malformed("signature line without a space"))?;
        if !is_valid_name(name) {
            return Err(NoteError::Malformed("invalid key name in a signature line"));
        }
        let blob = decode_b64(b64).ok_or(NoteError::Malformed("bad base64 in a signature line"))?;
        if blob.len() < 5 {
            return Err(NoteError::Malformed("signature too short"));
        }
        let id = KeyId([blob[0], blob[1], blob[2], blob[3]]);
        let sig = NoteSignature {
            name: name.to_owned(),
            id,
            base64: b64.to_owned(),
        };
        let Some(v) = known.iter().find(|v| v.id == id && v.name == name) else {
            if let Some(v) = known.iter().find(|v| v.id == id) {
                return Err(NoteError::KeyNameMismatch {
                    expected: v.name.clone(),
                    found: name.to_owned(),
                    id,
                });
            }
            if !note.unverified.contains(&sig) {
                note.unverified.push(sig);
            }
            continue;
        };
        if !v.check(text.as_bytes(), &blob[4..]) {
            return Err(NoteError::BadSignature {
                name: name.to_owned(),
                id,
            });
        }
        if !note
            .verified
            .iter()
            .any(|s| s.name == sig.name && s.id == id)
        {
            note.verified.push(sig);
        }
    }
    if note.verified.is_empty() {
        // Every line was by an unknown key (there is at least one line).
        let first = &note.unverified[0];
        return Err(NoteError::UnknownKey {
            name: first.name.clone(),
            id: first.id,
        });
    }
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    #[test]
    fn key_id_of_the_go_example_key() {
        let v = NoteVerifier::parse(PETER_VKEY).unwrap();
        assert_eq!(v.name(), "PeterNeumann");
        assert_eq!(v.key_id().to_string(), "c74f20a3");
        assert_eq!(v.key_id(), KeyId::ed25519("PeterNeumann", v.public_key()));
        assert_eq!(v.to_string(), PETER_VKEY);
    }

    #[test]
    fn key_id_is_name_newline_alg_key() {
        let s = NoteSigner::generate("log.example/audit").unwrap();
        let mut buf = b"log.example/audit\n\x01".to_vec();
        buf.extend_from_slice(s.verifier().public_key().as_bytes());
        let d = Sha256::digest(&buf);
        assert_eq!(s.key_id().0, [d[0], d[1], d[2], d[3]]);
    }

    #[test]
    fn names_with_space_or_plus_are_refused() {
        for bad in ["", "a b", "a+b", "a\tb", "a\u{a0}b"] {
            assert!(!is_valid_name(bad), "{bad:?}");
            assert!(NoteSigner::generate(bad).is_err());
        }
        assert!(is_valid_name("example.com/log"));
    }
}
