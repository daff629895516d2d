//! The audit log's offline verifier (`cloister audit verify`) as a
//! WebAssembly module, so that a data-protection officer can check an
//! export in their own browser instead of trusting the server that made it.
//!
//! The module has a plain ABI — no wasm-bindgen, no JavaScript glue beyond
//! copying bytes — so it loads with the standard `WebAssembly` API in any
//! browser or in Node:
//!
//! - `cloister_audit_alloc(len) -> ptr` reserves `len` bytes for an input;
//! - `cloister_audit_verify(export, export_len, key, key_len, trusted,
//!   trusted_len, witnesses, witnesses_len, min_witnesses, out_len) -> ptr`
//!   verifies an export (JSON) against the log's public key (a C2SP note
//!   verifier key); when `trusted_len` is not 0, checks that it extends a
//!   checkpoint kept from an earlier verification (its signed note); and
//!   requires `min_witnesses` cosignatures on the newest checkpoint from the
//!   witness keys in `witnesses` (one per line). It returns a JSON report's
//!   address and writes its length to `*out_len` (a `usize`: 4 bytes,
//!   little-endian, in WebAssembly);
//! - `cloister_audit_free(ptr, len)` releases an input or a report.
//!
//! The report: `{"ok", "origin", "entries", "checkpoints",
//! "checkpoints_matching", "latest_size", "latest_note", "unsigned_entries",
//! "witnessed_by": [name…], "failures": [text…]}`; `latest_note` is what to
//! keep as the next trusted checkpoint.

use cloister_audit::witness::{require_cosignatures, CosignatureVerifier};
use cloister_audit::{open_checkpoint, verify_export, verify_extends, AuditExport, NoteVerifier};
use serde_json::{json, Value};

/// What an export is checked against besides the log's key.
#[derive(Debug, Default)]
pub struct Checks<'a> {
    /// A checkpoint note kept from an earlier verification.
    pub trusted: Option<&'a str>,
    /// Witness keys (`cloister audit witness` prints them).
    pub witnesses: Vec<&'a str>,
    /// How many of them must have cosigned the newest checkpoint.
    pub min_witnesses: usize,
}

/// Verify `export` against `key` and `checks`; the report as JSON (see the
/// crate docs). Also the native entry point.
pub fn verify_json(export: &[u8], key: &str, checks: &Checks<'_>) -> Value {
    let refused = |reason: String| json!({ "ok": false, "failures": [reason] });
    let key = match NoteVerifier::parse(key.trim()) {
        Ok(key) => key,
        Err(e) => return refused(format!("the log's public key is not valid: {e}")),
    };
    let export = match AuditExport::from_json(export) {
        Ok(export) => export,
        Err(e) => return refused(format!("not an audit export: {e}")),
    };
    let mut witnesses = Vec::with_capacity(checks.witnesses.len());
    for w in &checks.witnesses {
        match CosignatureVerifier::parse(w.trim()) {
            Ok(w) => witnesses.push(w),
            Err(e) => return refused(format!("the witness key {w:?} is not valid: {e}")),
        }
    }
    if checks.min_witnesses > witnesses.len() {
        return refused(format!(
            "{} witness cosignatures required but only {} witness keys given",
            checks.min_witnesses,
            witnesses.len()
        ));
    }
    let trusted = match checks.trusted.map(|note| open_checkpoint(note, &key)) {
        None => None,
        Some(Ok(checkpoint)) => Some(checkpoint),
        Some(Err(e)) => {
            return refused(format!(
                "the trusted checkpoint is not signed by this log's key: {e}"
            ))
        }
    };
    let report = verify_export(&export, &key);
    let mut failures: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
    if let Some(trusted) = &trusted {
        if let Err(failure) = verify_extends(&export, &report, trusted) {
            failures.push(failure.to_string());
        }
    }
    let witnessed_by = match require_cosignatures(
        report.latest_note.as_deref(),
        &key,
        &witnesses,
        checks.min_witnesses,
    ) {
        Ok(names) => names,
        Err(shortfall) => {
            failures.push(shortfall.to_string());
            Vec::new()
        }
    };
    json!({
        "ok": failures.is_empty(),
        "origin": report.origin,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "checkpoints_matching": report.checkpoints_matching,
        "latest_size": report.latest.as_ref().map(|c| c.size),
        "latest_note": report.latest_note,
        "unsigned_entries": report.unsigned_entries,
        "witnessed_by": witnessed_by,
        "failures": failures,
    })
}

