//! Periodic work the server does on its own, off the request path: announcing
//! typing notices that timed out, signing audit checkpoints, the retention
//! purge and deleting expired user-interactive auth sessions. Each task is
//! idempotent, so several nodes may run it against one PostgreSQL.

use std::time::Duration;

use crate::service::Context;
use crate::store::{ephemeral, rooms, users};

const TICK: Duration = Duration::from_secs(1);
/// Expired sessions are harmless until deleted, so once a minute will do.
const UIA_PURGE_EVERY_MS: i64 = 60 * 1000;

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
    let mut next_purge = state.now_ms().saturating_add(purge_every);
    let mut next_uia_purge = state.now_ms();
    while !state.notifier.is_shutting_down() {
        ticker.tick().await;
        if state.now_ms() >= next_uia_purge {
            next_uia_purge = state.now_ms().saturating_add(UIA_PURGE_EVERY_MS);
            if let Err(err) = purge_expired_uia_sessions(&state).await {
                tracing::warn!(error = %err, "deleting expired auth sessions failed; retrying next minute");
            }
        }
        if state.now_ms() >= next_purge {
            next_purge = state.now_ms().saturating_add(purge_every);
            if let Err(err) = crate::service::purge::run(&state).await {
                tracing::error!(error = %err, "PURGE FAILED: could not record the purge run; retrying at the next interval");
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
