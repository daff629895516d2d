//! Olm: the pairwise channels between devices that carry room keys.
//!
//! A device pair may hold several sessions (both sides may start one at the
//! same time, and a wedged session is replaced by a new one), so incoming
//! messages are tried against each, and outgoing ones use the session that
//! last worked, which makes both sides converge on the same one.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Value};
use vodozemac::olm::{OlmMessage, Session};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey};
use zeroize::Zeroizing;

use super::account::Account;
use super::devices::{Device, DeviceStore};
use super::error::CryptoError;
use super::persist::DirtySet;
use super::{describe_json_error, zeroize_json, OLM_V1};

pub(crate) struct StoredSession {
    pub session: Session,
    pub last_used: u64,
}

/// Olm sessions by the other device's Curve25519 key.
#[derive(Default)]
pub(crate) struct OlmSessions {
    pub by_key: HashMap<String, Vec<StoredSession>>,
    /// A logical clock ordering session use; no wall clock is needed.
    pub tick: u64,
    /// Keys whose sessions changed since they were last persisted.
    pub dirty: DirtySet,
}

impl OlmSessions {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    pub(crate) fn add(&mut self, their_key: &Curve25519PublicKey, session: Session) {
        let last_used = self.next_tick();
        self.dirty.mark(&their_key.to_base64());
        self.by_key
            .entry(their_key.to_base64())
            .or_default()
            .push(StoredSession { session, last_used });
    }

    pub(crate) fn has_session(&self, their_key: &Curve25519PublicKey) -> bool {
        self.by_key
            .get(&their_key.to_base64())
            .is_some_and(|s| !s.is_empty())
    }

    fn encrypt(
        &mut self,
        their_key: &Curve25519PublicKey,
        plaintext: &str,
    ) -> Result<OlmMessage, CryptoError> {
        let tick = self.next_tick();
        let stored = self
            .by_key
            .get_mut(&their_key.to_base64())
            .and_then(|sessions| sessions.iter_mut().max_by_key(|s| s.last_used))
            .ok_or_else(|| CryptoError::NoOlmSession(their_key.to_base64()))?;
        stored.last_used = tick;
        self.dirty.mark(&their_key.to_base64());
        stored
            .session
            .encrypt(plaintext)
            .map_err(|e| CryptoError::Malformed {
                what: "Olm encryption",
                reason: e.to_string(),
            })
    }

    /// Try every session with `their_key`, most recently used first.
    fn decrypt_existing(
        &mut self,
        their_key: &Curve25519PublicKey,
        message: &OlmMessage,
    ) -> Option<Zeroizing<Vec<u8>>> {
        let tick = self.next_tick();
        let sessions = self.by_key.get_mut(&their_key.to_base64())?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.last_used));
        for stored in sessions.iter_mut() {
            if let Ok(plaintext) = stored.session.decrypt(message) {
                stored.last_used = tick;
                self.dirty.mark(&their_key.to_base64());
                return Some(Zeroizing::new(plaintext));
            }
        }
        None
    }

    fn has_session_id(&self, their_key: &Curve25519PublicKey, session_id: &str) -> bool {
        self.by_key
            .get(&their_key.to_base64())
            .is_some_and(|s| s.iter().any(|s| s.session.session_id() == session_id))
    }
}

/// Encrypt an event for one device as the content of a to-device
/// `m.room.encrypted`; `content` is wiped afterwards. The payload binds sender and recipient identities so
/// that the recipient can check them (spec: Olm "payload" checks).
pub(crate) fn encrypt_for_device(
    account: &Account,
    sessions: &mut OlmSessions,
    own_user: &str,
    own_device: &str,
    recipient: &Device,
    event_type: &str,
    content: Value,
) -> Result<Value, CryptoError> {
    let own_keys = account.identity_keys();
    let mut payload = json!({
        "type": event_type,
        "content": content,
        "sender": own_user,
        "sender_device": own_device,
        "keys": { "ed25519": own_keys.ed25519.to_base64() },
        "recipient": recipient.user_id,
        "recipient_keys": { "ed25519": recipient.ed25519.to_base64() },
    });
    let plaintext = Zeroizing::new(serde_json::to_string(&payload)?);
    zeroize_json(&mut payload);
    let message = sessions.encrypt(&recipient.curve25519, &plaintext)?;
    Ok(json!({
        "algorithm": OLM_V1,
        "sender_key": own_keys.curve25519.to_base64(),
        "ciphertext": { recipient.curve25519.to_base64(): message },
    }))
}

#[derive(Deserialize)]
struct Ed25519Only {
    ed25519: String,
}

/// The decrypted Olm payload.
#[derive(Deserialize)]
struct RawPayload {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    content: Value,
    sender: String,
    recipient: String,
    recipient_keys: Ed25519Only,
    keys: Ed25519Only,
    #[serde(default)]
    sender_device: Option<String>,
}

