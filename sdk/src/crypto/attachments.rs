//! Encrypted attachments in the Matrix v2 format: AES-256-CTR, with the key
//! as a JWK, the IV and the SHA-256 of the ciphertext travelling in the
//! event (spec: "Sending encrypted attachments").

use std::collections::BTreeMap;
use std::fmt;

use aes::Aes256;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use ctr::cipher::{KeyIvInit, StreamCipher};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::error::AttachmentError;

type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// Unpadded on output, padding tolerated on input (other clients differ).
const B64_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_B64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, B64_CONFIG);
const URL_SAFE_B64: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, B64_CONFIG);

/// The attachment key as a JSON Web Key. `k` is secret and wiped on drop.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonWebKey {
    /// Key type: always `oct`.
    pub kty: String,
    /// Permitted operations: `encrypt` and `decrypt`.
    pub key_ops: Vec<String>,
    /// Algorithm: always `A256CTR`.
    pub alg: String,
    /// The key, unpadded URL-safe base64.
    pub k: String,
    /// Extractable: always true.
    pub ext: bool,
}

impl fmt::Debug for JsonWebKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonWebKey")
            .field("kty", &self.kty)
            .field("key_ops", &self.key_ops)
            .field("alg", &self.alg)
            .field("k", &"<redacted>")
            .field("ext", &self.ext)
            .finish()
    }
}

impl Drop for JsonWebKey {
    fn drop(&mut self) {
        self.k.zeroize();
    }
}

/// The `file` / `thumbnail_file` object of an encrypted media event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedFile {
    /// The `mxc://` URI of the uploaded ciphertext.
    pub url: String,
    /// The AES-256 key (secret).
    pub key: JsonWebKey,
    /// The AES-CTR IV, unpadded base64.
    pub iv: String,
    /// Algorithm → hash of the ciphertext, unpadded base64; `sha256` is
    /// required.
    pub hashes: BTreeMap<String, String>,
    /// Always `v2`.
    pub v: String,
}

/// A freshly encrypted attachment: upload `ciphertext`, then put
/// [`file`](Self::file) with the returned `mxc://` URI in the event.
#[derive(Debug)]
pub struct EncryptedAttachment {
    /// The bytes to upload.
    pub ciphertext: Vec<u8>,
    key: JsonWebKey,
    iv: String,
    sha256: String,
}

impl EncryptedAttachment {
    /// The `file` object for the event, once the ciphertext was uploaded
    /// to `url` (`mxc://…`).
    pub fn file(&self, url: &str) -> EncryptedFile {
        EncryptedFile {
            url: url.to_owned(),
            key: self.key.clone(),
            iv: self.iv.clone(),
            hashes: BTreeMap::from([("sha256".to_owned(), self.sha256.clone())]),
            v: "v2".to_owned(),
        }
    }
}

/// Encrypt `plaintext` with a fresh random key and IV.
pub fn encrypt_attachment(plaintext: &[u8]) -> Result<EncryptedAttachment, AttachmentError> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    // The low 64 bits are the block counter and start at zero, so other
    // clients that treat only those bits as the counter (WebCrypto with
    // length 64) compute the same keystream.
    let mut iv = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut iv[..8]);

    let mut ciphertext = plaintext.to_vec();
    let mut cipher = Aes256Ctr::new(&(*key).into(), &iv.into());
    cipher
        .try_apply_keystream(&mut ciphertext)
        .map_err(|_| AttachmentError::TooLarge)?;
    let sha256 = STANDARD_B64.encode(Sha256::digest(&ciphertext));

    Ok(EncryptedAttachment {
        ciphertext,
        key: JsonWebKey {
            kty: "oct".to_owned(),
            key_ops: vec!["encrypt".to_owned(), "decrypt".to_owned()],
            alg: "A256CTR".to_owned(),
            k: URL_SAFE_B64.encode(key.as_ref()),
            ext: true,
        },
        iv: STANDARD_B64.encode(iv),
        sha256,
    })
}

