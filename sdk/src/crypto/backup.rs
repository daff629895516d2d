//! Server-side key backup (spec: "Server-side key backups",
//! `m.megolm_backup.v1.curve25519-aes-sha2`): every inbound Megolm session
//! is encrypted to the backup's Curve25519 public key and uploaded in
//! batches, so that a new device holding the backup key (from secret
//! storage) can read the history.
//!
//! The encryption is vodozemac's libolm-compatible `PkEncryption`, the
//! spec's scheme as every client implements it (its MAC covers nothing,
//! which is why restored keys never count as verified). Which sessions are
//! backed up is persisted with each session, so an upload interrupted by a
//! restart resumes where it stopped.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vodozemac::pk_encryption::{Message, PkDecryption, PkEncryption};
use vodozemac::{Curve25519PublicKey, Curve25519SecretKey, Ed25519PublicKey};
use zeroize::Zeroizing;

use super::canonical_json::{add_signature, signable_bytes, verify_signature};
use super::error::CryptoError;
use super::machine::OlmMachine;
use super::megolm::{InboundGroupSession, KeyOrigin, SessionRef};
use super::requests::{PendingKind, RequestBody};
use super::MEGOLM_V1;
use cloister_proto::canonical::decode_b64;

/// The backup algorithm.
pub const MEGOLM_BACKUP_V1: &str = "m.megolm_backup.v1.curve25519-aes-sha2";
/// The secret storage name of the backup key.
pub const SECRET_BACKUP: &str = "m.megolm_backup.v1";
/// Sessions per upload.
const BACKUP_BATCH: usize = 100;

fn backup_error(reason: impl Into<String>) -> CryptoError {
    CryptoError::Backup(reason.into())
}

/// The backup this device uploads to, and its private key when held.
#[derive(Default)]
pub(crate) struct BackupState {
    /// The private key (32 bytes), wiped on drop.
    pub key: Option<Zeroizing<[u8; 32]>>,
    /// The server's version of the backup this key belongs to.
    pub version: Option<String>,
}

/// How [`BackupState`] is persisted.
#[derive(Serialize, Deserialize)]
pub(crate) struct BackupRecord {
    key: Option<String>,
    version: Option<String>,
}

impl Drop for BackupRecord {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        if let Some(key) = &mut self.key {
            key.zeroize();
        }
    }
}

impl BackupState {
    pub(crate) fn is_empty(&self) -> bool {
        self.key.is_none() && self.version.is_none()
    }

    pub(crate) fn to_record(&self) -> BackupRecord {
        BackupRecord {
            key: self
                .key
                .as_ref()
                .map(|k| STANDARD_NO_PAD.encode(k.as_ref())),
            version: self.version.clone(),
        }
    }

    pub(crate) fn from_record(record: &BackupRecord) -> Result<Self, CryptoError> {
        let key = record.key.as_deref().map(decode_key).transpose()?;
        Ok(Self {
            key,
            version: record.version.clone(),
        })
    }

    fn decryption(&self) -> Option<PkDecryption> {
        let key = self.key.as_ref()?;
        Some(PkDecryption::from_key(Curve25519SecretKey::from_slice(key)))
    }

    fn public_key(&self) -> Option<Curve25519PublicKey> {
        self.decryption().map(|d| d.public_key())
    }
}

