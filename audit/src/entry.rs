//! Audit entries: what one leaf of the log says, and its canonical bytes.
//!
//! An entry serialises to canonical JSON: the keys sorted, no whitespace,
//! integers only, strings escaped as `serde_json` (and RFC 8785) do. Parsing
//! and re-serialising an entry gives the same bytes, which is what lets an
//! offline verifier recompute each leaf hash from an export:
//!
//! ```text
//! {"action":"login","actor":"ps1:<64 hex>","details":{"attempts":1},"seq":0,"target":null,"ts":1700000000000}
//! ```
//!
//! The leaf hashed into the Merkle tree is exactly these bytes.
//!
//! # Personal data
//!
//! Entries never name a person directly. `actor` is either `system` or a
//! pseudonym `ps1:<hex HMAC-SHA256(key, user id)>` made by a
//! [`Pseudonymizer`], whose 32-byte key the server keeps outside the log.
//! Erasing a subject therefore never requires rewriting the log, which would
//! break every signed checkpoint: the entries stay, and they name only the
//! pseudonym. Whoever holds the key and the user id can still find the
//! subject's entries (for a subject-access export); if the server keeps one
//! key per subject and destroys it at erasure, that subject's pseudonyms can
//! no longer be linked to anyone. `target` follows the same rule: a user as
//! target is written as a pseudonym, and raw Matrix user ids (`@...`) are
//! refused. `details` holds named counts only (`u64`), never content.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::merkle::{leaf_hash, Hash};

/// Prefix of version-1 pseudonyms.
pub const PSEUDONYM_PREFIX: &str = "ps1:";
/// The actor for things the server does by itself (purge runs, ...).
pub const SYSTEM_ACTOR: &str = "system";
/// Limits that keep entries small.
pub const MAX_TARGET_LEN: usize = 256;
pub const MAX_DETAILS: usize = 64;
pub const MAX_DETAIL_KEY_LEN: usize = 64;

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("actor must be \"system\" or a ps1: pseudonym")]
    BadActor,
    #[error("target must be 1..=256 characters without control characters, and no raw user id")]
    BadTarget,
    #[error("details keys must match [a-z][a-z0-9_]{{0,63}}, at most 64 of them")]
    BadDetails,
}

/// What happened. The set is closed for format version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Login,
    LoginFailed,
    AccountCreated,
    PasswordChanged,
    AccountDeactivated,
    DeviceAdded,
    DeviceDeleted,
    PolicyChanged,
    HoldSet,
    HoldReleased,
    Export,
    Erasure,
    PurgeRun,
    AdminCall,
}

/// Who did it: the server itself, or a pseudonymous user.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Actor(String);

