//! Exporting the machine's state as records for a store, and rebuilding a
//! machine from them.
//!
//! The state is cut into records, each a `(kind, id)` key and a JSON value
//! holding vodozemac pickles and our own bookkeeping. The values hold
//! private keys in the clear: a store must encrypt them (the SQLite store in
//! [`crate::store`] does).
//!
//! Only what changed is handed out again: Olm and inbound Megolm sessions
//! are tracked with dirty sets (there can be many), the account, the
//! outbound sessions and the small bookkeeping state by comparing a hash of
//! their serialization with the one last saved.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vodozemac::megolm::{GroupSession, GroupSessionPickle, InboundGroupSessionPickle};
use vodozemac::olm::{Account as VodozemacAccount, AccountPickle, Session, SessionPickle};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};
use zeroize::Zeroizing;

use super::account::Account;
use super::backup::{BackupRecord, BackupState};
use super::cross_signing::{CrossSigningKeys, CrossSigningRecord};
use super::devices::DeviceStore;
use super::error::CryptoError;
use super::machine::OlmMachine;
use super::megolm::{
    session_record_id, EncryptionSettings, InboundGroupSession, KeyOrigin, OutboundGroupSession,
};
use super::olm::StoredSession;
use super::requests::DeviceRef;

/// The record holding the Olm account (identity keys, one-time keys).
pub const RECORD_ACCOUNT: &str = "crypto.account";
/// The record holding device lists, queued requests and bookkeeping.
pub const RECORD_STATE: &str = "crypto.state";
/// One record per peer Curve25519 key, holding its Olm sessions.
pub const RECORD_OLM: &str = "crypto.olm";
/// One record per inbound Megolm session (with its replay log).
pub const RECORD_INBOUND: &str = "crypto.inbound";
/// One record per room with an outbound Megolm session.
pub const RECORD_OUTBOUND: &str = "crypto.outbound";
/// The private cross-signing keys this device holds, when it holds any.
pub const RECORD_CROSS_SIGNING: &str = "crypto.cross_signing";
/// The key backup this device uploads to, and its key when held.
pub const RECORD_BACKUP: &str = "crypto.backup";
/// Every record kind the crypto core writes.
pub const RECORD_KINDS: [&str; 7] = [
    RECORD_ACCOUNT,
    RECORD_STATE,
    RECORD_OLM,
    RECORD_INBOUND,
    RECORD_OUTBOUND,
    RECORD_CROSS_SIGNING,
    RECORD_BACKUP,
];

/// One piece of persisted state. `data` holds secrets in the clear and is
/// wiped on drop; `Debug` shows only the key.
pub struct CryptoRecord {
    /// What the record holds: one of [`RECORD_KINDS`].
    pub kind: String,
    /// Which one of its kind (a session id, a peer key…; empty for
    /// singletons).
    pub id: String,
    /// The serialized state, secrets in the clear: a store must encrypt it.
    pub data: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for CryptoRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoRecord")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("len", &self.data.len())
            .finish()
    }
}

/// What changed since the last save: records to write and records to
/// delete (by kind and id).
#[derive(Debug, Default)]
pub struct CryptoChanges {
    /// Records to insert or replace.
    pub upserts: Vec<CryptoRecord>,
    /// Records to delete, as `(kind, id)`.
    pub deletes: Vec<(String, String)>,
}

impl CryptoChanges {
    /// Whether there is nothing to save.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty()
    }
}

/// Keys changed since they were last persisted, each with the counter
/// value of its latest change, so that clearing a snapshot does not lose a
/// change made after it was taken.
#[derive(Debug, Default)]
pub(crate) struct DirtySet {
    counter: u64,
    keys: HashMap<String, u64>,
}

impl DirtySet {
    pub(crate) fn mark(&mut self, key: &str) {
        self.counter += 1;
        self.keys.insert(key.to_owned(), self.counter);
    }

    fn snapshot(&self) -> Vec<(String, u64)> {
        self.keys.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn clear(&mut self, snapshot: &[(String, u64)]) {
        for (key, counter) in snapshot {
            if self.keys.get(key) == Some(counter) {
                self.keys.remove(key);
            }
        }
    }
}

type RecordKey = (String, String);

/// What was last saved, and what the latest `pending_changes` handed out.
#[derive(Default)]
pub(crate) struct PersistState {
    saved_hashes: HashMap<RecordKey, [u8; 32]>,
    pending: Option<PendingSave>,
}

struct PendingSave {
    hashes: HashMap<RecordKey, [u8; 32]>,
    olm: Vec<(String, u64)>,
    inbound: Vec<(String, u64)>,
    removed: Vec<(String, u64)>,
}

/// Serialize into a buffer allocated once at the final size, so that no
/// reallocation leaves copies of the secrets behind in freed memory.
pub(crate) fn to_vec_secret<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value)?;
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *out, value)?;
    Ok(out)
}

