//! The server at a glance, for the console's health page: sizes from the
//! database and this node's live counters (the same ones `/_cloister/metrics`
//! exports, for operators without a Prometheus).

use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::error::ApiResult;
use crate::service::Context;
use crate::store::{audit, console, Backend};

#[derive(Debug, Serialize)]
pub struct Health {
    pub version: &'static str,
    pub database: &'static str,
    pub server_name: String,
    pub users: i64,
    pub rooms: i64,
    pub events: i64,
    pub audit_entries: i64,
    pub active_long_polls: i64,
    /// Whether this node runs the background jobs (purge, checkpoints).
    pub jobs_leader: bool,
    pub events_sent: u64,
    pub sync_responses: u64,
    pub purge_failures: u64,
    pub db_connections_open: u32,
    pub db_connections_max: u32,
}

pub async fn health(state: &Context) -> ApiResult<Health> {
    let mut conn = state.store.read().await?;
    let counts = console::counts(&mut conn).await?;
    let audit_entries = audit::size(&mut conn).await?;
    drop(conn);
    let m = &state.metrics;
    let pool = state.store.pool_stats();
    Ok(Health {
        version: env!("CARGO_PKG_VERSION"),
        database: match state.store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        },
        server_name: state.config.server_name.clone(),
        users: counts.users,
        rooms: counts.rooms,
        events: counts.events,
        audit_entries,
        active_long_polls: m.long_polls.load(Ordering::Relaxed),
        jobs_leader: m.jobs_leader.load(Ordering::Relaxed) == 1,
        events_sent: m.events_sent.load(Ordering::Relaxed),
        sync_responses: m.sync_responses.load(Ordering::Relaxed),
        purge_failures: m.purge_failures(),
        db_connections_open: pool.open,
        db_connections_max: pool.max,
    })
}
