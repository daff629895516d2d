//! QR code verification (spec: "QR codes", `m.qr_code.show.v1`,
//! `m.qr_code.scan.v1`, `m.reciprocate.v1`): one device shows a code
//! holding two keys and a secret, the other scans it, checks both keys
//! against what it knows, and answers with the secret; the first asks its
//! user to confirm the scan went through. No emoji to compare.
//!
//! The code's three modes: verifying another person (both master keys);
//! a device that trusts our identity showing it to a new device of ours
//! (our master key, and the new device's key as it knows it); a new device
//! showing itself to a trusted one (its own key, and the master key as it
//! knows it).

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{json, Value};
use subtle::ConstantTimeEq as _;
use vodozemac::Ed25519PublicKey;

use super::super::error::CryptoError;
use super::super::identities::key_id;
use super::super::machine::OlmMachine;
use super::flow::{Outcome, VerificationPhase};
use super::sas::Cancel;
use cloister_proto::canonical::decode_b64;

pub(crate) const QR_SHOW: &str = "m.qr_code.show.v1";
pub(crate) const QR_SCAN: &str = "m.qr_code.scan.v1";
pub(crate) const RECIPROCATE: &str = "m.reciprocate.v1";

const PREFIX: &[u8] = b"MATRIX";
const VERSION: u8 = 0x02;
const MODE_OTHER_USER: u8 = 0x00;
const MODE_SELF_TRUSTED: u8 = 0x01;
const MODE_SELF_UNTRUSTED: u8 = 0x02;

/// Where the QR side of a flow stands.
pub(crate) enum QrState {
    /// We show a code; `trusts` are the key ids its scan vouches for.
    Shown {
        secret: Vec<u8>,
        trusts: Vec<String>,
    },
    /// They scanned it and answered with the secret; the user confirms.
    Scanned { trusts: Vec<String> },
    /// We scanned theirs: trust follows their `done`.
    WeScanned { trusts: Vec<String> },
    /// Confirmed on our side; waiting for their `done`.
    Confirmed,
}

struct QrCode<'a> {
    mode: u8,
    flow_id: &'a str,
    first: Ed25519PublicKey,
    second: Ed25519PublicKey,
    secret: &'a [u8],
}

