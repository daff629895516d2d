//! Wakes long-polling `/sync` requests when something for their user arrives.
//!
//! Writers name the users a change concerns; each waiting sync watches its
//! own user's counter. Subscribing before reading the store means a change
//! that lands between the read and the wait still wakes the request. With
//! several nodes on one PostgreSQL, [`Notifier::notify`] also queues the
//! users in an [`Outbox`] that `cluster` sends to the other nodes, whose
//! listeners call [`Notifier::wake`]; writers do not know the difference.
//!
//! Each wake-up stamps the user's watch with a number from one sequence
//! for the whole node, so a long-poll can also tell that nothing reached
//! its user since an earlier request of the same device saw the stamp
//! ([`Notifier::quiet_since`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::metrics::Metrics;

/// Beyond this many users waiting to be sent, the next message to the
/// other nodes says "everyone": cheaper than the list, and bounds memory
/// while the database is unreachable.
const MAX_PENDING_USERS: usize = 10_000;

/// Devices whose last response [`Notifier::remember_quiet`] keeps at most;
/// beyond, the list starts again (a device then reads once more).
const MAX_REMEMBERED_DEVICES: usize = 16_384;

#[derive(Clone, Default)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each user's stamp: the sequence number of the last wake-up that
    /// named them, or of the last one before their entry was made.
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// The last stamp given, taken under the `users` lock.
    sequence: AtomicU64,
    /// Per (user, device): the `next_batch` of its last response, and the
    /// stamp its long-poll had seen before that response's reads began.
    quiet: Mutex<HashMap<(String, String), (String, u64)>>,
    shutdown: tokio::sync::Notify,
    shutting_down: AtomicBool,
    /// Set on PostgreSQL when the server starts: changes made here must
    /// also reach the long-polls of other nodes.
    outbox: OnceLock<Arc<Outbox>>,
    /// Tells this node's wake-ups from other nodes' on the shared channel.
    node_id: String,
    metrics: Arc<Metrics>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            users: Mutex::default(),
            sequence: AtomicU64::new(0),
            quiet: Mutex::default(),
            shutdown: tokio::sync::Notify::new(),
            shutting_down: AtomicBool::new(false),
            outbox: OnceLock::new(),
            node_id: format!("{:012x}", rand::random::<u64>() >> 16),
            metrics: Arc::default(),
        }
    }
}

pub struct Subscription {
    rx: watch::Receiver<u64>,
    notifier: Notifier,
}

impl Notifier {
    /// A notifier that counts waiting long-polls in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Notifier {
            inner: Arc::new(Inner {
                metrics,
                ..Inner::default()
            }),
        }
    }

    /// A random id for this process, fresh at each start.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    pub fn subscribe(&self, user_id: &str) -> Subscription {
        let mut users = self.inner.users.lock().expect("notifier lock");
        // Drop senders nobody watches any more, so the map tracks live syncs.
        if users.len() > 1024 {
            users.retain(|_, tx| tx.receiver_count() > 0);
        }
        // A fresh entry starts at the latest stamp: a wake-up that named
        // the user while they had none must still tell against an earlier stamp.
        let latest = self.inner.sequence.load(Ordering::Relaxed);
        let rx = users
            .entry(user_id.to_owned())
            .or_insert_with(|| watch::channel(latest).0)
            .subscribe();
        Subscription {
            rx,
            notifier: self.clone(),
        }
    }

    /// Wakes the users' long-polls on this node and, with several nodes,
    /// on the others. Call it after the change has committed.
    pub fn notify<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>) {
        match self.inner.outbox.get() {
            None => self.wake(user_ids),
            Some(outbox) => {
                let user_ids: Vec<&str> = user_ids.into_iter().collect();
                self.wake(user_ids.iter().copied());
                outbox.push(user_ids);
            }
        }
    }

    /// Wakes the users' long-polls on this node only: for what another
    /// node announced.
    pub fn wake<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>) {
        let users = self.inner.users.lock().expect("notifier lock");
        let stamp = self.inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        for user in user_ids {
            if let Some(tx) = users.get(user) {
                tx.send_replace(stamp);
            }
        }
    }

    /// Wakes every long-poll on this node, for when a wake-up may have been
    /// lost: each re-reads and, finding nothing new, waits again.
    pub fn wake_all(&self) {
        let users = self.inner.users.lock().expect("notifier lock");
        let stamp = self.inner.sequence.fetch_add(1, Ordering::Relaxed) + 1;
        for tx in users.values() {
            tx.send_replace(stamp);
        }
    }

    /// Remembers that the device's response `next_batch` holds everything
    /// committed before its reads began, when its long-poll had seen
    /// `stamp` ([`Subscription::mark_seen`]). The caller leaves out
    /// responses that stopped short of what was there (a full batch of
    /// to-device messages).
    pub fn remember_quiet(&self, user_id: &str, device_id: &str, next_batch: String, stamp: u64) {
        let mut quiet = self.inner.quiet.lock().expect("notifier lock");
        if quiet.len() >= MAX_REMEMBERED_DEVICES {
            quiet.clear();
        }
        quiet.insert(
            (user_id.to_owned(), device_id.to_owned()),
            (next_batch, stamp),
        );
    }

    /// Whether a request from `since` can only find nothing new: it is the
    /// `next_batch` of the device's last response, and no wake-up has named
    /// the user since that response's reads began. Every change a `/sync`
    /// reports wakes its users after it commits, so anything committed
    /// since would have changed the stamp. Forgets the device either way.
    pub fn quiet_since(
        &self,
        user_id: &str,
        device_id: &str,
        since: &str,
        sub: &mut Subscription,
    ) -> bool {
        let key = (user_id.to_owned(), device_id.to_owned());
        let remembered = self.inner.quiet.lock().expect("notifier lock").remove(&key);
        let now = *sub.rx.borrow();
        remembered.is_some_and(|(token, stamp)| token == since && stamp == now)
    }

    /// From now on, [`notify`](Self::notify) also queues its users for the
    /// other nodes. Returns the queue (the same one if called again).
    pub fn forward_to_other_nodes(&self) -> Arc<Outbox> {
        self.inner.outbox.get_or_init(Arc::default).clone()
    }

    /// Ends every wait at once, so graceful shutdown is not held up by
    /// long-polls.
    pub fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.shutdown.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }
}

