//! Writing the tamper-evident audit log: what the server records, under
//! which pseudonyms, and its signed checkpoints.
//!
//! Entries name users only by pseudonym (an HMAC of the user id under a key
//! kept in the data directory), carry counts and never content, and are
//! appended in the same transaction as the action they record, so an action
//! cannot happen without its entry. Checkpoints sign the Merkle root at a
//! set interval and on demand (`cloister audit checkpoint`).

use std::path::Path;

use cloister_audit::{
    Action, Actor, AuditEntry, AuditExport, AuditLog, AuditStore, CheckpointSigner, Details,
    MemoryStore, NewEntry, Pseudonymizer, Target,
};
use zeroize::Zeroizing;

use crate::service::Context;
use crate::store::{audit, WriteTx};

const SIGNER_FILE: &str = "audit-checkpoint.key";
const PSEUDONYM_FILE: &str = "audit-pseudonym.key";

/// The audit log's keys: the checkpoint signing key and the pseudonym key.
pub struct Auditor {
    signer: CheckpointSigner,
    pseudonyms: Pseudonymizer,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("origin", &self.signer.origin())
            .finish_non_exhaustive()
    }
}

impl Auditor {
    /// Loads the keys from `dir`, creating them (mode 0600) on first start.
    pub fn load_or_create(dir: &Path, server_name: &str) -> anyhow::Result<Auditor> {
        let origin = format!("{server_name}/audit");
        let signer_path = dir.join(SIGNER_FILE);
        let signer = match std::fs::read_to_string(&signer_path) {
            Ok(text) => CheckpointSigner::from_signer_key(text.trim())
                .map_err(|e| anyhow::anyhow!("{}: {e}", signer_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let signer = CheckpointSigner::generate(&origin)?;
                write_secret(&signer_path, signer.to_signer_key().as_bytes())?;
                signer
            }
            Err(e) => return Err(e.into()),
        };
        anyhow::ensure!(
            signer.origin() == origin,
            "{} signs for {:?}, but this server's audit origin is {origin:?} (was server_name changed?)",
            signer_path.display(),
            signer.origin()
        );
        let pseudonym_path = dir.join(PSEUDONYM_FILE);
        let key = match std::fs::read_to_string(&pseudonym_path) {
            Ok(text) => Zeroizing::new(text.trim().to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new([0u8; 32]);
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut());
                let hex =
                    Zeroizing::new(key.iter().map(|b| format!("{b:02x}")).collect::<String>());
                write_secret(&pseudonym_path, hex.as_bytes())?;
                hex
            }
            Err(e) => return Err(e.into()),
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        anyhow::ensure!(
            key.len() == 64,
            "{} must hold 64 hex digits",
            pseudonym_path.display()
        );
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&key[2 * i..2 * i + 2], 16).map_err(|_| {
                anyhow::anyhow!("{} must hold 64 hex digits", pseudonym_path.display())
            })?;
        }
        Ok(Auditor {
            signer,
            pseudonyms: Pseudonymizer::new(*bytes),
        })
    }

    pub fn origin(&self) -> &str {
        self.signer.origin()
    }

    /// The public key a DPO verifies exports with (`<name>+<id>+<key>`).
    pub fn verifier_key(&self) -> String {
        self.verifier().to_string()
    }

    pub fn verifier(&self) -> cloister_audit::NoteVerifier {
        self.signer.verifier()
    }

    pub fn actor(&self, user_id: &str) -> Actor {
        self.pseudonyms.actor(user_id)
    }

    pub fn target(&self, user_id: &str) -> Target {
        self.pseudonyms.target(user_id)
    }
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// An entry by `user_id` (pseudonymised) at the current time.
pub fn by_user(state: &Context, user_id: &str, action: Action) -> NewEntry {
    NewEntry::new(
        state.now_ms().max(0) as u64,
        state.audit.actor(user_id),
        action,
    )
}

/// An entry by `actor` (a pseudonymised admin, or the system).
pub fn by_actor(state: &Context, actor: Actor, action: Action) -> NewEntry {
    NewEntry::new(state.now_ms().max(0) as u64, actor, action)
}

/// An entry by the server itself or its operator (the CLI).
pub fn by_system(state: &Context, action: Action) -> NewEntry {
    NewEntry::new(state.now_ms().max(0) as u64, Actor::system(), action)
}

/// An action the system took on `user_id`'s account on someone else's
/// behalf (an identity provider, the operator's CLI), named by `detail`.
pub fn system_on_account(state: &Context, user_id: &str, detail: &str) -> NewEntry {
    let details = Details::new().with(detail, 1).expect("a valid detail name");
    by_system(state, Action::AdminCall)
        .target(state.audit.target(user_id))
        .details(details)
}

pub fn count(n: u64) -> Details {
    Details::new()
        .with("count", n)
        .expect("a valid detail name")
}

/// Appends inside the caller's transaction: the entry commits with the action.
pub async fn record(tx: &mut WriteTx, entry: NewEntry) -> Result<(), sqlx::Error> {
    audit::append(tx, entry).await.map(|_| ())
}