/// A backup private key from base64 (padded or not).
fn decode_key(text: &str) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let bytes = Zeroizing::new(
        decode_b64(text.trim()).ok_or_else(|| backup_error("the backup key is not base64"))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != 32 {
        return Err(backup_error("the backup key is not 32 bytes"));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// The public key in a backup version's `auth_data`.
fn auth_public_key(version_info: &Value) -> Result<Curve25519PublicKey, CryptoError> {
    if version_info.get("algorithm").and_then(Value::as_str) != Some(MEGOLM_BACKUP_V1) {
        return Err(backup_error("unsupported backup algorithm"));
    }
    version_info
        .pointer("/auth_data/public_key")
        .and_then(Value::as_str)
        .and_then(decode_b64)
        .and_then(|k| Curve25519PublicKey::from_slice(&k).ok())
        .ok_or_else(|| backup_error("the backup has no usable public key"))
}

/// What [`OlmMachine::import_backup`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupImport {
    /// Sessions added (or improved).
    pub imported: usize,
    /// Sessions that did not decrypt or were malformed.
    pub failed: usize,
}

impl OlmMachine {
    /// Make a new backup key and return the `POST /room_keys/version` body
    /// (its `auth_data` signed by this device and, when held, the master
    /// key). Once the server answers with the version, call
    /// [`enable_backup`](Self::enable_backup).
    pub fn create_backup(&mut self) -> Result<Value, CryptoError> {
        let decryption = PkDecryption::new();
        let key = Zeroizing::new(*decryption.secret_key().to_bytes());
        let mut auth_data = json!({ "public_key": decryption.public_key().to_base64() });
        let map = auth_data.as_object_mut().expect("an object");
        let bytes = signable_bytes(map)?;
        let device_signature = self.account.sign(&bytes);
        add_signature(
            map,
            &self.user_id,
            &format!("ed25519:{}", self.device_id),
            &device_signature,
        );
        if let Some(master) = self
            .cross_signing
            .published
            .as_ref()
            .and_then(|p| p.master.as_ref())
        {
            let key_id = super::identities::key_id(&master.public_key());
            add_signature(map, &self.user_id, &key_id, &master.sign(bytes.as_bytes()));
        }
        self.backup = super::backup::BackupState {
            key: Some(key),
            version: None,
        };
        Ok(json!({ "algorithm": MEGOLM_BACKUP_V1, "auth_data": auth_data }))
    }

    /// The server created (or the user chose) backup `version` for the key
    /// this device holds: every session is uploaded to it from now on.
    pub fn enable_backup(&mut self, version: &str) -> Result<(), CryptoError> {
        if self.backup.key.is_none() {
            return Err(backup_error("this device holds no backup key"));
        }
        if self.backup.version.as_deref() != Some(version) {
            self.backup.version = Some(version.to_owned());
            self.inbound.mark_all_unbacked();
            self.requests.drop_backups();
        }
        Ok(())
    }

    /// Stop uploading (the backup was deleted or replaced elsewhere); the
    /// key is kept for restoring.
    pub fn disable_backup(&mut self) {
        self.backup.version = None;
        self.requests.drop_backups();
    }

    /// The backup version uploads go to, if any.
    pub fn backup_version(&self) -> Option<String> {
        self.backup.version.clone()
    }

    /// The backup private key (unpadded base64), for secret storage.
    pub fn backup_key(&self) -> Option<Zeroizing<String>> {
        self.backup
            .key
            .as_ref()
            .map(|k| Zeroizing::new(STANDARD_NO_PAD.encode(k.as_ref())))
    }

    /// Take the backup key from secret storage for the backup described by
    /// `version_info` (a `GET /room_keys/version` answer); refused when it
    /// is not that backup's key. Enables uploads to that version.
    pub fn import_backup_key(
        &mut self,
        key: &str,
        version_info: &Value,
    ) -> Result<(), CryptoError> {
        let key = decode_key(key)?;
        let public = PkDecryption::from_key(Curve25519SecretKey::from_slice(&key)).public_key();
        if public != auth_public_key(version_info)? {
            return Err(backup_error(
                "the stored backup key does not belong to the current backup",
            ));
        }
        let version = version_info
            .get("version")
            .and_then(Value::as_str)
            .ok_or_else(|| backup_error("the backup has no version"))?;
        self.backup.key = Some(key);
        self.backup.version = None;
        self.enable_backup(version)
    }

    /// Whether the backup described by `version_info` is signed by a key the
    /// user trusts: our verified master key, or one of our verified devices
    /// (this one included). Restoring an untrusted backup is allowed (the
    /// keys count as unverified anyway); uploading to one is not wise.
    pub fn is_backup_trusted(&self, version_info: &Value) -> bool {
        let Some(auth) = version_info.get("auth_data").and_then(Value::as_object) else {
            return false;
        };
        let Some(signatures) = auth
            .get("signatures")
            .and_then(|s| s.get(&self.user_id))
            .and_then(Value::as_object)
        else {
            return false;
        };
        let own = self.devices.identity(&self.user_id);
        signatures.keys().any(|key_id| {
            let Some(name) = key_id.strip_prefix("ed25519:") else {
                return false;
            };
            let key: Option<Ed25519PublicKey> = if name == self.device_id {
                Some(self.account.identity_keys().ed25519)
            } else if let Some(identity) = own.filter(|i| i.master.to_base64() == name) {
                identity.is_verified(own).then_some(identity.master)
            } else {
                let verified = matches!(
                    self.devices.device_trust(&self.user_id, name),
                    Some(super::identities::DeviceTrust::Verified)
                );
                self.devices
                    .get(&self.user_id, name)
                    .filter(|_| verified)
                    .map(|d| d.ed25519)
            };
            key.is_some_and(|key| {
                verify_signature(auth, &self.user_id, key_id, &key, "backup auth data").is_ok()
            })
        })
    }

    /// Queue the next batch of sessions not yet in the backup, when a
    /// backup is enabled and no upload is in flight.
    pub(crate) fn queue_backup(&mut self) -> Result<(), CryptoError> {
        let (Some(version), Some(public)) = (self.backup.version.clone(), self.backup.public_key())
        else {
            return Ok(());
        };
        if self.requests.has_backup() {
            return Ok(());
        }
        let encryption = PkEncryption::from_key(public);
        let mut rooms: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut sessions: Vec<SessionRef> = Vec::new();
        for (key, session) in self.inbound.unbacked().take(BACKUP_BATCH) {
            let data = self.backup_session_data(session, &encryption)?;
            rooms
                .entry(key.0.clone())
                .or_default()
                .insert(key.1.clone(), data);
            sessions.push(key.clone());
        }
        if sessions.is_empty() {
            return Ok(());
        }
        let rooms: BTreeMap<String, Value> = rooms
            .into_iter()
            .map(|(room, s)| (room, json!({ "sessions": s })))
            .collect();
        self.requests.push(
            RequestBody::BackupKeys {
                version,
                body: json!({ "rooms": rooms }),
            },
            PendingKind::Backup { sessions },
        );
        Ok(())
    }

    fn backup_session_data(
        &self,
        session: &InboundGroupSession,
        encryption: &PkEncryption,
    ) -> Result<Value, CryptoError> {
        let chain = match &session.origin {
            KeyOrigin::Forwarded { forwarding_chain } => forwarding_chain.clone(),
            KeyOrigin::Direct { .. } => Vec::new(),
        };
        let exported = session.export();
        let mut plaintext = json!({
            "algorithm": MEGOLM_V1,
            "sender_key": session.sender_key.to_base64(),
            "sender_claimed_keys": { "ed25519": session.signing_key.to_base64() },
            "forwarding_curve25519_key_chain": chain,
            "session_key": exported.as_str(),
        });
        let bytes = super::persist::to_vec_secret(&plaintext)?;
        super::zeroize_json(&mut plaintext);
        let message = encryption
            .encrypt(&bytes)
            .map_err(|e| backup_error(format!("encrypting a session failed: {e}")))?;
        let verified = matches!(session.origin, KeyOrigin::Direct { .. })
            && self
                .devices
                .find_by_curve25519(
                    session.origin_user().unwrap_or_default(),
                    &session.sender_key,
                )
                .is_some_and(|d| {
                    matches!(
                        self.devices.device_trust(&d.user_id, &d.device_id),
                        Some(super::identities::DeviceTrust::Verified)
                    )
                });
        Ok(json!({
            "first_message_index": session.first_known_index(),
            "forwarded_count": chain.len(),
            "is_verified": verified,
            "session_data": {
                "ephemeral": message.ephemeral_key.to_base64(),
                "ciphertext": STANDARD_NO_PAD.encode(&message.ciphertext),
                "mac": STANDARD_NO_PAD.encode(&message.mac),
            },
        }))
    }

    /// An upload went through: those sessions are in the backup.
    pub(crate) fn mark_backed_up(&mut self, sessions: &[SessionRef]) {
        for key in sessions {
            self.inbound.set_backed_up(key, true);
        }
    }

    /// Restore sessions from a `GET /room_keys/keys` answer with the backup
    /// key this device holds. Restored keys count as forwarded (never as
    /// verified: the backup does not authenticate them), and as already
    /// backed up.
    pub fn import_backup(&mut self, keys: &Value) -> Result<BackupImport, CryptoError> {
        let decryption = self
            .backup
            .decryption()
            .ok_or_else(|| backup_error("this device holds no backup key"))?;
        let mut report = BackupImport::default();
        let rooms = keys.get("rooms").and_then(Value::as_object);
        for (room_id, room) in rooms.into_iter().flatten() {
            let sessions = room.get("sessions").and_then(Value::as_object);
            for (session_id, data) in sessions.into_iter().flatten() {
                match self.import_one(&decryption, room_id, session_id, data) {
                    Ok(true) => report.imported += 1,
                    Ok(false) => {}
                    Err(_) => report.failed += 1,
                }
            }
        }
        Ok(report)
    }

    fn import_one(
        &mut self,
        decryption: &PkDecryption,
        room_id: &str,
        session_id: &str,
        data: &Value,
    ) -> Result<bool, CryptoError> {
        super::machine::check_room_id(room_id)?;
        let field = |f: &str| {
            data.pointer(&format!("/session_data/{f}"))
                .and_then(Value::as_str)
                .ok_or_else(|| backup_error(format!("session_data has no {f}")))
        };
        let message =
            Message::from_base64(field("ciphertext")?, field("mac")?, field("ephemeral")?)
                .map_err(|_| backup_error("session_data does not decode"))?;
        let plain = Zeroizing::new(
            decryption
                .decrypt(&message)
                .map_err(|_| backup_error("a session does not decrypt with the backup key"))?,
        );
        let mut content: Value = serde_json::from_slice(&plain)
            .map_err(|_| backup_error("a decrypted session is not JSON"))?;
        let result = self.import_backed_up_session(room_id, session_id, &content);
        super::zeroize_json(&mut content);
        result
    }

    fn import_backed_up_session(
        &mut self,
        room_id: &str,
        session_id: &str,
        content: &Value,
    ) -> Result<bool, CryptoError> {
        let text = |f: &str| content.get(f).and_then(Value::as_str);
        if text("algorithm") != Some(MEGOLM_V1) {
            return Err(backup_error("unsupported session algorithm"));
        }
        let sender_key = text("sender_key")
            .and_then(|k| Curve25519PublicKey::from_base64(k).ok())
            .ok_or_else(|| backup_error("invalid sender_key"))?;
        let signing_key = content
            .pointer("/sender_claimed_keys/ed25519")
            .and_then(Value::as_str)
            .and_then(|k| Ed25519PublicKey::from_base64(k).ok())
            .ok_or_else(|| backup_error("invalid sender_claimed_keys"))?;
        let chain = content
            .get("forwarding_curve25519_key_chain")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let session_key = text("session_key").ok_or_else(|| backup_error("no session_key"))?;
        let session = InboundGroupSession::from_room_key(
            room_id,
            session_id,
            session_key,
            sender_key,
            signing_key,
            KeyOrigin::Forwarded {
                forwarding_chain: chain,
            },
        )?
        .received_at(self.last_now_ms);
        let own = self.user_id.clone();
        let added = self.store_room_key(&own, Ok(session), true);
        if added {
            // What came from the backup need not go up again; a session
            // kept instead (ours, or a better copy) is judged on its own.
            self.inbound
                .set_backed_up(&(room_id.to_owned(), session_id.to_owned()), true);
        }
        Ok(added)
    }

    pub(crate) fn backup_record(&self) -> Result<Option<Zeroizing<Vec<u8>>>, CryptoError> {
        if self.backup.is_empty() {
            return Ok(None);
        }
        super::persist::to_vec_secret(&self.backup.to_record()).map(Some)
    }
}
