//! Sealed exports: encryption to a recipient's X25519 public key.
//!
//! Construction (the shape of HPKE base mode, built from standard parts):
//!
//! 1. a fresh ephemeral X25519 key pair `(e, E)`; `ss = X25519(e, R)` for
//!    the recipient's public key `R` (an all-zero `ss`, from a low-order `R`,
//!    is refused);
//! 2. `key = HKDF-SHA256(salt = E || R, ikm = ss, info = "cloister-seal-v1")`,
//!    32 bytes;
//! 3. AES-256-GCM with `key`, a random 96-bit nonce, and the 52-byte header
//!    below as associated data, so no header byte can change unnoticed.
//!
//! Container layout (binary; all offsets in bytes):
//!
//! | offset | len | field                                         |
//! |-------:|----:|-----------------------------------------------|
//! | 0      | 4   | magic `"CLSL"` (`43 4C 53 4C`)                |
//! | 4      | 1   | version, `0x01`                               |
//! | 5      | 1   | key agreement id, `0x01` = X25519             |
//! | 6      | 1   | KDF id, `0x01` = HKDF-SHA256                  |
//! | 7      | 1   | AEAD id, `0x01` = AES-256-GCM                 |
//! | 8      | 32  | ephemeral public key `E`                      |
//! | 40     | 12  | nonce                                         |
//! | 52     | n+16| ciphertext of the n-byte plaintext, then tag  |
//!
//! The algorithm ids are Cloister's own (not HPKE registry values). A wrong
//! key and a modified container fail the same way ([`SealError::Decrypt`]):
//! AES-GCM cannot tell them apart. See also `audit/FORMAT.md`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{EphemeralSecret, PublicKey, StaticSecret};
use zeroize::Zeroizing;

pub const MAGIC: [u8; 4] = *b"CLSL";
pub const VERSION: u8 = 0x01;
pub const KA_X25519: u8 = 0x01;
pub const KDF_HKDF_SHA256: u8 = 0x01;
pub const AEAD_AES_256_GCM: u8 = 0x01;
pub const HKDF_INFO: &[u8] = b"cloister-seal-v1";
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 52;
/// The AES-GCM tag length.
pub const TAG_LEN: usize = 16;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("not a sealed container")]
    NotSealed,
    #[error("sealed container is truncated")]
    Truncated,
    #[error("unsupported sealed container version {0}")]
    UnsupportedVersion(u8),
    #[error("unsupported algorithms (key agreement {0}, KDF {1}, AEAD {2})")]
    UnsupportedAlgorithm(u8, u8, u8),
    #[error("the public key is of low order")]
    WeakKey,
    #[error("cannot decrypt: wrong key, or the container was modified")]
    Decrypt,
    #[error("the operating system has no random numbers")]
    Random,
}

fn derive_key(
    shared: &x25519_dalek::SharedSecret,
    ephemeral: &PublicKey,
    recipient: &PublicKey,
) -> Result<Aes256Gcm, SealError> {
    if !shared.was_contributory() {
        return Err(SealError::WeakKey);
    }
    let mut salt = [0u8; 64];
    salt[..32].copy_from_slice(ephemeral.as_bytes());
    salt[32..].copy_from_slice(recipient.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(Some(&salt), shared.as_bytes())
        .expand(HKDF_INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    Ok(Aes256Gcm::new_from_slice(key.as_ref()).expect("the key is 32 bytes"))
}

/// Encrypts `plaintext` so that only the holder of `recipient`'s secret key
/// can read it.
pub fn seal(plaintext: &[u8], recipient: &PublicKey) -> Result<Vec<u8>, SealError> {
    let secret = EphemeralSecret::random();
    let ephemeral = PublicKey::from(&secret);
    let shared = secret.diffie_hellman(recipient);
    let cipher = derive_key(&shared, &ephemeral, recipient)?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;

    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, KA_X25519, KDF_HKDF_SHA256, AEAD_AES_256_GCM]);
    out.extend_from_slice(ephemeral.as_bytes());
    out.extend_from_slice(&nonce);
    let ct = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad: &out,
            },
        )
        .map_err(|_| SealError::Decrypt)?;
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Decrypts a container made by [`seal`]. The plaintext is wiped on drop.
pub fn open(container: &[u8], recipient: &StaticSecret) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if container.len() < 5 {
        return Err(if MAGIC.starts_with(container) {
            SealError::Truncated
        } else {
            SealError::NotSealed
        });
    }
    if container[..4] != MAGIC {
        return Err(SealError::NotSealed);
    }
    if container[4] != VERSION {
        return Err(SealError::UnsupportedVersion(container[4]));
    }
    if container.len() < HEADER_LEN + TAG_LEN {
        return Err(SealError::Truncated);
    }
    let (ka, kdf, aead) = (container[5], container[6], container[7]);
    if (ka, kdf, aead) != (KA_X25519, KDF_HKDF_SHA256, AEAD_AES_256_GCM) {
        return Err(SealError::UnsupportedAlgorithm(ka, kdf, aead));
    }
    let (header, ct) = container.split_at(HEADER_LEN);
    let ephemeral_bytes: [u8; 32] = header[8..40].try_into().expect("32 bytes");
    let nonce: [u8; 12] = header[40..52].try_into().expect("12 bytes");
    let ephemeral = PublicKey::from(ephemeral_bytes);
    let shared = recipient.diffie_hellman(&ephemeral);
    let cipher = derive_key(&shared, &ephemeral, &PublicKey::from(recipient))
        .map_err(|_| SealError::Decrypt)?;
    let pt = cipher
        .decrypt(
            &nonce.into(),
            Payload {
                msg: ct,
                aad: header,
            },
        )
        .map_err(|_| SealError::Decrypt)?;
    Ok(Zeroizing::new(pt))
}

/// A new recipient key pair; the secret is wiped on drop.
pub fn generate_recipient_key() -> (StaticSecret, PublicKey) {
    let secret = StaticSecret::random();
    let public = PublicKey::from(&secret);
    (secret, public)
}
