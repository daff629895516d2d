//! [`SqliteStore`]: the encrypted SQLite store.
//!
//! Layout: `meta(name, value)` holds the schema version, the Argon2id salt
//! and parameters, and the sealed canary; `records(kind, id, value)` holds
//! one row per record, `id` being HMAC-SHA-256(kind, id) under a key
//! derived from the passphrase and `value` the XChaCha20-Poly1305 sealing
//! of the real id and the data (the sync token is a record like any other).
//! `secure_delete` is on, so replaced and deleted values are overwritten in
//! the file instead of lingering in free pages.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use zeroize::Zeroizing;

use super::cipher::{KdfInfo, KdfParams, StoreCipher};
use super::{Record, StateStore, StoreChanges, StoreError, StoreFuture, StoredState};

const SCHEMA_VERSION: &str = "1";
const SYNC_TOKEN_KIND: &str = "sync.token";

/// An SQLite database whose values are encrypted under a passphrase.
pub struct SqliteStore {
    pool: SqlitePool,
    cipher: StoreCipher,
    path: PathBuf,
    /// Held for the store's lifetime: one writer per database.
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock_file(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lock_path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(StoreError::InUse(path.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Create the database file readable by its owner only, before SQLite
/// creates it with the default mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    if path.exists() {
        return Ok(());
    }
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?;
    Ok(())
}

/// Frame a record's real id and data together for sealing.
fn frame(id: &str, data: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(4 + id.len() + data.len()));
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(data);
    out
}

fn unframe(plain: &[u8]) -> Option<(String, Zeroizing<Vec<u8>>)> {
    let len = u32::from_le_bytes(plain.get(..4)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(plain.get(4..4 + len)?).ok()?.to_owned();
    Some((id, Zeroizing::new(plain.get(4 + len..)?.to_vec())))
}

impl SqliteStore {
    /// Open (or create) the store at `path` with the default Argon2id
    /// parameters. Fails with [`StoreError::WrongPassphrase`] when the
    /// passphrase is not the one the store was created with.
    pub async fn open(path: impl AsRef<Path>, passphrase: &str) -> Result<Self, StoreError> {
        Self::open_with(path, passphrase, KdfParams::default()).await
    }

    /// Like [`open`](Self::open); `params` apply only when the store is
    /// created (an existing store keeps its own).
    pub async fn open_with(
        path: impl AsRef<Path>,
        passphrase: &str,
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let lock = lock_file(&path)?;
        create_private(&path)?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Delete)
            .pragma("secure_delete", "ON");
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL)")
            .execute(&pool)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS records (kind TEXT NOT NULL, id BLOB NOT NULL, \
             value BLOB NOT NULL, PRIMARY KEY (kind, id))",
        )
        .execute(&pool)
        .await?;

        let meta = |name: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT value FROM meta WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&pool)
                    .await
                    .map(|row| row.map(|r| r.get::<Vec<u8>, _>(0)))
            }
        };
        let cipher = match (meta("kdf").await?, meta("canary").await?) {
            (Some(kdf), Some(canary)) => {
                if meta("schema_version").await?.as_deref() != Some(SCHEMA_VERSION.as_bytes()) {
                    return Err(StoreError::Corrupted("unknown schema version".to_owned()));
                }
                let info: KdfInfo = serde_json::from_slice(&kdf)
                    .map_err(|e| StoreError::Corrupted(format!("key derivation record: {e}")))?;
                let cipher = derive(passphrase, info).await?;
                if !cipher.opens_canary(&canary) {
                    return Err(StoreError::WrongPassphrase);
                }
                cipher
            }
            (None, None) => {
                let info = KdfInfo::new(params);
                let kdf =
                    serde_json::to_vec(&info).map_err(|e| StoreError::Corrupted(e.to_string()))?;
                let cipher = derive(passphrase, info).await?;
                let mut tx = pool.begin().await?;
                for (name, value) in [
                    ("schema_version", SCHEMA_VERSION.as_bytes().to_vec()),
                    ("kdf", kdf),
                    ("canary", cipher.seal_canary()?),
                ] {
                    sqlx::query("INSERT INTO meta (name, value) VALUES (?, ?)")
                        .bind(name)
                        .bind(value)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                cipher
            }
            _ => {
                return Err(StoreError::Corrupted(
                    "the key derivation record or the canary is missing".to_owned(),
                ))
            }
        };
        Ok(Self {
            pool,
            cipher,
            path,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sealed_row(
        &self,
        kind: &str,
        id: &str,
        data: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let hashed = self.cipher.record_id(kind, id);
        let sealed = self.cipher.seal(kind, &hashed, &frame(id, data))?;
        Ok((hashed, sealed))
    }

    /// Close the database; the lock is released when the store is dropped.
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// Argon2id is deliberately slow: run it off the async workers.
async fn derive(passphrase: &str, info: KdfInfo) -> Result<StoreCipher, StoreError> {
    let passphrase = Zeroizing::new(passphrase.as_bytes().to_vec());
    tokio::task::spawn_blocking(move || StoreCipher::derive(&passphrase, &info))
        .await
        .map_err(|e| StoreError::Corrupted(format!("key derivation task failed: {e}")))?
}

impl StateStore for SqliteStore {
    fn load(&self) -> StoreFuture<'_, StoredState> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT kind, id, value FROM records")
                .fetch_all(&self.pool)
                .await?;
            let mut state = StoredState::default();
            for row in rows {
                let kind: String = row.get(0);
                let hashed: Vec<u8> = row.get(1);
                let sealed: Vec<u8> = row.get(2);
                let plain = self.cipher.open(&kind, &hashed, &sealed)?;
                let (id, data) = unframe(&plain).ok_or_else(|| {
                    StoreError::Corrupted(format!("a {kind} record is malformed"))
                })?;
                if self.cipher.record_id(&kind, &id) != hashed {
                    return Err(StoreError::Corrupted(format!(
                        "a {kind} record is misplaced"
                    )));
                }
                if kind == SYNC_TOKEN_KIND {
                    let token = String::from_utf8(data.to_vec())
                        .map_err(|_| StoreError::Corrupted("sync token".to_owned()))?;
                    state.sync_token = Some(token);
                } else {
                    state.records.push(Record { kind, id, data });
                }
            }
            Ok(state)
        })
    }

    fn commit(&self, changes: StoreChanges) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut rows = Vec::with_capacity(changes.upserts.len() + 1);
            for record in &changes.upserts {
                let (hashed, sealed) = self.sealed_row(&record.kind, &record.id, &record.data)?;
                rows.push((record.kind.clone(), hashed, sealed));
            }
            if let Some(token) = &changes.sync_token {
                let (hashed, sealed) = self.sealed_row(SYNC_TOKEN_KIND, "", token.as_bytes())?;
                rows.push((SYNC_TOKEN_KIND.to_owned(), hashed, sealed));
            }
            let mut tx = self.pool.begin().await?;
            for (kind, hashed, sealed) in rows {
                sqlx::query("INSERT OR REPLACE INTO records (kind, id, value) VALUES (?, ?, ?)")
                    .bind(kind)
                    .bind(hashed)
                    .bind(sealed)
                    .execute(&mut *tx)
                    .await?;
            }
            for (kind, id) in &changes.deletes {
                sqlx::query("DELETE FROM records WHERE kind = ? AND id = ?")
                    .bind(kind)
                    .bind(self.cipher.record_id(kind, id))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn clear(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("DELETE FROM records")
                .execute(&self.pool)
                .await?;
            Ok(())
        })
    }
}
