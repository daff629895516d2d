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
//! can, and a message takes it in the statement that stores it
//! (`events::append_under`).

pub mod account_data;
mod admission;
pub mod audit;
pub mod backup;
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
pub mod oauth;
pub mod oauth_device;
pub mod params;
pub mod personal_data;
pub mod purge;
pub mod push;
pub mod readable;
pub mod relations;
pub mod room_snapshot;
pub mod rooms;
pub mod sliding_sync;
pub mod sso;
pub mod subject;
pub mod to_device;
mod token_cache;
pub mod unread;
pub mod users;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor, Row, Transaction};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

pub use admission::{Busy, WriteError};
pub use sqlx::AnyConnection as Conn;

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

/// A write transaction. Dropping it without `commit` rolls back.
///
/// Beginning, committing and rolling back each run in a spawned task that
/// the caller cannot cancel: axum drops a request's future wherever it
/// stands when the client hangs up, and sqlx's SQLite `begin_with` leaves
/// the connection inside its transaction, with no `Transaction` to roll it
/// back, if it is dropped between its two awaits (`sqlx-sqlite`
/// `SqliteTransactionManager::begin`: `worker.begin`, then `lock_handle` to
/// check `in_transaction`). Such a connection went back to the pool holding
/// SQLite's write lock, and every later write failed.
pub struct WriteTx {
    /// `None` only once `commit` or `drop` has taken it.
    tx: Option<Transaction<'static, sqlx::Any>>,
    backend: Backend,
    /// Held until the transaction has ended on the connection, not merely
    /// until this value is dropped, so the next writer never meets a lock
    /// that is still being released.
    guard: Option<OwnedMutexGuard<()>>,
    /// Instead of `tx`: a member's hold on a group-commit batch.
    member: Option<(Arc<group::Group>, group::Slot)>,
    tokens: Arc<token_cache::TokenCache>,
    /// Set by writes that end or change a session: the token copies go
    /// once the transaction has ended (see [`WriteTx::ends_sessions`]).
    clears_tokens: Option<EndsSessions>,
}

/// What [`Store::token_owner`] found, and where.
pub enum TokenLookup {
    /// A copy younger than the time to live.
    Kept(users::TokenOwner),
    /// The row as read now; `None` when no such token exists.
    Read(Option<users::TokenOwner>),
}

/// Clears the token copies when dropped: after the commit, or at a
/// rollback, where it costs a look-up per token and nothing else.
struct EndsSessions(Arc<token_cache::TokenCache>);

impl Drop for EndsSessions {
    fn drop(&mut self) {
        self.0.sessions_ended();
    }
}

/// Where a store write may run. Most store writes take a [`WriteTx`]: they
/// must commit together with others, or carry a stream position that orders
/// them. The few that stand alone (a device's last-seen time, to-device
/// acknowledgements, …) take `&mut impl Writer`, which a transaction or an
/// [`Autocommit`] satisfies. Either way a read connection does not compile:
///
/// ```compile_fail,E0277
/// # async fn f(store: &cloister_server::store::Store) -> Result<(), sqlx::Error> {
/// let mut conn = store.read().await?;
/// cloister_server::store::devices::touch(&mut conn, "@a:x", "DEV", 0).await?;
/// # Ok(()) }
/// ```
///
/// whereas choosing to write outside a transaction does:
///
/// ```no_run
/// # async fn f(store: &cloister_server::store::Store) -> Result<(), sqlx::Error> {
/// let mut w = store.autocommit().await?;
/// cloister_server::store::devices::touch(&mut w, "@a:x", "DEV", 0).await?;
/// # Ok(()) }
/// ```
pub trait Writer {
    fn conn(&mut self) -> &mut AnyConnection;
}

impl Writer for WriteTx {
    fn conn(&mut self) -> &mut AnyConnection {
        WriteTx::conn(self)
    }
}

/// A pooled connection for writes that each stand alone, from
/// [`Store::autocommit`].
///
/// On SQLite these writes do not take the writer mutex, as they never have:
/// each statement commits on its own under SQLite's lock and busy timeout,
/// and [`Store::write`] begins IMMEDIATE so that no transaction has to
/// upgrade past one of them.
pub struct Autocommit(sqlx::pool::PoolConnection<sqlx::Any>);

impl Writer for Autocommit {
    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.0
    }
}

/// Reads share the connection: a request that reads and then writes holds
/// one pooled connection, not two, which under load could drain the pool.
impl std::ops::Deref for Autocommit {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.0
    }
}