/// A to-device event that decrypted and passed the payload checks.
pub(crate) struct DecryptedOlm {
    pub sender: String,
    pub sender_key: Curve25519PublicKey,
    /// The sender's Ed25519 key as claimed in the payload; equal to the
    /// device's known key when `sender_device` is `Some`.
    pub sender_ed25519: Ed25519PublicKey,
    /// The sending device, if its keys are known.
    pub sender_device: Option<Device>,
    pub event_type: String,
    /// May hold key material: callers move it into zeroizing types.
    pub content: Value,
}

/// The sender and key of an encrypted to-device event, read before
/// decrypting so that a failure can still be attributed.
pub(crate) struct OlmEnvelope {
    pub sender: String,
    pub sender_key: Curve25519PublicKey,
    pub message: OlmMessage,
}

pub(crate) fn parse_envelope(
    event: &Value,
    own_key: &Curve25519PublicKey,
) -> Result<OlmEnvelope, CryptoError> {
    let malformed = |reason: &str| CryptoError::Malformed {
        what: "encrypted to-device event",
        reason: reason.to_owned(),
    };
    let sender = event
        .get("sender")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("no sender"))?
        .to_owned();
    let content = event
        .get("content")
        .ok_or_else(|| malformed("no content"))?;
    let algorithm = content
        .get("algorithm")
        .and_then(Value::as_str)
        .unwrap_or("");
    if algorithm != OLM_V1 {
        return Err(CryptoError::UnsupportedAlgorithm(algorithm.to_owned()));
    }
    let sender_key = content
        .get("sender_key")
        .and_then(Value::as_str)
        .and_then(|k| Curve25519PublicKey::from_base64(k).ok())
        .ok_or_else(|| malformed("no valid sender_key"))?;
    let ours = content
        .get("ciphertext")
        .and_then(|c| c.get(own_key.to_base64()))
        .ok_or(CryptoError::NotForThisDevice)?;
    let message: OlmMessage = serde_json::from_value(ours.clone())
        .map_err(|e| malformed(&format!("bad Olm message: {e}")))?;
    Ok(OlmEnvelope {
        sender,
        sender_key,
        message,
    })
}

/// Decrypt with an existing session or, for a pre-key message, a new one;
/// then check the payload's sender and recipient identities.
pub(crate) fn decrypt(
    account: &mut Account,
    sessions: &mut OlmSessions,
    devices: &DeviceStore,
    own_user: &str,
    envelope: &OlmEnvelope,
) -> Result<DecryptedOlm, CryptoError> {
    let sender_key = envelope.sender_key;
    let plaintext = match sessions.decrypt_existing(&sender_key, &envelope.message) {
        Some(plaintext) => plaintext,
        None => match &envelope.message {
            OlmMessage::PreKey(pre_key) => {
                // A pre-key message for a session we already have that did
                // not decrypt is a replay or corrupt; its one-time key is
                // gone, so a new session could not be made from it anyway.
                if sessions.has_session_id(&sender_key, &pre_key.session_id()) {
                    return Err(CryptoError::OlmDecryption {
                        sender_key: sender_key.to_base64(),
                    });
                }
                let created = account.create_inbound_session(sender_key, pre_key)?;
                sessions.add(&sender_key, created.session);
                Zeroizing::new(created.plaintext)
            }
            OlmMessage::Normal(_) => {
                return Err(CryptoError::OlmDecryption {
                    sender_key: sender_key.to_base64(),
                })
            }
        },
    };
    let payload: RawPayload =
        serde_json::from_slice(&plaintext).map_err(|e| CryptoError::Malformed {
            what: "Olm payload",
            reason: describe_json_error(&e),
        })?;
    drop(plaintext);
    check_payload(account, devices, own_user, envelope, payload)
}

