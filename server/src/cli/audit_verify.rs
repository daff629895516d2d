//! `cloister audit verify EXPORT --key KEY [--trusted FILE] [--save-trusted FILE]
//! [--witness KEY]... [--min-witnesses N]`: checks an exported audit log
//! offline, with no server, database or configuration. With `--trusted`, the
//! log must also extend a checkpoint the verifier kept from an earlier run,
//! which is what shows a log that was truncated together with its
//! checkpoints, rolled back or forked. With `--witness`, its newest
//! checkpoint must carry that many witnesses' cosignatures: a witness
//! cosigns only what extends what it saw, so a fork shown to someone else
//! goes without them.
//!
//! Exit 0 when everything verifies, 1 when a check fails, 2 on bad input.

use std::path::Path;
use std::process::ExitCode;

use cloister_audit::witness::{require_cosignatures, CosignatureVerifier};
use cloister_audit::{open_checkpoint, verify_export, verify_extends, AuditExport, NoteVerifier};

/// What to check besides the export itself.
pub(crate) struct Checks<'a> {
    pub trusted: Option<&'a Path>,
    pub save_trusted: Option<&'a Path>,
    pub witnesses: &'a [String],
    pub min_witnesses: Option<usize>,
}

fn bad_input(message: String) -> ExitCode {
    eprintln!("cloister: {message}");
    ExitCode::from(2)
}

pub(crate) fn run(path: &Path, key: &str, checks: &Checks<'_>) -> ExitCode {
    let key = match NoteVerifier::parse(key.trim()) {
        Ok(key) => key,
        Err(e) => return bad_input(format!("invalid verifier key: {e}")),
    };
    let export = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| AuditExport::from_json(&bytes).map_err(|e| e.to_string()));
    let export = match export {
        Ok(export) => export,
        Err(e) => return bad_input(format!("cannot read {}: {e}", path.display())),
    };
    let witnesses = match checks
        .witnesses
        .iter()
        .map(|w| CosignatureVerifier::parse(w.trim()).map_err(|e| format!("--witness {w:?}: {e}")))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(w) => w,
        Err(e) => return bad_input(e),
    };
    let required = checks
        .min_witnesses
        .unwrap_or(usize::from(!witnesses.is_empty()));
    if required > witnesses.len() {
        return bad_input(format!(
            "--min-witnesses {required} but only {} --witness keys",
            witnesses.len()
        ));
    }
    let trusted = match checks.trusted.map(|t| (t, std::fs::read_to_string(t))) {
        None => None,
        Some((t, Err(e))) => return bad_input(format!("cannot read {}: {e}", t.display())),
        Some((t, Ok(note))) => match open_checkpoint(&note, &key) {
            Ok(c) => Some(c),
            Err(e) => {
                return bad_input(format!(
                    "{} is not a checkpoint signed by this key: {e}",
                    t.display()
                ))
            }
        },
    };

    let report = verify_export(&export, &key);
    println!("origin:      {}", report.origin);
    println!("entries:     {}", report.entries);
    println!(
        "checkpoints: {} ({} signed by this key and matching)",
        report.checkpoints, report.checkpoints_matching
    );
    if let Some(latest) = &report.latest {
        println!("latest:      {} entries", latest.size);
    }
    println!(
        "unsigned:    {} entries after the latest checkpoint",
        report.unsigned_entries
    );
    let mut ok = report.failures.is_empty();
    for failure in &report.failures {
        println!("FAILED: {failure}");
    }
    if let Some(trusted) = &trusted {
        let size = trusted.checkpoint().size;
        match verify_extends(&export, &report, trusted) {
            Ok(latest) => println!(
                "trusted:     extends the trusted checkpoint of {size} entries up to {} (consistency proof verified)",
                latest.size
            ),
            Err(failure) => {
                ok = false;
                println!("FAILED: {failure}");
            }
        }
    }
    if required > 0 {
        match require_cosignatures(report.latest_note.as_deref(), &key, &witnesses, required) {
            Ok(names) => println!(
                "witnessed:   the latest checkpoint is cosigned by {}",
                names.join(", ")
            ),
            Err(shortfall) => {
                ok = false;
                println!("FAILED: {shortfall}");
            }
        }
    }
    if !ok {
        return ExitCode::FAILURE;
    }
    println!("OK: the log is complete and unaltered up to the latest checkpoint");
    if let (Some(out), Some(note)) = (checks.save_trusted, &report.latest_note) {
        if let Err(e) = std::fs::write(out, note) {
            return bad_input(format!("cannot write {}: {e}", out.display()));
        }
        println!("saved:       the latest checkpoint to {}", out.display());
    }
    ExitCode::SUCCESS
}
