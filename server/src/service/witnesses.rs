//! Sending each new audit checkpoint to the configured witnesses (C2SP
//! tlog-witness `add-checkpoint`) and keeping their cosignatures on it.
//!
//! A witness cosigns only a checkpoint that extends the newest one it
//! cosigned before, so once a witness has seen a checkpoint, this server can
//! no longer show anyone a shorter or different history with that witness's
//! cosignature on it. Where each witness stands needs no table of its own: it
//! is the newest stored checkpoint carrying its cosignature, and a witness
//! that knows better answers 409 with its size, which is tried once.
//!
//! A witness that is down or refuses leaves the checkpoint without its
//! cosignature (logged, counted); signing never waits on a witness for more
//! than [`TIMEOUT`]. A refusal for a fork (409 on the same size, 422 on a
//! proof) is logged as an error: the log's history is not what the witness saw.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cloister_audit::witness::{cosigned_by, AddCheckpoint, CosignatureVerifier};
use cloister_audit::{open_checkpoint, AuditLog, MemoryStore};

use crate::config::AuditWitness;
use crate::service::Context;

const TIMEOUT: Duration = Duration::from_secs(10);

/// `note` with the cosignatures of every witness that gave one. `earlier`:
/// the stored checkpoint notes, oldest first.
pub async fn cosign(
    state: &Context,
    log: &AuditLog<MemoryStore>,
    note: &str,
    earlier: &[String],
) -> String {
    let mut out = note.to_owned();
    if state.config.audit.witnesses.is_empty() {
        return out;
    }
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Cloister audit log")
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "cannot build the HTTP client for audit witnesses");
            return out;
        }
    };
    for witness in &state.config.audit.witnesses {
        // Checked when the configuration was loaded.
        let Ok(key) = CosignatureVerifier::parse(&witness.key) else {
            continue;
        };
        match ask(state, &client, log, note, earlier, witness, &key).await {
            Ok(line) => {
                out.push_str(&line);
                state
                    .metrics
                    .audit_witness_cosignatures
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(()) => {
                state
                    .metrics
                    .audit_witness_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    out
}

/// The size of the newest of `notes` that `key` cosigned; 0 for none.
fn last_cosigned(state: &Context, key: &CosignatureVerifier, notes: &[String]) -> u64 {
    let log_key = state.audit.verifier();
    notes
        .iter()
        .rev()
        .filter_map(|n| open_checkpoint(n, &log_key).ok())
        .find(|c| !cosigned_by(c, std::slice::from_ref(key)).is_empty())
        .map_or(0, |c| c.checkpoint().size)
}

/// One witness's cosignature line on `note`, checked.
async fn ask(
    state: &Context,
    client: &reqwest::Client,
    log: &AuditLog<MemoryStore>,
    note: &str,
    earlier: &[String],
    witness: &AuditWitness,
    key: &CosignatureVerifier,
) -> Result<String, ()> {
    let url = format!("{}/add-checkpoint", witness.url.trim_end_matches('/'));
    let size = log.size();
    let mut old = last_cosigned(state, key, earlier);
    for attempt in 0..2 {
        let proof = match log.consistency_proof(old, size) {
            Ok(p) => p.hashes,
            Err(err) => {
                tracing::warn!(witness = key.name(), error = %err, "no consistency proof for the witness's size");
                return Err(());
            }
        };
        let body = AddCheckpoint {
            old_size: old,
            proof,
            note: note.to_owned(),
        }
        .to_body();
        let response = client.post(&url).body(body).send().await.map_err(|err| {
            tracing::warn!(witness = key.name(), error = %err, "audit witness unreachable; the checkpoint goes without its cosignature");
        })?;
        let status = response.status().as_u16();
        let size_answer = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"text/x.tlog.size"));
        let text = response.text().await.unwrap_or_default();
        match status {
            200 => return checked_line(state, note, &text, key),
            409 if size_answer && attempt == 0 => {
                // The witness holds another size: retry once from there.
                match text.trim().parse::<u64>() {
                    Ok(theirs) if theirs <= size => old = theirs,
                    _ => {
                        tracing::error!(witness = key.name(), held = %text.trim(), size, "AUDIT WITNESS HOLDS A LARGER LOG than this server: the log was rolled back");
                        return Err(());
                    }
                }
            }
            409 | 422 => {
                tracing::error!(witness = key.name(), status, answer = %text.trim(), "AUDIT WITNESS REFUSED: the log's history differs from what it cosigned before");
                return Err(());
            }
            _ => {
                tracing::warn!(
                    witness = key.name(),
                    status,
                    "audit witness refused the checkpoint"
                );
                return Err(());
            }
        }
    }
    Err(())
}

/// The witness's cosignature line from its answer, if it verifies.
fn checked_line(
    state: &Context,
    note: &str,
    answer: &str,
    key: &CosignatureVerifier,
) -> Result<String, ()> {
    let log_key = state.audit.verifier();
    for line in answer.lines() {
        let line = format!("{line}\n");
        let candidate = format!("{note}{line}");
        let Ok(opened) = open_checkpoint(&candidate, &log_key) else {
            continue;
        };
        if !cosigned_by(&opened, std::slice::from_ref(key)).is_empty() {
            return Ok(line);
        }
    }
    tracing::warn!(
        witness = key.name(),
        "the witness answered without a valid cosignature"
    );
    Err(())
}
