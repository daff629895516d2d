//! Group commit on SQLite: writes that queue behind one another share one
//! transaction, and so one fsync.
//!
//! One writer at a time holds SQLite's write lock, and each commit costs an
//! fsync (about 1–3 ms on the disks we measured), which caps one writer at a
//! few hundred commits a second however little each transaction does. A
//! [`Store::write_grouped`](super::Store::write_grouped) member does its work
//! inside a savepoint of an open batch transaction, releases the savepoint,
//! and lets the next queued member in; the first member to come back after
//! the queue has drained commits the batch for all of them. Nobody is
//! answered before the commit that holds their write, so durability is that
//! of one transaction per write; a member that fails rolls back to its
//! savepoint and leaves the others' writes alone.
//!
//! The batch is bounded by the queue: members that queued while it was open
//! join it, and the first member back (the queue is FIFO) finds everyone who
//! queued before it has had their turn. No timer waits for company, so a lone
//! write commits as soon as it is done.
//!
//! Under a queue that never drains, batches grow as long as the queue, and
//! a member waits about twice the queue's length (its turn, then its return
//! for the commit). `store::admission` bounds that queue. Measured, capping
//! the batch, or committing as soon as nobody is queued instead of after a
//! second turn, cost more than it saved: smaller batches wake every
//! long-poll more often, and on a busy 2-core machine those extra `/sync`
//! answers took the CPU the sends needed (docs/performance.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Executor, Transaction};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::admission::Waiting;

/// Shared by every clone of a SQLite store.
#[derive(Default)]
pub(super) struct Group {
    slot: Arc<Mutex<Option<Batch>>>,
    next_id: AtomicU64,
    /// Batches committed, and the members they held, for the metrics.
    pub(super) commits: AtomicU64,
    pub(super) members: AtomicU64,
}

/// An open batch transaction, with the store's writer lock.
pub(super) struct Batch {
    id: u64,
    pub(super) tx: Transaction<'static, sqlx::Any>,
    guard: Option<OwnedMutexGuard<()>>,
    /// Members whose writes are in the batch, waiting for its commit.
    waiters: Vec<oneshot::Sender<Result<(), String>>>,
}

/// A member's hold on the batch while it does its work.
pub(super) type Slot = OwnedMutexGuard<Option<Batch>>;

