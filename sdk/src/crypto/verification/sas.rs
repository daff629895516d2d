//! The cryptography of `m.sas.v1` (spec: "Short Authentication String (SAS)
//! verification"): method negotiation, the commitment, the SAS bytes and the
//! MACs over the keys each side vouches for. The ephemeral key exchange and
//! the HKDF/HMAC are vodozemac's; this module only assembles the strings
//! the spec defines, so both sides derive the same bytes.

use base64::Engine as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use vodozemac::sas::{EstablishedSas, Mac};

use super::super::canonical_json::canonical_json;
use super::emoji::{emoji, SasEmoji};

/// The verification method implemented here.
pub(crate) const SAS_V1: &str = "m.sas.v1";
const KEY_AGREEMENT: &str = "curve25519-hkdf-sha256";
const HASH: &str = "sha256";
/// The MAC method of the spec since v1.5 (correct base64); the older one is
/// still offered to clients that only know it.
const MAC_V2: &str = "hkdf-hmac-sha256.v2";
const MAC_V1: &str = "hkdf-hmac-sha256";
const SAS_METHODS: [&str; 2] = ["decimal", "emoji"];

/// Why a verification is cancelled: a spec code and a reason for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cancel {
    pub code: &'static str,
    pub reason: String,
}

impl Cancel {
    pub(crate) fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// The MAC method both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MacMethod {
    V2,
    V1,
}

impl MacMethod {
    fn name(self) -> &'static str {
        match self {
            Self::V2 => MAC_V2,
            Self::V1 => MAC_V1,
        }
    }

    fn calculate(self, sas: &EstablishedSas, input: &str, info: &str) -> String {
        match self {
            Self::V2 => sas.calculate_mac(input, info).to_base64(),
            Self::V1 => sas.calculate_mac_invalid_base64(input, info),
        }
    }

    fn verify(self, sas: &EstablishedSas, input: &str, info: &str, tag: &str) -> bool {
        match self {
            Self::V2 => {
                Mac::from_base64(tag).is_ok_and(|mac| sas.verify_mac(input, info, &mac).is_ok())
            }
            // The old method's output is not standard base64, so it is
            // compared as a string, in constant time.
            Self::V1 => {
                use subtle::ConstantTimeEq as _;
                let expected = sas.calculate_mac_invalid_base64(input, info);
                bool::from(expected.as_bytes().ct_eq(tag.as_bytes()))
            }
        }
    }
}

/// The `content` of an `m.key.verification.start` offering SAS.
pub(crate) fn start_content(flow_id: &str, from_device: &str) -> Value {
    json!({
        "from_device": from_device,
        "method": SAS_V1,
        "key_agreement_protocols": [KEY_AGREEMENT],
        "hashes": [HASH],
        "message_authentication_codes": [MAC_V2, MAC_V1],
        "short_authentication_string": SAS_METHODS,
        "transaction_id": flow_id,
    })
}

fn strings<'a>(content: &'a Value, field: &str) -> Vec<&'a str> {
    content
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Choose the methods for an accept from their start: ours where they
/// offered them. The `content` of the accept follows with the commitment.
pub(crate) fn accept_methods(start: &Value) -> Result<(MacMethod, Vec<&'static str>), Cancel> {
    let unknown = |what: &str| Cancel::new("m.unknown_method", format!("no common {what}"));
    if start.get("method").and_then(Value::as_str) != Some(SAS_V1) {
        return Err(unknown("verification method"));
    }
    if !strings(start, "key_agreement_protocols").contains(&KEY_AGREEMENT) {
        return Err(unknown("key agreement protocol"));
    }
    if !strings(start, "hashes").contains(&HASH) {
        return Err(unknown("hash"));
    }
    let macs = strings(start, "message_authentication_codes");
    let mac = if macs.contains(&MAC_V2) {
        MacMethod::V2
    } else if macs.contains(&MAC_V1) {
        MacMethod::V1
    } else {
        return Err(unknown("message authentication code"));
    };
    let offered = strings(start, "short_authentication_string");
    let sas: Vec<&'static str> = SAS_METHODS
        .into_iter()
        .filter(|m| offered.contains(m))
        .collect();
    if !sas.contains(&"decimal") {
        // Every client must support decimals; one that does not is broken.
        return Err(unknown("short authentication string"));
    }
    Ok((mac, sas))
}

