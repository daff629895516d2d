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
//! Members whose work is one query (a plain message, `store::checked_append`)
//! queue in a list of their own, and whoever's turn comes first sends every
//! one queued by then (up to [`ONCE_PER_QUERY`]) to SQLite as one
//! multi-statement query, each in its own savepoint: the writer's thread
//! then runs them back to back instead of waiting for a hand-off between
//! each (docs/performance.md, "Messages sent to SQLite together").
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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};

use futures::StreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Either, Executor, Row, Transaction};
use tokio::sync::{oneshot, Mutex, OwnedMutexGuard};

use super::admission::Waiting;

/// Shared by every clone of a SQLite store.
#[derive(Default)]
pub(super) struct Group {
    slot: Arc<Mutex<Option<Batch>>>,
    /// One-query members waiting to be sent to SQLite together
    /// ([`Group::run_once`]).
    pending: std::sync::Mutex<VecDeque<Once>>,
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
    waiters: Vec<Waiter>,
}

/// A member whose writes are in a batch, to be told how its commit went.
enum Waiter {
    /// It wrote through statements of its own ([`Group::commit`]).
    Member(oneshot::Sender<Result<(), String>>),
    /// A one-query member, given its rows once they are committed.
    Once(Answer, Vec<AnyRow>),
}

impl Waiter {
    fn answer(self, result: &Result<(), String>) {
        match self {
            Waiter::Member(sender) => {
                let _ = sender.send(result.clone());
            }
            Waiter::Once(answer, rows) => {
                let outcome = match result {
                    Ok(()) => Ok(Some(rows)),
                    Err(e) => Err(sqlx::Error::Protocol(e.clone())),
                };
                let _ = answer.send(outcome);
            }
        }
    }
}

/// Where a one-query member's outcome goes: its rows, or `None` when it
/// was not run (see [`Group::run_once`]).
type Answer = oneshot::Sender<Result<Option<Vec<AnyRow>>, sqlx::Error>>;

/// A one-query member waiting for its turn.
struct Once {
    sql: &'static str,
    args: AnyArguments<'static>,
    on_turn: Box<dyn FnOnce() + Send>,
    waiting: Waiting,
    answer: Answer,
}

/// One-query members sent to SQLite in one query at most. Each count is
/// its own statement text in the writer's cache of prepared statements.
const ONCE_PER_QUERY: usize = 16;

