//! Persistence: everything a client needs to survive a restart, written in
//! one transaction together with the sync token it was learned from.
//!
//! A store holds opaque records, each a `(kind, id)` key and a value: the
//! crypto core's records (see [`crate::crypto::RECORD_KINDS`]), the
//! client's (session, rooms) and the application's own. Two stores
//! implement [`StateStore`]:
//!
//! - [`SqliteStore`]: SQLite through sqlx, every value sealed with
//!   XChaCha20-Poly1305 under a key derived from the application's
//!   passphrase (Argon2id), ids replaced by keyed hashes;
//! - [`MemoryStore`]: in memory, for tests and for WebAssembly, where the
//!   host keeps persistence.

#[cfg(feature = "sqlite")]
mod cipher;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use thiserror::Error;
use zeroize::Zeroizing;

pub use crate::crypto::CryptoRecord as Record;
#[cfg(feature = "sqlite")]
pub use cipher::KdfParams;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// Store errors. Messages never contain record contents.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The passphrase does not open this store.
    #[error("wrong passphrase: it does not unlock this store")]
    WrongPassphrase,
    /// Another process (or another handle) has the store open.
    #[error("the store at {0} is in use by another process")]
    InUse(String),
    /// A value failed its authentication or could not be decoded: the
    /// file was damaged or tampered with.
    #[error("the store is corrupted: {0}")]
    Corrupted(String),
    /// The database failed (SQLite error).
    #[error("database error: {0}")]
    Database(String),
    /// The file system failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(feature = "sqlite")]
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

/// What one commit writes: records to insert or replace, records to
/// delete, and (optionally) the new sync token — all or nothing.
#[derive(Debug, Default)]
pub struct StoreChanges {
    /// Records to insert or replace.
    pub upserts: Vec<Record>,
    /// Records to delete, as `(kind, id)`.
    pub deletes: Vec<(String, String)>,
    /// The `next_batch` the changes came from; `None` keeps the stored one.
    pub sync_token: Option<String>,
}

impl StoreChanges {
    /// Whether the commit would change nothing.
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.deletes.is_empty() && self.sync_token.is_none()
    }
}

/// Everything a store holds.
#[derive(Debug, Default)]
pub struct StoredState {
    /// Every record.
    pub records: Vec<Record>,
    /// The last committed sync token, if any.
    pub sync_token: Option<String>,
}

/// A boxed future, so that stores can be used as `dyn StateStore`.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A place to keep client state. `commit` must apply all of a
/// [`StoreChanges`] or none of it.
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Every record, and the sync token.
    fn load(&self) -> StoreFuture<'_, StoredState>;
    /// Apply the changes atomically.
    fn commit(&self, changes: StoreChanges) -> StoreFuture<'_, ()>;
    /// Delete everything (after logout): the keys must not outlive the
    /// device.
    fn clear(&self) -> StoreFuture<'_, ()>;
}

#[derive(Default)]
struct MemoryInner {
    records: BTreeMap<(String, String), Zeroizing<Vec<u8>>>,
    sync_token: Option<String>,
}

/// An in-memory store. Clones share the same data, so a test can drop a
/// client and build a new one from a clone of its store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<MemoryInner>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.inner.lock().map(|i| i.records.len()).unwrap_or(0);
        f.debug_struct("MemoryStore")
            .field("records", &count)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Corrupted("a writer panicked".to_owned()))
    }
}

impl StateStore for MemoryStore {
    fn load(&self) -> StoreFuture<'_, StoredState> {
        Box::pin(async move {
            let inner = self.lock()?;
            Ok(StoredState {
                records: inner
                    .records
                    .iter()
                    .map(|((kind, id), data)| Record {
                        kind: kind.clone(),
                        id: id.clone(),
                        data: data.clone(),
                    })
                    .collect(),
                sync_token: inner.sync_token.clone(),
            })
        })
    }

    fn commit(&self, changes: StoreChanges) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            for record in changes.upserts {
                inner.records.insert((record.kind, record.id), record.data);
            }
            for key in changes.deletes {
                inner.records.remove(&key);
            }
            if let Some(token) = changes.sync_token {
                inner.sync_token = Some(token);
            }
            Ok(())
        })
    }

    fn clear(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut inner = self.lock()?;
            *inner = MemoryInner::default();
            Ok(())
        })
    }
}