/// The `content` of our `m.key.verification.accept`.
pub(crate) fn accept_content(
    flow_id: &str,
    mac: MacMethod,
    sas: &[&str],
    commitment: &str,
) -> Value {
    json!({
        "transaction_id": flow_id,
        "method": SAS_V1,
        "key_agreement_protocol": KEY_AGREEMENT,
        "hash": HASH,
        "message_authentication_code": mac.name(),
        "short_authentication_string": sas,
        "commitment": commitment,
    })
}

/// Read their accept of our start: the MAC method they chose (one we
/// offered) and their commitment.
pub(crate) fn read_accept(accept: &Value) -> Result<(MacMethod, String), Cancel> {
    let field = |name: &str| accept.get(name).and_then(Value::as_str);
    if field("key_agreement_protocol") != Some(KEY_AGREEMENT) || field("hash") != Some(HASH) {
        return Err(Cancel::new(
            "m.unknown_method",
            "the accept chose a method we did not offer",
        ));
    }
    let mac = match field("message_authentication_code") {
        Some(MAC_V2) => MacMethod::V2,
        Some(MAC_V1) => MacMethod::V1,
        _ => {
            return Err(Cancel::new(
                "m.unknown_method",
                "the accept chose a MAC we did not offer",
            ))
        }
    };
    let commitment = field("commitment")
        .ok_or_else(|| Cancel::new("m.invalid_message", "the accept has no commitment"))?;
    Ok((mac, commitment.to_owned()))
}

/// The accepter's commitment: SHA-256 over their ephemeral public key
/// (unpadded base64) followed by the canonical JSON of the start content.
pub(crate) fn commitment(public_key: &str, start: &Value) -> Result<String, Cancel> {
    let canonical = canonical_json(start)
        .map_err(|_| Cancel::new("m.invalid_message", "the start is not canonical JSON"))?;
    let mut hasher = Sha256::new();
    hasher.update(public_key.as_bytes());
    hasher.update(canonical.as_bytes());
    Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(hasher.finalize()))
}

/// One side of the SAS: a user, a device and its ephemeral key.
pub(crate) struct Party<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub key: &'a str,
}

/// The emoji and decimals both sides must show, from the `info` the spec
/// builds for `curve25519-hkdf-sha256` (starter first, then accepter).
pub(crate) fn short_auth_string(
    sas: &EstablishedSas,
    starter: &Party<'_>,
    accepter: &Party<'_>,
    flow_id: &str,
) -> ([SasEmoji; 7], (u16, u16, u16)) {
    let info = format!(
        "MATRIX_KEY_VERIFICATION_SAS|{}|{}|{}|{}|{}|{}|{}",
        starter.user_id,
        starter.device_id,
        starter.key,
        accepter.user_id,
        accepter.device_id,
        accepter.key,
        flow_id
    );
    let bytes = sas.bytes(&info);
    (bytes.emoji_indices().map(emoji), bytes.decimals())
}

/// The prefix of every MAC's info: sender, receiver, transaction.
pub(crate) fn mac_info(sender: (&str, &str), receiver: (&str, &str), flow_id: &str) -> String {
    format!(
        "MATRIX_KEY_VERIFICATION_MAC{}{}{}{}{}",
        sender.0, sender.1, receiver.0, receiver.1, flow_id
    )
}

/// The `mac` and `keys` fields of our `m.key.verification.mac`: a MAC of
/// each `(key id, key)` and one of the sorted, comma-joined key ids, so
/// that the other side sees which keys we vouch for and that none was
/// dropped on the way.
pub(crate) fn mac_content(
    sas: &EstablishedSas,
    method: MacMethod,
    info: &str,
    flow_id: &str,
    keys: &[(String, String)],
) -> Value {
    let mut mac = Map::new();
    for (key_id, key) in keys {
        let tag = method.calculate(sas, key, &format!("{info}{key_id}"));
        mac.insert(key_id.clone(), Value::String(tag));
    }
    let mut ids: Vec<&str> = keys.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort_unstable();
    json!({
        "transaction_id": flow_id,
        "mac": mac,
        "keys": method.calculate(sas, &ids.join(","), &format!("{info}KEY_IDS")),
    })
}

