//! Encryption at rest: a key derived from the application's passphrase with
//! Argon2id, records sealed with XChaCha20-Poly1305 under random nonces, and
//! record ids replaced by keyed hashes so that the database does not list
//! the rooms, users and devices the account deals with.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::StoreError;

/// The format byte at the start of every sealed value.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const SALT_LEN: usize = 16;
/// Sealed with the store key when the store is created; a passphrase whose
/// key cannot open it is the wrong one.
const CANARY: &[u8] = b"cloister store canary v1";
const CANARY_AAD: &[u8] = b"cloister-store-v1\0canary";

/// Argon2id cost parameters for deriving the store key. They are stored
/// with the salt, so a store keeps the parameters it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self {
            m_cost: Params::DEFAULT_M_COST,
            t_cost: Params::DEFAULT_T_COST,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Cheap parameters for tests only: they make a weak passphrase easy to
    /// brute-force from a stolen database.
    pub fn insecure_for_tests() -> Self {
        Self {
            m_cost: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }
}

/// What the database keeps about the key derivation (not secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KdfInfo {
    pub algorithm: String,
    pub params: KdfParams,
    /// Random salt, hex.
    pub salt: String,
}

impl KdfInfo {
    pub(super) fn new(params: KdfParams) -> Self {
        let mut salt = [0u8; SALT_LEN];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        Self {
            algorithm: "argon2id-v19".to_owned(),
            params,
            salt: hex(&salt),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The keys derived from the passphrase; both are wiped on drop (the AEAD
/// key by `chacha20poly1305`'s `zeroize` feature).
pub(crate) struct StoreCipher {
    aead: XChaCha20Poly1305,
    mac_key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for StoreCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreCipher(<keys redacted>)")
    }
}

impl StoreCipher {
    /// Derive the keys with Argon2id. Slow by design.
    pub(super) fn derive(passphrase: &[u8], info: &KdfInfo) -> Result<Self, StoreError> {
        if info.algorithm != "argon2id-v19" {
            return Err(StoreError::Corrupted(format!(
                "unknown key derivation {:?}",
                info.algorithm
            )));
        }
        let salt = unhex(&info.salt)
            .filter(|s| s.len() == SALT_LEN)
            .ok_or_else(|| StoreError::Corrupted("invalid key derivation salt".to_owned()))?;
        let p = info.params;
        let params = Params::new(p.m_cost, p.t_cost, p.p_cost, Some(64))
            .map_err(|e| StoreError::Corrupted(format!("invalid Argon2 parameters: {e}")))?;
        let mut okm = Zeroizing::new([0u8; 64]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, &salt, okm.as_mut())
            .map_err(|e| StoreError::Corrupted(format!("key derivation failed: {e}")))?;
        let mut enc_key = Zeroizing::new([0u8; 32]);
        let mut mac_key = Zeroizing::new([0u8; 32]);
        enc_key.copy_from_slice(&okm[..32]);
        mac_key.copy_from_slice(&okm[32..]);
        let aead = XChaCha20Poly1305::new_from_slice(enc_key.as_ref())
            .map_err(|_| StoreError::Corrupted("bad key length".to_owned()))?;
        Ok(Self { aead, mac_key })
    }

    /// The keyed hash standing in for a record's id in the database.
    pub(super) fn record_id(&self, kind: &str, id: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.mac_key.as_ref())
            .expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(id.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn aad(kind: &str, hashed_id: &[u8]) -> Vec<u8> {
        let mut aad = b"cloister-store-v1\0".to_vec();
        aad.extend_from_slice(kind.as_bytes());
        aad.push(0);
        aad.extend_from_slice(hashed_id);
        aad
    }

    fn seal_with_aad(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .aead
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| StoreError::Corrupted("encryption failed".to_owned()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    fn open_with_aad(&self, sealed: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != SEALED_V1 {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..1 + NONCE_LEN].try_into().ok()?;
        self.aead
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad,
                },
            )
            .ok()
            .map(Zeroizing::new)
    }

    /// Seal a record's value; it is bound to its kind and hashed id, so
    /// values cannot be moved between rows.
    pub(super) fn seal(
        &self,
        kind: &str,
        hashed_id: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.seal_with_aad(plaintext, &Self::aad(kind, hashed_id))
    }

    pub(super) fn open(
        &self,
        kind: &str,
        hashed_id: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        self.open_with_aad(sealed, &Self::aad(kind, hashed_id))
            .ok_or_else(|| {
                StoreError::Corrupted(format!(
                    "a {kind} record failed authentication: the database was altered"
                ))
            })
    }

    pub(super) fn seal_canary(&self) -> Result<Vec<u8>, StoreError> {
        self.seal_with_aad(CANARY, CANARY_AAD)
    }

    /// Whether this key opens the canary, i.e. the passphrase is right.
    pub(super) fn opens_canary(&self, sealed: &[u8]) -> bool {
        self.open_with_aad(sealed, CANARY_AAD)
            .is_some_and(|plain| plain.as_slice() == CANARY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_are_bound_to_their_row_and_nonces_differ() {
        let info = KdfInfo::new(KdfParams::insecure_for_tests());
        let cipher = StoreCipher::derive(b"pass", &info).unwrap();
        let id = cipher.record_id("k", "room");
        assert_eq!(id, cipher.record_id("k", "room"));
        assert_ne!(id, cipher.record_id("k", "room2"));
        let a = cipher.seal("k", &id, b"secret").unwrap();
        let b = cipher.seal("k", &id, b"secret").unwrap();
        assert_ne!(a, b, "random nonces");
        assert_eq!(cipher.open("k", &id, &a).unwrap().as_slice(), b"secret");
        let other = cipher.record_id("k", "other");
        assert!(
            cipher.open("k", &other, &a).is_err(),
            "moved to another row"
        );
        assert!(cipher.open("j", &id, &a).is_err(), "moved to another kind");
        let mut flipped = a.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(cipher.open("k", &id, &flipped).is_err());

        let canary = cipher.seal_canary().unwrap();
        assert!(cipher.opens_canary(&canary));
        let wrong = StoreCipher::derive(b"wrong", &info).unwrap();
        assert!(!wrong.opens_canary(&canary));
        assert_eq!(unhex(&hex(&[0, 255, 16])).unwrap(), [0, 255, 16]);
    }
}