impl Actor {
    pub fn system() -> Actor {
        Actor(SYSTEM_ACTOR.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_pseudonym(s: &str) -> bool {
    s.strip_prefix(PSEUDONYM_PREFIX)
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

impl TryFrom<String> for Actor {
    type Error = EntryError;
    fn try_from(s: String) -> Result<Self, EntryError> {
        if s == SYSTEM_ACTOR || is_pseudonym(&s) {
            Ok(Actor(s))
        } else {
            Err(EntryError::BadActor)
        }
    }
}

impl From<Actor> for String {
    fn from(a: Actor) -> String {
        a.0
    }
}

/// What it was done to: a room id, a device, a policy name, a pseudonym...
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Target(String);

impl Target {
    pub fn new(s: &str) -> Result<Target, EntryError> {
        Target::try_from(s.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Target {
    type Error = EntryError;
    fn try_from(s: String) -> Result<Self, EntryError> {
        let ok = !s.is_empty()
            && s.chars().count() <= MAX_TARGET_LEN
            && !s.chars().any(char::is_control)
            && !s.starts_with('@');
        if ok {
            Ok(Target(s))
        } else {
            Err(EntryError::BadTarget)
        }
    }
}

impl From<Target> for String {
    fn from(t: Target) -> String {
        t.0
    }
}

/// Named counts (`purged_events: 12`, `bytes: 4096`, ...), sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BTreeMap<String, u64>", into = "BTreeMap<String, u64>")]
pub struct Details(BTreeMap<String, u64>);

impl Details {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a count; `Err` for a bad name or too many counts.
    pub fn with(mut self, name: &str, count: u64) -> Result<Self, EntryError> {
        self.0.insert(name.to_owned(), count);
        Details::try_from(self.0)
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

fn is_detail_key(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_DETAIL_KEY_LEN
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl TryFrom<BTreeMap<String, u64>> for Details {
    type Error = EntryError;
    fn try_from(m: BTreeMap<String, u64>) -> Result<Self, EntryError> {
        if m.len() <= MAX_DETAILS && m.keys().all(|k| is_detail_key(k)) {
            Ok(Details(m))
        } else {
            Err(EntryError::BadDetails)
        }
    }
}

impl From<Details> for BTreeMap<String, u64> {
    fn from(d: Details) -> Self {
        d.0
    }
}

/// One audit log entry. Fields are declared in sorted order so that
/// `serde_json` writes the canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub action: Action,
    pub actor: Actor,
    pub details: Details,
    /// Position in the log, from 0, no gaps.
    pub seq: u64,
    pub target: Option<Target>,
    /// Milliseconds since the Unix epoch.
    pub ts: u64,
}

impl AuditEntry {
    /// The canonical JSON bytes: the leaf data of the Merkle tree.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an entry always serialises")
    }

    /// `SHA-256(0x00 || canonical JSON)`.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical_json())
    }
}

/// An entry before the log gives it its sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub ts: u64,
    pub actor: Actor,
    pub action: Action,
    pub target: Option<Target>,
    pub details: Details,
}

impl NewEntry {
    pub fn new(ts: u64, actor: Actor, action: Action) -> Self {
        NewEntry {
            ts,
            actor,
            action,
            target: None,
            details: Details::new(),
        }
    }

    pub fn target(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    pub fn details(mut self, details: Details) -> Self {
        self.details = details;
        self
    }

    pub fn with_seq(self, seq: u64) -> AuditEntry {
        AuditEntry {
            action: self.action,
            actor: self.actor,
            details: self.details,
            seq,
            target: self.target,
            ts: self.ts,
        }
    }
}

/// Makes pseudonyms `ps1:<hex HMAC-SHA256(key, user id)>`. The key stays
/// with the server (never in the log or an export) and is wiped on drop.
#[derive(Clone)]
pub struct Pseudonymizer {
    key: [u8; 32],
}

impl Drop for Pseudonymizer {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
    }
}

impl Pseudonymizer {
    pub fn new(key: [u8; 32]) -> Self {
        Pseudonymizer { key }
    }

    #[cfg(feature = "generate")]
    /// A new random key.
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system has no random numbers");
        Pseudonymizer { key }
    }

    fn pseudonym(&self, user_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(user_id.as_bytes());
        let tag = mac.finalize().into_bytes();
        let mut s = String::with_capacity(PSEUDONYM_PREFIX.len() + 64);
        s.push_str(PSEUDONYM_PREFIX);
        for b in tag {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The actor for a user.
    pub fn actor(&self, user_id: &str) -> Actor {
        Actor(self.pseudonym(user_id))
    }

    /// The target for a user (same pseudonym as [`Self::actor`]).
    pub fn target(&self, user_id: &str) -> Target {
        Target(self.pseudonym(user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_is_sorted_and_compact() {
        let p = Pseudonymizer::new([7; 32]);
        let e = NewEntry::new(
            1_700_000_000_000,
            p.actor("@alice:example.org"),
            Action::Login,
        )
        .details(Details::new().with("attempts", 1).unwrap())
        .with_seq(0);
        let json = String::from_utf8(e.canonical_json()).unwrap();
        let want = format!(
            "{{\"action\":\"login\",\"actor\":\"{}\",\"details\":{{\"attempts\":1}},\"seq\":0,\"target\":null,\"ts\":1700000000000}}",
            e.actor.as_str()
        );
        assert_eq!(json, want);
        // Reordered keys and whitespace in the input do not change the bytes.
        let messy = format!(
            "{{ \"ts\": 1700000000000, \"target\": null, \"seq\": 0, \"details\": {{\"attempts\": 1}}, \"actor\": \"{}\", \"action\": \"login\" }}",
            e.actor.as_str()
        );
        let parsed: AuditEntry = serde_json::from_str(&messy).unwrap();
        assert_eq!(parsed.canonical_json(), e.canonical_json());
    }

    #[test]
    fn pseudonym_is_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        // HMAC pads short keys with zeros, so a zero-padded 32-byte key is the same key.
        let p = Pseudonymizer::new(key);
        assert_eq!(
            p.actor("what do ya want for nothing?").as_str(),
            "ps1:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_ne!(p.actor("@a:x"), Pseudonymizer::new([1; 32]).actor("@a:x"));
        assert_eq!(p.actor("@a:x").as_str(), p.target("@a:x").as_str());
    }

    #[test]
    fn personal_data_and_content_are_refused() {
        assert!(Target::new("@alice:example.org").is_err());
        assert!(Target::new("").is_err());
        assert!(Target::new("line\nbreak").is_err());
        assert!(Target::new(&"r".repeat(257)).is_err());
        assert!(Target::new("!room:example.org").is_ok());
        for bad in ["@alice:example.org", "alice", "ps1:XYZ", "ps1:"] {
            assert!(Actor::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        for bad in ["", "Body", "message text", "a-b", &"k".repeat(65)] {
            assert!(Details::new().with(bad, 1).is_err(), "{bad:?}");
        }
        let mut d = Details::new();
        for i in 0..MAX_DETAILS {
            d = d.with(&format!("k{i}"), 1).unwrap();
        }
        assert!(d.with("one_more", 1).is_err());
        // Non-integer counts and unknown fields do not parse.
        let base =
            r#"{"action":"login","actor":"system","details":{},"seq":0,"target":null,"ts":1"#;
        assert!(serde_json::from_str::<AuditEntry>(&format!("{base}}}")).is_ok());
        assert!(serde_json::from_str::<AuditEntry>(&format!("{base},\"body\":\"hi\"}}")).is_err());
        let float = base.replace("\"details\":{}", "\"details\":{\"n\":1.5}");
        assert!(serde_json::from_str::<AuditEntry>(&format!("{float}}}")).is_err());
        let text = base.replace("\"details\":{}", "\"details\":{\"n\":\"secret\"}");
        assert!(serde_json::from_str::<AuditEntry>(&format!("{text}}}")).is_err());
        let act = base.replace("login", "read_messages");
        assert!(serde_json::from_str::<AuditEntry>(&format!("{act}}}")).is_err());
    }
}