fn hash(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(super) fn corrupt(what: &'static str, error: impl fmt::Display) -> CryptoError {
    CryptoError::Malformed {
        what,
        reason: format!("stored state does not load: {error}"),
    }
}

#[derive(Serialize, Deserialize)]
struct AccountRecord {
    user_id: String,
    device_id: String,
    pickle: AccountPickle,
    device_keys_uploaded: bool,
    server_one_time_key_count: u64,
}

#[derive(Serialize, Deserialize)]
struct OlmSessionRecord {
    pickle: SessionPickle,
    last_used: u64,
}

#[derive(Serialize, Deserialize)]
struct InboundRecord {
    room_id: String,
    session_id: String,
    sender_key: String,
    signing_key: String,
    origin: KeyOrigin,
    pickle: InboundGroupSessionPickle,
    seen: BTreeMap<u32, String>,
    // The fields below are absent from records written before retention.
    #[serde(default)]
    timestamps: BTreeMap<u32, u64>,
    #[serde(default)]
    received_at_ms: Option<u64>,
    #[serde(default)]
    retention_floor: Option<u32>,
    #[serde(default)]
    backed_up: bool,
}

#[derive(Serialize, Deserialize)]
struct OutboundRecord {
    room_id: String,
    pickle: GroupSessionPickle,
    created_at_ms: u64,
    rotation_period_msgs: u64,
    rotation_period_ms: u64,
    shared_with: BTreeSet<DeviceRef>,
    withheld: BTreeSet<DeviceRef>,
    invalidated: bool,
    #[serde(default)]
    last_message_ms: Option<u64>,
}

impl OlmMachine {
    fn account_record(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let a = &self.account;
        to_vec_secret(&AccountRecord {
            user_id: a.user_id.clone(),
            device_id: a.device_id.clone(),
            pickle: a.inner.pickle(),
            device_keys_uploaded: a.device_keys_uploaded,
            server_one_time_key_count: a.server_one_time_key_count,
        })
    }

    fn outbound_record(session: &OutboundGroupSession) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        to_vec_secret(&OutboundRecord {
            room_id: session.room_id.clone(),
            pickle: session.session.pickle(),
            created_at_ms: session.created_at_ms,
            rotation_period_msgs: session.settings.rotation_period_msgs,
            rotation_period_ms: session.settings.rotation_period_ms,
            shared_with: session.shared_with.clone(),
            withheld: session.withheld.clone(),
            invalidated: session.invalidated,
            last_message_ms: session.last_message_ms,
        })
    }

    fn olm_record(sessions: &[StoredSession]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let records: Vec<OlmSessionRecord> = sessions
            .iter()
            .map(|s| OlmSessionRecord {
                pickle: s.session.pickle(),
                last_used: s.last_used,
            })
            .collect();
        to_vec_secret(&records)
    }

    fn inbound_record(
        &self,
        room_id: &str,
        session_id: &str,
    ) -> Option<Result<Zeroizing<Vec<u8>>, CryptoError>> {
        let key = (room_id.to_owned(), session_id.to_owned());
        let session = self.inbound.sessions.get(&key)?;
        Some(to_vec_secret(&InboundRecord {
            room_id: session.room_id.clone(),
            session_id: session.session_id.clone(),
            sender_key: session.sender_key.to_base64(),
            signing_key: session.signing_key.to_base64(),
            origin: session.origin.clone(),
            pickle: session.session.pickle(),
            seen: self.inbound.seen.get(&key).cloned().unwrap_or_default(),
            timestamps: self
                .inbound
                .timestamps
                .get(&key)
                .cloned()
                .unwrap_or_default(),
            received_at_ms: session.received_at_ms,
            retention_floor: session.retention_floor,
            backed_up: session.backed_up,
        }))
    }

    /// The records that changed since the last
    /// [`mark_changes_saved`](Self::mark_changes_saved). Nothing is
    /// considered saved until that is called, so a failed write is simply
    /// retried by asking again.
    pub fn pending_changes(&mut self) -> Result<CryptoChanges, CryptoError> {
        let mut changes = CryptoChanges::default();
        let mut hashes = HashMap::new();
        let mut diffed = vec![
            (
                RECORD_ACCOUNT.to_owned(),
                String::new(),
                self.account_record()?,
            ),
            (RECORD_STATE.to_owned(), String::new(), self.state_record()?),
        ];
        if let Some(record) = self.private_identity_record()? {
            diffed.push((RECORD_CROSS_SIGNING.to_owned(), String::new(), record));
        }
        if let Some(record) = self.backup_record()? {
            diffed.push((RECORD_BACKUP.to_owned(), String::new(), record));
        }
        for (room_id, session) in &self.outbound {
            diffed.push((
                RECORD_OUTBOUND.to_owned(),
                room_id.clone(),
                Self::outbound_record(session)?,
            ));
        }
        for (kind, id, data) in diffed {
            let digest = hash(&data);
            let key = (kind, id);
            if self.persist.saved_hashes.get(&key) != Some(&digest) {
                changes.upserts.push(CryptoRecord {
                    kind: key.0.clone(),
                    id: key.1.clone(),
                    data,
                });
            }
            hashes.insert(key, digest);
        }
        for key in self.persist.saved_hashes.keys() {
            if !hashes.contains_key(key) {
                changes.deletes.push(key.clone());
            }
        }

        let olm = self.olm.dirty.snapshot();
        for (their_key, _) in &olm {
            if let Some(sessions) = self.olm.by_key.get(their_key) {
                changes.upserts.push(CryptoRecord {
                    kind: RECORD_OLM.to_owned(),
                    id: their_key.clone(),
                    data: Self::olm_record(sessions)?,
                });
            }
        }
        let inbound = self.inbound.dirty.snapshot();
        for (record_id, _) in &inbound {
            let Some((room_id, session_id)) = record_id.split_once('\n') else {
                continue;
            };
            if let Some(data) = self.inbound_record(room_id, session_id) {
                changes.upserts.push(CryptoRecord {
                    kind: RECORD_INBOUND.to_owned(),
                    id: record_id.clone(),
                    data: data?,
                });
            }
        }
        // A session re-added since its removal is written above instead.
        let removed = self.inbound.removed.snapshot();
        for (record_id, _) in &removed {
            let present = record_id
                .split_once('\n')
                .is_some_and(|(room, session)| self.inbound.get(room, session).is_some());
            if !present {
                changes
                    .deletes
                    .push((RECORD_INBOUND.to_owned(), record_id.clone()));
            }
        }
        self.persist.pending = Some(PendingSave {
            hashes,
            olm,
            inbound,
            removed,
        });
        Ok(changes)
    }

    /// The changes from the latest [`pending_changes`](Self::pending_changes)
    /// were written: do not hand them out again.
    pub fn mark_changes_saved(&mut self) {
        if let Some(pending) = self.persist.pending.take() {
            self.persist.saved_hashes = pending.hashes;
            self.olm.dirty.clear(&pending.olm);
            self.inbound.dirty.clear(&pending.inbound);
            self.inbound.removed.clear(&pending.removed);
        }
    }

    /// Rebuild a machine from the records a store returned (every record
    /// of the kinds in [`RECORD_KINDS`]; others are ignored).
    pub fn from_records<I>(records: I) -> Result<Self, CryptoError>
    where
        I: IntoIterator<Item = CryptoRecord>,
    {
        let mut account = None;
        let mut state = None;
        let mut rest = Vec::new();
        for record in records {
            match record.kind.as_str() {
                RECORD_ACCOUNT => account = Some(record),
                RECORD_STATE => state = Some(record),
                RECORD_OLM | RECORD_INBOUND | RECORD_OUTBOUND | RECORD_CROSS_SIGNING
                | RECORD_BACKUP => rest.push(record),
                _ => {}
            }
        }
        let account_record = account.ok_or_else(|| corrupt("account", "no account record"))?;
        let parsed: AccountRecord =
            serde_json::from_slice(&account_record.data).map_err(|e| corrupt("account", e))?;
        let mut machine = OlmMachine::new(&parsed.user_id, &parsed.device_id)?;
        machine.account = Account {
            user_id: parsed.user_id,
            device_id: parsed.device_id,
            inner: VodozemacAccount::from_pickle(parsed.pickle),
            device_keys_uploaded: parsed.device_keys_uploaded,
            server_one_time_key_count: parsed.server_one_time_key_count,
        };
        machine.devices = DeviceStore::new(
            &machine.user_id,
            &machine.device_id,
            machine.account.identity_keys(),
        );
        let mut hashes = HashMap::new();
        hashes.insert(
            (RECORD_ACCOUNT.to_owned(), String::new()),
            hash(&account_record.data),
        );
        if let Some(record) = state {
            machine.load_state(&record.data)?;
            hashes.insert((RECORD_STATE.to_owned(), String::new()), hash(&record.data));
        }
        for record in rest {
            match record.kind.as_str() {
                RECORD_OLM => machine.load_olm(&record)?,
                RECORD_INBOUND => machine.load_inbound(&record)?,
                RECORD_BACKUP => {
                    let parsed: BackupRecord = serde_json::from_slice(&record.data)
                        .map_err(|e| corrupt("key backup", e))?;
                    machine.backup = BackupState::from_record(&parsed)?;
                    hashes.insert((record.kind.clone(), record.id.clone()), hash(&record.data));
                }
                RECORD_CROSS_SIGNING => {
                    let parsed: CrossSigningRecord = serde_json::from_slice(&record.data)
                        .map_err(|e| corrupt("cross-signing keys", e))?;
                    machine.cross_signing = CrossSigningKeys::from_record(&parsed)?;
                    hashes.insert((record.kind.clone(), record.id.clone()), hash(&record.data));
                }
                _ => {
                    machine.load_outbound(&record)?;
                    hashes.insert((record.kind.clone(), record.id.clone()), hash(&record.data));
                }
            }
        }
        machine.persist.saved_hashes = hashes;
        Ok(machine)
    }

    fn load_olm(&mut self, record: &CryptoRecord) -> Result<(), CryptoError> {
        let sessions: Vec<OlmSessionRecord> =
            serde_json::from_slice(&record.data).map_err(|e| corrupt("Olm sessions", e))?;
        let sessions = sessions
            .into_iter()
            .map(|s| StoredSession {
                session: Session::from_pickle(s.pickle),
                last_used: s.last_used,
            })
            .collect();
        self.olm.by_key.insert(record.id.clone(), sessions);
        Ok(())
    }

    fn load_inbound(&mut self, record: &CryptoRecord) -> Result<(), CryptoError> {
        let r: InboundRecord = serde_json::from_slice(&record.data)
            .map_err(|e| corrupt("inbound group session", e))?;
        let key = (r.room_id.clone(), r.session_id.clone());
        debug_assert_eq!(record.id, session_record_id(&key.0, &key.1));
        let session = InboundGroupSession {
            room_id: r.room_id,
            session_id: r.session_id,
            sender_key: Curve25519PublicKey::from_base64(&r.sender_key)
                .map_err(|e| corrupt("inbound group session", e))?,
            signing_key: Ed25519PublicKey::from_base64(&r.signing_key)
                .map_err(|e| corrupt("inbound group session", e))?,
            origin: r.origin,
            session: vodozemac::megolm::InboundGroupSession::from_pickle(r.pickle),
            received_at_ms: r.received_at_ms,
            retention_floor: r.retention_floor,
            backed_up: r.backed_up,
        };
        self.inbound.sessions.insert(key.clone(), session);
        self.inbound.seen.insert(key.clone(), r.seen);
        if !r.timestamps.is_empty() {
            self.inbound.timestamps.insert(key, r.timestamps);
        }
        Ok(())
    }

    fn load_outbound(&mut self, record: &CryptoRecord) -> Result<(), CryptoError> {
        let r: OutboundRecord = serde_json::from_slice(&record.data)
            .map_err(|e| corrupt("outbound group session", e))?;
        let session = OutboundGroupSession {
            room_id: r.room_id.clone(),
            session: GroupSession::from_pickle(r.pickle),
            created_at_ms: r.created_at_ms,
            settings: EncryptionSettings {
                rotation_period_msgs: r.rotation_period_msgs,
                rotation_period_ms: r.rotation_period_ms,
            },
            shared_with: r.shared_with,
            withheld: r.withheld,
            invalidated: r.invalidated,
            last_message_ms: r.last_message_ms,
        };
        self.outbound.insert(r.room_id, session);
        Ok(())
    }
}
