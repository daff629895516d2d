//! The sans-I/O end-to-end encryption core.
//!
//! [`OlmMachine`] holds the device's keys and sessions. It never performs
//! I/O and never reads a clock: it hands out [`OutgoingRequest`]s, takes
//! their responses back, takes in what a sync returned, and is told the time
//! by its callers. Randomness comes from the operating system (inside
//! vodozemac, and for transaction ids and attachment keys).

mod account;
pub mod attachments;
mod backup;
mod canonical_json;
mod cross_signing;
mod devices;
mod error;
mod events;
mod identities;
mod machine;
mod megolm;
mod olm;
mod persist;
mod persist_state;
mod requests;
mod retention;
mod room_events;
mod secret_storage;
mod sharing;
mod to_device;
mod verification;

pub use account::TARGET_ONE_TIME_KEYS;
pub use attachments::{
    decrypt_attachment, encrypt_attachment, EncryptedAttachment, EncryptedFile, JsonWebKey,
};
pub use backup::{BackupImport, MEGOLM_BACKUP_V1, SECRET_BACKUP};
pub use canonical_json::canonical_json;
pub use cross_signing::{
    SigningKeysUploadRequest, SECRET_MASTER, SECRET_SELF_SIGNING, SECRET_USER_SIGNING,
};
pub use devices::{Device, LocalTrust};
pub use error::{AttachmentError, CryptoError};
pub use events::{CryptoEvent, KeyChangeWarning};
pub use identities::{DeviceTrust, UserIdentity};
pub use machine::{OlmMachine, SyncChanges};
pub use megolm::EncryptionSettings;
#[cfg(feature = "client")]
pub(crate) use persist::to_vec_secret;
pub use persist::{
    CryptoChanges, CryptoRecord, RECORD_ACCOUNT, RECORD_BACKUP, RECORD_CROSS_SIGNING,
    RECORD_INBOUND, RECORD_KINDS, RECORD_OLM, RECORD_OUTBOUND, RECORD_STATE,
};
#[cfg(feature = "client")]
pub(crate) use requests::percent_encode;
pub use requests::{
    KeysClaimRequest, KeysQueryRequest, KeysUploadRequest, OutgoingRequest, RequestBody,
    SignaturesUploadRequest, ToDeviceRequest,
};
pub use retention::{RetentionPolicy, ShredReport};
pub use room_events::{Decrypted, UnverifiedReason, VerificationState};
pub use secret_storage::{
    PassphraseInfo, SecretStorageKey, PASSPHRASE_ITERATIONS, SECRET_STORAGE_V1,
};
pub use verification::{SasEmoji, VerificationInfo, VerificationPhase};

use serde_json::Value;
use zeroize::Zeroize;

/// The Olm algorithm name used in Matrix.
pub const OLM_V1: &str = "m.olm.v1.curve25519-aes-sha2";
/// The Megolm algorithm name used in Matrix.
pub const MEGOLM_V1: &str = "m.megolm.v1.aes-sha2";
/// The one-time key algorithm (signed Curve25519 keys).
pub const SIGNED_CURVE25519: &str = "signed_curve25519";

/// Describe a JSON error in decrypted data without quoting the data:
/// `serde_json` messages can repeat the offending value, which may be
/// plaintext or key material.
pub(crate) fn describe_json_error(error: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        error.classify(),
        error.line(),
        error.column()
    )
}

/// Overwrite every string in a JSON value that held key material before it
/// is dropped: `serde_json` values cannot zeroize themselves.
pub(crate) fn zeroize_json(value: &mut Value) {
    match value {
        Value::String(s) => s.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(zeroize_json),
        Value::Object(map) => map.values_mut().for_each(zeroize_json),
        _ => {}
    }
}
