//! Secret storage (spec: "Secret storage", `m.secret_storage.v1.aes-hmac-sha2`):
//! secrets such as the cross-signing private keys and the key-backup key,
//! encrypted on the client with a key only the user holds — as a recovery
//! key to write down, or derived from a passphrase — and kept on the server
//! as account data, so that a new device can fetch them.
//!
//! Each secret is encrypted with AES-256-CTR under a key that HKDF-SHA256
//! derives from the storage key and the secret's name, and authenticated
//! with HMAC-SHA256 over the ciphertext. The key description published with
//! the key carries the encryption of 32 zero bytes, so a mistyped recovery
//! key is told apart from a wrong secret.

use aes::Aes256;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::{Rng as _, RngCore as _};
use serde_json::{json, Value};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::error::CryptoError;
use cloister_proto::canonical::decode_b64;

/// The secret storage algorithm.
pub const SECRET_STORAGE_V1: &str = "m.secret_storage.v1.aes-hmac-sha2";
/// PBKDF2 rounds for a new passphrase, as Element uses.
pub const PASSPHRASE_ITERATIONS: u32 = 500_000;
/// The two bytes a recovery key starts with.
const RECOVERY_PREFIX: [u8; 2] = [0x8b, 0x01];

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

fn malformed(reason: impl Into<String>) -> CryptoError {
    CryptoError::Malformed {
        what: "secret storage",
        reason: reason.into(),
    }
}

/// Base64 as clients write it here: padded on output, either way on input.
fn decode(text: &str) -> Result<Vec<u8>, CryptoError> {
    decode_b64(text).ok_or_else(|| malformed("invalid base64"))
}

/// How a key was derived from a passphrase (`m.pbkdf2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassphraseInfo {
    /// The salt, as published.
    pub salt: String,
    /// PBKDF2-HMAC-SHA-512 rounds.
    pub iterations: u32,
}

/// A secret storage key. The key bytes are wiped on drop; `Debug` shows
/// only the id.
pub struct SecretStorageKey {
    key_id: String,
    key: Zeroizing<[u8; 32]>,
    passphrase: Option<PassphraseInfo>,
}

impl std::fmt::Debug for SecretStorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStorageKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

fn random_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..32)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

fn pbkdf2_key(passphrase: &str, info: &PassphraseInfo) -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    pbkdf2::pbkdf2_hmac::<Sha512>(
        passphrase.as_bytes(),
        info.salt.as_bytes(),
        info.iterations,
        key.as_mut(),
    );
    key
}

