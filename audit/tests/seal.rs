//! Sealed exports: round trip, the documented layout, and clean failure on
//! a wrong key, any flipped byte, truncation and unknown versions.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use cloister_audit::seal::{self, generate_recipient_key, SealError, HEADER_LEN, TAG_LEN};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};

const PLAINTEXT: &[u8] = b"{\"format\":\"cloister-audit-log\",\"version\":1}";

#[test]
fn round_trip() {
    let (sk, pk) = generate_recipient_key();
    for len in [0usize, 1, 15, 16, 17, 1000, 100_000] {
        let msg: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let c = seal::seal(&msg, &pk).unwrap();
        assert_eq!(c.len(), HEADER_LEN + len + TAG_LEN);
        assert_eq!(seal::open(&c, &sk).unwrap().as_slice(), &msg[..]);
    }
    // Fresh ephemeral key and nonce every time.
    let (a, b) = (
        seal::seal(PLAINTEXT, &pk).unwrap(),
        seal::seal(PLAINTEXT, &pk).unwrap(),
    );
    assert_ne!(a[8..40], b[8..40]);
    assert_ne!(a[40..52], b[40..52]);
    assert_ne!(a[52..], b[52..]);
}

#[test]
fn layout_matches_the_documented_construction() {
    // Decrypt by hand from the documented format, with the recipient's key,
    // to pin the header, the HKDF inputs and the associated data.
    let sk = StaticSecret::from([0x5a; 32]);
    let pk = PublicKey::from(&sk);
    let c = seal::seal(PLAINTEXT, &pk).unwrap();
    assert_eq!(&c[..8], b"CLSL\x01\x01\x01\x01");
    let eph = PublicKey::from(<[u8; 32]>::try_from(&c[8..40]).unwrap());
    let ss = sk.diffie_hellman(&eph);
    let mut salt = c[8..40].to_vec();
    salt.extend_from_slice(pk.as_bytes());
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&salt), ss.as_bytes())
        .expand(b"cloister-seal-v1", &mut key)
        .unwrap();
    let nonce: [u8; 12] = c[40..52].try_into().unwrap();
    let pt = Aes256Gcm::new_from_slice(&key)
        .unwrap()
        .decrypt(
            &nonce.into(),
            Payload {
                msg: &c[52..],
                aad: &c[..52],
            },
        )
        .unwrap();
    assert_eq!(pt, PLAINTEXT);
}

#[test]
fn wrong_key_fails_cleanly() {
    let (_, pk) = generate_recipient_key();
    let (other, _) = generate_recipient_key();
    let c = seal::seal(PLAINTEXT, &pk).unwrap();
    assert_eq!(seal::open(&c, &other), Err(SealError::Decrypt));
}

#[test]
fn any_flipped_byte_fails() {
    let (sk, pk) = generate_recipient_key();
    let c = seal::seal(PLAINTEXT, &pk).unwrap();
    for i in 0..c.len() {
        for bit in [0x01u8, 0x80] {
            let mut t = c.clone();
            t[i] ^= bit;
            let r = seal::open(&t, &sk);
            assert!(r.is_err(), "byte {i} bit {bit:#x} went unnoticed");
            let want = match i {
                0..=3 => SealError::NotSealed,
                4 => SealError::UnsupportedVersion(c[4] ^ bit),
                5..=7 => {
                    let mut ids = [c[5], c[6], c[7]];
                    ids[i - 5] ^= bit;
                    SealError::UnsupportedAlgorithm(ids[0], ids[1], ids[2])
                }
                _ => SealError::Decrypt,
            };
            assert_eq!(r.unwrap_err(), want, "byte {i}");
        }
    }
}

#[test]
fn truncated_input_fails() {
    let (sk, pk) = generate_recipient_key();
    let c = seal::seal(PLAINTEXT, &pk).unwrap();
    for len in 0..c.len() {
        let r = seal::open(&c[..len], &sk);
        let e = r.expect_err("a truncated container opened");
        if len < HEADER_LEN + TAG_LEN {
            assert_eq!(e, SealError::Truncated, "length {len}");
        } else {
            assert_eq!(e, SealError::Decrypt, "length {len}");
        }
    }
    let mut longer = c.clone();
    longer.push(0);
    assert_eq!(seal::open(&longer, &sk), Err(SealError::Decrypt));
}

#[test]
fn unknown_version_and_foreign_data_fail() {
    let (sk, pk) = generate_recipient_key();
    let mut c = seal::seal(PLAINTEXT, &pk).unwrap();
    c[4] = 2;
    assert_eq!(seal::open(&c, &sk), Err(SealError::UnsupportedVersion(2)));
    c[4] = 0;
    assert_eq!(seal::open(&c, &sk), Err(SealError::UnsupportedVersion(0)));
    assert_eq!(seal::open(PLAINTEXT, &sk), Err(SealError::NotSealed));
    assert_eq!(seal::open(b"", &sk), Err(SealError::Truncated));
}

#[test]
fn low_order_keys_are_refused() {
    // The all-zero point and the point of order 8 give an all-zero secret.
    for bad in [[0u8; 32], {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    }] {
        assert_eq!(
            seal::seal(PLAINTEXT, &PublicKey::from(bad)),
            Err(SealError::WeakKey)
        );
    }
    // A container whose ephemeral key is low order does not open.
    let (sk, pk) = generate_recipient_key();
    let mut c = seal::seal(PLAINTEXT, &pk).unwrap();
    c[8..40].copy_from_slice(&[0u8; 32]);
    assert_eq!(seal::open(&c, &sk), Err(SealError::Decrypt));
}
