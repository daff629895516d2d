//! Several nodes on one PostgreSQL: wake-ups between nodes.
//!
//! A change committed through one node must wake the `/sync` long-polls
//! waiting on the others. The [`Notifier`](crate::notify::Notifier) queues
//! the users writers name (after their commit) in its outbox; a sender sends
//! them with `pg_notify` on [`CHANNEL`], a burst gathered into a few
//! messages; a listener on a connection of its own wakes the users other
//! nodes name, and ignores its own node's messages, which were woken here
//! already. Each node thus keeps two connections outside the pool (and a
//! third for the jobs' lock, `service::housekeeping`).
//!
//! NOTIFY is not durable: a message sent while a listener is disconnected
//! is lost to it, and a node that dies between a commit and its NOTIFY
//! never sends it. Every node therefore sends a heartbeat every
//! [`HEARTBEAT`] through the same queue as its wake-ups, so hearing a
//! node's heartbeat proves that what it queued before has arrived; where a
//! wake-up may have been lost, every waiting long-poll here is woken, to
//! re-read and wait again if nothing is new:
//! - when the listener connects again after losing its connection;
//! - when it stops hearing this node's own heartbeats: it is deaf (a
//!   connection that died silently), so it reconnects;
//! - when another node falls silent: it died, or lost the database, maybe
//!   right after a commit it could not announce;
//! - when a sender could not deliver, it asks every node to, once it can.
//!
//! Writes made outside any node (the `cloister` admin commands) announce
//! only that sessions ended ([`sessions_ended_notice`]); long-polls see
//! their other writes when they next return, as on a single node.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::notify::{Batch, Outbox};
use crate::service::Context;
use crate::store::Backend;

/// Channels are per database: deployments on other databases of the same
/// PostgreSQL server do not hear each other.
pub const CHANNEL: &str = "cloister_wake";
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node not heard for this long may have lost wake-ups.
const SILENT_AFTER: Duration = Duration::from_secs(3 * HEARTBEAT.as_secs());
/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
/// More messages than this for one batch: one "wake everyone" instead,
/// cheaper for everybody when that many users are concerned anyway.
const MAX_MESSAGES: usize = 8;
/// A database that does not answer must not hold the sender for long.
const TIMEOUT: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Starts sending and receiving wake-ups on PostgreSQL; nothing on SQLite,
/// where one process is the only node. Abort the tasks to stop.
pub fn start(state: &Context) -> Vec<JoinHandle<()>> {
    if state.store.backend() != Backend::Postgres {
        return Vec::new();
    }
    let outbox = state.notifier.forward_to_other_nodes();
    let announcer = outbox.clone();
    state
        .store
        .announce_sessions_ended(move || announcer.sessions_ended());
    tracing::info!(
        node = state.notifier.node_id(),
        "exchanging wake-ups with other nodes on this database"
    );
    vec![
        tokio::spawn(send(state.clone(), outbox.clone())),
        tokio::spawn(listen(state.clone(), outbox)),
    ]
}

/// A connection of its own, named in `pg_stat_activity` after its role
/// and node, so an operator can tell which node holds which session.
fn options(state: &Context, role: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(state.store.url())?
        .application_name(&format!("cloister-{role}-{}", state.notifier.node_id()))
        .disable_statement_logging())
}

async fn send(state: Context, outbox: Arc<Outbox>) {
    let node = state.notifier.node_id().to_owned();
    let mut conn = None;
    let mut backoff = RETRY_MIN;
    loop {
        let mut batch = outbox.next().await;
        loop {
            let messages = encode(&node, &batch);
            match deliver(&state, &mut conn, &messages).await {
                Ok(()) => {
                    let wake_ups = if batch.everyone || !batch.users.is_empty() {
                        messages.len() as u64
                    } else {
                        0
                    };
                    state
                        .metrics
                        .cluster_sent
                        .fetch_add(wake_ups, Ordering::Relaxed);
                    backoff = RETRY_MIN;
                    break;
                }
                Err(err) => {
                    if backoff == RETRY_MIN {
                        tracing::warn!(error = %err, "cannot send wake-ups to the other nodes; retrying");
                    }
                    conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    // Late, and maybe partly sent: a "wake everyone" is
                    // small, always valid, and covers it all.
                    batch.merge(outbox.take());
                    batch.merge(Batch {
                        everyone: true,
                        ..Batch::default()
                    });
                }
            }
        }
    }
}

