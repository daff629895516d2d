//! Errors of the crypto core.

use thiserror::Error;

/// Everything that can go wrong in the crypto core.
///
/// Messages name users, devices, rooms and sessions, never key material or
/// plaintext, so they are safe to log.
#[derive(Debug, Error)]
pub enum CryptoError {
    #[error("invalid user id {0:?}: expected @localpart:server")]
    InvalidUserId(String),
    #[error("invalid device id {0:?}")]
    InvalidDeviceId(String),
    #[error("invalid room id {0:?}: expected !opaque_id[:server]")]
    InvalidRoomId(String),

    #[error("JSON is not valid canonical JSON: {0}")]
    CanonicalJson(String),
    #[error("malformed JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("missing or invalid signature by {signer} on {what}")]
    BadSignature { what: &'static str, signer: String },

    #[error("no outgoing request with id {0}")]
    UnknownRequest(String),

    #[error(
        "the room key for {room_id} must be shared before encrypting: call share_room_key until it returns no requests"
    )]
    RoomKeyNotShared { room_id: String },

    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("no Olm session with the device owning {0}")]
    NoOlmSession(String),
    #[error("the Olm message is not addressed to this device")]
    NotForThisDevice,
    #[error("no Olm session with {sender_key} could decrypt the message")]
    OlmDecryption { sender_key: String },
    #[error("Olm session creation from a pre-key message failed: {0}")]
    OlmSessionCreation(String),
    #[error("the Olm payload failed a check: {0}")]
    OlmPayloadMismatch(&'static str),

    #[error("no room key for session {session_id} in {room_id}")]
    MissingRoomKey { room_id: String, session_id: String },
    #[error("Megolm decryption failed: {0}")]
    MegolmDecryption(String),
    #[error(
        "replayed ciphertext: message index {index} of session {session_id} was already used by event {first_event_id}"
    )]
    Replay {
        session_id: String,
        index: u32,
        first_event_id: String,
    },
    #[error(
        "event {event_id} in {room_id} has expired under the room's retention policy and is not decrypted"
    )]
    Expired { room_id: String, event_id: String },
    #[error("the decrypted event claims room {claimed} but was received in {actual}")]
    RoomMismatch { claimed: String, actual: String },
    #[error("the event sender {event_sender} is not the owner of the room key ({key_owner})")]
    SenderMismatch {
        event_sender: String,
        key_owner: String,
    },
    #[error(
        "the sending device {user_id}/{device_id} has a different Ed25519 key than the one that shared the room key"
    )]
    SenderKeyMismatch { user_id: String, device_id: String },
}

/// Errors of encrypted attachments (kept apart because attachments are used
/// without an [`OlmMachine`](super::OlmMachine)).
#[derive(Debug, Error)]
pub enum AttachmentError {
    #[error("unsupported encrypted-file version {0:?}: only \"v2\" is accepted")]
    UnsupportedVersion(String),
    #[error("invalid attachment key: {0}")]
    InvalidKey(&'static str),
    #[error("invalid attachment IV")]
    InvalidIv,
    #[error("the encrypted file has no SHA-256 hash")]
    MissingHash,
    #[error("the ciphertext does not match its SHA-256 hash: the file was altered or truncated")]
    HashMismatch,
    #[error("the attachment is too large for AES-CTR with this IV")]
    TooLarge,
}