/// Ends each one-query member's rows in a combined query.
const MEMBER_DONE: &str = "SELECT 1 AS group_member_done";

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
    /// savepoint and its release, and its rows come back once the batch
    /// holding them has committed. A member whose work is several
    /// statements, each a round trip to SQLite's thread and a hand-off
    /// between this task and the caller's, holds every member queued behind
    /// it that much longer (`store::checked_append`); so the one-query
    /// members queued when one's turn comes go to SQLite together, each in
    /// its own savepoint, as one multi-statement query (at most
    /// [`ONCE_PER_QUERY`]). `sql` numbers its own parameters from `$1` and
    /// holds no other `$`. `on_turn` is called when the member's turn has
    /// come.
    ///
    /// `None`, with nothing written: a member before it in the same query
    /// failed, and SQLite stopped there. The caller may try again.
    pub(super) async fn run_once<F>(
        self: &Arc<Self>,
        waiting: Waiting,
        begin: F,
        on_turn: impl FnOnce() + Send + 'static,
        sql: &'static str,
        args: AnyArguments<'static>,
    ) -> Result<Option<Vec<AnyRow>>, sqlx::Error>
    where
        F: std::future::Future<Output = Opened> + Send + 'static,
    {
        let (answer, receiver) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(Once {
                sql,
                args,
                on_turn: Box::new(on_turn),
                waiting,
                answer,
            });
        // Spawned: once its turn has come, the write's outcome must not
        // depend on when the client hangs up.
        tokio::spawn(self.clone().run_pending(begin));
        receiver.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }

    /// Takes the batch in turn and runs the one-query members queued by
    /// then, if an earlier turn has not run them all already.
    async fn run_pending<F>(self: Arc<Self>, begin: F)
    where
        F: std::future::Future<Output = Opened>,
    {
        let mut slot = self.slot.clone().lock_owned().await;
        let members: Vec<Once> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let n = pending.len().min(ONCE_PER_QUERY);
            // A member whose request is gone by its turn leaves, with
            // nothing written.
            pending
                .drain(..n)
                .filter(|m| !m.answer.is_closed())
                .collect()
        };
        if members.is_empty() {
            return;
        }
        if slot.is_none() {
            match begin.await {
                Ok((tx, guard)) => self.open(&mut slot, tx, guard),
                Err(e) => {
                    let e = e.to_string();
                    for m in members {
                        let _ = m.answer.send(Err(sqlx::Error::Protocol(e.clone())));
                    }
                    return;
                }
            }
        }
        let mut sql = String::new();
        let mut args = AnyArguments::default();
        let mut answers = Vec::with_capacity(members.len());
        for mut m in members {
            let offset = args.values.0.len();
            sql.push_str(SAVEPOINT);
            sql.push_str("; ");
            sql.push_str(&super::params::shift(m.sql, offset));
            sql.push_str("; ");
            sql.push_str(RELEASE);
            sql.push_str("; ");
            sql.push_str(MEMBER_DONE);
            sql.push_str("; ");
            // sqlx exposes the values only through this hidden field; the
            // version is pinned in Cargo.lock.
            args.values.0.append(&mut m.args.values.0);
            (m.on_turn)();
            drop(m.waiting);
            answers.push(m.answer);
        }
        let batch = slot.as_mut().expect("opened above");
        let id = batch.id;
        let mut done: Vec<Vec<AnyRow>> = Vec::with_capacity(answers.len());
        let mut rows = Vec::new();
        let mut failure = None;
        {
            let mut results = (&mut *batch.tx).fetch_many(sqlx::query_with(&sql, args));
            while let Some(result) = results.next().await {
                match result {
                    Ok(Either::Right(row)) if is_member_done(&row) => {
                        done.push(std::mem::take(&mut rows));
                    }
                    Ok(Either::Right(row)) => rows.push(row),
                    Ok(Either::Left(_)) => {}
                    Err(e) => {
                        failure = Some(e);
                        break;
                    }
                }
            }
        }
        let committed = done.len();
        let mut answers = answers.into_iter();
        // `done` first: zip asks its first iterator first, and must not take
        // an answer that has no rows.
        for (rows, answer) in done.into_iter().zip(answers.by_ref()) {
            batch.waiters.push(Waiter::Once(answer, rows));
        }
        self.members.fetch_add(committed as u64, Ordering::Relaxed);
        match failure {
            None => drop(slot),
            Some(e) => {
                // SQLite stopped at the failing statement: that member's
                // savepoint is open, and undoing it leaves the others'
                // writes; the members after it were not run.
                self.leave(slot).await;
                if let Some(failed) = answers.next() {
                    let _ = failed.send(Err(e));
                }
                for not_run in answers {
                    let _ = not_run.send(Ok(None));
                }
            }
        }
        if committed > 0 {
            self.come_back(id).await;
        }
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
            self.open(&mut slot, tx, guard);
        }
        drop(waiting);
        Some(Ok(slot))
    }

    fn open(
        &self,
        slot: &mut Slot,
        tx: Transaction<'static, sqlx::Any>,
        guard: Option<OwnedMutexGuard<()>>,
    ) {
        **slot = Some(Batch {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            tx,
            guard,
            waiters: Vec::new(),
        });
    }

    /// After the member's savepoint is released: waits for the commit of
    /// its batch, which the first member back after the queue has drained
    /// makes for everyone in it.
    async fn await_commit(self: &Arc<Self>, mut slot: Slot) -> Result<(), sqlx::Error> {
        let batch = slot.as_mut().expect("a member's batch is open");
        let id = batch.id;
        let (sender, receiver) = oneshot::channel();
        batch.waiters.push(Waiter::Member(sender));
        self.members.fetch_add(1, Ordering::Relaxed);
        drop(slot);
        self.come_back(id).await;
        match receiver.await {
            Ok(result) => result.map_err(sqlx::Error::Protocol),
            Err(_) => Err(sqlx::Error::WorkerCrashed),
        }
    }

    /// Takes the slot again after everyone queued meanwhile (FIFO), and
    /// commits batch `id` if it is still open: the first member back does.
    async fn come_back(&self, id: u64) {
        let mut slot = self.slot.clone().lock_owned().await;
        if slot.as_ref().is_some_and(|b| b.id == id) {
            let batch = slot.take().expect("checked above");
            // The next batch may begin; it waits for the writer lock,
            // which this one holds until its commit is done.
            drop(slot);
            self.finish(batch).await;
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
        let outcome = Err(format!("the batch this write was in rolled back: {error}"));
        for waiter in batch.waiters {
            waiter.answer(&outcome);
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
            waiter.answer(&result);
        }
    }
}

