//! Periodic work the server does on its own, off the request path: announcing
//! typing notices that timed out, signing audit checkpoints, the retention
//! purge, deleting expired user-interactive auth sessions and the LDAP
//! directory sync.
//!
//! With several nodes on one PostgreSQL, one node at a time runs them: the
//! one holding a session-level advisory lock (`store::lock`). When it dies
//! its session ends, and another node takes the lock at its next tick. Each
//! task is idempotent, so the moment of overlap a lost session can cause
//! (a node notices within a tick that its lock connection is gone) is
//! harmless; the lock is there so the work is not done once per node.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::service::Context;
use crate::store::lock::SessionLock;
use crate::store::{ephemeral, rooms, users, Backend};

const TICK: Duration = Duration::from_secs(1);
/// Password-hashing buffers (19 MiB each) unused this long are freed. A
/// finished hash frees its own unless a caller is queued for it
/// (`password`); this catches those a queued caller then left unused.
const PASSWORD_BUFFER_IDLE: Duration = Duration::from_secs(10);
/// Expired sessions are harmless until deleted, so once a minute will do.
const UIA_PURGE_EVERY_MS: i64 = 60 * 1000;
/// The advisory lock of the background jobs: "cloister" in ASCII. Advisory
/// locks are per database, so deployments sharing a PostgreSQL server on
/// different databases do not compete.
const JOBS_LOCK: i64 = 0x636c_6f69_7374_6572;

/// Runs until the notifier shuts down.
pub async fn run(state: Context) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let purge_every = state
        .config
        .retention
        .purge_interval
        .as_millis()
        .unwrap_or(i64::MAX);
    // Measured on the server's clock, so a test's manual clock drives it.
    // A node that is not running the jobs keeps its schedule where it is:
    // taking over from a node that died, it purges at once if one is due
    // by its own start, so failovers cannot postpone the purge forever.
    let mut next_purge = state.now_ms().saturating_add(purge_every);
    let mut next_uia_purge = state.now_ms();
    let mut leader = Leadership::new(&state);
    let ldap_every = state.config.ldap.sync_every_ms();
    // The first sync a minute after start, not at once: a restart loop
    // must not hammer the directory.
    let mut next_ldap_sync = state.now_ms().saturating_add(60_000);
    let mut ldap_sync: Option<tokio::task::JoinHandle<()>> = None;
    while !state.notifier.is_shutting_down() {
        ticker.tick().await;
        // Every node hashes passwords, so every node gives back what it
        // no longer uses, leader or not.
        state.passwords.release_idle(PASSWORD_BUFFER_IDLE);
        // All four jobs need only one node. The purge deletes rows in
        // batches and unlinks files on shared storage: several nodes would
        // race for the same rows and each write a `purge_run` entry. Two
        // nodes signing checkpoints would sign the same tree twice. The
        // session purge is one DELETE that any node could repeat, to no
        // purpose. Typing expiries are announced at most once (the update
        // is conditional), but every node would scan each second and
        // contend for the stream counter; the new leader takes over within
        // a tick, so notices still clear on time.
        if !leader.leads(&state).await {
            continue;
        }
        if state.now_ms() >= next_uia_purge {
            next_uia_purge = state.now_ms().saturating_add(UIA_PURGE_EVERY_MS);
            if let Err(err) = purge_expired_uia_sessions(&state).await {
                tracing::warn!(error = %err, "deleting expired auth sessions failed; retrying next minute");
            }
            // Sign-ins abandoned at the identity provider and unspent login
            // tokens: the same schedule, the same kind of leftover.
            if let Err(err) = crate::service::sso::purge_expired(&state).await {
                tracing::warn!(error = %err, "deleting expired sign-ins failed; retrying next minute");
            }
            if let Err(err) = crate::service::console_session::purge_expired(&state).await {
                tracing::warn!(error = %err, "deleting expired console sessions failed; retrying next minute");
            }
            if let Err(err) = crate::service::sliding_sync::purge_idle(&state).await {
                tracing::warn!(error = %err, "forgetting idle sliding-sync connections failed; retrying next minute");
            }
            if let Err(err) = crate::service::oauth::purge_expired(&state).await {
                tracing::warn!(error = %err, "deleting expired OAuth sign-ins failed; retrying next minute");
            }
        }
        if state.now_ms() >= next_purge {
            next_purge = state.now_ms().saturating_add(purge_every);
            if let Err(err) = crate::service::purge::run(&state).await {
                tracing::error!(error = %err, "PURGE FAILED: could not record the purge run; retrying at the next interval");
            }
        }
        if let Some(every) = ldap_every {
            // In its own task: a large or slow directory must not hold up
            // the other jobs, which tick every second.
            let idle = ldap_sync.as_ref().is_none_or(|t| t.is_finished());
            if idle && state.now_ms() >= next_ldap_sync {
                next_ldap_sync = state.now_ms().saturating_add(every);
                let state = state.clone();
                ldap_sync = Some(tokio::spawn(async move {
                    if let Err(err) = crate::service::ldap_sync::run(&state, false).await {
                        tracing::warn!(error = %err.message, "the LDAP directory sync failed; retrying at the next interval");
                    }
                }));
            }
        }
        if let Err(err) = announce_typing_expiries(&state).await {
            tracing::warn!(error = %err, "announcing typing expiries failed; retrying next tick");
        }
        if let Err(err) = crate::service::audit::checkpoint_if_due(&state).await {
            // Loud on purpose: unsigned entries are not yet tamper-evident.
            tracing::error!(error = %err, "signing an audit checkpoint failed; retrying next tick");
        }
    }
}

