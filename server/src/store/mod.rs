//! Persistence: one store over SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; where their
//! semantics differ (row locking for one-time-key claims, upserts on the
//! stream counter) the area module branches on [`Backend`]. Area modules hold
//! free functions: reads take any connection, writes a [`WriteTx`] (or, for
//! the few that stand alone, any [`Writer`]), so a service composes several
//! of them inside one transaction and cannot write outside one by accident.
//!
//! Ordering: every row that `/sync` streams (events, to-device messages,
//! account data, receipts, device-list changes) takes its position from the
//! single-row `stream_counter` inside its write transaction. The row lock that
//! `UPDATE … RETURNING` takes is held until commit, so positions commit in
//! order and a reader that sees position N sees every row at or below N —
//! also with several server nodes on one PostgreSQL. On SQLite an in-process
//! mutex serializes writers, which also avoids `SQLITE_BUSY` on upgrades.
//! On PostgreSQL the row lock is what every send waits for, and it is held
//! through the commit's flush: a writer takes its position as late as it
//! can, a message takes it in the statement that stores it
//! (`events::append_under`), and a plain message is that one statement,
//! committed without a round trip back to this process
//! (`checked_append`). A position can go unused (a gap), which readers
//! pass over.

pub mod account_data;
mod admission;
pub mod audit;
pub mod backup;
pub mod checked_append;
pub mod codec;
pub mod console;
pub mod device_news;
pub mod devices;
pub mod directory;
pub mod ephemeral;
pub mod erased;
pub mod erasure;
pub mod events;
pub mod file_modes;
mod group;
pub mod holds;
pub mod keys;
pub mod ldap;
pub mod lock;
pub mod media;
mod migrations;
pub mod oauth;
pub mod oauth_device;
pub mod params;
pub mod personal_data;
pub mod purge;
pub mod push;
pub mod readable;
pub mod relations;
pub mod room_access;
pub mod room_snapshot;
pub mod rooms;
pub mod sliding_sync;
pub mod sqlite_process;
pub mod sso;
pub mod subject;
pub mod to_device;
mod token_cache;
pub mod txn_ids;
pub mod unread;
pub mod users;
mod write;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use tokio::sync::{oneshot, Mutex};

pub use admission::{Busy, WriteError};
pub use sqlx::AnyConnection as Conn;
pub use write::{Autocommit, WriteTx, Writer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite: the connection write transactions begin on; `None` on
    /// PostgreSQL, whose writers take connections from `pool`.
    writer: Option<AnyPool>,
    backend: Backend,
    /// Serializes SQLite writers; `None` on PostgreSQL, which locks rows.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Group commit for the writes on the message path; `None` on
    /// PostgreSQL, whose concurrent transactions share WAL flushes anyway.
    group: Option<Arc<group::Group>>,
    /// Bounds the queue of [`Store::write_grouped_or_busy`] writes; unbounded
    /// unless [`Store::bound_write_queue`] set one.
    admission: Arc<admission::Admission>,
    /// Recent access-token look-ups (see `store::token_cache`).
    tokens: Arc<token_cache::TokenCache>,
    /// Set while a [`Store::reclaim_soon`] checkpoint is waiting to run.
    reclaim_pending: Arc<AtomicBool>,
    /// For the connections that must not come from the pool: a session that
    /// holds a lock, or listens, for as long as the node runs.
    url: Arc<str>,
    waits: Arc<Waits>,
}

/// How long requests waited for a connection (reads) or for a write
/// transaction to begin (on SQLite, behind the one writer before them).
#[derive(Debug, Default)]
struct Waits {
    reads: AtomicU64,
    read_wait_micros: AtomicU64,
    writes: AtomicU64,
    write_wait_micros: AtomicU64,
}

impl Waits {
    fn record(count: &AtomicU64, micros: &AtomicU64, since: Instant) {
        count.fetch_add(1, Ordering::Relaxed);
        let waited = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        micros.fetch_add(waited, Ordering::Relaxed);
    }
}

