//! Wakes long-polling `/sync` requests when something for their user arrives.
//!
//! Writers name the users a change concerns; each waiting sync watches its
//! own user's counter. Subscribing before reading the store means a change
//! that lands between the read and the wait still wakes the request. With
//! several nodes on one PostgreSQL this in-process notifier will be fed by
//! `LISTEN/NOTIFY`; the interface stays the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

#[derive(Clone, Default)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    users: Mutex<HashMap<String, watch::Sender<u64>>>,
    shutdown: tokio::sync::Notify,
    shutting_down: std::sync::atomic::AtomicBool,
}

pub struct Subscription {
    rx: watch::Receiver<u64>,
    notifier: Notifier,
}

impl Notifier {
    pub fn subscribe(&self, user_id: &str) -> Subscription {
        let mut users = self.inner.users.lock().expect("notifier lock");
        // Drop senders nobody watches any more, so the map tracks live syncs.
        if users.len() > 1024 {
            users.retain(|_, tx| tx.receiver_count() > 0);
        }
        let rx = users
            .entry(user_id.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            rx,
            notifier: self.clone(),
        }
    }

    pub fn notify<'a>(&self, user_ids: impl IntoIterator<Item = &'a str>) {
        let users = self.inner.users.lock().expect("notifier lock");
        for user in user_ids {
            if let Some(tx) = users.get(user) {
                tx.send_modify(|n| *n += 1);
            }
        }
    }

    /// Ends every wait at once, so graceful shutdown is not held up by
    /// long-polls.
    pub fn shutdown(&self) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.shutdown.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Subscription {
    /// Waits until the user is notified, the timeout passes, or the server
    /// shuts down. Returns true when notified.
    pub async fn wait(&mut self, timeout: Duration) -> bool {
        if self.notifier.is_shutting_down() {
            return false;
        }
        let inner = self.notifier.inner.clone();
        tokio::select! {
            changed = self.rx.changed() => changed.is_ok(),
            _ = tokio::time::sleep(timeout) => false,
            _ = inner.shutdown.notified() => false,
        }
    }
}