/// Whether this node runs the jobs: always on SQLite (one node by
/// construction), on PostgreSQL while it holds [`JOBS_LOCK`].
struct Leadership {
    lock: Option<SessionLock>,
    leading: bool,
    failing: bool,
}

impl Leadership {
    fn new(state: &Context) -> Self {
        let lock = (state.store.backend() == Backend::Postgres).then(|| {
            let name = format!("cloister-jobs-{}", state.notifier.node_id());
            state.store.session_lock(JOBS_LOCK, &name)
        });
        if lock.is_none() {
            state.metrics.jobs_leader.store(1, Ordering::Relaxed);
        }
        Leadership {
            lock,
            leading: false,
            failing: false,
        }
    }

    async fn leads(&mut self, state: &Context) -> bool {
        let Some(lock) = &mut self.lock else {
            return true;
        };
        let leading = match lock.hold().await {
            Ok(held) => {
                self.failing = false;
                held
            }
            Err(err) => {
                if !self.failing {
                    tracing::warn!(error = %err, "cannot reach the background jobs' lock; this node runs no jobs until it can");
                }
                self.failing = true;
                false
            }
        };
        if leading != self.leading {
            if leading {
                tracing::info!(
                    "this node now runs the background jobs (purge, checkpoints, expiries)"
                );
            } else {
                tracing::warn!("this node lost the background jobs' lock; another node takes over");
            }
            self.leading = leading;
            state
                .metrics
                .jobs_leader
                .store(leading.into(), Ordering::Relaxed);
        }
        leading
    }
}

/// Gives each timed-out typing notice a stream position and wakes the room,
/// so clients stop showing "typing…" without waiting for other activity.
pub async fn announce_typing_expiries(state: &Context) -> Result<usize, sqlx::Error> {
    let now = state.now_ms();
    let expired = ephemeral::unannounced_expiries(&mut *state.store.read().await?, now).await?;
    let mut announced = 0;
    for (room_id, user_id) in expired {
        let mut tx = state.store.write().await?;
        let pos = tx.next_pos().await?;
        if !ephemeral::announce_expiry(&mut tx, &room_id, &user_id, pos, now).await? {
            continue; // dropping the transaction gives the position back unused
        }
        let members = rooms::joined_members(tx.conn(), &room_id).await?;
        tx.commit().await?;
        state.notifier.notify(members.iter().map(String::as_str));
        announced += 1;
    }
    Ok(announced)
}

/// Deletes the user-interactive auth sessions too old to be completed.
pub async fn purge_expired_uia_sessions(state: &Context) -> Result<u64, sqlx::Error> {
    let cutoff = state
        .now_ms()
        .saturating_sub(crate::service::uia::SESSION_LIFETIME_MS);
    users::purge_uia_sessions(&mut state.store.autocommit().await?, cutoff).await
}