/// The row [`MEMBER_DONE`] returns, told from a member's own rows by its
/// column's name.
fn is_member_done(row: &AnyRow) -> bool {
    use sqlx::Column;
    row.columns().len() == 1 && row.columns()[0].name() == "group_member_done"
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

    /// Inserts `v` with an ordinary writer, which no batch left open may
    /// keep waiting.
    async fn insert_unblocked(store: &Store, v: i64) {
        let mut tx = tokio::time::timeout(Duration::from_secs(5), store.write())
            .await
            .expect("no grouped batch holds the writer lock")
            .unwrap();
        insert(&mut tx, v).await;
        tx.commit().await.unwrap();
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
        insert_unblocked(&store, 3).await;
        assert_eq!(values(&store).await, vec![2, 3]);
        assert_no_pooled_transaction(&store).await;
    }

    /// Rows of a one-query member, or `None` when it was not run.
    async fn once(
        store: &Store,
        sql: &'static str,
        v: Option<i64>,
    ) -> Result<Option<usize>, sqlx::Error> {
        let group = store.group.as_ref().unwrap();
        let mut args = sqlx::any::AnyArguments::default();
        sqlx::Arguments::add(&mut args, v).unwrap();
        let begin = {
            let store = store.clone();
            async move { store.begin().await }
        };
        let waiting = store.admission.enter().unwrap();
        let rows = group.run_once(waiting, begin, || {}, sql, args).await?;
        Ok(rows.map(|rows| rows.len()))
    }

    /// Queues one-query members in this order behind a member that holds
    /// the batch, so they go to SQLite together once it is done.
    async fn queued_behind_a_member(
        store: &Store,
        members: &[(&'static str, Option<i64>)],
    ) -> Vec<Result<Option<usize>, sqlx::Error>> {
        let mut first = store.write_grouped().await.unwrap();
        insert(&mut first, 1).await;
        let mut queued = Vec::new();
        for &(sql, v) in members {
            let store = store.clone();
            queued.push(tokio::spawn(async move { once(&store, sql, v).await }));
            // Each is queued before the next.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first.commit().await.unwrap();
        let mut outcomes = Vec::new();
        for member in queued {
            outcomes.push(member.await.unwrap());
        }
        outcomes
    }

    const KEPT: &str = "INSERT INTO t (v) VALUES ($1); SELECT v FROM t WHERE v = $1";
    const FAILS_HALF_WAY: &str = "INSERT INTO t (v) VALUES (2); INSERT INTO t (v) VALUES ($1)";

    /// One-query members queued together go to SQLite as one query, and
    /// each gets its own rows, with its own parameters.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_query_members_queued_together_share_a_query_and_keep_their_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        let members: Vec<_> = (10..30).map(|v| (KEPT, Some(v))).collect();
        let outcomes = queued_behind_a_member(&store, &members).await;
        for outcome in outcomes {
            assert_eq!(outcome.unwrap(), Some(1), "its own row, read back");
        }
        let mut expected = vec![1];
        expected.extend(10..30);
        assert_eq!(values(&store).await, expected);
        assert_eq!(stats(&store), (1, 21), "one commit for all of them");
        assert_no_pooled_transaction(&store).await;
    }

    /// A one-query member that fails half way takes back its own first
    /// statement and nothing of the members' before it in the same query;
    /// the ones after it were not run, wrote nothing, and can run again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_one_query_member_that_fails_half_way_keeps_nothing_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        let outcomes = queued_behind_a_member(
            &store,
            &[(KEPT, Some(3)), (FAILS_HALF_WAY, None), (KEPT, Some(4))],
        )
        .await;
        let mut outcomes = outcomes.into_iter();
        assert_eq!(
            outcomes.next().unwrap().unwrap(),
            Some(1),
            "kept, row read back"
        );
        assert!(
            outcomes.next().unwrap().is_err(),
            "NULL into a NOT NULL column"
        );
        assert_eq!(outcomes.next().unwrap().unwrap(), None, "not run");
        assert_eq!(values(&store).await, vec![1, 3]);
        assert_eq!(stats(&store), (1, 2), "one commit for the two kept");
        assert_eq!(
            once(&store, KEPT, Some(4)).await.unwrap(),
            Some(1),
            "run again"
        );
        assert_eq!(values(&store).await, vec![1, 3, 4]);
        assert_no_pooled_transaction(&store).await;
    }

    /// A failing member alone in its batch leaves no batch open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_failing_one_query_member_leaves_nothing_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_table(&dir).await;
        assert!(once(&store, FAILS_HALF_WAY, None).await.is_err());
        insert_unblocked(&store, 5).await;
        assert_eq!(values(&store).await, vec![5]);
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