impl Subscription {
    /// Takes the latest stamp as seen and returns it: [`wait`](Self::wait)
    /// ends only for a later wake-up. Call it before reading what the
    /// wake-ups announce.
    pub fn mark_seen(&mut self) -> u64 {
        *self.rx.borrow_and_update()
    }

    /// Waits until the user is notified, the timeout passes, or the server
    /// shuts down. Returns true when notified.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        if self.notifier.is_shutting_down() {
            return false;
        }
        let inner = self.notifier.inner.clone();
        // Counted by a guard: a client that hangs up drops this future.
        let _waiting = Waiting::start(&inner.metrics);
        tokio::select! {
            changed = self.rx.changed() => changed.is_ok(),
            _ = tokio::time::sleep(timeout) => false,
            _ = inner.shutdown.notified() => false,
        }
    }
}

struct Waiting<'a>(&'a Metrics);

impl<'a> Waiting<'a> {
    fn start(metrics: &'a Metrics) -> Self {
        metrics.long_polls.fetch_add(1, Ordering::Relaxed);
        Waiting(metrics)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.long_polls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Users whose long-polls other nodes should wake, gathered until the
/// sender is free: a burst of notifications leaves as a few messages.
#[derive(Default)]
pub struct Outbox {
    pending: Mutex<Batch>,
    ready: tokio::sync::Notify,
}

/// What one turn of the sender takes from the [`Outbox`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub users: BTreeSet<String>,
    /// Wake every long-poll instead of naming users.
    pub everyone: bool,
    /// Send something even if nothing changed, to show this node is alive.
    pub heartbeat: bool,
    /// Sessions ended through this node: the others drop their copies of
    /// token rows (`store::token_cache`).
    pub sessions_ended: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && !self.everyone && !self.heartbeat && !self.sessions_ended
    }

    /// Adds `other`, e.g. a batch that could not be sent to the next one.
    pub fn merge(&mut self, other: Batch) {
        self.everyone |= other.everyone;
        self.heartbeat |= other.heartbeat;
        self.sessions_ended |= other.sessions_ended;
        self.users.extend(other.users);
        self.bound();
    }

    fn bound(&mut self) {
        if self.everyone || self.users.len() > MAX_PENDING_USERS {
            self.everyone = true;
            self.users.clear();
        }
    }
}

impl Outbox {
    fn push(&self, user_ids: Vec<&str>) {
        if user_ids.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().expect("outbox lock");
        if !pending.everyone {
            pending
                .users
                .extend(user_ids.into_iter().map(str::to_owned));
            pending.bound();
        }
        drop(pending);
        self.ready.notify_one();
    }

    /// Asks the sender to show the other nodes this node is alive.
    pub fn heartbeat(&self) {
        self.pending.lock().expect("outbox lock").heartbeat = true;
        self.ready.notify_one();
    }

    /// Asks the sender to tell the other nodes that sessions ended here.
    pub fn sessions_ended(&self) {
        self.pending.lock().expect("outbox lock").sessions_ended = true;
        self.ready.notify_one();
    }