impl SecretStorageKey {
    /// A new random key (shown to the user as a recovery key).
    pub fn new() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Self {
            key_id: random_id(),
            key,
            passphrase: None,
        }
    }

    /// A new key derived from a passphrase, with a fresh salt and
    /// `iterations` rounds ([`PASSPHRASE_ITERATIONS`] for real use).
    pub fn from_new_passphrase(passphrase: &str, iterations: u32) -> Self {
        let info = PassphraseInfo {
            salt: random_id(),
            iterations,
        };
        Self {
            key_id: random_id(),
            key: pbkdf2_key(passphrase, &info),
            passphrase: Some(info),
        }
    }

    /// The key `key_id` published with `description`, from the user's
    /// recovery key; refused when it does not match the description.
    pub fn from_recovery_key(
        key_id: &str,
        description: &Value,
        recovery_key: &str,
    ) -> Result<Self, CryptoError> {
        let key = decode_recovery_key(recovery_key)?;
        Self::checked(key_id, description, key, None)
    }

    /// The key `key_id` from the user's passphrase, with the salt and rounds
    /// in `description`; refused when it does not match.
    pub fn from_passphrase(
        key_id: &str,
        description: &Value,
        passphrase: &str,
    ) -> Result<Self, CryptoError> {
        let info = description
            .get("passphrase")
            .filter(|p| p.get("algorithm").and_then(Value::as_str) == Some("m.pbkdf2"))
            .and_then(|p| {
                Some(PassphraseInfo {
                    salt: p.get("salt")?.as_str()?.to_owned(),
                    iterations: u32::try_from(p.get("iterations")?.as_u64()?).ok()?,
                })
            })
            .ok_or_else(|| malformed("this key has no m.pbkdf2 passphrase"))?;
        let key = pbkdf2_key(passphrase, &info);
        Self::checked(key_id, description, key, Some(info))
    }

    fn checked(
        key_id: &str,
        description: &Value,
        key: Zeroizing<[u8; 32]>,
        passphrase: Option<PassphraseInfo>,
    ) -> Result<Self, CryptoError> {
        if description.get("algorithm").and_then(Value::as_str) != Some(SECRET_STORAGE_V1) {
            return Err(malformed("unsupported secret storage algorithm"));
        }
        let candidate = Self {
            key_id: key_id.to_owned(),
            key,
            passphrase,
        };
        // Keys published without a check value cannot be checked; every
        // client that follows the spec writes one.
        let (Some(iv), Some(mac)) = (
            description.get("iv").and_then(Value::as_str),
            description.get("mac").and_then(Value::as_str),
        ) else {
            return Err(malformed("the key description has no iv and mac to check"));
        };
        let iv = iv_from(iv)?;
        let ciphertext = candidate.cipher("", &[0u8; 32], &iv);
        let expected = candidate.mac("", &ciphertext);
        let given = decode(mac)?;
        if !bool::from(expected.as_slice().ct_eq(&given)) {
            return Err(CryptoError::SecretStorage(
                "the recovery key or passphrase is wrong".into(),
            ));
        }
        Ok(candidate)
    }

    /// The key's id (`m.secret_storage.key.<id>` holds its description).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The recovery key to show the user: base58 in groups of four.
    pub fn recovery_key(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(35));
        bytes.extend_from_slice(&RECOVERY_PREFIX);
        bytes.extend_from_slice(self.key.as_ref());
        let parity = bytes.iter().fold(0u8, |p, b| p ^ b);
        bytes.push(parity);
        let encoded = Zeroizing::new(bs58::encode(bytes.as_slice()).into_string());
        let mut grouped = Zeroizing::new(String::with_capacity(encoded.len() + 12));
        for (i, c) in encoded.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                grouped.push(' ');
            }
            grouped.push(c);
        }
        grouped
    }

    /// The description to publish as `m.secret_storage.key.<id>`.
    pub fn description(&self) -> Value {
        let iv = random_iv();
        let ciphertext = self.cipher("", &[0u8; 32], &iv);
        let mac = self.mac("", &ciphertext);
        let mut description = json!({
            "algorithm": SECRET_STORAGE_V1,
            "iv": STANDARD.encode(iv),
            "mac": STANDARD.encode(mac),
        });
        if let Some(info) = &self.passphrase {
            description["passphrase"] = json!({
                "algorithm": "m.pbkdf2",
                "salt": info.salt,
                "iterations": info.iterations,
            });
        }
        description
    }

    /// Encrypt `secret` for storage under `name` (the account data type):
    /// the value for `encrypted.<key id>`.
    pub fn encrypt(&self, name: &str, secret: &str) -> Value {
        let iv = random_iv();
        let ciphertext = self.cipher(name, secret.as_bytes(), &iv);
        json!({
            "iv": STANDARD.encode(iv),
            "ciphertext": STANDARD.encode(&ciphertext),
            "mac": STANDARD.encode(self.mac(name, &ciphertext)),
        })
    }

    /// Decrypt the secret `name` from its account data content (the
    /// `encrypted.<key id>` entry for this key).
    pub fn decrypt(&self, name: &str, content: &Value) -> Result<Zeroizing<String>, CryptoError> {
        let entry = content
            .get("encrypted")
            .and_then(|e| e.get(&self.key_id))
            .ok_or_else(|| {
                CryptoError::SecretStorage(format!("{name} is not stored under this key"))
            })?;
        let field = |f: &str| {
            entry
                .get(f)
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(format!("{name} has no {f}")))
        };
        let iv = iv_from(field("iv")?)?;
        let ciphertext = decode(field("ciphertext")?)?;
        let mac = decode(field("mac")?)?;
        let expected = self.mac(name, &ciphertext);
        if !bool::from(expected.as_slice().ct_eq(&mac)) {
            return Err(CryptoError::SecretStorage(format!(
                "{name} does not authenticate: altered, or stored under another key"
            )));
        }
        let plain = Zeroizing::new(self.cipher(name, &ciphertext, &iv));
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| malformed(format!("{name} is not text")))
    }

    /// The AES and HMAC keys for secret `name`.
    fn keys(&self, name: &str) -> Zeroizing<[u8; 64]> {
        let mut okm = Zeroizing::new([0u8; 64]);
        Hkdf::<Sha256>::new(Some(&[0u8; 32]), self.key.as_ref())
            .expand(name.as_bytes(), okm.as_mut())
            .expect("64 bytes is a valid HKDF-SHA-256 length");
        okm
    }

    fn cipher(&self, name: &str, data: &[u8], iv: &[u8; 16]) -> Vec<u8> {
        let keys = self.keys(name);
        let mut out = data.to_vec();
        let aes_key: [u8; 32] = keys[..32].try_into().expect("32 bytes");
        Aes256Ctr::new(&aes_key.into(), &(*iv).into()).apply_keystream(&mut out);
        out
    }

    fn mac(&self, name: &str, ciphertext: &[u8]) -> Vec<u8> {
        let keys = self.keys(name);
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&keys[32..]).expect("HMAC takes any key length");
        mac.update(ciphertext);
        mac.finalize().into_bytes().to_vec()
    }
}