/// Check the ciphertext against its SHA-256 and only then decrypt it.
pub fn decrypt_attachment(
    ciphertext: &[u8],
    file: &EncryptedFile,
) -> Result<Vec<u8>, AttachmentError> {
    if file.v != "v2" {
        return Err(AttachmentError::UnsupportedVersion(file.v.clone()));
    }
    if file.key.kty != "oct" {
        return Err(AttachmentError::InvalidKey("kty is not \"oct\""));
    }
    if file.key.alg != "A256CTR" {
        return Err(AttachmentError::InvalidKey("alg is not \"A256CTR\""));
    }
    if !file.key.key_ops.iter().any(|op| op == "decrypt") {
        return Err(AttachmentError::InvalidKey("key_ops lacks \"decrypt\""));
    }
    let key = Zeroizing::new(
        URL_SAFE_B64
            .decode(&file.key.k)
            .map_err(|_| AttachmentError::InvalidKey("k is not URL-safe base64"))?,
    );
    let key: &[u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| AttachmentError::InvalidKey("k is not 256 bits"))?;
    let iv: [u8; 16] = STANDARD_B64
        .decode(&file.iv)
        .ok()
        .and_then(|iv| iv.try_into().ok())
        .ok_or(AttachmentError::InvalidIv)?;
    let expected = file
        .hashes
        .get("sha256")
        .and_then(|h| STANDARD_B64.decode(h).ok())
        .ok_or(AttachmentError::MissingHash)?;
    let actual = Sha256::digest(ciphertext);
    if expected.len() != actual.len() || !bool::from(actual.as_slice().ct_eq(&expected)) {
        return Err(AttachmentError::HashMismatch);
    }

    let mut plaintext = ciphertext.to_vec();
    let mut cipher = Aes256Ctr::new(&(*key).into(), &iv.into());
    cipher
        .try_apply_keystream(&mut plaintext)
        .map_err(|_| AttachmentError::TooLarge)?;
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_aes_256_ctr() {
        // NIST SP 800-38A, F.5.5 (CTR-AES256.Encrypt), first block.
        let key: [u8; 32] = [
            0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d,
            0x77, 0x81, 0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3,
            0x09, 0x14, 0xdf, 0xf4,
        ];
        let iv: [u8; 16] = [
            0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
            0xfe, 0xff,
        ];
        let mut block: [u8; 16] = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        Aes256Ctr::new(&key.into(), &iv.into()).apply_keystream(&mut block);
        assert_eq!(
            block,
            [
                0x60, 0x1e, 0xc3, 0x13, 0x77, 0x57, 0x89, 0xa5, 0xb7, 0xa7, 0xf5, 0x04, 0xbb, 0xf3,
                0xd2, 0x28
            ]
        );
    }

    #[test]
    fn format_is_matrix_v2() {
        let attachment = encrypt_attachment(b"hello").unwrap();
        let file = attachment.file("mxc://x/y");
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(json["v"], "v2");
        assert_eq!(json["key"]["kty"], "oct");
        assert_eq!(json["key"]["alg"], "A256CTR");
        assert_eq!(json["key"]["ext"], true);
        assert_eq!(
            json["key"]["key_ops"],
            serde_json::json!(["encrypt", "decrypt"])
        );
        let k = json["key"]["k"].as_str().unwrap();
        assert_eq!(k.len(), 43, "32 bytes, unpadded");
        assert!(!k.contains(['=', '+', '/']));
        let iv = STANDARD_B64.decode(json["iv"].as_str().unwrap()).unwrap();
        assert_eq!(&iv[8..], &[0u8; 8], "low 64 bits of the IV are zero");
        assert!(!json["iv"].as_str().unwrap().contains('='));
        let hash = json["hashes"]["sha256"].as_str().unwrap();
        assert_eq!(
            hash,
            STANDARD_B64.encode(Sha256::digest(&attachment.ciphertext))
        );
        assert!(!format!("{:?}", file.key).contains(k));
    }
}