    /// Waits until something is pending and takes all of it.
    pub async fn next(&self) -> Batch {
        loop {
            let batch = self.take();
            if !batch.is_empty() {
                return batch;
            }
            // A push between `take` and here left a permit: no lost wake-up.
            self.ready.notified().await;
        }
    }

    /// Takes whatever is pending now (possibly nothing).
    pub fn take(&self) -> Batch {
        std::mem::take(&mut *self.pending.lock().expect("outbox lock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notify_wakes_here_and_queues_for_other_nodes() {
        let notifier = Notifier::default();
        let mut alice = notifier.subscribe("@alice:x");
        notifier.notify(["@alice:x"]);
        assert!(alice.wait(Duration::from_secs(1)).await);

        let outbox = notifier.forward_to_other_nodes();
        notifier.notify(["@alice:x", "@bob:x"]);
        notifier.notify(["@bob:x"]);
        let batch = outbox.next().await;
        assert_eq!(
            batch.users.into_iter().collect::<Vec<_>>(),
            ["@alice:x", "@bob:x"]
        );
        assert!(alice.wait(Duration::from_secs(1)).await);

        // What other nodes announce is woken here, never sent back.
        notifier.wake(["@alice:x"]);
        assert!(alice.wait(Duration::from_secs(1)).await);
        notifier.wake_all();
        assert!(alice.wait(Duration::from_secs(1)).await);
        assert!(outbox.take().is_empty());
    }

    #[tokio::test]
    async fn a_device_is_quiet_only_while_no_wake_up_named_its_user() {
        let notifier = Notifier::default();
        let asked_again = |token: &str| {
            let mut sub = notifier.subscribe("@a:x");
            notifier.quiet_since("@a:x", "D", token, &mut sub)
        };
        assert!(!asked_again("s1_0"), "nothing remembered yet");

        let mut sub = notifier.subscribe("@a:x");
        let seen = sub.mark_seen();
        notifier.remember_quiet("@a:x", "D", "s1_0".into(), seen);
        assert!(!asked_again("s0_0"), "another token");
        notifier.remember_quiet("@a:x", "D", "s1_0".into(), seen);
        assert!(asked_again("s1_0"));
        assert!(!asked_again("s1_0"), "used once");

        // A wake-up for someone else leaves the device quiet; one for its
        // user does not, even one made while nobody watched the user.
        notifier.remember_quiet("@a:x", "D", "s1_0".into(), seen);
        notifier.notify(["@b:x"]);
        assert!(asked_again("s1_0"));
        notifier.remember_quiet("@a:x", "D", "s1_0".into(), seen);
        notifier.notify(["@a:x"]);
        assert!(!asked_again("s1_0"));

        let seen = notifier.subscribe("@a:x").mark_seen();
        notifier.remember_quiet("@a:x", "D", "s2_0".into(), seen);
        drop(sub);
        notifier.inner.users.lock().unwrap().clear();
        notifier.notify(["@a:x"]);
        assert!(!asked_again("s2_0"), "named while it had no entry");

        let seen = notifier.subscribe("@a:x").mark_seen();
        notifier.remember_quiet("@a:x", "D", "s3_0".into(), seen);
        notifier.wake_all();
        assert!(!asked_again("s3_0"));
    }

    #[tokio::test]
    async fn a_wake_up_before_mark_seen_does_not_end_the_wait() {
        let notifier = Notifier::default();
        let mut sub = notifier.subscribe("@a:x");
        notifier.notify(["@a:x"]);
        sub.mark_seen();
        assert!(!sub.wait(Duration::from_millis(20)).await);
        notifier.notify(["@a:x"]);
        assert!(sub.wait(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn too_many_pending_users_become_everyone() {
        let notifier = Notifier::default();
        let outbox = notifier.forward_to_other_nodes();
        let names: Vec<String> = (0..=MAX_PENDING_USERS)
            .map(|i| format!("@u{i}:x"))
            .collect();
        notifier.notify(names.iter().map(String::as_str));
        notifier.notify(["@late:x"]);
        let batch = outbox.next().await;
        assert!(batch.everyone && batch.users.is_empty());
    }

    #[tokio::test]
    async fn waiting_long_polls_are_counted() {
        let metrics = Arc::new(Metrics::default());
        let notifier = Notifier::new(metrics.clone());
        let mut sub = notifier.subscribe("@a:x");
        let waiting = tokio::spawn(async move { sub.wait(Duration::from_secs(30)).await });
        for _ in 0..100 {
            if metrics.long_polls.load(Ordering::Relaxed) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(metrics.long_polls.load(Ordering::Relaxed), 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(metrics.long_polls.load(Ordering::Relaxed), 0);
    }
}