impl std::ops::DerefMut for Autocommit {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.0
    }
}

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("migrations/0001_core.sql")),
    (
        2,
        "typing_expiry",
        include_str!("migrations/0002_typing_expiry.sql"),
    ),
    (
        3,
        "audit_log",
        include_str!("migrations/0003_audit_log.sql"),
    ),
    (
        4,
        "compliance",
        include_str!("migrations/0004_compliance.sql"),
    ),
    (
        5,
        "history_visibility",
        include_str!("migrations/0005_history_visibility.sql"),
    ),
    (6, "pushers", include_str!("migrations/0006_pushers.sql")),
    (
        7,
        "directory",
        include_str!("migrations/0007_directory.sql"),
    ),
    (
        8,
        "relations",
        include_str!("migrations/0008_relations.sql"),
    ),
    (
        10,
        "ldap_accounts",
        include_str!("migrations/0010_ldap_accounts.sql"),
    ),
    (
        11,
        "thread_notifications",
        include_str!("migrations/0011_thread_notifications.sql"),
    ),
    (
        12,
        "directory_attributes",
        include_str!("migrations/0012_directory_attributes.sql"),
    ),
    (13, "sso", include_str!("migrations/0013_sso.sql")),
    (14, "console", include_str!("migrations/0014_console.sql")),
    (
        15,
        "sliding_sync",
        include_str!("migrations/0015_sliding_sync.sql"),
    ),
    (
        16,
        "sliding_sync_states",
        include_str!("migrations/0016_sliding_sync_states.sql"),
    ),
    (17, "oauth", include_str!("migrations/0017_oauth.sql")),
    (
        18,
        "oauth_device",
        include_str!("migrations/0018_oauth_device.sql"),
    ),
    (
        19,
        "oauth_sso",
        include_str!("migrations/0019_oauth_sso.sql"),
    ),
    (
        20,
        "oauth_account_actions",
        include_str!("migrations/0020_oauth_account_actions.sql"),
    ),
    (
        21,
        "room_bump",
        include_str!("migrations/0021_room_bump.sql"),
    ),
    (
        22,
        "notification_counts",
        include_str!("migrations/0022_notification_counts.sql"),
    ),
];

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
        let pool = pool_options(backend, if backend == Backend::Sqlite { 8 } else { 16 })
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
        self.tokens = Arc::new(token_cache::TokenCache::new(ttl));
        self
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
    async fn begin(
        &self,
    ) -> Result<(Transaction<'static, sqlx::Any>, Option<OwnedMutexGuard<()>>), sqlx::Error> {
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

    /// Applies every migration not yet applied, each in its own transaction.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
        )
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let mut tx = self.write().await?;
            // Concurrent starts on PostgreSQL: the lock makes the second wait
            // and then see the first one's row.
            if self.backend == Backend::Postgres {
                tx.conn()
                    .execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    .await?;
            }
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(tx.conn())
                    .await?;
            if applied.is_some() {
                continue;
            }
            let blob = match self.backend {
                Backend::Sqlite => "BLOB",
                Backend::Postgres => "BYTEA",
            };
            sqlx::raw_sql(&sql.replace("{BLOB}", blob))
                .execute(tx.conn())
                .await?;
            match *version {
                5 => readable::backfill(&mut tx).await?,
                8 => relations::backfill(&mut tx).await?,
                22 => unread::backfill(&mut tx).await?,
                _ => {}
            }
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                .bind(*version)
                .bind(*name)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            tracing::info!(version, name, "applied database migration");
        }
        Ok(())
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

/// The options both pools share: connection setup, and the check that no
/// connection goes back into a pool inside a transaction.
fn pool_options(backend: Backend, max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
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

/// Creates a missing database file 0600 before SQLite would create it
/// with the umask's mode (0644, typically) and tightens existing database
/// and journal files.
fn prepare_sqlite_files(url: &str) -> Result<(), sqlx::Error> {
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
    let query = url.split_once('?').map_or("", |(_, query)| query);
    let mode = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "mode")
        .map(|(_, value)| value.into_owned());
    let db = options.get_filename();
    if mode.as_deref() == Some("memory") || db.starts_with("file:sqlx-in-memory") {
        return Ok(());
    }
    if mode.as_deref() == Some("rwc") {
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

impl WriteTx {
    /// Marks this transaction as ending or changing sessions (tokens
    /// deleted or soft-logged-out, a device or an account gone): once it
    /// has ended, no copy of a token's row is used again
    /// (`store::token_cache`). Every store write that does so calls this.
    pub fn ends_sessions(&mut self) {
        if self.clears_tokens.is_none() {
            self.clears_tokens = Some(EndsSessions(self.tokens.clone()));
        }
    }

    pub fn conn(&mut self) -> &mut AnyConnection {
        match &mut self.member {
            Some((_, slot)) => &mut slot.as_mut().expect("a member's batch is open").tx,
            None => self
                .tx
                .as_mut()
                .expect("the transaction is open until commit or drop"),
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Allocates the next stream position; see the module docs for why this
    /// also orders commits.
    pub async fn next_pos(&mut self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("UPDATE stream_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos")
            .fetch_one(self.conn())
            .await?;
        row.try_get(0)
    }

    /// Commits even if the caller is dropped meanwhile, so the outcome does
    /// not depend on when a client hangs up.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let clears_tokens = self.clears_tokens.take();
        if let Some((group, slot)) = self.member.take() {
            let committed = group.commit(slot).await;
            drop(clears_tokens);
            return committed;
        }
        let tx = self
            .tx
            .take()
            .expect("the transaction is open until commit");
        let guard = self.guard.take();
        // Here and not after the await: the commit goes on if the request
        // is dropped, and so must the clearing after it.
        tokio::spawn(async move {
            let committed = tx.commit().await;
            drop(clears_tokens);
            drop(guard);
            committed
        })
        .await
        .map_err(|_| sqlx::Error::WorkerCrashed)?
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some((group, slot)) = self.member.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { group.leave(slot).await });
            }
            return;
        }
        let Some(tx) = self.tx.take() else { return };
        let guard = self.guard.take();
        // Outside a runtime (a shutdown) the transaction's own drop still
        // queues the rollback; only the lock ordering is lost.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = tx.rollback().await;
                drop(guard);
            });
        }
    }
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

    /// Holds every connection the pool can hand out at once, so a connection
    /// that went back into the pool inside a transaction would be among them.
    pub(super) async fn assert_no_pooled_transaction(store: &Store) {
        let mut held = Vec::new();
        for _ in 0..8 {
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