async fn deliver(
    state: &Context,
    conn: &mut Option<PgConnection>,
    messages: &[String],
) -> Result<(), sqlx::Error> {
    let sending = async {
        let c = match conn {
            Some(c) => c,
            None => conn.insert(PgConnection::connect_with(&options(state, "send")?).await?),
        };
        for message in messages {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(message)
                .execute(&mut *c)
                .await?;
        }
        Ok(())
    };
    tokio::time::timeout(TIMEOUT, sending)
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

async fn listen(state: Context, outbox: Arc<Outbox>) {
    let mut backoff = RETRY_MIN;
    let mut listened_before = false;
    loop {
        let subscribed = tokio::time::timeout(TIMEOUT, subscribe(&state))
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        let (mut messages, _reader) = match subscribed {
            Ok(subscribed) => subscribed,
            Err(err) => {
                if backoff == RETRY_MIN {
                    tracing::warn!(error = %err, "cannot listen for other nodes' wake-ups; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        backoff = RETRY_MIN;
        if listened_before {
            state
                .metrics
                .wake_all_reconnect
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!("listening for other nodes' wake-ups again; waking every long-poll");
        }
        listened_before = true;
        // What was sent while nobody listened is lost.
        forget_everything(&state);
        let why = follow(&state, &outbox, &mut messages).await;
        tracing::warn!("the wake-up listener {why}; reconnecting");
    }
}

/// Connects, listens, and hands the payloads to the caller through a
/// channel, so the caller can give up on a deaf connection at any moment
/// (dropping the reader task with its connection) without cancelling a
/// read halfway.
async fn subscribe(
    state: &Context,
) -> Result<(mpsc::UnboundedReceiver<String>, AbortOnDrop), sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_with(options(state, "listen")?)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnecting is the caller's job: it must wake everyone after.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if tx.send(notification.payload().to_owned()).is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(err) => {
                    tracing::debug!(error = %err, "the wake-up listener's connection failed");
                    return;
                }
            }
        }
    });
    Ok((rx, AbortOnDrop(reader)))
}

/// Wakes what other nodes announce until the listener stops working;
/// returns why it stopped.
async fn follow(
    state: &Context,
    outbox: &Outbox,
    messages: &mut mpsc::UnboundedReceiver<String>,
) -> &'static str {
    let own = state.notifier.node_id();
    let mut heard_self = Instant::now();
    let mut peers: HashMap<String, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(HEARTBEAT);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            payload = messages.recv() => {
                let Some(payload) = payload else {
                    return "lost its connection";
                };
                let Some(message) = decode(&payload) else {
                    tracing::warn!("unreadable wake-up message on {CHANNEL}; waking every long-poll");
                    forget_everything(state);
                    continue;
                };
                if message.n == own {
                    heard_self = Instant::now();
                    continue;
                }
                if !message.n.is_empty() {
                    peers.insert(message.n, Instant::now());
                }
                if message.s {
                    state.store.drop_token_copies();
                }
                let metrics = &state.metrics;
                if message.all {
                    metrics.cluster_received.fetch_add(1, Ordering::Relaxed);
                    metrics.wake_all_peer_asked.fetch_add(1, Ordering::Relaxed);
                    state.notifier.wake_all();
                } else if !message.u.is_empty() {
                    metrics.cluster_received.fetch_add(1, Ordering::Relaxed);
                    state.notifier.wake(message.u.iter().map(String::as_str));
                }
            }
            _ = ticker.tick() => {
                outbox.heartbeat();
                if heard_self.elapsed() > SILENT_AFTER {
                    return "stopped hearing this node's own heartbeats";
                }
                let known = peers.len();
                peers.retain(|_, heard| heard.elapsed() <= SILENT_AFTER);
                if peers.len() < known {
                    state.metrics.wake_all_peer_lost.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("another node fell silent; waking every long-poll in case it committed something it could not announce");
                    forget_everything(state);
                }
            }
        }
    }
}

