//! Room events as the application sees them: decrypted where they were
//! encrypted, with how far the sender is established.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::{
    CryptoError, Decrypted, EncryptedFile, OlmMachine, UnverifiedReason, VerificationState,
};

/// How an event travelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Encryption {
    /// Sent in the clear (state events, or rooms exempt from encryption).
    Plaintext,
    /// Decrypted with Megolm.
    Decrypted {
        /// The sending device, when its keys are known.
        sender_device: Option<String>,
        /// Whether the user verified that device.
        verified: bool,
        /// Why not, when not.
        unverified_reason: Option<String>,
        /// The Megolm session (room key) that decrypted it.
        session_id: String,
    },
    /// Could not be decrypted (yet): `reason` says why. A missing room key
    /// may still arrive; the client retries such events after each sync.
    Undecryptable {
        /// Why it could not be decrypted (safe to show or log).
        reason: String,
        /// True when only the room key is missing: it may still arrive.
        missing_key: bool,
    },
}

/// One room event, decrypted when possible.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// The room it was sent in.
    pub room_id: String,
    /// The event's id (`$…`).
    pub event_id: String,
    /// The sending user's id.
    pub sender: String,
    /// When the sender's server received it, in milliseconds since the
    /// Unix epoch.
    pub origin_server_ts: u64,
    /// The (decrypted) event type, e.g. `m.room.message`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The (decrypted) content.
    pub content: Value,
    /// The state key of a state event (for membership: the user concerned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_key: Option<String>,
    /// How it travelled: decrypted, undecryptable or in the clear.
    pub encryption: Encryption,
}

impl TimelineEvent {
    /// The `body` of a message event.
    pub fn body(&self) -> Option<&str> {
        self.content.get("body").and_then(Value::as_str)
    }

    /// Whether the event is part of an in-room key verification (the
    /// request message, or an `m.key.verification.*` step).
    pub fn is_verification(&self) -> bool {
        self.event_type.starts_with("m.key.verification.")
            || (self.event_type == "m.room.message"
                && self.msgtype() == Some("m.key.verification.request"))
    }

    /// The `msgtype` of a message event.
    pub fn msgtype(&self) -> Option<&str> {
        self.content.get("msgtype").and_then(Value::as_str)
    }

    /// The encrypted attachment of a file/image/audio/video message.
    pub fn encrypted_file(&self) -> Option<EncryptedFile> {
        serde_json::from_value(self.content.get("file")?.clone()).ok()
    }

    /// The device that sent it, when it was decrypted and the device is
    /// known.
    pub fn sender_device(&self) -> Option<&str> {
        match &self.encryption {
            Encryption::Decrypted { sender_device, .. } => sender_device.as_deref(),
            _ => None,
        }
    }

    /// Whether it was decrypted with Megolm.
    pub fn is_decrypted(&self) -> bool {
        matches!(self.encryption, Encryption::Decrypted { .. })
    }

    /// Whether decryption failed only for lack of the room key.
    pub(crate) fn is_missing_key(&self) -> bool {
        matches!(
            self.encryption,
            Encryption::Undecryptable {
                missing_key: true,
                ..
            }
        )
    }
}

fn field(event: &Value, name: &str) -> String {
    event
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn unverified(reason: UnverifiedReason) -> &'static str {
    match reason {
        UnverifiedReason::DeviceNotVerified => "device not verified",
        UnverifiedReason::UnknownDevice => "unknown device",
        UnverifiedReason::ForwardedKey => "forwarded key",
    }
}

impl From<&Decrypted> for Encryption {
    fn from(d: &Decrypted) -> Self {
        let (verified, unverified_reason) = match d.verification {
            VerificationState::Verified => (true, None),
            VerificationState::Unverified(r) => (false, Some(unverified(r).to_owned())),
        };
        Encryption::Decrypted {
            sender_device: d.sender_device.as_ref().map(|d| d.device_id.clone()),
            verified,
            unverified_reason,
            session_id: d.session_id.clone(),
        }
    }
}

/// Turn a raw room event into a [`TimelineEvent`], decrypting it if it is
/// `m.room.encrypted`.
pub(crate) fn to_timeline_event(
    machine: &mut OlmMachine,
    room_id: &str,
    event: &Value,
) -> TimelineEvent {
    let mut out = TimelineEvent {
        room_id: room_id.to_owned(),
        event_id: field(event, "event_id"),
        sender: field(event, "sender"),
        origin_server_ts: event
            .get("origin_server_ts")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        event_type: field(event, "type"),
        content: event.get("content").cloned().unwrap_or(Value::Null),
        state_key: event
            .get("state_key")
            .and_then(Value::as_str)
            .map(str::to_owned),
        encryption: Encryption::Plaintext,
    };
    if out.event_type != "m.room.encrypted" || out.state_key.is_some() {
        return out;
    }
    match machine.decrypt_room_event(room_id, event) {
        Ok(decrypted) => {
            out.encryption = Encryption::from(&decrypted);
            out.event_type = field(&decrypted.event, "type");
            out.content = decrypted
                .event
                .get("content")
                .cloned()
                .unwrap_or(Value::Null);
        }
        Err(error) => {
            out.encryption = Encryption::Undecryptable {
                missing_key: matches!(error, CryptoError::MissingRoomKey { .. }),
                reason: error.to_string(),
            };
        }
    }
    out
}
