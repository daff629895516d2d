//! C2SP signed notes and checkpoints against the published Go vectors, and
//! strict refusal of everything else.

use cloister_audit::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, CheckpointSigner};
use cloister_audit::merkle::EMPTY_ROOT;
use cloister_audit::note::{self, KeyId, NoteError, NoteSigner, NoteVerifier};

// golang.org/x/mod/sumdb/note: the package documentation's example key, its
// signer key (note_test.go), and the example note.
const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const ENOCH_SIG: &str = "\u{2014} EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";
// C2SP signed-note specification example.
const C2SP_VKEY: &str = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const C2SP_NOTE: &str = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";

fn peter_note() -> String {
    format!("{TEXT}\n{PETER_SIG}")
}

fn peter() -> NoteVerifier {
    NoteVerifier::parse(PETER_VKEY).unwrap()
}

#[test]
fn go_example_note_verifies() {
    let n = note::open(&peter_note(), &[peter()]).unwrap();
    assert_eq!(n.text, TEXT);
    assert_eq!(n.verified.len(), 1);
    assert_eq!(n.verified[0].name, "PeterNeumann");
    assert_eq!(n.verified[0].id.to_string(), "c74f20a3");
    assert!(n.unverified.is_empty());
}

#[test]
fn c2sp_spec_example_verifies() {
    let v = NoteVerifier::parse(C2SP_VKEY).unwrap();
    assert_eq!(v.key_id().to_string(), "530d903a");
    let n = note::open(C2SP_NOTE, &[v]).unwrap();
    assert_eq!(n.text, "This is an example message.\n");
}

#[test]
fn go_signer_key_reproduces_the_go_signature() {
    let s = NoteSigner::parse(PETER_SKEY).unwrap();
    assert_eq!(s.verifier().to_string(), PETER_VKEY);
    assert_eq!(s.key_id(), peter().key_id());
    assert_eq!(s.to_signer_key_string().as_str(), PETER_SKEY);
    // Ed25519 is deterministic: the same key signs the same bytes.
    assert_eq!(note::sign(TEXT, &[&s]).unwrap(), peter_note());
}

#[test]
fn two_signers_and_cosignatures() {
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
    let n = note::open(&both, &[peter(), enoch.clone()]).unwrap();
    assert_eq!(n.verified.len(), 2);
    // Only Peter known: Enoch's line is kept as unverified, not an error.
    let n = note::open(&both, &[peter()]).unwrap();
    assert_eq!(n.verified.len(), 1);
    assert_eq!(n.unverified.len(), 1);
    assert_eq!(n.unverified[0].name, "EnochRoot");
    assert_eq!(n.unverified[0].id, enoch.key_id());
    // Repeated identical lines count once.
    let dup = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}");
    assert_eq!(note::open(&dup, &[peter()]).unwrap().verified.len(), 1);
}

#[test]
fn unknown_key_is_refused() {
    let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
    assert_eq!(
        note::open(&peter_note(), &[enoch]),
        Err(NoteError::UnknownKey {
            name: "PeterNeumann".into(),
            id: KeyId([0xc7, 0x4f, 0x20, 0xa3]),
        })
    );
    assert!(matches!(
        note::open(&peter_note(), &[]),
        Err(NoteError::UnknownKey { .. })
    ));
}

#[test]
fn bad_signature_is_refused() {
    let changed_text = peter_note().replace("cryptography", "cryptographY");
    assert!(matches!(
        note::open(&changed_text, &[peter()]),
        Err(NoteError::BadSignature { .. })
    ));
    // A changed signature byte (still canonical base64).
    let changed_sig = peter_note().replace("x08go/ZJkuBS9", "x08go/ZJkuBT9");
    assert!(matches!(
        note::open(&changed_sig, &[peter()]),
        Err(NoteError::BadSignature { .. })
    ));
    // A known key's bad signature fails the note even next to a good one.
    let bad_peter_line = changed_sig.strip_prefix(&format!("{TEXT}\n")).unwrap();
    let mixed = format!("{TEXT}\n{ENOCH_SIG}{bad_peter_line}");
    let enoch = NoteVerifier::parse(ENOCH_VKEY).unwrap();
    assert!(note::open(&format!("{TEXT}\n{ENOCH_SIG}"), &[peter(), enoch.clone()]).is_ok());
    assert!(matches!(
        note::open(&mixed, &[peter(), enoch]),
        Err(NoteError::BadSignature { name, .. }) if name == "PeterNeumann"
    ));
}