impl Default for SecretStorageKey {
    fn default() -> Self {
        Self::new()
    }
}

/// A random IV with bit 63 clear, as the spec asks (for AES-CTR
/// implementations that count in 64 bits).
fn random_iv() -> [u8; 16] {
    let mut iv = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    iv[8] &= 0x7f;
    iv
}

fn iv_from(text: &str) -> Result<[u8; 16], CryptoError> {
    decode(text)?
        .try_into()
        .map_err(|_| malformed("the IV is not 16 bytes"))
}

/// The 32 key bytes of a recovery key (spaces ignored), after its prefix
/// and parity checks.
fn decode_recovery_key(text: &str) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let wrong = || CryptoError::SecretStorage("this is not a valid recovery key".into());
    let compact: Zeroizing<String> = Zeroizing::new(text.split_whitespace().collect());
    let bytes = Zeroizing::new(
        bs58::decode(compact.as_str())
            .into_vec()
            .map_err(|_| wrong())?,
    );
    if bytes.len() != 35
        || bytes[..2] != RECOVERY_PREFIX
        || bytes.iter().fold(0u8, |p, b| p ^ b) != 0
    {
        return Err(wrong());
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes[2..34]);
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_round_trips_and_fails_under_another_name_or_key() {
        let key = SecretStorageKey::new();
        let stored = json!({ "encrypted": { key.key_id(): key.encrypt("m.cross_signing.master", "c2VjcmV0") } });
        assert_eq!(
            key.decrypt("m.cross_signing.master", &stored)
                .unwrap()
                .as_str(),
            "c2VjcmV0"
        );
        assert!(key.decrypt("m.megolm_backup.v1", &stored).is_err());
        let mut tampered = stored.clone();
        tampered["encrypted"][key.key_id()]["ciphertext"] = json!(STANDARD.encode(b"xxxxxxxx"));
        assert!(key.decrypt("m.cross_signing.master", &tampered).is_err());
    }

    #[test]
    fn the_recovery_key_reopens_the_key_and_typos_are_caught() {
        let key = SecretStorageKey::new();
        let description = key.description();
        let recovery = key.recovery_key();
        assert!(recovery.starts_with("Es"), "{}", recovery.as_str());
        let again =
            SecretStorageKey::from_recovery_key(key.key_id(), &description, &recovery).unwrap();
        assert_eq!(again.key.as_ref(), key.key.as_ref());
        // Without spaces, or with extra ones, it is the same key.
        let compact: String = recovery.split_whitespace().collect();
        assert!(SecretStorageKey::from_recovery_key(key.key_id(), &description, &compact).is_ok());
        // One character changed: the parity (or base58) check fails.
        let mut typo: Vec<char> = recovery.chars().collect();
        typo[5] = if typo[5] == 'a' { 'b' } else { 'a' };
        let typo: String = typo.into_iter().collect();
        assert!(SecretStorageKey::from_recovery_key(key.key_id(), &description, &typo).is_err());
        // Another valid recovery key does not match this description.
        let other = SecretStorageKey::new().recovery_key();
        let error =
            SecretStorageKey::from_recovery_key(key.key_id(), &description, &other).unwrap_err();
        assert!(error.to_string().contains("wrong"), "{error}");
    }

    #[test]
    fn a_passphrase_derives_the_key_the_description_checks() {
        let key = SecretStorageKey::from_new_passphrase("correct horse", 1000);
        let description = key.description();
        assert_eq!(description["passphrase"]["iterations"], 1000);
        let again =
            SecretStorageKey::from_passphrase(key.key_id(), &description, "correct horse").unwrap();
        assert_eq!(again.key.as_ref(), key.key.as_ref());
        assert!(
            SecretStorageKey::from_passphrase(key.key_id(), &description, "wrong horse").is_err()
        );
        // A known answer for m.pbkdf2 (PBKDF2-HMAC-SHA-512, 32 bytes).
        let derived = pbkdf2_key(
            "password",
            &PassphraseInfo {
                salt: "salt".into(),
                iterations: 1,
            },
        );
        assert_eq!(
            hex(derived.as_ref()),
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
