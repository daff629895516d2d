//! A bound on how long message-path writes queue for the writer.
//!
//! Past what the writer can commit, sends and to-device messages used to
//! queue without end: each waiting request held its body and its task, the
//! process grew with the backlog (368 MiB at 1,000 msg/s offered against
//! about 820 accepted), and every message waited seconds behind the ones
//! before it. Now a write that would join a queue whose oldest member has
//! already waited longer than the bound is refused at once, before it holds
//! anything, and the client is told to come back after about one bound's
//! time (Matrix clients retry `M_LIMIT_EXCEEDED` after `retry_after_ms`,
//! with the same transaction id, so nothing is sent twice).
//!
//! The bound is on the oldest waiter's age rather than on the queue's
//! length, so it means the same on a fast disk and a slow one, and a burst
//! the writer clears quickly is never refused.
//!
//! Only writes a client retries by transaction id (sends, redactions,
//! to-device) are refused. The others (state, membership, an account's
//! deactivation leaving its rooms) still queue, and count for the age of
//! the queue, but are never turned away: a refusal there would leave a
//! half-done change for nobody to finish.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Refused: the writer's queue is already longer than the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// About how long until the queue that refused this write has cleared.
    pub retry_after: Duration,
}

/// Why a bounded write did not begin.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the writer's queue is longer than its bound")]
    Busy(Busy),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<Busy> for WriteError {
    fn from(busy: Busy) -> Self {
        WriteError::Busy(busy)
    }
}

/// The queue of writes waiting for the writer, shared by a store's clones.
#[derive(Default)]
pub(super) struct Admission {
    /// `None`: no bound (the CLI, and stores the server did not bound).
    max_wait: Option<Duration>,
    queue: Mutex<Queue>,
    pub(super) refused: AtomicU64,
}

#[derive(Default)]
struct Queue {
    next: u64,
    /// Arrival times by ticket; tickets are handed out in arrival order, so
    /// the first entry is the oldest waiter.
    waiting: BTreeMap<u64, Instant>,
}

/// A write's place in the queue; it leaves when dropped.
pub(super) struct Waiting {
    admission: Arc<Admission>,
    ticket: u64,
}

impl Admission {
    pub(super) fn new(max_wait: Option<Duration>) -> Admission {
        Admission {
            max_wait,
            ..Admission::default()
        }
    }

    /// Joins the queue, or refuses when its oldest member has waited
    /// longer than the bound.
    pub(super) fn enter(self: &Arc<Self>) -> Result<Waiting, Busy> {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        // Read under the lock, so tickets and arrival times agree in order.
        let now = Instant::now();
        if let (Some(max_wait), Some((_, oldest))) =
            (self.max_wait, queue.waiting.first_key_value())
        {
            if now.saturating_duration_since(*oldest) > max_wait {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(Busy {
                    retry_after: max_wait,
                });
            }
        }
        Ok(self.queue_up(&mut queue, now))
    }

    /// Joins the queue whatever its age: a write that must not be refused
    /// still waits in it, and counts for those behind it.
    pub(super) fn join(self: &Arc<Self>) -> Waiting {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        self.queue_up(&mut queue, now)
    }

    fn queue_up(self: &Arc<Self>, queue: &mut Queue, now: Instant) -> Waiting {
        let ticket = queue.next;
        queue.next += 1;
        queue.waiting.insert(ticket, now);
        Waiting {
            admission: self.clone(),
            ticket,
        }
    }

    /// Writes waiting right now.
    pub(super) fn waiting(&self) -> usize {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .len()
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.admission
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .waiting
            .remove(&self.ticket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounded(ms: u64) -> Arc<Admission> {
        Arc::new(Admission::new(Some(Duration::from_millis(ms))))
    }

    /// Refusal is decided by the oldest waiter's age, not by how many wait.
    #[test]
    fn a_long_queue_of_fresh_waiters_is_joined() {
        let admission = bounded(10_000);
        let held: Vec<Waiting> = (0..1_000).map(|_| admission.enter().unwrap()).collect();
        assert_eq!(admission.waiting(), 1_000);
        drop(held);
        assert_eq!(admission.waiting(), 0);
        assert_eq!(admission.refused.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_queue_older_than_the_bound_refuses_until_its_old_members_leave() {
        let admission = bounded(20);
        let oldest = admission.enter().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let young = admission.enter().map(|_| ());
        assert_eq!(
            young,
            Err(Busy {
                retry_after: Duration::from_millis(20)
            })
        );
        assert_eq!(admission.refused.load(Ordering::Relaxed), 1);
        // Once the old waiter has its turn, newcomers get in again.
        drop(oldest);
        let _next = admission.enter().expect("the queue is young again");
        assert_eq!(admission.waiting(), 1);
    }

    /// A waiter that leaves out of turn (its client hung up) takes only its
    /// own place: the oldest still counts.
    #[test]
    fn leaving_out_of_turn_keeps_the_oldest() {
        let admission = bounded(20);
        let oldest = admission.enter().unwrap();
        let middle = admission.enter().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        drop(middle);
        assert!(admission.enter().is_err());
        drop(oldest);
        assert!(admission.enter().is_ok());
    }

    #[test]
    fn a_write_that_must_not_be_refused_joins_an_old_queue_and_counts_in_it() {
        let admission = bounded(20);
        let must = admission.join();
        std::thread::sleep(Duration::from_millis(30));
        let _also = admission.join();
        assert_eq!(admission.waiting(), 2);
        assert!(admission.enter().is_err(), "the first one is the oldest");
        drop(must);
        assert!(admission.enter().is_ok());
    }

    #[test]
    fn without_a_bound_nobody_is_refused() {
        let admission = Arc::new(Admission::new(None));
        let _oldest = admission.enter().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(admission.enter().is_ok());
    }
}