#[test]
fn key_name_mismatch_is_refused() {
    let renamed = peter_note().replace("\u{2014} PeterNeumann ", "\u{2014} PaulNeumann ");
    assert!(matches!(
        note::open(&renamed, &[peter()]),
        Err(NoteError::KeyNameMismatch { .. })
    ));
    // A verifier key string whose id does not match its name and key.
    let wrong_id = PETER_VKEY.replace("c74f20a3", "c74f20a4");
    assert_eq!(
        NoteVerifier::parse(&wrong_id),
        Err(NoteError::KeyIdMismatch)
    );
    let wrong_name = PETER_VKEY.replace("PeterNeumann", "PeterNeuman");
    assert_eq!(
        NoteVerifier::parse(&wrong_name),
        Err(NoteError::KeyIdMismatch)
    );
    let wrong_name = PETER_SKEY.replace("PeterNeumann", "PeterNeuman");
    assert_eq!(
        NoteSigner::parse(&wrong_name).unwrap_err(),
        NoteError::KeyIdMismatch
    );
}

#[test]
fn malformed_notes_are_refused() {
    let good = peter_note();
    let cases: Vec<(&str, String)> = vec![
        ("hyphen instead of em dash", good.replace('\u{2014}', "-")),
        ("no blank line", good.replacen("\n\n", "\n", 1)),
        ("no final newline", good.trim_end_matches('\n').to_owned()),
        ("empty signature block", format!("{TEXT}\n")),
        (
            "two spaces",
            good.replace("PeterNeumann x08", "PeterNeumann  x08"),
        ),
        ("missing padding", good.replace("JnAM=\n", "JnAM\n")),
        (
            "non-canonical trailing bits",
            good.replace("JnAM=\n", "JnAN=\n"),
        ),
        ("base64url alphabet", good.replace("x08go/", "x08go_")),
        (
            "short signature",
            format!("{TEXT}\n\u{2014} PeterNeumann AAAA\n"),
        ),
        ("control character", good.replace("problem,", "problem,\t")),
        (
            "carriage return",
            good.replace("problem,\n", "problem,\r\n"),
        ),
        (
            "plus in name",
            good.replace("\u{2014} PeterNeumann", "\u{2014} Peter+Neumann"),
        ),
        ("trailing garbage line", format!("{good}x\n")),
    ];
    for (what, msg) in cases {
        let r = note::open(&msg, &[peter()]);
        assert!(matches!(r, Err(NoteError::Malformed(_))), "{what}: {r:?}");
    }
    let many = format!("{TEXT}\n{}", PETER_SIG.repeat(101));
    assert!(matches!(
        note::open(&many, &[peter()]),
        Err(NoteError::Malformed(_))
    ));
    // Signing refuses text that could not be opened again.
    let s = NoteSigner::parse(PETER_SKEY).unwrap();
    for bad in ["", "no newline", "tab\there\n"] {
        assert!(note::sign(bad, &[&s]).is_err(), "{bad:?}");
    }
}