fn check_payload(
    account: &Account,
    devices: &DeviceStore,
    own_user: &str,
    envelope: &OlmEnvelope,
    payload: RawPayload,
) -> Result<DecryptedOlm, CryptoError> {
    if payload.sender != envelope.sender {
        return Err(CryptoError::OlmPayloadMismatch(
            "payload sender differs from the event sender",
        ));
    }
    if payload.recipient != own_user {
        return Err(CryptoError::OlmPayloadMismatch(
            "payload recipient is not this user",
        ));
    }
    if payload.recipient_keys.ed25519 != account.identity_keys().ed25519.to_base64() {
        return Err(CryptoError::OlmPayloadMismatch(
            "payload recipient_keys.ed25519 is not this device's key",
        ));
    }
    let sender_ed25519 = Ed25519PublicKey::from_base64(&payload.keys.ed25519)
        .map_err(|_| CryptoError::OlmPayloadMismatch("payload keys.ed25519 is not a key"))?;
    let sender_device = devices
        .find_by_curve25519(&payload.sender, &envelope.sender_key)
        .cloned();
    if let Some(device) = &sender_device {
        if device.ed25519 != sender_ed25519 {
            return Err(CryptoError::OlmPayloadMismatch(
                "payload keys.ed25519 differs from the sending device's key",
            ));
        }
        if payload
            .sender_device
            .as_deref()
            .is_some_and(|id| id != device.device_id)
        {
            return Err(CryptoError::OlmPayloadMismatch(
                "payload sender_device differs from the device owning the sender key",
            ));
        }
    }
    Ok(DecryptedOlm {
        sender: payload.sender,
        sender_key: envelope.sender_key,
        sender_ed25519,
        sender_device,
        event_type: payload.event_type,
        content: payload.content,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::crypto::requests::KeysQueryResponse;

    const ALICE: &str = "@alice:x";
    const BOB: &str = "@bob:x";

    /// Bob's side, optionally already knowing Alice's device.
    fn bob(knows: Option<&Account>) -> (Account, OlmSessions, DeviceStore) {
        let account = Account::new(BOB, "BOB1");
        let mut devices = DeviceStore::new(BOB, "BOB1", account.identity_keys());
        if let Some(alice) = knows {
            devices.track_users([ALICE]);
            let listed = BTreeMap::from([("ALICE1".to_owned(), alice.device_keys().unwrap())]);
            let response = KeysQueryResponse {
                device_keys: BTreeMap::from([(ALICE.to_owned(), listed)]),
                ..Default::default()
            };
            devices.receive_query_response(response, &HashMap::from([(ALICE.to_owned(), 1)]));
            assert!(devices.get(ALICE, "ALICE1").is_some());
        }
        (account, OlmSessions::default(), devices)
    }

    /// Alice encrypts `payload` to Bob over a new session from one of his
    /// one-time keys, as a pre-key message.
    fn envelope(alice: &Account, bob: &Account, payload: &Value) -> OlmEnvelope {
        let upload = bob.keys_for_upload().unwrap().unwrap();
        let otk = upload.one_time_keys.values().next().unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned();
        let otk = Curve25519PublicKey::from_base64(&otk).unwrap();
        let mut session = alice
            .create_outbound_session(bob.identity_keys().curve25519, otk)
            .unwrap();
        OlmEnvelope {
            sender: ALICE.to_owned(),
            sender_key: alice.identity_keys().curve25519,
            message: session.encrypt(payload.to_string()).unwrap(),
        }
    }

    fn payload(alice: &Account, bob: &Account) -> Value {
        json!({
            "type": "m.dummy",
            "content": {},
            "sender": ALICE,
            "sender_device": "ALICE1",
            "recipient": BOB,
            "recipient_keys": {"ed25519": bob.identity_keys().ed25519.to_base64()},
            "keys": {"ed25519": alice.identity_keys().ed25519.to_base64()},
        })
    }

    fn outcome(
        alice: &Account,
        knows_alice: bool,
        edit: impl Fn(&mut Value),
    ) -> Result<DecryptedOlm, CryptoError> {
        let (mut account, mut sessions, devices) = bob(knows_alice.then_some(alice));
        let mut body = payload(alice, &account);
        edit(&mut body);
        let envelope = envelope(alice, &account, &body);
        decrypt(&mut account, &mut sessions, &devices, BOB, &envelope)
    }

    #[test]
    fn a_well_formed_payload_is_accepted_and_bound_to_the_known_device() {
        let alice = Account::new(ALICE, "ALICE1");
        let decrypted = outcome(&alice, true, |_| {}).unwrap();
        assert_eq!(decrypted.event_type, "m.dummy");
        assert_eq!(decrypted.sender_device.unwrap().device_id, "ALICE1");

        let unknown = outcome(&alice, false, |_| {}).unwrap();
        assert!(unknown.sender_device.is_none());
        assert_eq!(unknown.sender_ed25519, alice.identity_keys().ed25519);
    }

    #[test]
    fn each_identity_field_of_the_payload_is_checked() {
        let alice = Account::new(ALICE, "ALICE1");
        let stranger = vodozemac::olm::Account::new().ed25519_key().to_base64();
        type Edit = Box<dyn Fn(&mut Value)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("sender", Box::new(|p| p["sender"] = json!("@carol:x"))),
            (
                "recipient",
                Box::new(|p| p["recipient"] = json!("@carol:x")),
            ),
            ("recipient_keys", {
                let k = stranger.clone();
                Box::new(move |p| p["recipient_keys"]["ed25519"] = json!(k))
            }),
            ("keys", {
                let k = stranger.clone();
                Box::new(move |p| p["keys"]["ed25519"] = json!(k))
            }),
            (
                "sender_device",
                Box::new(|p| p["sender_device"] = json!("OTHER")),
            ),
        ];
        for (field, edit) in edits {
            match outcome(&alice, true, edit) {
                Err(CryptoError::OlmPayloadMismatch(reason)) => {
                    assert!(reason.contains(field), "{field}: {reason}")
                }
                Err(other) => panic!("{field}: unexpected error {other}"),
                Ok(_) => panic!("{field}: a forged payload was accepted"),
            }
        }
    }

    #[test]
    fn a_replayed_pre_key_message_is_refused() {
        let alice = Account::new(ALICE, "ALICE1");
        let (mut account, mut sessions, devices) = bob(Some(&alice));
        let body = payload(&alice, &account);
        let envelope = envelope(&alice, &account, &body);
        decrypt(&mut account, &mut sessions, &devices, BOB, &envelope).unwrap();
        assert!(matches!(
            decrypt(&mut account, &mut sessions, &devices, BOB, &envelope),
            Err(CryptoError::OlmDecryption { .. })
        ));
    }
}