/// A transaction begun for a batch, with the store's writer lock.
pub(super) type Opened =
    Result<(Transaction<'static, sqlx::Any>, Option<OwnedMutexGuard<()>>), sqlx::Error>;

const SAVEPOINT: &str = "SAVEPOINT group_member";
const RELEASE: &str = "RELEASE group_member";
const ROLLBACK_TO: &str = "ROLLBACK TO group_member; RELEASE group_member";

impl Group {
    /// Waits for the batch, opens one with `begin` if none is open, and
    /// starts this member's savepoint. `waiting` is the member's place in
    /// the admission queue (`store::admission`), given up once it is in the
    /// transaction. Cancellation-safe: the caller awaits a spawned task, and
    /// a member nobody took leaves again.
    pub(super) async fn join<F>(
        self: &Arc<Self>,
        waiting: Waiting,
        begin: F,
    ) -> Result<Slot, sqlx::Error>
    where
        F: std::future::Future<Output = Opened> + Send + 'static,
    {
        let group = self.clone();
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            let mut slot = match group.turn(waiting, || sender.is_closed(), begin).await {
                Some(Ok(slot)) => slot,
                Some(Err(e)) => return drop(sender.send(Err(e))),
                None => return,
            };
            let batch = slot.as_mut().expect("opened above");
            if let Err(e) = batch.tx.execute(SAVEPOINT).await {
                group.abort(slot, &e).await;
                let _ = sender.send(Err(e));
                return;
            }
            if let Err(Ok(slot)) = sender.send(Ok(slot)) {
                // Nobody took it: leave with nothing written.
                group.leave(slot).await;
            }
        });
        receiver.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// Keeps the member's writes and waits for the commit that holds them.
    pub(super) async fn commit(self: &Arc<Self>, mut slot: Slot) -> Result<(), sqlx::Error> {
        let group = self.clone();
        // Spawned: the outcome must not depend on when a client hangs up.
        tokio::spawn(async move {
            let batch = slot.as_mut().expect("a member's batch is open");
            if let Err(e) = batch.tx.execute(RELEASE).await {
                group.abort(slot, &e).await;
                return Err(e);
            }
            group.await_commit(slot).await
        })
        .await
        .map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// A member whose work is one query: `sql` runs between the member's
    /// savepoint and its release, sent to SQLite with them as one
    /// multi-statement query, from the task that holds the batch; its rows
    /// come back once the batch holding them has committed. A member whose
    /// work is several statements, each a round trip to SQLite's thread and
    /// a hand-off between this task and the caller's, holds every member
    /// queued behind it that much longer (`store::checked_append`).
    /// `on_turn` is called when the member's turn has come.
    pub(super) async fn run_once<F>(
        self: &Arc<Self>,
        waiting: Waiting,
        begin: F,
        on_turn: impl FnOnce() + Send + 'static,
        sql: String,
        args: AnyArguments<'static>,
    ) -> Result<Vec<AnyRow>, sqlx::Error>
    where
        F: std::future::Future<Output = Opened> + Send + 'static,
    {
        let group = self.clone();
        let (sender, receiver) = oneshot::channel();
        // Spawned: once its turn has come, the write's outcome must not
        // depend on when the client hangs up.
        tokio::spawn(async move {
            let mut slot = match group.turn(waiting, || sender.is_closed(), begin).await {
                Some(Ok(slot)) => slot,
                Some(Err(e)) => return drop(sender.send(Err(e))),
                None => return,
            };
            on_turn();
            let sql = format!("{SAVEPOINT}; {sql}; {RELEASE}");
            let batch = slot.as_mut().expect("opened above");
            let rows = match sqlx::query_with(&sql, args).fetch_all(&mut *batch.tx).await {
                Ok(rows) => rows,
                Err(e) => {
                    // Stopped at the failing statement: the savepoint is
                    // still open, and undoing it leaves the others' writes.
                    group.leave(slot).await;
                    let _ = sender.send(Err(e));
                    return;
                }
            };
            let _ = sender.send(group.await_commit(slot).await.map(|()| rows));
        });
        receiver.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// Waits for the member's turn at the batch and opens one with `begin`
    /// unless one is open; `None`, with nothing done, when the request is
    /// `gone` by then. `waiting` is given up once the member is in a
    /// transaction: beginning one may still have waited for the writer lock.
    async fn turn<F>(
        self: &Arc<Self>,
        waiting: Waiting,
        gone: impl Fn() -> bool,
        begin: F,
    ) -> Option<Result<Slot, sqlx::Error>>
    where
        F: std::future::Future<Output = Opened>,
    {
        let mut slot = self.slot.clone().lock_owned().await;
        if gone() {
            return None;
        }
        if slot.is_none() {
            let (tx, guard) = match begin.await {
                Ok(opened) => opened,
                Err(e) => return Some(Err(e)),
            };
            *slot = Some(Batch {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                tx,
                guard,
                waiters: Vec::new(),
            });
        }
        drop(waiting);
        Some(Ok(slot))
    }

    /// After the member's savepoint is released: waits for the commit of
    /// its batch, which the first member back after the queue has drained
    /// makes for everyone in it.
    async fn await_commit(self: &Arc<Self>, mut slot: Slot) -> Result<(), sqlx::Error> {
        let batch = slot.as_mut().expect("a member's batch is open");
        let id = batch.id;
        let (sender, receiver) = oneshot::channel();
        batch.waiters.push(sender);
        self.members.fetch_add(1, Ordering::Relaxed);
        drop(slot);
        // Everyone queued before us joins meanwhile (FIFO).
        let mut slot = self.slot.clone().lock_owned().await;
        if slot.as_ref().is_some_and(|b| b.id == id) {
            let batch = slot.take().expect("checked above");
            // The next batch may begin; it waits for the writer lock,
            // which this one holds until its commit is done.
            drop(slot);
            self.finish(batch).await;
        } else {
            drop(slot);
        }
        match receiver.await {
            Ok(result) => result.map_err(sqlx::Error::Protocol),
            Err(_) => Err(sqlx::Error::WorkerCrashed),
        }
    }

    /// Undoes the member's writes; the batch goes on for the others (or
    /// ends, if nobody else is in it).
    pub(super) async fn leave(&self, mut slot: Slot) {
        let batch = slot.as_mut().expect("a member's batch is open");
        if let Err(e) = batch.tx.execute(ROLLBACK_TO).await {
            // The transaction as a whole is in doubt (SQLite rolls back on
            // some errors by itself): nobody's writes in it are kept.
            return self.abort(slot, &e).await;
        }
        if batch.waiters.is_empty() {
            let batch = slot.take().expect("checked above");
            drop(slot);
            let _ = batch.tx.rollback().await;
            drop(batch.guard);
        }
        // Otherwise the members waiting will commit it: each comes back for
        // the slot and the first one finds the batch still open.
    }

    /// Ends the batch with nothing kept, and tells its members why.
    async fn abort(&self, mut slot: Slot, error: &sqlx::Error) {
        let Some(batch) = slot.take() else { return };
        drop(slot);
        tracing::error!(error = %error, members = batch.waiters.len(), "a grouped write failed; rolling back its batch");
        let _ = batch.tx.rollback().await;
        drop(batch.guard);
        for waiter in batch.waiters {
            let _ = waiter.send(Err(format!(
                "the batch this write was in rolled back: {error}"
            )));
        }
    }

    /// Commits the batch and answers its members.
    async fn finish(&self, batch: Batch) {
        let Batch {
            tx, guard, waiters, ..
        } = batch;
        let result = tx.commit().await.map_err(|e| e.to_string());
        drop(guard);
        self.commits.fetch_add(1, Ordering::Relaxed);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Row;

    use crate::store::tests::{assert_no_pooled_transaction, sqlite_store};
    use crate::store::Store;

    async fn values(store: &Store) -> Vec<i64> {
        sqlx::query("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut *store.read().await.unwrap())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<i64, _>(0))
            .collect()
    }

    async fn insert(tx: &mut crate::store::WriteTx, v: i64) {
        sqlx::query("INSERT INTO t (v) VALUES ($1)")
            .bind(v)
            .execute(tx.conn())
            .await
            .unwrap();
    }

    async fn store_with_table(dir: &tempfile::TempDir) -> Store {
        let store = sqlite_store(dir).await;
        let mut tx = store.write().await.unwrap();
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL)")
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();
        store
    }

    fn stats(store: &Store) -> (u64, u64) {
        let s = store.pool_stats();
        (s.group_commits, s.group_members)
    }

    /// Writers that queue while one is at work share its commit; one that
    /// fails takes only its own writes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writers_share_one_commit_and_a_failed_one_only_loses_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        let mut first = store.write_grouped().await.unwrap();
        insert(&mut first, 0).await;
        let mut others = tokio::task::JoinSet::new();
        for v in 1..=9i64 {
            let store = store.clone();
            others.spawn(async move {
                let mut tx = store.write_grouped().await.unwrap();
                insert(&mut tx, v).await;
                if v == 5 {
                    drop(tx); // fails after writing: rolled back alone
                    return None;
                }
                Some(tx.commit().await)
            });
        }
        // Let all nine queue behind the first.
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.commit().await.unwrap();
        while let Some(outcome) = others.join_next().await {
            if let Some(result) = outcome.unwrap() {
                result.unwrap();
            }
        }
        assert_eq!(values(&store).await, vec![0, 1, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(
            stats(&store),
            (1, 9),
            "one commit for the nine that committed"
        );
        assert_no_pooled_transaction(&store).await;
    }

    /// A member queued behind a done one whose request is gone by its turn
    /// does not keep the batch from being committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_left_open_for_a_member_that_hung_up_is_still_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        let mut first = store.write_grouped().await.unwrap();
        insert(&mut first, 1).await;
        let mut gone = Box::pin(store.write_grouped());
        assert!(
            futures::poll!(&mut gone).is_pending(),
            "queued behind the first"
        );
        drop(gone);
        tokio::time::timeout(Duration::from_secs(5), first.commit())
            .await
            .expect("the batch was committed")
            .unwrap();
        assert_eq!(values(&store).await, vec![1]);
        assert_eq!(stats(&store), (1, 1));
        assert_no_pooled_transaction(&store).await;
    }

    /// A lone grouped write commits at once, and a grouped write dropped
    /// (or cancelled while it waited) leaves no batch that blocks writers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_and_cancelled_members_leave_nothing_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        let mut tx = store.write_grouped().await.unwrap();
        insert(&mut tx, 1).await;
        drop(tx);
        for round in 0..20u64 {
            let mut pending = Box::pin(store.write_grouped());
            let _ = futures::poll!(&mut pending);
            std::thread::sleep(Duration::from_micros(round * 50));
            drop(pending);
        }
        let mut tx = store.write_grouped().await.unwrap();
        insert(&mut tx, 2).await;
        tx.commit().await.unwrap();
        // An ordinary writer is not blocked by a batch left behind.
        let mut tx = tokio::time::timeout(Duration::from_secs(5), store.write())
            .await
            .expect("no grouped batch holds the writer lock")
            .unwrap();
        insert(&mut tx, 3).await;
        tx.commit().await.unwrap();
        assert_eq!(values(&store).await, vec![2, 3]);
        assert_no_pooled_transaction(&store).await;
    }

    async fn once(store: &Store, sql: &str, v: Option<i64>) -> Result<usize, sqlx::Error> {
        let group = store.group.as_ref().unwrap();
        let mut args = sqlx::any::AnyArguments::default();
        sqlx::Arguments::add(&mut args, v).unwrap();
        let begin = {
            let store = store.clone();
            async move { store.begin().await }
        };
        let waiting = store.admission.enter().unwrap();
        let rows = group
            .run_once(waiting, begin, || {}, sql.to_owned(), args)
            .await?;
        Ok(rows.len())
    }

    /// A one-query member that fails half way takes back its own first
    /// statement and nothing of the others' in the same batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_one_query_member_that_fails_half_way_keeps_nothing_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        let mut first = store.write_grouped().await.unwrap();
        insert(&mut first, 1).await;
        let failing = tokio::spawn({
            let store = store.clone();
            async move {
                once(
                    &store,
                    "INSERT INTO t (v) VALUES (2); INSERT INTO t (v) VALUES ($1)",
                    None,
                )
                .await
            }
        });
        let kept = tokio::spawn({
            let store = store.clone();
            async move {
                once(
                    &store,
                    "INSERT INTO t (v) VALUES ($1); SELECT v FROM t WHERE v = $1",
                    Some(3),
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.commit().await.unwrap();
        assert!(
            failing.await.unwrap().is_err(),
            "NULL into a NOT NULL column"
        );
        assert_eq!(kept.await.unwrap().unwrap(), 1, "its own row, read back");
        assert_eq!(values(&store).await, vec![1, 3]);
        assert_eq!(stats(&store), (1, 2), "one commit for the two kept");
        assert_no_pooled_transaction(&store).await;
    }

    /// Positions taken by grouped writers stay unique and gap-free, and all
    /// are committed, under many concurrent writers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_grouped_writers_get_distinct_positions() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        let start = store.current_pos().await.unwrap();
        let mut writers = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let store = store.clone();
            writers.spawn(async move {
                let mut tx = store.write_grouped().await.unwrap();
                let pos = tx.next_pos().await.unwrap();
                insert(&mut tx, pos).await;
                tx.commit().await.unwrap();
                pos
            });
        }
        let mut got = Vec::new();
        while let Some(pos) = writers.join_next().await {
            got.push(pos.unwrap());
        }
        got.sort_unstable();
        let expected: Vec<i64> = (start + 1..=start + 64).collect();
        assert_eq!(got, expected);
        assert_eq!(values(&store).await, expected);
        assert_eq!(store.current_pos().await.unwrap(), start + 64);
        let (commits, members) = stats(&store);
        assert_eq!(members, 64);
        assert!((1..=64).contains(&commits));
    }
}
