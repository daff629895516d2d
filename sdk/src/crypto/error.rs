//! Errors of the crypto core.

use thiserror::Error;

/// Everything that can go wrong in the crypto core.
///
/// Messages name users, devices, rooms and sessions, never key material or
/// plaintext, so they are safe to log.
#[derive(Debug, Error)]
pub enum CryptoError {
    /// Not a user id (`@localpart:server`).
    #[error("invalid user id {0:?}: expected @localpart:server")]
    InvalidUserId(String),
    /// Not a usable device id (empty, too long, whitespace or `:`).
    #[error("invalid device id {0:?}")]
    InvalidDeviceId(String),
    /// Not a room id (`!opaque:server`, or `!opaque` from room version 12).
    #[error("invalid room id {0:?}: expected !opaque_id[:server]")]
    InvalidRoomId(String),

    /// A value to sign or verify is not canonical JSON (a float, an integer
    /// beyond ±(2^53 − 1)).
    #[error("JSON is not valid canonical JSON: {0}")]
    CanonicalJson(String),
    /// JSON that could not be parsed or serialized.
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A message or response lacks a field or has one of the wrong shape.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// A signature is missing or does not verify.
    #[error("missing or invalid signature by {signer} on {what}")]
    BadSignature {
        /// What was signed (device keys, a one-time key…).
        what: &'static str,
        /// The expected signer: user id and key id.
        signer: String,
    },

    /// A cross-signing step that cannot be taken (no identity, a key this
    /// device does not hold, a signature the server refused).
    #[error("cross-signing: {0}")]
    CrossSigning(String),
    /// Secret storage refused: a wrong recovery key or passphrase, a secret
    /// that is missing or does not authenticate.
    #[error("secret storage: {0}")]
    SecretStorage(String),
    /// Key backup refused: no backup, a backup key that does not match, a
    /// backup whose signatures are not trusted.
    #[error("key backup: {0}")]
    Backup(String),
    /// A verification that does not exist or cannot take this step now.
    #[error("verification {flow_id}: {reason}")]
    Verification {
        /// The verification's transaction id.
        flow_id: String,
        /// Why the step was refused.
        reason: String,
    },

    /// `mark_request_as_sent` was given an id the core did not hand out
    /// (or already marked).
    #[error("no outgoing request with id {0}")]
    UnknownRequest(String),

    /// `encrypt_room_event` before the room key was shared.
    #[error(
        "the room key for {room_id} must be shared before encrypting: call share_room_key until it returns no requests"
    )]
    RoomKeyNotShared {
        /// The room.
        room_id: String,
    },

    /// An encryption algorithm this core does not implement.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// No Olm session with the device owning this Curve25519 key.
    #[error("no Olm session with the device owning {0}")]
    NoOlmSession(String),
    /// The Olm message carries no ciphertext for this device.
    #[error("the Olm message is not addressed to this device")]
    NotForThisDevice,
    /// No Olm session with the sender could decrypt the message.
    #[error("no Olm session with {sender_key} could decrypt the message")]
    OlmDecryption {
        /// The sender's Curve25519 key.
        sender_key: String,
    },
    /// A pre-key message could not start an Olm session (e.g. its one-time
    /// key was used already).
    #[error("Olm session creation from a pre-key message failed: {0}")]
    OlmSessionCreation(String),
    /// The decrypted Olm payload names another sender, recipient or key.
    #[error("the Olm payload failed a check: {0}")]
    OlmPayloadMismatch(&'static str),

    /// The room key (Megolm session) for this event has not arrived.
    #[error("no room key for session {session_id} in {room_id}")]
    MissingRoomKey {
        /// The room.
        room_id: String,
        /// The missing session.
        session_id: String,
    },
    /// Megolm decryption failed (corrupt ciphertext, unknown index).
    #[error("Megolm decryption failed: {0}")]
    MegolmDecryption(String),
    /// A Megolm message index was used by another event before: a replay.
    #[error(
        "replayed ciphertext: message index {index} of session {session_id} was already used by event {first_event_id}"
    )]
    Replay {
        /// The Megolm session.
        session_id: String,
        /// The reused message index.
        index: u32,
        /// The event that used it first.
        first_event_id: String,
    },
    /// The event is past its room's retention policy and is not decrypted.
    #[error(
        "event {event_id} in {room_id} has expired under the room's retention policy and is not decrypted"
    )]
    Expired {
        /// The room.
        room_id: String,
        /// The expired event.
        event_id: String,
    },
    /// The plaintext names another room than the one it arrived in.
    #[error("the decrypted event claims room {claimed} but was received in {actual}")]
    RoomMismatch {
        /// The room the plaintext names.
        claimed: String,
        /// The room it arrived in.
        actual: String,
    },
    /// The event's sender does not own the room key that encrypted it.
    #[error("the event sender {event_sender} is not the owner of the room key ({key_owner})")]
    SenderMismatch {
        /// Who the event says sent it.
        event_sender: String,
        /// Who shared the room key.
        key_owner: String,
    },
    /// The sending device's Ed25519 key is not the one that shared the room
    /// key.
    #[error(
        "the sending device {user_id}/{device_id} has a different Ed25519 key than the one that shared the room key"
    )]
    SenderKeyMismatch {
        /// The device's owner.
        user_id: String,
        /// The device.
        device_id: String,
    },
}

/// Errors of encrypted attachments (kept apart because attachments are used
/// without an [`OlmMachine`](super::OlmMachine)).
#[derive(Debug, Error)]
pub enum AttachmentError {
    /// The `file` object is not version `v2`.
    #[error("unsupported encrypted-file version {0:?}: only \"v2\" is accepted")]
    UnsupportedVersion(String),
    /// The JSON Web Key is not an AES-256-CTR key.
    #[error("invalid attachment key: {0}")]
    InvalidKey(&'static str),
    /// The IV is not 16 bytes of base64.
    #[error("invalid attachment IV")]
    InvalidIv,
    /// The `file` object has no `sha256` hash.
    #[error("the encrypted file has no SHA-256 hash")]
    MissingHash,
    /// The downloaded ciphertext does not match its hash.
    #[error("the ciphertext does not match its SHA-256 hash: the file was altered or truncated")]
    HashMismatch,
    /// More data than AES-CTR can encrypt with this IV's counter.
    #[error("the attachment is too large for AES-CTR with this IV")]
    TooLarge,
}
