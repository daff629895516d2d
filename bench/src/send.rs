//! The sending side: each user sends into its room, closed-loop (a fixed
//! number of sends outstanding) or open-loop (at a fixed rate, whatever the
//! server's answers take).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::sleep_until;

use crate::matrix::Http;
use crate::payload::{megolm_content, MessageId};
use crate::setup::User;
use crate::stats::Latencies;

/// What every task of a run agrees on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub run: u32,
    /// Messages whose send started in [from, until) (Unix µs) are measured.
    pub measure_from_us: u64,
    pub measure_until_us: u64,
    /// Where the report's intervals start (the warm-up's start, Unix µs),
    /// and how long each is (`--rss-interval`).
    pub intervals_from_us: u64,
    pub interval_us: u64,
}

impl Clock {
    pub(crate) fn measured(&self, sent_at_us: u64) -> bool {
        (self.measure_from_us..self.measure_until_us).contains(&sent_at_us)
    }

    /// The interval a message sent at `sent_at_us` belongs to.
    pub(crate) fn interval(&self, sent_at_us: u64) -> u16 {
        let i = sent_at_us.saturating_sub(self.intervals_from_us) / self.interval_us.max(1);
        u16::try_from(i).unwrap_or(u16::MAX)
    }
}

pub(crate) fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Plan {
    Closed {
        in_flight: u32,
    },
    /// One message every `interval`, the first after `offset` (spreading the
    /// users' sends over the interval instead of all at once).
    Rate {
        interval: Duration,
        offset: Duration,
        max_outstanding: usize,
    },
}

/// One user's sends.
#[derive(Debug, Default)]
pub(crate) struct SendLog {
    /// Counters of every accepted message, warm-up included: the
    /// completeness check covers them all.
    pub accepted: Vec<u32>,
    pub accepted_measured: u64,
    /// Accepted messages whose answer came within the window, whenever
    /// they were sent: what the server got through in it. In rate mode a
    /// server that falls behind still accepts everything eventually; this
    /// shows it falling behind.
    pub acknowledged_in_window: u64,
    pub attempted_measured: u64,
    pub latencies: Latencies,
    pub failed: u64,
    pub rate_limited: u64,
    pub errors: BTreeMap<String, u64>,
    /// Rate mode: sends not made because this user already had
    /// `max_outstanding` waiting (the server fell that far behind).
    pub backlog_dropped: u64,
}

struct Sender {
    http: Http,
    user: Arc<User>,
    room_id: String,
    clock: Clock,
    seq: AtomicU32,
    log: Mutex<SendLog>,
}

impl Sender {
    /// Sends one message; on failure returns how long to back off.
    async fn send_one(&self) -> Option<Duration> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let sent_at_us = unix_us();
        let id = MessageId {
            run: self.clock.run,
            sender: self.user.index,
            seq,
            sent_at_us,
        };
        let content = megolm_content(&id, &self.user.keys);
        let txn_id = format!("cb{:08x}-{seq}", self.clock.run);
        let started = Instant::now();
        let result = self
            .http
            .send_encrypted(&self.user.session, &self.room_id, &txn_id, &content)
            .await;
        let took_us = started.elapsed().as_micros() as u64;
        let measured = self.clock.measured(sent_at_us);
        let answered_in_window = self.clock.measured(unix_us());
        let mut log = self.log.lock().expect("send log");
        log.attempted_measured += u64::from(measured);
        match result {
            Ok(_) => {
                log.accepted.push(seq);
                log.acknowledged_in_window += u64::from(answered_in_window);
                if measured {
                    log.accepted_measured += 1;
                    log.latencies.push(self.clock.interval(sent_at_us), took_us);
                }
                None
            }
            Err(f) => {
                log.failed += 1;
                *log.errors.entry(format!("send {}", f.kind())).or_default() += 1;
                if f.is_rate_limited() {
                    log.rate_limited += 1;
                }
                // A refused connection answers at once: without a pause a
                // closed loop would spin.
                Some(Duration::from_millis(
                    f.retry_after_ms.unwrap_or(50).clamp(10, 5_000),
                ))
            }
        }
    }
}

/// Runs one user's sends until `end` and returns what happened. Every wait
/// is bounded by `end` plus one request timeout.
pub(crate) async fn run(
    http: Http,
    user: Arc<User>,
    room_id: String,
    clock: Clock,
    plan: Plan,
    end: Instant,
) -> SendLog {
    let sender = Arc::new(Sender {
        http,
        user,
        room_id,
        clock,
        seq: AtomicU32::new(0),
        log: Mutex::new(SendLog::default()),
    });
    match plan {
        Plan::Closed { in_flight } => {
            let workers = (0..in_flight).map(|_| {
                let sender = sender.clone();
                async move {
                    while Instant::now() < end {
                        if let Some(pause) = sender.send_one().await {
                            let resume = (Instant::now() + pause).min(end);
                            sleep_until(resume.into()).await;
                        }
                    }
                }
            });
            futures::future::join_all(workers).await;
        }
        Plan::Rate {
            interval,
            offset,
            max_outstanding,
        } => {
            let mut outstanding = JoinSet::new();
            let mut next = Instant::now() + offset;
            while next < end {
                sleep_until(next.into()).await;
                while outstanding.try_join_next().is_some() {}
                if outstanding.len() >= max_outstanding {
                    let measured = clock.measured(unix_us());
                    let mut log = sender.log.lock().expect("send log");
                    log.backlog_dropped += 1;
                    log.attempted_measured += u64::from(measured);
                } else {
                    let sender = sender.clone();
                    // A 429's back-off is not honoured here: an open loop
                    // keeps offering the load, and the report counts the 429s.
                    outstanding.spawn(async move { sender.send_one().await });
                }
                next += interval;
            }
            while outstanding.join_next().await.is_some() {}
        }
    }
    let sender = Arc::into_inner(sender).expect("every send has finished");
    sender.log.into_inner().expect("send log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_half_open() {
        let clock = Clock {
            run: 1,
            measure_from_us: 100,
            measure_until_us: 200,
            intervals_from_us: 50,
            interval_us: 60,
        };
        assert!(!clock.measured(99));
        assert!(clock.measured(100));
        assert!(clock.measured(199));
        assert!(!clock.measured(200));
        assert_eq!(clock.interval(50), 0);
        assert_eq!(clock.interval(109), 0);
        assert_eq!(clock.interval(110), 1);
        assert_eq!(clock.interval(10), 0, "before the start: the first");
    }
}