/// The pool's use, for the metrics endpoint.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub max: u32,
    pub open: u32,
    pub idle: u32,
    pub reads: u64,
    pub read_wait_seconds: f64,
    pub writes: u64,
    pub write_wait_seconds: f64,
    /// Group commit (SQLite): batches committed, and the writes they held.
    pub group_commits: u64,
    pub group_members: u64,
    /// Message-path writes waiting to begin right now.
    pub writes_queued: usize,
    /// Message-path writes refused because the writer's queue was past
    /// its bound.
    pub writes_refused: u64,
    /// Requests answered from a copy of their token's row, and the times
    /// every copy was dropped (`store::token_cache`).
    pub token_copies_used: u64,
    pub token_copies_dropped: u64,
}

/// What [`Store::token_owner`] found, and where.
pub enum TokenLookup {
    /// A copy younger than the time to live.
    Kept(users::TokenOwner),
    /// The row as read now; `None` when no such token exists.
    Read(Option<users::TokenOwner>),
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str) -> Result<Store, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(sqlx::Error::Configuration(
                "database_url must start with sqlite:// or postgres://".into(),
            ));
        };
        if backend == Backend::Sqlite {
            prepare_sqlite_files(url)?;
        }
        let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = pool_options(
            backend,
            if backend == Backend::Sqlite {
                sqlite_readers()
            } else {
                16
            },
        )
        .connect_with(options.clone())
        .await?;
        // SQLite's writes are one at a time (`write_lock`), so they need one
        // connection, and on it they do not queue behind the reads that can
        // hold every connection of the shared pool under load.
        let writer = match backend {
            Backend::Sqlite => Some(pool_options(backend, 1).connect_with(options).await?),
            Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            writer,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            group: (backend == Backend::Sqlite).then(Arc::default),
            admission: Arc::default(),
            tokens: Arc::default(),
            reclaim_pending: Arc::default(),
            url: url.into(),
            waits: Arc::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Refuses [`Store::write_grouped_or_busy`] writes with [`Busy`] while the
    /// oldest one queued has waited longer than `max_wait` (see
    /// `store::admission`). Set before the store is cloned.
    pub fn bound_write_queue(mut self, max_wait: Option<Duration>) -> Store {
        self.admission = Arc::new(admission::Admission::new(max_wait));
        self
    }

    /// Keeps access-token look-ups for up to `ttl` (see
    /// `store::token_cache`); none are kept unless this is set. Set before
    /// the store is cloned.
    pub fn cache_tokens(mut self, ttl: Option<Duration>) -> Store {
        let marker = self.sessions_marker();
        self.tokens = Arc::new(token_cache::TokenCache::new(ttl).watching(marker));
        self
    }

    /// SQLite: the file beside the database that processes running no
    /// node (the admin commands) replace when they end sessions, so that
    /// the node drops its copies of tokens (`store::token_cache`). None on
    /// PostgreSQL, whose nodes hear each other, and for a database in
    /// memory, which no other process can open.
    pub fn sessions_marker(&self) -> Option<PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let mut name = sqlite_file(&self.url)?.into_os_string();
        name.push("-sessions");
        Some(PathBuf::from(name))
    }

    /// For a process that runs no node (the admin commands): its writes
    /// that end sessions are announced to the nodes running on the same
    /// database. On SQLite by the marker file (see
    /// [`Store::sessions_marker`]); on PostgreSQL by running `notify` (a
    /// `NOTIFY` on the nodes' channel, `cluster::sessions_ended_notice`) in
    /// the same transaction, so the nodes hear it when, and only if, the
    /// write commits.
    pub fn announce_to_running_nodes(&self, notify: String) {
        match self.sessions_marker() {
            Some(marker) => {
                self.announce_sessions_ended(move || token_cache::touch_marker(&marker));
            }
            None if self.backend == Backend::Postgres => self.tokens.notify_in_transaction(notify),
            None => {}
        }
    }

    /// Who an access token's digest belongs to, from a recent copy when
    /// there is one and `may_reuse`; [`TokenLookup::Read`] when the row was
    /// read now.
    pub async fn token_owner(
        &self,
        token_hash: &[u8],
        may_reuse: bool,
    ) -> Result<TokenLookup, sqlx::Error> {
        if let Some(owner) = may_reuse.then(|| self.tokens.get(token_hash)).flatten() {
            return Ok(TokenLookup::Kept(owner));
        }
        let generation = self.tokens.generation();
        let found = users::user_for_token(&mut *self.read().await?, token_hash).await?;
        if let Some(owner) = &found {
            self.tokens.put(token_hash, owner, generation);
        }
        Ok(TokenLookup::Read(found))
    }

    /// Calls `announce` whenever a write through this store ended sessions,
    /// once its transaction has ended; set once (`cluster.rs`).
    pub fn announce_sessions_ended(&self, announce: impl Fn() + Send + Sync + 'static) {
        self.tokens.announce_with(Box::new(announce));
    }

    /// Drops every copy of a token's row: another node ended sessions, or
    /// may have without this node hearing it.
    pub fn drop_token_copies(&self) {
        self.tokens.clear();
    }

    /// Drops the copy of one token's row, so the next request reads it:
    /// after a write to the row that ends no session (a last-seen time).
    pub fn forget_token(&self, token_hash: &[u8]) {
        self.tokens.forget(token_hash);
    }

    /// The `database_url` the store was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for reads outside a transaction.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        let started = Instant::now();
        let conn = self.pool.acquire().await;
        Waits::record(&self.waits.reads, &self.waits.read_wait_micros, started);
        conn
    }

    /// A connection for writes outside a transaction; see [`Autocommit`].
    pub async fn autocommit(&self) -> Result<Autocommit, sqlx::Error> {
        Ok(Autocommit(self.read().await?))
    }

    pub fn pool_stats(&self) -> PoolStats {
        let w = &self.waits;
        let secs = |micros: &AtomicU64| micros.load(Ordering::Relaxed) as f64 / 1e6;
        PoolStats {
            max: self.pool.options().get_max_connections(),
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            reads: w.reads.load(Ordering::Relaxed),
            read_wait_seconds: secs(&w.read_wait_micros),
            writes: w.writes.load(Ordering::Relaxed),
            write_wait_seconds: secs(&w.write_wait_micros),
            group_commits: self
                .group
                .as_ref()
                .map_or(0, |g| g.commits.load(Ordering::Relaxed)),
            group_members: self
                .group
                .as_ref()
                .map_or(0, |g| g.members.load(Ordering::Relaxed)),
            writes_queued: self.admission.waiting(),
            writes_refused: self.admission.refused.load(Ordering::Relaxed),
            token_copies_used: self.tokens.used.load(Ordering::Relaxed),
            token_copies_dropped: self.tokens.dropped.load(Ordering::Relaxed),
        }
    }

    pub async fn write(&self) -> Result<WriteTx, sqlx::Error> {
        let started = Instant::now();
        let (tx, guard) = self.begin().await?;
        Waits::record(&self.waits.writes, &self.waits.write_wait_micros, started);
        Ok(WriteTx {
            tx: Some(tx),
            backend: self.backend,
            guard,
            member: None,
            tokens: self.tokens.clone(),
            clears_tokens: None,
        })
    }

    /// A write transaction for the message path (room events, to-device):
    /// on SQLite, concurrent ones share a transaction and its fsync (see
    /// `store::group`); `commit` returns once the shared commit is done.
    /// Elsewhere the same as [`Store::write`]. Never refused: for writes
    /// the server must make (an account's deactivation leaving its rooms),
    /// or that clients do not retry by transaction id.
    pub async fn write_grouped(&self) -> Result<WriteTx, sqlx::Error> {
        self.grouped(self.admission.join()).await
    }

    /// [`Store::write_grouped`], refused with [`WriteError::Busy`] while the
    /// queue is past its bound: for requests a client retries with the same
    /// transaction id (sends, redactions, to-device), which are what floods
    /// the writer.
    pub async fn write_grouped_or_busy(&self) -> Result<WriteTx, WriteError> {
        let waiting = self.admission.enter()?;
        Ok(self.grouped(waiting).await?)
    }

    async fn grouped(&self, waiting: admission::Waiting) -> Result<WriteTx, sqlx::Error> {
        let Some(group) = &self.group else {
            let tx = self.write().await?;
            drop(waiting);
            return Ok(tx);
        };
        let started = Instant::now();
        let store = self.clone();
        let slot = group
            .join(waiting, async move { store.begin().await })
            .await?;
        Waits::record(&self.waits.writes, &self.waits.write_wait_micros, started);
        Ok(WriteTx {
            tx: None,
            backend: self.backend,
            guard: None,
            member: Some((group.clone(), slot)),
            tokens: self.tokens.clone(),
            clears_tokens: None,
        })
    }

    /// Takes the writer lock (SQLite) and begins a transaction.
    async fn begin(&self) -> group::Opened {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let pool = self.writer.as_ref().unwrap_or(&self.pool).clone();
        let backend = self.backend;
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            if sender.is_closed() {
                return; // the request is gone; do not start its transaction
            }
            // IMMEDIATE takes SQLite's write lock up front. A deferred
            // transaction that reads first cannot later upgrade if any other
            // connection wrote meanwhile (SQLITE_BUSY_SNAPSHOT, which no busy
            // timeout cures); small writes outside `write()` — last-seen
            // times, to-device acknowledgements — make that a real case.
            let begun = match backend {
                Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await,
                Backend::Postgres => pool.begin().await,
            };
            if let Err(Ok(tx)) = sender.send(begun.map(|tx| (tx, guard))) {
                // Nobody took it: end it here, still holding the write lock.
                let (tx, _guard) = tx;
                let _ = tx.rollback().await;
            }
        });
        receiver.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// After bulk deletion: on SQLite, copies the write-ahead log into the
    /// database and truncates it, so the old page images holding deleted
    /// rows leave the disk too (best effort: a long-running reader can keep
    /// part of the log until the next call). PostgreSQL reclaims dead rows
    /// with autovacuum.
    pub async fn reclaim(&self) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Sqlite {
            // Writers wait meanwhile, so the log can be emptied.
            let _writers = match &self.write_lock {
                Some(lock) => Some(lock.clone().lock_owned().await),
                None => None,
            };
            self.writer
                .as_ref()
                .unwrap_or(&self.pool)
                .acquire()
                .await?
                .execute("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        Ok(())
    }

    /// [`Store::reclaim`] shortly, off the caller's path, for deletions
    /// that come one at a time (redactions): the checkpoint takes the writer
    /// lock, so a burst of them shares one.
    pub fn reclaim_soon(&self) {
        /// How long deletions are gathered before one checkpoint.
        const DELAY: Duration = Duration::from_millis(250);
        if self.backend != Backend::Sqlite || self.reclaim_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            // Cleared before the checkpoint: a deletion committed from here
            // on schedules the next one rather than relying on this one.
            store.reclaim_pending.store(false, Ordering::Release);
            if let Err(e) = store.reclaim().await {
                tracing::error!(error = %e, "checkpointing the write-ahead log failed");
            }
        });
    }

    /// The highest stream position committed so far.
    pub async fn current_pos(&self) -> Result<i64, sqlx::Error> {
        current_pos(&mut *self.read().await?).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
    }
}