/// Appends in a transaction of its own, for events with no other write
/// (a failed login).
pub async fn record_alone(state: &Context, entry: NewEntry) -> Result<(), sqlx::Error> {
    let mut tx = state.store.write().await?;
    record(&mut tx, entry).await?;
    tx.commit().await
}

async fn load(state: &Context) -> anyhow::Result<AuditLog<MemoryStore>> {
    let mut conn = state.store.read().await?;
    let mut store = MemoryStore::new();
    for entry in audit::entries(&mut conn).await? {
        store.append(&entry)?;
    }
    for note in audit::checkpoints(&mut conn).await? {
        store.append_checkpoint(&note)?;
    }
    Ok(AuditLog::open(state.audit.origin(), store)?)
}

/// Signs a checkpoint of the whole log now and stores it; returns the note.
/// With witnesses configured, the note carries the cosignatures of those
/// that gave one (`service::witnesses`).
pub async fn checkpoint(state: &Context) -> anyhow::Result<String> {
    let mut log = load(state).await?;
    // Before this one is added: where each witness may stand.
    let earlier = cloister_audit::AuditStore::checkpoints(log.store())?;
    let signed = log.checkpoint(&state.audit.signer)?;
    let note = crate::service::witnesses::cosign(state, &log, &signed.note, &earlier).await;
    audit::put_checkpoint(
        &mut state.store.autocommit().await?,
        log.size() as i64,
        &note,
        state.now_ms(),
    )
    .await?;
    drop_checkpoint(state, log.size(), &note);
    Ok(note)
}

/// Writes the checkpoint to `audit.checkpoint_drop_dir`, if set, for a DPO
/// to keep outside the server (`cloister audit verify --trusted` reads the
/// file as it is). Written to a temporary name and renamed, so a reader
/// never sees half a note. A failure is logged, not fatal: the checkpoint
/// is already stored.
fn drop_checkpoint(state: &Context, size: u64, note: &str) {
    let dir = &state.config.audit.checkpoint_drop_dir;
    if dir.is_empty() {
        return;
    }
    let dir = Path::new(dir);
    let path = dir.join(format!("{size}.checkpoint"));
    let tmp = dir.join(format!(".{size}.checkpoint.tmp"));
    let written = std::fs::write(&tmp, note).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(err) = written {
        tracing::error!(dir = %dir.display(), error = %err, "writing the audit checkpoint to checkpoint_drop_dir failed");
    }
}

/// Signs a checkpoint when entries arrived since the last one and the
/// interval has passed. Returns whether one was made.
pub async fn checkpoint_if_due(state: &Context) -> anyhow::Result<bool> {
    let interval_ms = state
        .config
        .audit
        .checkpoint_interval_secs
        .saturating_mul(1000) as i64;
    let mut conn = state.store.read().await?;
    let size = audit::size(&mut conn).await?;
    let latest = audit::latest_checkpoint(&mut conn).await?;
    drop(conn);
    let due = match latest {
        None => size > 0,
        Some((signed_size, at)) => size > signed_size && state.now_ms() - at >= interval_ms,
    };
    if due {
        checkpoint(state).await?;
    }
    Ok(due)
}

/// The whole log with its checkpoints, for offline verification.
pub async fn export(state: &Context) -> anyhow::Result<AuditExport> {
    Ok(load(state).await?.export()?)
}

/// Which entries to show when browsing the log.
#[derive(Debug, Default)]
pub struct Browse {
    pub action: Option<Action>,
    pub since_ts: Option<u64>,
    pub until_ts: Option<u64>,
    /// Only entries before this position (the previous page's cursor).
    pub before: Option<u64>,
    pub limit: usize,
}

/// A page of matching entries, newest first, and the cursor for the next
/// page (None at the start of the log). Entries are read in chunks and
/// filtered here, and one call reads at most [`BROWSE_SCAN`] of them, so
/// a filter matching nothing costs a bounded amount however long the log.
pub async fn browse(
    state: &Context,
    filter: &Browse,
) -> Result<(Vec<AuditEntry>, Option<u64>), sqlx::Error> {
    const CHUNK: i64 = 500;
    let mut found = Vec::new();
    let mut before = match filter.before {
        Some(b) => b as i64,
        None => audit::size(&mut *state.store.read().await?).await?,
    };
    let mut scanned = 0;
    'scan: while before > 0 && scanned < BROWSE_SCAN {
        let chunk = audit::entries_before(&mut *state.store.read().await?, before, CHUNK).await?;
        if chunk.is_empty() {
            before = 0;
        }
        for entry in chunk {
            scanned += 1;
            before = entry.seq as i64;
            // Entries are appended in time order (under the log's lock), so
            // once one is older than the window, every later one is too.
            if filter.since_ts.is_some_and(|t| entry.ts < t) {
                before = 0;
                break 'scan;
            }
            let wanted = filter.action.is_none_or(|a| a == entry.action)
                && filter.until_ts.is_none_or(|t| entry.ts <= t);
            if wanted {
                found.push(entry);
                if found.len() >= filter.limit {
                    break 'scan;
                }
            }
        }
    }
    let next = (before > 0).then_some(before as u64);
    Ok((found, next))
}

/// The most entries one [`browse`] call reads.
pub const BROWSE_SCAN: usize = 5_000;