/// What may have been missed: wake-ups, and sessions ended elsewhere.
fn forget_everything(state: &Context) {
    state.notifier.wake_all();
    state.store.drop_token_copies();
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a process that runs no node (the admin commands) sends when it
/// ended sessions: a message with an empty node name, which the nodes do
/// not count as a peer that could fall silent. A constant, so it can be a
/// plain `NOTIFY` in the ending transaction.
pub fn sessions_ended_notice() -> String {
    format!("NOTIFY {CHANNEL}, '{{\"n\":\"\",\"s\":true}}'")
}

/// One message on [`CHANNEL`]: `{"n":node,"u":[user,…]}` wakes the users,
/// `{"n":node,"all":true}` every long-poll, `{"n":node}` is a heartbeat;
/// `"s":true` in any of them says sessions ended on that node.
#[derive(Debug, Deserialize)]
struct Message {
    n: String,
    #[serde(default)]
    u: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    s: bool,
}

fn decode(payload: &str) -> Option<Message> {
    serde_json::from_str(payload).ok()
}

/// The messages that announce `batch`, each under PostgreSQL's limit.
fn encode(node: &str, batch: &Batch) -> Vec<String> {
    let mut head = format!("{{\"n\":{}", quote(node));
    if batch.sessions_ended {
        head.push_str(",\"s\":true");
    }
    let everyone = || vec![format!("{head},\"all\":true}}")];
    if batch.everyone {
        return everyone();
    }
    if batch.users.is_empty() {
        return match batch.heartbeat || batch.sessions_ended {
            true => vec![format!("{head}}}")],
            false => Vec::new(),
        };
    }
    let finish = |users: &str| format!("{head},\"u\":[{users}]}}");
    let mut messages = Vec::new();
    let mut users = String::new();
    for user in &batch.users {
        let quoted = quote(user);
        if !users.is_empty() && finish(&users).len() + 1 + quoted.len() > MAX_PAYLOAD {
            messages.push(finish(&users));
            users.clear();
        }
        if !users.is_empty() {
            users.push(',');
        }
        users.push_str(&quoted);
    }
    messages.push(finish(&users));
    if messages.len() > MAX_MESSAGES || messages.iter().any(|m| m.len() > MAX_PAYLOAD) {
        return everyone();
    }
    messages
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(users: impl IntoIterator<Item = String>) -> Batch {
        Batch {
            users: users.into_iter().collect(),
            ..Batch::default()
        }
    }

    #[test]
    fn a_batch_becomes_one_small_message() {
        let messages = encode("n1", &batch(["@a:x".into(), "@b\"c:x".into()]));
        assert_eq!(messages.len(), 1);
        let m = decode(&messages[0]).unwrap();
        assert_eq!(
            (m.n.as_str(), m.u, m.all),
            ("n1", vec!["@a:x".into(), "@b\"c:x".into()], false)
        );
    }

    #[test]
    fn large_batches_are_split_under_the_limit() {
        let users: Vec<String> = (0..1000)
            .map(|i| format!("@user{i:04}:example.org"))
            .collect();
        let messages = encode("n1", &batch(users.clone()));
        assert!(messages.len() > 1 && messages.len() <= MAX_MESSAGES);
        assert!(messages.iter().all(|m| m.len() <= MAX_PAYLOAD));
        let back: Vec<String> = messages.iter().flat_map(|m| decode(m).unwrap().u).collect();
        assert_eq!(back, users);
    }

    #[test]
    fn huge_batches_wake_everyone_instead() {
        let users = (0..5000).map(|i| format!("@user{i:04}:example.org"));
        let messages = encode("n1", &batch(users));
        assert_eq!(messages.len(), 1);
        let m = decode(&messages[0]).unwrap();
        assert!(m.all && m.u.is_empty());
    }

    #[test]
    fn heartbeats_and_empty_batches() {
        let heartbeat = Batch {
            heartbeat: true,
            ..Batch::default()
        };
        let m = decode(&encode("n1", &heartbeat)[0]).unwrap();
        assert!(m.n == "n1" && m.u.is_empty() && !m.all);
        assert!(encode("n1", &Batch::default()).is_empty());
        // Users imply the heartbeat: any message shows the node is alive.
        let both = Batch {
            heartbeat: true,
            ..batch(["@a:x".into()])
        };
        assert_eq!(encode("n1", &both).len(), 1);
    }

    #[test]
    fn the_admin_commands_notice_names_no_node() {
        let notice = sessions_ended_notice();
        let payload = notice
            .strip_prefix(&format!("NOTIFY {CHANNEL}, '"))
            .and_then(|p| p.strip_suffix('\''))
            .unwrap();
        let message = decode(payload).unwrap();
        assert!(message.s && message.n.is_empty());
        assert!(!message.all && message.u.is_empty());
    }

    #[test]
    fn ended_sessions_ride_on_any_message() {
        let alone = Batch {
            sessions_ended: true,
            ..Batch::default()
        };
        let m = decode(&encode("n1", &alone)[0]).unwrap();
        assert!(m.s && m.u.is_empty() && !m.all);
        let with_users = Batch {
            sessions_ended: true,
            ..batch(["@a:x".into()])
        };
        let m = decode(&encode("n1", &with_users)[0]).unwrap();
        assert!(m.s && m.u == ["@a:x"]);
        let everyone = Batch {
            sessions_ended: true,
            everyone: true,
            ..Batch::default()
        };
        let m = decode(&encode("n1", &everyone)[0]).unwrap();
        assert!(m.s && m.all);
        // Older nodes' messages say nothing about sessions.
        assert!(!decode(r#"{"n":"n0","u":["@a:x"]}"#).unwrap().s);
    }
}
