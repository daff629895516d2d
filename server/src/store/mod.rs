//! Persistence: one store over SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver; where their
//! semantics differ (row locking for one-time-key claims, upserts on the
//! stream counter) the area module branches on [`Backend`]. Area modules hold
//! free functions over a connection, so a service composes several of them
//! inside one [`WriteTx`].
//!
//! Ordering: every row that `/sync` streams (events, to-device messages,
//! account data, receipts, device-list changes) takes its position from the
//! single-row `stream_counter` inside its write transaction. The row lock that
//! `UPDATE … RETURNING` takes is held until commit, so positions commit in
//! order and a reader that sees position N sees every row at or below N —
//! also with several server nodes on one PostgreSQL. On SQLite an in-process
//! mutex serializes writers, which also avoids `SQLITE_BUSY` on upgrades.

pub mod account_data;
pub mod audit;
pub mod backup;
pub mod devices;
pub mod ephemeral;
pub mod erased;
pub mod erasure;
pub mod events;
pub mod holds;
pub mod keys;
pub mod media;
pub mod personal_data;
pub mod purge;
pub mod rooms;
pub mod subject;
pub mod to_device;
pub mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

pub use sqlx::AnyConnection as Conn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Serializes SQLite writers; `None` on PostgreSQL, which locks rows.
    write_lock: Option<Arc<Mutex<()>>>,
}

/// A write transaction. Dropping it without `commit` rolls back.
pub struct WriteTx {
    tx: Transaction<'static, sqlx::Any>,
    backend: Backend,
    _guard: Option<OwnedMutexGuard<()>>,
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
        let options = AnyConnectOptions::from_str(url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(30))
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
            .connect_with(options)
            .await?;
        Ok(Store {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A connection for reads outside a transaction.
    pub async fn read(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>, sqlx::Error> {
        self.pool.acquire().await
    }

    pub async fn write(&self) -> Result<WriteTx, sqlx::Error> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        // IMMEDIATE takes SQLite's write lock up front. A deferred
        // transaction that reads first cannot later upgrade if any other
        // connection wrote meanwhile (SQLITE_BUSY_SNAPSHOT, which no busy
        // timeout cures); small writes outside `write()` — last-seen times,
        // to-device acknowledgements — make that a real case.
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(WriteTx {
            tx,
            backend: self.backend,
            _guard: guard,
        })
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
            self.pool
                .acquire()
                .await?
                .execute("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        Ok(())
    }

    /// The highest stream position committed so far.
    pub async fn current_pos(&self) -> Result<i64, sqlx::Error> {
        current_pos(&mut *self.read().await?).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub async fn current_pos(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pos FROM stream_counter WHERE id = 1")
        .fetch_one(conn)
        .await
}

impl WriteTx {
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Allocates the next stream position; see the module docs for why this
    /// also orders commits.
    pub async fn next_pos(&mut self) -> Result<i64, sqlx::Error> {
        let row = sqlx::query("UPDATE stream_counter SET pos = pos + 1 WHERE id = 1 RETURNING pos")
            .fetch_one(&mut *self.tx)
            .await?;
        row.try_get(0)
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// True when `err` is a unique or primary-key violation.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
