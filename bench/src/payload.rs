//! What the generator sends: `m.room.encrypted` contents shaped and sized
//! like real Megolm output, with the generator's own message id hidden at
//! the start of the ciphertext.
//!
//! Cloister refuses plaintext and any field outside the Megolm allowlist
//! (`algorithm`, `sender_key`, `device_id`, `session_id`, `ciphertext`), so
//! the id cannot travel in a field of its own; the ciphertext is opaque to
//! every server, which makes it the one place that works everywhere.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::{json, Value};

pub(crate) const MEGOLM: &str = "m.megolm.v1.aes-sha2";

/// Marks ciphertexts this generator wrote, so events from other clients
/// (or a corrupted string) are never mistaken for ours.
const MAGIC: [u8; 4] = *b"CLB1";

/// Bytes of the encoded id. A multiple of 3, so its base64 form is exactly
/// the first `ID_CHARS` characters of the whole ciphertext's.
const ID_BYTES: usize = 24;
const ID_CHARS: usize = ID_BYTES / 3 * 4;

/// A short text message's Megolm ciphertext (a ~250-byte JSON payload,
/// padded, plus version, index, MAC and the 64-byte signature): 345 bytes
/// give 460 base64 characters and a whole content of about 655 bytes.
pub(crate) const CIPHERTEXT_BYTES: usize = 345;

/// One sent message, as its receivers can read it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MessageId {
    /// Random per generator run: events of earlier runs in the same rooms
    /// are ignored.
    pub run: u32,
    pub sender: u32,
    pub seq: u32,
    /// Unix time in microseconds when the send request started.
    pub sent_at_us: u64,
}

impl MessageId {
    /// Unique within a run: the sender in the high half, its counter in the
    /// low.
    pub(crate) fn key(&self) -> u64 {
        (u64::from(self.sender) << 32) | u64::from(self.seq)
    }

    fn to_bytes(self) -> [u8; ID_BYTES] {
        let mut out = [0u8; ID_BYTES];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..8].copy_from_slice(&self.run.to_be_bytes());
        out[8..12].copy_from_slice(&self.sender.to_be_bytes());
        out[12..16].copy_from_slice(&self.seq.to_be_bytes());
        out[16..24].copy_from_slice(&self.sent_at_us.to_be_bytes());
        out
    }

    /// Reads the id from the start of a ciphertext; None for anything this
    /// generator did not write.
    pub(crate) fn decode(ciphertext: &str) -> Option<MessageId> {
        let head = ciphertext.get(..ID_CHARS)?;
        let bytes = STANDARD_NO_PAD.decode(head).ok()?;
        if bytes.len() != ID_BYTES || bytes[0..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        Some(MessageId {
            run: u32_at(4),
            sender: u32_at(8),
            seq: u32_at(12),
            sent_at_us: u64::from_be_bytes(bytes[16..24].try_into().expect("8 bytes")),
        })
    }
}

/// Unpadded base64 of `len` random bytes (Matrix's key and id encoding).
pub(crate) fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    STANDARD_NO_PAD.encode(bytes)
}

/// A ciphertext that starts with `id`; the rest is random, as real
/// ciphertext looks to a server.
pub(crate) fn ciphertext(id: &MessageId) -> String {
    let mut bytes = vec![0u8; CIPHERTEXT_BYTES];
    bytes[..ID_BYTES].copy_from_slice(&id.to_bytes());
    rand::thread_rng().fill_bytes(&mut bytes[ID_BYTES..]);
    STANDARD_NO_PAD.encode(bytes)
}

/// The keys one simulated device encrypts with: a Curve25519 identity key
/// and one outbound Megolm session (43 base64 characters each).
#[derive(Debug, Clone)]
pub(crate) struct DeviceKeys {
    pub sender_key: String,
    pub session_id: String,
    pub device_id: String,
}

impl DeviceKeys {
    pub(crate) fn new(device_id: &str) -> DeviceKeys {
        DeviceKeys {
            sender_key: random_b64(32),
            session_id: random_b64(32),
            device_id: device_id.to_owned(),
        }
    }
}

/// An `m.room.encrypted` content with only the allowlisted Megolm fields.
pub(crate) fn megolm_content(id: &MessageId, keys: &DeviceKeys) -> Value {
    json!({
        "algorithm": MEGOLM,
        "sender_key": keys.sender_key,
        "device_id": keys.device_id,
        "session_id": keys.session_id,
        "ciphertext": ciphertext(id),
    })
}

/// The id carried by an event's content, if it is one of ours.
pub(crate) fn id_of_content(content: &Value) -> Option<MessageId> {
    MessageId::decode(content.get("ciphertext")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_id() -> MessageId {
        MessageId {
            run: 0xdead_beef,
            sender: 42,
            seq: 7_000_001,
            sent_at_us: 1_790_000_000_123_456,
        }
    }

    #[test]
    fn id_round_trips_through_the_ciphertext() {
        let id = sample_id();
        let text = ciphertext(&id);
        assert_eq!(MessageId::decode(&text), Some(id));
        let extremes = MessageId {
            run: u32::MAX,
            sender: 0,
            seq: u32::MAX,
            sent_at_us: u64::MAX,
        };
        assert_eq!(MessageId::decode(&ciphertext(&extremes)), Some(extremes));
    }

    #[test]
    fn foreign_ciphertexts_are_not_ours() {
        assert_eq!(MessageId::decode(""), None);
        assert_eq!(MessageId::decode("AwgAEnACbdfs"), None);
        assert_eq!(MessageId::decode(&random_b64(CIPHERTEXT_BYTES)), None);
        // Not base64 at all, and a multi-byte character at the cut.
        assert_eq!(MessageId::decode(&"é".repeat(40)), None);
    }

    #[test]
    fn keys_are_distinct_per_sender_and_counter() {
        let a = sample_id();
        let b = MessageId {
            seq: a.seq + 1,
            ..a
        };
        let c = MessageId {
            sender: a.sender + 1,
            ..a
        };
        assert_ne!(a.key(), b.key());
        assert_ne!(a.key(), c.key());
        assert_eq!(a.key(), MessageId { sent_at_us: 1, ..a }.key());
    }

    #[test]
    fn content_has_megolm_shape_and_size() {
        let keys = DeviceKeys::new("BENCHDEV01");
        let content = megolm_content(&sample_id(), &keys);
        let map = content.as_object().unwrap();
        let mut fields: Vec<&str> = map.keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "algorithm",
                "ciphertext",
                "device_id",
                "sender_key",
                "session_id"
            ]
        );
        assert_eq!(map["algorithm"], MEGOLM);
        assert_eq!(map["sender_key"].as_str().unwrap().len(), 43);
        assert_eq!(map["session_id"].as_str().unwrap().len(), 43);
        let ciphertext = map["ciphertext"].as_str().unwrap();
        assert_eq!(ciphertext.len(), 460);
        assert!(STANDARD_NO_PAD.decode(ciphertext).is_ok());
        let size = serde_json::to_vec(&content).unwrap().len();
        assert!((620..=700).contains(&size), "content is {size} bytes");
        assert_eq!(id_of_content(&content), Some(sample_id()));
    }
}