/// Check their `m.key.verification.mac`. `known` gives the key for a key id
/// when it is one of theirs we know (their device key, their master key).
/// Returns the key ids whose MAC verified; every MAC must verify, and at
/// least one key must be known.
pub(crate) fn check_mac(
    sas: &EstablishedSas,
    method: MacMethod,
    info: &str,
    content: &Value,
    known: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Cancel> {
    let mismatch = |reason: &str| Cancel::new("m.key_mismatch", reason);
    let macs = content
        .get("mac")
        .and_then(Value::as_object)
        .ok_or_else(|| Cancel::new("m.invalid_message", "the MAC message has no mac"))?;
    let keys_tag = content
        .get("keys")
        .and_then(Value::as_str)
        .ok_or_else(|| Cancel::new("m.invalid_message", "the MAC message has no keys"))?;
    let mut ids: Vec<&str> = macs.keys().map(String::as_str).collect();
    ids.sort_unstable();
    if !method.verify(sas, &ids.join(","), &format!("{info}KEY_IDS"), keys_tag) {
        return Err(mismatch("the list of keys does not match its MAC"));
    }
    let mut verified = Vec::new();
    for (key_id, tag) in macs {
        // Keys we do not know (a master key not yet fetched) are skipped;
        // the ones we know must all match.
        let Some(key) = known(key_id) else {
            continue;
        };
        let tag = tag.as_str().unwrap_or_default();
        if !method.verify(sas, &key, &format!("{info}{key_id}"), tag) {
            return Err(mismatch(&format!("the MAC of {key_id} does not match")));
        }
        verified.push(key_id.clone());
    }
    if verified.is_empty() {
        return Err(mismatch("none of the keys is known"));
    }
    Ok(verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vodozemac::sas::Sas;

    fn pair() -> (EstablishedSas, EstablishedSas) {
        let (a, b) = (Sas::new(), Sas::new());
        let (a_key, b_key) = (a.public_key(), b.public_key());
        (
            a.diffie_hellman(b_key).unwrap(),
            b.diffie_hellman(a_key).unwrap(),
        )
    }

    #[test]
    fn both_sides_derive_the_same_emoji_and_macs() {
        let (alice, bob) = pair();
        let a = Party {
            user_id: "@a:x",
            device_id: "A",
            key: "ka",
        };
        let b = Party {
            user_id: "@b:x",
            device_id: "B",
            key: "kb",
        };
        assert_eq!(
            short_auth_string(&alice, &a, &b, "t"),
            short_auth_string(&bob, &a, &b, "t")
        );
        assert_ne!(
            short_auth_string(&alice, &a, &b, "t"),
            short_auth_string(&alice, &a, &b, "other flow")
        );
        for method in [MacMethod::V2, MacMethod::V1] {
            let keys = vec![("ed25519:A".to_owned(), "devicekey".to_owned())];
            let sent = mac_content(
                &alice,
                method,
                &mac_info(("@a:x", "A"), ("@b:x", "B"), "t"),
                "t",
                &keys,
            );
            let info = mac_info(("@a:x", "A"), ("@b:x", "B"), "t");
            let known = |id: &str| (id == "ed25519:A").then(|| "devicekey".to_owned());
            assert_eq!(
                check_mac(&bob, method, &info, &sent, known).unwrap(),
                ["ed25519:A"]
            );
            // Another key than the one they know: a mismatch.
            let other = |id: &str| (id == "ed25519:A").then(|| "otherkey".to_owned());
            assert_eq!(
                check_mac(&bob, method, &info, &sent, other)
                    .unwrap_err()
                    .code,
                "m.key_mismatch"
            );
            // A key dropped from the message breaks the key list's MAC.
            let mut cut = sent.clone();
            cut["mac"]["ed25519:extra"] = json!("x");
            assert!(check_mac(&bob, method, &info, &cut, known).is_err());
        }
    }

    #[test]
    fn methods_are_negotiated_and_commitments_bind_the_start() {
        let start = start_content("t", "A");
        let (mac, sas) = accept_methods(&start).unwrap();
        assert_eq!(mac, MacMethod::V2);
        assert_eq!(sas, ["decimal", "emoji"]);
        let mut old = start.clone();
        old["message_authentication_codes"] = json!([MAC_V1]);
        assert_eq!(accept_methods(&old).unwrap().0, MacMethod::V1);
        let mut none = start.clone();
        none["hashes"] = json!(["md5"]);
        assert_eq!(accept_methods(&none).unwrap_err().code, "m.unknown_method");

        let c = commitment("key", &start).unwrap();
        assert_eq!(c, commitment("key", &start).unwrap());
        assert_ne!(c, commitment("other", &start).unwrap());
        assert_ne!(c, commitment("key", &old).unwrap());
        let accept = accept_content("t", mac, &sas, &c);
        assert_eq!(read_accept(&accept).unwrap(), (MacMethod::V2, c));
    }
}
