//! Write access: a transaction ([`WriteTx`]), alone or as a member of a
//! group commit, and [`Autocommit`] for the few writes that stand alone.

use std::sync::Arc;

use sqlx::{AnyConnection, Executor, Row, Transaction};
use tokio::sync::OwnedMutexGuard;

use super::{group, token_cache, Backend};

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
    pub(super) tx: Option<Transaction<'static, sqlx::Any>>,
    pub(super) backend: Backend,
    /// Held until the transaction has ended on the connection, not merely
    /// until this value is dropped, so the next writer never meets a lock
    /// that is still being released.
    pub(super) guard: Option<OwnedMutexGuard<()>>,
    /// Instead of `tx`: a member's hold on a group-commit batch.
    pub(super) member: Option<(Arc<group::Group>, group::Slot)>,
    pub(super) tokens: Arc<token_cache::TokenCache>,
    /// Set by writes that end or change a session: the token copies go
    /// once the transaction has ended (see [`WriteTx::ends_sessions`]).
    pub(super) clears_tokens: Option<EndsSessions>,
}

/// Clears the token copies when dropped: after the commit, or at a
/// rollback, where it costs a look-up per token and nothing else.
pub(super) struct EndsSessions(Arc<token_cache::TokenCache>);

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
pub struct Autocommit(pub(super) sqlx::pool::PoolConnection<sqlx::Any>);

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
        let mut tx = self
            .tx
            .take()
            .expect("the transaction is open until commit");
        if clears_tokens.is_some() {
            if let Some(notify) = self.tokens.notify_statement() {
                // Delivered by PostgreSQL at the commit, and only then.
                (&mut *tx).execute(notify).await?;
            }
        }
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