/// SQLite's reading connections: twice the cores, at least 4 and at most
/// 16. Each is a thread of its own and holds its own page cache; on two
/// cores, 4 answered as many syncs as 8, with less delay and 14 MiB less
/// memory, and 16 fewer (docs/performance.md, "Fewer reading connections").
fn sqlite_readers() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(2 * cores).unwrap_or(u32::MAX).clamp(4, 16)
}

/// A pooled PostgreSQL connection idle this long is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// The options both pools share: connection setup, and the check that no
/// connection goes back into a pool inside a transaction.
fn pool_options(backend: Backend, max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        // sqlx can ping an idle connection before handing it out, to find
        // one whose server hung up. SQLite's cannot: its server is a thread
        // of this process, and the ping is two thread hand-offs on every
        // `/sync` and every send (docs/performance.md, "No ping before a
        // read"). PostgreSQL's can (a restart, a proxy's idle timeout), but
        // sqlx already pings every connection as it comes back to the pool,
        // so one that was idle for less than PING_AFTER_IDLE answered a
        // moment ago; a ping on each acquisition was a round trip more per
        // request on a machine short of CPU (docs/performance.md, "One
        // statement text for every reader").
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if backend == Backend::Postgres && meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .after_release(move |conn, _| {
            Box::pin(async move {
                // The SQLite worker applies a dropped transaction's
                // rollback asynchronously; a ping queued behind it makes
                // the depth below current. PostgreSQL's is synchronous.
                // A depth of zero needs no ping: a transaction's depth is
                // counted once its BEGIN is acknowledged, and falls to zero
                // only when it ended. Most connections are returned from
                // reads, and a ping costs two thread hand-offs.
                if backend == Backend::Sqlite && conn.is_in_transaction() {
                    conn.ping().await?;
                }
                // Backstop for any path that still leaks a transaction:
                // closing the connection rolls it back, whereas pooling
                // it would wedge every later writer.
                if conn.is_in_transaction() {
                    tracing::warn!("closing a database connection returned inside a transaction");
                    return Ok(false);
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // FULL: an acknowledged write (a to-device room key,
                    // say) survives power loss, not just a crash.
                    // secure_delete: deleted rows are overwritten, so
                    // what retention and erasure delete does not linger
                    // in free pages of the file.
                    conn.execute(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                         PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
                         PRAGMA secure_delete=ON;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
}

/// The `mode` parameter of a SQLite URL (`rwc`, `memory`, …).
fn sqlite_mode(url: &str) -> Option<String> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "mode")
        .map(|(_, value)| value.into_owned())
}

/// The database file of a SQLite URL; None for a database in memory.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    let db = options.get_filename();
    let memory =
        sqlite_mode(url).as_deref() == Some("memory") || db.starts_with("file:sqlx-in-memory");
    (!memory).then(|| db.to_owned())
}

/// Creates a missing database file 0600 before SQLite would create it
/// with the umask's mode (0644, typically) and tightens existing database
/// and journal files.
fn prepare_sqlite_files(url: &str) -> Result<(), sqlx::Error> {
    let Some(db) = sqlite_file(url) else {
        return Ok(());
    };
    let db = db.as_path();
    if sqlite_mode(url).as_deref() == Some("rwc") {
        file_modes::create_private_file(db)?;
    }
    let mut tightened = Vec::new();
    for file in file_modes::sqlite_files(db) {
        tightened.extend(file_modes::tighten(&file)?);
    }
    file_modes::log_tightened(&tightened);
    Ok(())
}

pub async fn current_pos(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pos FROM stream_counter WHERE id = 1")
        .fetch_one(conn)
        .await
}

/// True when `err` is a unique or primary-key violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use std::task::Poll;

    use super::*;

    pub(super) async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// Creates room `room_id` (made by `@a:x`, with no events yet).
    pub(super) async fn create_room(store: &Store, room_id: &str) {
        let mut tx = store.write().await.unwrap();
        rooms::create(&mut tx, room_id, "@a:x", "10", false, 0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Holds every connection the pool can hand out at once, so a connection
    /// that went back into the pool inside a transaction would be among them.
    pub(super) async fn assert_no_pooled_transaction(store: &Store) {
        let mut held = Vec::new();
        for _ in 0..store.pool.options().get_max_connections() {
            held.push(store.read().await.unwrap());
        }
        held.push(store.writer.as_ref().unwrap().acquire().await.unwrap());
        for conn in &held {
            assert!(
                !conn.is_in_transaction(),
                "a pooled connection is inside a transaction"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn write_dropped_at_any_point_leaves_no_transaction_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        // Each round polls once (acquire, send BEGIN), gives the connection's
        // worker thread a varying head start, polls again and drops the
        // future: somewhere in BEGIN, its acknowledgement or the check after.
        for round in 0..60u64 {
            let mut write = Box::pin(store.write());
            for _ in 0..2 {
                if let Poll::Ready(tx) = futures::poll!(&mut write) {
                    drop(tx);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(round * 20));
            }
            drop(write);
        }
        let mut tx = store.write().await.unwrap();
        tx.next_pos().await.unwrap();
        tx.commit().await.unwrap();
        assert_no_pooled_transaction(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_released_inside_a_transaction_is_not_pooled() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let mut conn = store.read().await.unwrap();
        // A transaction nobody will end: what a cancelled `begin_with` leaves.
        std::mem::forget(conn.begin_with("BEGIN IMMEDIATE").await.unwrap());
        drop(conn);
        assert_no_pooled_transaction(&store).await;
        let mut tx = store.write().await.unwrap();
        tx.next_pos().await.unwrap();
        tx.commit().await.unwrap();
    }
}