fn encode(code: &QrCode<'_>) -> Vec<u8> {
    let id = code.flow_id.as_bytes();
    let mut out = Vec::with_capacity(PREFIX.len() + 4 + id.len() + 64 + code.secret.len());
    out.extend_from_slice(PREFIX);
    out.push(VERSION);
    out.push(code.mode);
    out.extend_from_slice(&u16::try_from(id.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(code.first.as_bytes());
    out.extend_from_slice(code.second.as_bytes());
    out.extend_from_slice(code.secret);
    out
}

fn decode(data: &[u8]) -> Result<QrCode<'_>, CryptoError> {
    let bad = |reason: &str| CryptoError::Malformed {
        what: "verification QR code",
        reason: reason.to_owned(),
    };
    let rest = data
        .strip_prefix(PREFIX)
        .ok_or_else(|| bad("not a Matrix code"))?;
    let [version, mode, hi, lo, rest @ ..] = rest else {
        return Err(bad("too short"));
    };
    if *version != VERSION || *mode > MODE_SELF_UNTRUSTED {
        return Err(bad("unknown version or mode"));
    }
    let len = usize::from(u16::from_be_bytes([*hi, *lo]));
    if rest.len() < len + 64 + 8 {
        return Err(bad("too short"));
    }
    let (id, rest) = rest.split_at(len);
    let key = |bytes: &[u8]| {
        let bytes: &[u8; 32] = bytes.try_into().expect("32 bytes");
        Ed25519PublicKey::from_slice(bytes).map_err(|_| bad("invalid key"))
    };
    Ok(QrCode {
        mode: *mode,
        flow_id: std::str::from_utf8(id).map_err(|_| bad("flow id is not text"))?,
        first: key(&rest[..32])?,
        second: key(&rest[32..64])?,
        secret: &rest[64..],
    })
}

fn flow_error(flow_id: &str, reason: impl Into<String>) -> CryptoError {
    CryptoError::Verification {
        flow_id: flow_id.to_owned(),
        reason: reason.into(),
    }
}

impl OlmMachine {
    /// The bytes of a QR code to show for a `Ready` flow whose other side
    /// can scan (the app renders them as a QR code, byte mode). Fails when
    /// a key the mode needs is not known or trusted yet.
    pub fn verification_qr_code(&mut self, flow_id: &str) -> Result<Vec<u8>, CryptoError> {
        let own_master = self.own_master_key();
        let own_trusted = self.is_identity_verified(&self.user_id.clone());
        let my_key = self.account.identity_keys().ed25519;
        let flow = self.live_flow(flow_id)?;
        if flow.phase != VerificationPhase::Ready
            || !flow.their_methods.iter().any(|m| m == QR_SCAN)
        {
            return Err(flow_error(flow_id, "the other side cannot scan a code now"));
        }
        let (user, device) = (flow.other_user.clone(), flow.other_device.clone());
        let missing = |what: &str| flow_error(flow_id, format!("no QR code: {what} is not known"));
        let (mode, first, second, trusts) = if user != self.user_id {
            let theirs = self
                .devices
                .identity(&user)
                .map(|i| i.master)
                .ok_or_else(|| missing("their identity"))?;
            let ours = own_master
                .filter(|_| own_trusted)
                .ok_or_else(|| missing("our trusted identity"))?;
            (MODE_OTHER_USER, ours, theirs, vec![key_id(&theirs)])
        } else {
            let device = device.ok_or_else(|| missing("their device"))?;
            let theirs = self
                .devices
                .get(&user, &device)
                .map(|d| d.ed25519)
                .ok_or_else(|| missing("their device"))?;
            let master = own_master.ok_or_else(|| missing("our identity"))?;
            let device_id = format!("ed25519:{device}");
            if own_trusted {
                (MODE_SELF_TRUSTED, master, theirs, vec![device_id])
            } else {
                (
                    MODE_SELF_UNTRUSTED,
                    my_key,
                    master,
                    vec![device_id, key_id(&master)],
                )
            }
        };
        let mut secret = vec![0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let bytes = encode(&QrCode {
            mode,
            flow_id,
            first,
            second,
            secret: &secret,
        });
        let flow = self.live_flow(flow_id)?;
        flow.qr = Some(QrState::Shown { secret, trusts });
        Ok(bytes)
    }

    /// The app scanned the other device's code: check both keys in it
    /// against what we know, and answer with its secret. A code whose keys
    /// do not match is refused and cancels the flow (`m.key_mismatch`).
    pub fn scan_verification_qr_code(
        &mut self,
        flow_id: &str,
        data: &[u8],
    ) -> Result<(), CryptoError> {
        let code = decode(data)?;
        if code.flow_id != flow_id {
            return Err(flow_error(
                flow_id,
                "the code belongs to another verification",
            ));
        }
        let own_master = self.own_master_key();
        let my_key = self.account.identity_keys().ed25519;
        let flow = self.live_flow(flow_id)?;
        if flow.phase != VerificationPhase::Ready {
            return Err(flow_error(flow_id, "the flow is not ready"));
        }
        let (user, device) = (
            flow.other_user.clone(),
            flow.other_device.clone().unwrap_or_default(),
        );
        let their_device = self.devices.get(&user, &device).map(|d| d.ed25519);
        let their_master = self.devices.identity(&user).map(|i| i.master);
        let (expected, trusts) = match code.mode {
            MODE_OTHER_USER if user != self.user_id => {
                ((their_master, own_master), vec![key_id(&code.first)])
            }
            MODE_SELF_TRUSTED if user == self.user_id => (
                (own_master, Some(my_key)),
                vec![format!("ed25519:{device}"), key_id(&code.first)],
            ),
            MODE_SELF_UNTRUSTED if user == self.user_id => (
                (their_device, own_master),
                vec![format!("ed25519:{device}"), key_id(&code.second)],
            ),
            _ => {
                return Err(flow_error(
                    flow_id,
                    "the code's mode does not fit this verification",
                ))
            }
        };
        if expected != (Some(code.first), Some(code.second)) {
            let cancel = Cancel::new("m.key_mismatch", "the scanned code shows other keys");
            self.apply(flow_id, Err(cancel));
            return Err(flow_error(
                flow_id,
                "the scanned code shows other keys: cancelled",
            ));
        }
        let secret = STANDARD_NO_PAD.encode(code.secret);
        let my_device = self.device_id.clone();
        let flow = self.live_flow(flow_id)?;
        let start = flow.wrap(json!({
            "from_device": my_device,
            "method": RECIPROCATE,
            "secret": secret,
            "transaction_id": flow_id,
        }));
        flow.qr = Some(QrState::WeScanned { trusts });
        flow.phase = VerificationPhase::Confirmed;
        self.apply(
            flow_id,
            Ok(Outcome::send("m.key.verification.start", start)),
        );
        Ok(())
    }

    /// The user confirmed that the other device finished scanning our code
    /// (phase `QrScanned`): trust follows, and `done` goes out.
    pub fn confirm_qr_scanned(&mut self, flow_id: &str) -> Result<(), CryptoError> {
        let flow = self.live_flow(flow_id)?;
        let Some(QrState::Scanned { trusts }) = flow.qr.take() else {
            return Err(flow_error(flow_id, "nobody scanned a code of ours"));
        };
        flow.qr = Some(QrState::Confirmed);
        let done = flow.wrap(json!({ "transaction_id": flow_id }));
        let finished = flow.done_received;
        flow.phase = if finished {
            VerificationPhase::Done
        } else {
            VerificationPhase::Confirmed
        };
        self.apply(flow_id, Ok(Outcome::send("m.key.verification.done", done)));
        self.trust_verified_keys(flow_id, &trusts);
        Ok(())
    }

    /// Their `m.key.verification.start` with `m.reciprocate.v1`: the
    /// secret must be the one in the code we showed.
    pub(crate) fn receive_reciprocate(
        &mut self,
        flow_id: &str,
        content: &Value,
    ) -> Result<Outcome, Cancel> {
        let flow = self
            .verifications
            .get_mut(flow_id)
            .expect("the caller found it");
        let Some(QrState::Shown { secret, trusts }) = flow.qr.take() else {
            return Err(Cancel::new(
                "m.unexpected_message",
                "no code of ours was shown",
            ));
        };
        let given = content
            .get("secret")
            .and_then(Value::as_str)
            .and_then(decode_b64)
            .unwrap_or_default();
        if !bool::from(given.as_slice().ct_eq(&secret)) {
            return Err(Cancel::new(
                "m.key_mismatch",
                "the secret does not match our code",
            ));
        }
        flow.qr = Some(QrState::Scanned { trusts });
        flow.phase = VerificationPhase::QrScanned;
        Ok(Outcome::default())
    }

    /// Their `done` in a QR flow: for the scanner, trust follows now.
    pub(crate) fn receive_qr_done(&mut self, flow_id: &str) -> Result<Outcome, Cancel> {
        let flow = self
            .verifications
            .get_mut(flow_id)
            .expect("the caller found it");
        flow.done_received = true;
        match flow.qr.take() {
            Some(QrState::WeScanned { trusts }) => {
                flow.qr = Some(QrState::Confirmed);
                flow.phase = VerificationPhase::Done;
                let done = flow.wrap(json!({ "transaction_id": flow_id }));
                self.trust_verified_keys(flow_id, &trusts);
                Ok(Outcome::send("m.key.verification.done", done))
            }
            Some(QrState::Confirmed) => {
                flow.qr = Some(QrState::Confirmed);
                flow.phase = VerificationPhase::Done;
                Ok(Outcome::default())
            }
            other => {
                flow.qr = other;
                Ok(Outcome::default())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodozemac::Ed25519SecretKey;

    #[test]
    fn codes_round_trip_and_junk_is_refused() {
        let (a, b) = (
            Ed25519SecretKey::new().public_key(),
            Ed25519SecretKey::new().public_key(),
        );
        let bytes = encode(&QrCode {
            mode: MODE_SELF_TRUSTED,
            flow_id: "flow",
            first: a,
            second: b,
            secret: b"0123456789abcdef",
        });
        assert!(bytes.starts_with(b"MATRIX\x02\x01\x00\x04flow"));
        let code = decode(&bytes).unwrap();
        assert_eq!((code.mode, code.flow_id), (MODE_SELF_TRUSTED, "flow"));
        assert_eq!((code.first, code.second), (a, b));
        assert_eq!(code.secret, b"0123456789abcdef");
        assert!(
            decode(&bytes[..bytes.len() - 10]).is_err(),
            "a secret under 8 bytes"
        );
        assert!(decode(b"NOTMATRIX").is_err());
        let mut wrong_mode = bytes.clone();
        wrong_mode[7] = 9;
        assert!(decode(&wrong_mode).is_err());
    }
}