#[test]
fn mangled_verifier_keys_are_refused() {
    // As in Go's TestNewVerifier: every proper substring and every
    // single-byte change of the key string must be refused.
    let b = PETER_VKEY.as_bytes();
    for i in 0..=b.len() {
        for j in i + 1..=b.len() {
            if (i, j) != (0, b.len()) {
                let k = std::str::from_utf8(&b[i..j]).unwrap();
                assert!(NoteVerifier::parse(k).is_err(), "{k:?}");
            }
        }
    }
    for i in 0..b.len() {
        let mut m = b.to_vec();
        m[i] += 1;
        let k = String::from_utf8(m).unwrap();
        assert!(NoteVerifier::parse(&k).is_err(), "{k:?}");
    }
    assert!(NoteVerifier::parse(&PETER_VKEY.to_uppercase()).is_err());
    assert!(NoteVerifier::parse(&PETER_VKEY.replace("c74f20a3", "C74F20A3")).is_err());
    // Algorithm byte 0x02: "Ahpc..." would be alg 0x02.
    let alg2 = PETER_VKEY.replace("+ARpc", "+AhpC");
    assert!(matches!(
        NoteVerifier::parse(&alg2),
        Err(NoteError::UnknownAlgorithm(_))
    ));
    for bad in [
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDF",
        "PRIVAT+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz",
        PETER_VKEY,
    ] {
        assert!(NoteSigner::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn generated_keys_round_trip() {
    let s = NoteSigner::generate("cloister.example/audit").unwrap();
    let again = NoteSigner::parse(&s.to_signer_key_string()).unwrap();
    assert_eq!(again.verifier(), s.verifier());
    let v = NoteVerifier::parse(&s.verifier().to_string()).unwrap();
    assert_eq!(v, s.verifier());
    let msg = note::sign("hello\n", &[&s]).unwrap();
    assert_eq!(note::open(&msg, &[v]).unwrap().text, "hello\n");
    assert!(!format!("{s:?}").contains(&s.to_signer_key_string()[20..]));
}

#[test]
fn signed_checkpoint_layout_and_checks() {
    let signer = CheckpointSigner::generate("cloister.example/audit").unwrap();
    let root = [0x11; 32];
    let signed = signer.sign(42, root).unwrap();
    let body = "cloister.example/audit\n42\nERERERERERERERERERERERERERERERERERERERERERE=\n";
    assert!(signed
        .note
        .starts_with(&format!("{body}\n\u{2014} cloister.example/audit ")));
    assert_eq!(signed.note.lines().count(), 5);
    let sig_b64 = signed
        .note
        .lines()
        .last()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap();
    assert_eq!(sig_b64.len(), 92, "base64 of 4 + 64 bytes");

    let v = open_checkpoint(&signed.note, &signer.verifier()).unwrap();
    assert_eq!(v.checkpoint(), &signed.checkpoint);
    assert_eq!(v.checkpoint().size, 42);
    assert_eq!(v.checkpoint().root, root);

    // Another key, even under the same origin, is refused.
    let other = CheckpointSigner::generate("cloister.example/audit").unwrap();
    assert!(matches!(
        open_checkpoint(&signed.note, &other.verifier()),
        Err(CheckpointError::Note(NoteError::UnknownKey { .. }))
    ));
    // A note signed by the right key whose origin line is another log's.
    let s = NoteSigner::parse(&signer.to_signer_key()).unwrap();
    let foreign = Checkpoint::new("other.example/log", 1, EMPTY_ROOT).unwrap();
    let msg = note::sign(&foreign.to_body(), &[&s]).unwrap();
    assert!(matches!(
        open_checkpoint(&msg, &signer.verifier()),
        Err(CheckpointError::OriginMismatch { .. })
    ));
    // A validly signed note that is not a checkpoint.
    let msg = note::sign("just text\n", &[&s]).unwrap();
    assert!(matches!(
        open_checkpoint(&msg, &signer.verifier()),
        Err(CheckpointError::Malformed(_))
    ));
    // A changed size breaks the signature.
    let bumped = signed.note.replacen("\n42\n", "\n43\n", 1);
    assert!(matches!(
        open_checkpoint(&bumped, &signer.verifier()),
        Err(CheckpointError::Note(NoteError::BadSignature { .. }))
    ));
    // The signer key string loads back to the same origin and key.
    let loaded = CheckpointSigner::from_signer_key(&signer.to_signer_key()).unwrap();
    assert_eq!(loaded.origin(), "cloister.example/audit");
    assert_eq!(loaded.verifier(), signer.verifier());
}
