//! Encrypted attachments (Matrix v2 format): round trip, wire format, and
//! refusal of anything altered.

use cloister_sdk::crypto::{
    decrypt_attachment, encrypt_attachment, AttachmentError, EncryptedFile,
};
use serde_json::json;

fn sample(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn round_trip_through_the_event_json() {
    for len in [0, 1, 15, 16, 17, 100_000] {
        let plaintext = sample(len);
        let attachment = encrypt_attachment(&plaintext).unwrap();
        assert_eq!(attachment.ciphertext.len(), len, "CTR mode adds no padding");
        if len >= 16 {
            assert_ne!(attachment.ciphertext, plaintext);
        }
        // The file object travels inside an event: go through JSON.
        let json = serde_json::to_value(attachment.file("mxc://cloister.test/abc")).unwrap();
        assert_eq!(json["url"], "mxc://cloister.test/abc");
        let file: EncryptedFile = serde_json::from_value(json).unwrap();
        assert_eq!(
            decrypt_attachment(&attachment.ciphertext, &file).unwrap(),
            plaintext
        );
    }
}

#[test]
fn each_attachment_gets_its_own_key_and_iv() {
    let a = encrypt_attachment(b"same bytes").unwrap();
    let b = encrypt_attachment(b"same bytes").unwrap();
    let (fa, fb) = (a.file("mxc://x/a"), b.file("mxc://x/b"));
    assert_ne!(fa.key.k, fb.key.k);
    assert_ne!(fa.iv, fb.iv);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn a_flipped_byte_fails_the_hash_check() {
    let plaintext = sample(4096);
    let attachment = encrypt_attachment(&plaintext).unwrap();
    let file = attachment.file("mxc://x/y");
    for position in [0, 2048, 4095] {
        let mut tampered = attachment.ciphertext.clone();
        tampered[position] ^= 0x01;
        assert!(matches!(
            decrypt_attachment(&tampered, &file),
            Err(AttachmentError::HashMismatch)
        ));
    }
    let truncated = &attachment.ciphertext[..4095];
    assert!(matches!(
        decrypt_attachment(truncated, &file),
        Err(AttachmentError::HashMismatch)
    ));
    let mut extended = attachment.ciphertext.clone();
    extended.push(0);
    assert!(matches!(
        decrypt_attachment(&extended, &file),
        Err(AttachmentError::HashMismatch)
    ));
}

#[test]
fn malformed_file_objects_are_refused() {
    let attachment = encrypt_attachment(b"secret").unwrap();
    let good = attachment.file("mxc://x/y");

    let mut missing_hash = good.clone();
    missing_hash.hashes.clear();
    assert!(matches!(
        decrypt_attachment(&attachment.ciphertext, &missing_hash),
        Err(AttachmentError::MissingHash)
    ));

    let mut v1 = good.clone();
    v1.v = "v1".to_owned();
    assert!(matches!(
        decrypt_attachment(&attachment.ciphertext, &v1),
        Err(AttachmentError::UnsupportedVersion(_))
    ));

    let mut wrong_alg = good.clone();
    wrong_alg.key.alg = "A128CTR".to_owned();
    assert!(matches!(
        decrypt_attachment(&attachment.ciphertext, &wrong_alg),
        Err(AttachmentError::InvalidKey(_))
    ));

    let mut short_key = good.clone();
    short_key.key.k = "AAAA".to_owned();
    assert!(matches!(
        decrypt_attachment(&attachment.ciphertext, &short_key),
        Err(AttachmentError::InvalidKey(_))
    ));

    let mut bad_iv = good.clone();
    bad_iv.iv = "AAAA".to_owned();
    assert!(matches!(
        decrypt_attachment(&attachment.ciphertext, &bad_iv),
        Err(AttachmentError::InvalidIv)
    ));

    // The hash covers the ciphertext, not the key: a swapped key passes the
    // hash but cannot produce the plaintext.
    let other = encrypt_attachment(b"secret").unwrap().file("mxc://x/z");
    let mut swapped = good.clone();
    swapped.key = other.key.clone();
    assert_ne!(
        decrypt_attachment(&attachment.ciphertext, &swapped).unwrap(),
        b"secret"
    );
}

#[test]
fn decrypts_a_file_object_written_by_another_client() {
    // A v2 file object as other Matrix clients write it (padded base64 is
    // tolerated on input), built here from known key, IV and ciphertext:
    // AES-256-CTR of "Hello, Matrix!" under key 0x00..0x1f and IV
    // 0x0102030405060708 || 0^64, computed with an independent implementation
    // (Python `cryptography`, and `openssl enc -aes-256-ctr`).
    let file: EncryptedFile = serde_json::from_value(json!({
        "url": "mxc://example.org/abc",
        "key": {
            "kty": "oct", "alg": "A256CTR", "ext": true,
            "key_ops": ["encrypt", "decrypt"],
            "k": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
        },
        "iv": "AQIDBAUGBwgAAAAAAAAAAA==",
        "hashes": {"sha256": KNOWN_SHA256},
        "v": "v2"
    }))
    .unwrap();
    let ciphertext = hex(KNOWN_CIPHERTEXT_HEX);
    assert_eq!(
        decrypt_attachment(&ciphertext, &file).unwrap(),
        b"Hello, Matrix!"
    );
}

const KNOWN_CIPHERTEXT_HEX: &str = "2d0717bd48d8752cee8da299f9fe";
const KNOWN_SHA256: &str = "dmNRvknALpkL/wqQWfuTwEPWHzUqtIgPwh1kHJAHRmM";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