/// Reserve `len` bytes in the module's memory for an input.
#[no_mangle]
pub extern "C" fn cloister_audit_alloc(len: usize) -> *mut u8 {
    give(vec![0u8; len].into_boxed_slice()).0
}

/// Hand a buffer to the host: its address and length; the host returns it
/// with `cloister_audit_free`.
fn give(buffer: Box<[u8]>) -> (*mut u8, usize) {
    let len = buffer.len();
    (Box::into_raw(buffer).cast::<u8>(), len)
}

/// Release what `cloister_audit_alloc` reserved or a report returned.
///
/// # Safety
///
/// `ptr` and `len` are exactly those of one allocation from this module,
/// released once.
#[no_mangle]
pub unsafe extern "C" fn cloister_audit_free(ptr: *mut u8, len: usize) {
    if !ptr.is_null() {
        // SAFETY: by this function's contract, a boxed slice of `len` bytes
        // that `give` handed out.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
    }
}

/// # Safety
///
/// `ptr` is NULL with `len` 0, or `len` readable bytes in this module's
/// memory.
unsafe fn input<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: this function's contract.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// Verify an export; see the crate docs for the arguments and the result.
///
/// # Safety
///
/// Each pointer/length pair is NULL/0 or that many readable bytes in this
/// module's memory (written by the caller after `cloister_audit_alloc`);
/// `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cloister_audit_verify(
    export: *const u8,
    export_len: usize,
    key: *const u8,
    key_len: usize,
    trusted: *const u8,
    trusted_len: usize,
    witnesses: *const u8,
    witnesses_len: usize,
    min_witnesses: u32,
    out_len: *mut usize,
) -> *mut u8 {
    // SAFETY: this function's contract, pair by pair.
    let (export, key, trusted, witnesses) = unsafe {
        (
            input(export, export_len),
            input(key, key_len),
            input(trusted, trusted_len),
            input(witnesses, witnesses_len),
        )
    };
    let key = String::from_utf8_lossy(key);
    let trusted = (!trusted.is_empty()).then(|| String::from_utf8_lossy(trusted));
    let witnesses = String::from_utf8_lossy(witnesses);
    let checks = Checks {
        trusted: trusted.as_deref(),
        witnesses: witnesses.lines().filter(|l| !l.trim().is_empty()).collect(),
        min_witnesses: min_witnesses as usize,
    };
    let report = verify_json(export, &key, &checks).to_string();
    let (ptr, len) = give(report.into_bytes().into_boxed_slice());
    // SAFETY: NULL or writable (this function's contract).
    if let Some(out) = unsafe { out_len.as_mut() } {
        *out = len;
    }
    ptr
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_audit::entry::{Action, Actor, NewEntry};
    use cloister_audit::{AuditLog, CheckpointSigner, MemoryStore};

    const ORIGIN: &str = "cloister.example/audit";

    /// A log of `n` entries with a checkpoint every 5.
    fn log(signer: &CheckpointSigner, n: u64) -> AuditLog<MemoryStore> {
        let mut log = AuditLog::open(ORIGIN, MemoryStore::new()).unwrap();
        for i in 0..n {
            let entry = NewEntry::new(1_700_000_000_000 + i, Actor::system(), Action::PurgeRun);
            log.append(entry).unwrap();
            if (i + 1) % 5 == 0 {
                log.checkpoint(signer).unwrap();
            }
        }
        log
    }

    fn through_the_abi(export: &[u8], key: &str, trusted: &str) -> Value {
        witnessed_through_the_abi(export, key, trusted, "", 0)
    }

    fn witnessed_through_the_abi(
        export: &[u8],
        key: &str,
        trusted: &str,
        witnesses: &str,
        min_witnesses: u32,
    ) -> Value {
        let copy = |bytes: &[u8]| {
            let ptr = cloister_audit_alloc(bytes.len());
            // SAFETY: `ptr` holds `bytes.len()` bytes reserved just now.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
            (ptr, bytes.len())
        };
        let (e, k, t) = (copy(export), copy(key.as_bytes()), copy(trusted.as_bytes()));
        let w = copy(witnesses.as_bytes());
        let mut len = 0usize;
        // SAFETY: each pair was reserved and written above; `len` is ours.
        let ptr = unsafe {
            cloister_audit_verify(
                e.0,
                e.1,
                k.0,
                k.1,
                t.0,
                t.1,
                w.0,
                w.1,
                min_witnesses,
                &mut len,
            )
        };
        // SAFETY: the report the module handed out, read then freed once.
        let report = unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec();
        for (ptr, len) in [e, k, t, w, (ptr, len)] {
            // SAFETY: each allocation is freed once.
            unsafe { cloister_audit_free(ptr, len) };
        }
        serde_json::from_slice(&report).unwrap()
    }

    #[test]
    fn a_good_export_verifies_and_a_cut_one_fails_against_the_kept_checkpoint() {
        let signer = CheckpointSigner::generate(ORIGIN).unwrap();
        let key = signer.verifier().to_string();
        let full = log(&signer, 12).export().unwrap();
        let report = through_the_abi(&full.to_json(), &key, "");
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["entries"], 12);
        assert_eq!(report["latest_size"], 10);
        assert_eq!(report["unsigned_entries"], 2);
        let kept = report["latest_note"].as_str().unwrap().to_owned();

        // The same log later: it extends the kept checkpoint.
        let later = log(&signer, 16).export().unwrap();
        let report = through_the_abi(&later.to_json(), &key, &kept);
        assert_eq!(report["ok"], true, "{report}");

        // Cut back to 7 entries with the checkpoints after them dropped: it
        // verifies on its own, but not against what the DPO kept.
        let mut cut = full.clone();
        cut.entries.truncate(7);
        cut.checkpoints.truncate(1);
        assert_eq!(through_the_abi(&cut.to_json(), &key, "")["ok"], true);
        let report = through_the_abi(&cut.to_json(), &key, &kept);
        assert_eq!(report["ok"], false, "{report}");
        assert!(
            report["failures"][0].as_str().unwrap().contains("10"),
            "{report}"
        );

        // Another log's key, and junk, are refused with a reason.
        let other = CheckpointSigner::generate(ORIGIN)
            .unwrap()
            .verifier()
            .to_string();
        assert_eq!(through_the_abi(&full.to_json(), &other, "")["ok"], false);
        let junk = through_the_abi(b"not json", &key, "");
        assert!(junk["failures"][0]
            .as_str()
            .unwrap()
            .contains("not an audit export"));
    }

    #[test]
    fn witness_cosignatures_can_be_required() {
        use cloister_audit::witness::Cosigner;
        let signer = CheckpointSigner::generate(ORIGIN).unwrap();
        let key = signer.verifier().to_string();
        let mut export = log(&signer, 10).export().unwrap();
        let witness = Cosigner::generate("dpo.example/witness").unwrap();
        let other = Cosigner::generate("elsewhere.example/witness").unwrap();
        let (w, o) = (witness.verifier().to_string(), other.verifier().to_string());
        let both = format!("{w}\n{o}\n");

        // Not cosigned: verifies, but not when a cosignature is required.
        let bytes = export.to_json();
        assert_eq!(through_the_abi(&bytes, &key, "")["ok"], true);
        let report = witnessed_through_the_abi(&bytes, &key, "", &both, 1);
        assert_eq!(report["ok"], false, "{report}");
        assert!(report["failures"][0]
            .as_str()
            .unwrap()
            .contains("0 of the 1 witness cosignatures"));

        // The witness cosigns the newest checkpoint's text.
        let note = &mut export.checkpoints.last_mut().unwrap().note;
        let text_end = note.find("\n\n").unwrap() + 1;
        let cosignature = witness.cosign(&note[..text_end], 1_700_000_000);
        note.push_str(&cosignature);
        let bytes = export.to_json();
        let report = witnessed_through_the_abi(&bytes, &key, "", &both, 1);
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["witnessed_by"], json!(["dpo.example/witness"]));
        let report = witnessed_through_the_abi(&bytes, &key, "", &both, 2);
        assert_eq!(report["ok"], false, "{report}");

        // More required than keys given, and a bad key, are refused.
        let report = witnessed_through_the_abi(&bytes, &key, "", &w, 2);
        assert!(report["failures"][0]
            .as_str()
            .unwrap()
            .contains("only 1 witness keys"));
        let report = witnessed_through_the_abi(&bytes, &key, "", "nonsense", 1);
        assert_eq!(report["ok"], false, "{report}");
    }
}
