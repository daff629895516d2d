//! Counters for operators' monitoring, served in the Prometheus text format
//! at `/_cloister/metrics`. They hold counts only — nothing about anyone.
//! They cover the retention purge, whose failures must be impossible to
//! miss (an alert on `cloister_purge_failures_total` increasing, or on
//! `cloister_purge_last_success_timestamp_seconds` falling behind, catches a
//! purge that stopped working), and, per node, long-polls and the wake-ups
//! exchanged with other nodes on one PostgreSQL, pushes to gateways, events
//! sent and delivered, the database pool, and request latency per route
//! (`crate::latency`).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::latency::RouteLatency;
use crate::service::purge::Summary;
use crate::store::PoolStats;

#[derive(Debug, Default)]
pub struct Metrics {
    purge_runs: AtomicU64,
    purge_failures: AtomicU64,
    purge_last_success_ms: AtomicI64,
    purged_events: AtomicU64,
    purged_media_files: AtomicU64,
    purged_media_bytes: AtomicU64,
    purged_to_device: AtomicU64,
    purged_backup_keys: AtomicU64,
    purged_devices: AtomicU64,
    /// `/sync` requests waiting right now.
    pub long_polls: AtomicI64,
    /// Wake-up payloads sent to and received from other nodes.
    pub cluster_sent: AtomicU64,
    pub cluster_received: AtomicU64,
    /// Every waiting long-poll woken because a wake-up may have been lost.
    pub wake_all_reconnect: AtomicU64,
    pub wake_all_peer_lost: AtomicU64,
    pub wake_all_peer_asked: AtomicU64,
    /// 1 while this node holds the lock that runs the background jobs.
    pub jobs_leader: AtomicI64,
    /// Room events users sent (messages, state, membership, redactions).
    pub events_sent: AtomicU64,
    /// `/sync` responses, and the timeline events they delivered.
    pub sync_responses: AtomicU64,
    pub sync_events_delivered: AtomicU64,
    /// Lazy-loading responses whose member events came from this node's
    /// copies, or were read (`service::sync::members`).
    pub sync_member_copies_used: AtomicU64,
    pub sync_member_reads: AtomicU64,
    /// Incremental `/sync` and sliding sync timelines served from this
    /// node's recent events, or read to keep them (`service::sync::recent`).
    pub sync_recent_events_used: AtomicU64,
    pub sync_recent_events_reads: AtomicU64,
    /// Backward `/messages` pages served from those recent events
    /// (`service::event_reads`).
    pub messages_pages_from_kept: AtomicU64,
    pub requests: RouteLatency,
    /// Pushes a gateway accepted, gave up on, retried; pushkeys it rejected.
    pub pushes_sent: AtomicU64,
    pub pushes_failed: AtomicU64,
    pub push_retries: AtomicU64,
    pub pushkeys_rejected: AtomicU64,
    /// Directory servers that failed to answer a login or sync (`crate::ldap`).
    pub ldap_errors: AtomicU64,
    /// Directory syncs completed, failed or held back, and the accounts
    /// they deactivated (`service::ldap_sync`).
    pub ldap_syncs: AtomicU64,
    pub ldap_sync_failures: AtomicU64,
    pub ldap_sync_deactivations: AtomicU64,
    /// Single sign-ons completed (login tokens issued), refused (any
    /// reason; the audit log has which), and devices an identity provider
    /// logged out softly (`service::sso`).
    pub sso_logins: AtomicU64,
    pub sso_refusals: AtomicU64,
    pub sso_soft_logouts: AtomicU64,
    /// Audit checkpoints a witness cosigned, or did not (down, refused).
    pub audit_witness_cosignatures: AtomicU64,
    pub audit_witness_failures: AtomicU64,
}

impl Metrics {
    pub fn record_purge(&self, s: &Summary) {
        self.purge_runs.fetch_add(1, Ordering::Relaxed);
        if s.errors.is_empty() {
            self.purge_last_success_ms
                .fetch_max(s.started_ts, Ordering::Relaxed);
        } else {
            self.purge_failures.fetch_add(1, Ordering::Relaxed);
        }
        for (counter, n) in [
            (&self.purged_events, s.events),
            (&self.purged_media_files, s.media_files),
            (&self.purged_media_bytes, s.media_bytes),
            (&self.purged_to_device, s.to_device),
            (&self.purged_backup_keys, s.backup_keys),
            (&self.purged_devices, s.devices),
        ] {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn purge_failures(&self) -> u64 {
        self.purge_failures.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self, pool: &PoolStats) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        metric(
            "cloister_purge_runs_total",
            "counter",
            "Retention purge runs.",
            get(&self.purge_runs),
        );
        metric(
            "cloister_purge_failures_total",
            "counter",
            "Retention purge runs in which at least one step failed.",
            get(&self.purge_failures),
        );
        let last = self.purge_last_success_ms.load(Ordering::Relaxed);
        metric(
            "cloister_purge_last_success_timestamp_seconds",
            "gauge",
            "Start time of the latest purge run without errors (0: none since start).",
            (last / 1000).to_string(),
        );
        out.push_str(
            "# HELP cloister_purged_total Items the retention purge deleted.\n# TYPE cloister_purged_total counter\n",
        );
        for (kind, c) in [
            ("events", &self.purged_events),
            ("media_files", &self.purged_media_files),
            ("media_bytes", &self.purged_media_bytes),
            ("to_device", &self.purged_to_device),
            ("backup_keys", &self.purged_backup_keys),
            ("devices", &self.purged_devices),
        ] {
            let _ = writeln!(out, "cloister_purged_total{{kind=\"{kind}\"}} {}", get(c));
        }
        self.render_cluster(&mut out);
        self.render_traffic(&mut out, pool);
        self.render_push(&mut out);
        render_counters(
            &mut out,
            &[
                (
                    "cloister_sync_member_copies_used_total",
                    "Lazy-loading /sync room sections whose member events came from this node's copies.",
                    &self.sync_member_copies_used,
                ),
                (
                    "cloister_sync_member_reads_total",
                    "Lazy-loading /sync room sections whose member events were read from the database.",
                    &self.sync_member_reads,
                ),
                (
                    "cloister_sync_recent_events_used_total",
                    "Incremental /sync and sliding sync timelines served from this node's recent events.",
                    &self.sync_recent_events_used,
                ),
                (
                    "cloister_sync_recent_events_reads_total",
                    "Incremental /sync and sliding sync timelines read from the database into this node's recent events.",
                    &self.sync_recent_events_reads,
                ),
                (
                    "cloister_messages_pages_from_kept_total",
                    "Backward /messages pages served from this node's recent events.",
                    &self.messages_pages_from_kept,
                ),
            ],
        );
        self.render_sso(&mut out);
        self.requests.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP cloister_ldap_errors_total LDAP directory servers that failed to answer a login or sync (down, timed out, or refused the service account).\n\
             # TYPE cloister_ldap_errors_total counter\n\
             cloister_ldap_errors_total {}\n\
             # HELP cloister_ldap_syncs_total Directory syncs that completed.\n\
             # TYPE cloister_ldap_syncs_total counter\n\
             cloister_ldap_syncs_total {}\n\
             # HELP cloister_ldap_sync_failures_total Directory syncs that could not reach the directory or were held back by ldap.sync_max_deactivations.\n\
             # TYPE cloister_ldap_sync_failures_total counter\n\
             cloister_ldap_sync_failures_total {}\n\
             # HELP cloister_ldap_sync_deactivations_total Accounts the directory sync deactivated.\n\
             # TYPE cloister_ldap_sync_deactivations_total counter\n\
             cloister_ldap_sync_deactivations_total {}\n\
             # HELP cloister_audit_witness_cosignatures_total Audit checkpoints a witness cosigned.\n\
             # TYPE cloister_audit_witness_cosignatures_total counter\n\
             cloister_audit_witness_cosignatures_total {}\n\
             # HELP cloister_audit_witness_failures_total Audit checkpoints a witness did not cosign (unreachable or refused).\n\
             # TYPE cloister_audit_witness_failures_total counter\n\
             cloister_audit_witness_failures_total {}",
            get(&self.ldap_errors),
            get(&self.ldap_syncs),
            get(&self.ldap_sync_failures),
            get(&self.ldap_sync_deactivations),
            get(&self.audit_witness_cosignatures),
            get(&self.audit_witness_failures),
        );
        out
    }

    fn render_traffic(&self, out: &mut String, pool: &PoolStats) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = write!(
            out,
            "# HELP cloister_events_sent_total Room events users sent (messages, state, membership, redactions).\n\
             # TYPE cloister_events_sent_total counter\n\
             cloister_events_sent_total {}\n\
             # HELP cloister_sync_responses_total /sync responses sent.\n\
             # TYPE cloister_sync_responses_total counter\n\
             cloister_sync_responses_total {}\n\
             # HELP cloister_sync_events_delivered_total Timeline events delivered in /sync responses.\n\
             # TYPE cloister_sync_events_delivered_total counter\n\
             cloister_sync_events_delivered_total {}\n\
             # HELP cloister_db_connections Database connections of this node's pool.\n\
             # TYPE cloister_db_connections gauge\n\
             cloister_db_connections{{state=\"max\"}} {}\n\
             cloister_db_connections{{state=\"open\"}} {}\n\
             cloister_db_connections{{state=\"idle\"}} {}\n\
             # HELP cloister_db_acquired_total Connections handed out: reads, and write transactions begun.\n\
             # TYPE cloister_db_acquired_total counter\n\
             cloister_db_acquired_total{{kind=\"read\"}} {}\n\
             cloister_db_acquired_total{{kind=\"write\"}} {}\n\
             # HELP cloister_db_wait_seconds_total Time spent waiting for a connection (reads) or for a write transaction to begin.\n\
             # TYPE cloister_db_wait_seconds_total counter\n\
             cloister_db_wait_seconds_total{{kind=\"read\"}} {}\n\
             cloister_db_wait_seconds_total{{kind=\"write\"}} {}\n\
             # HELP cloister_db_group_commits_total Group commits on SQLite: batches committed.\n\
             # TYPE cloister_db_group_commits_total counter\n\
             cloister_db_group_commits_total {}\n\
             # HELP cloister_db_group_commit_writes_total Writes committed in those batches (writes / commits = the mean batch).\n\
             # TYPE cloister_db_group_commit_writes_total counter\n\
             cloister_db_group_commit_writes_total {}\n\
             # HELP cloister_db_writes_queued Room events and to-device messages waiting for the database writer right now.\n\
             # TYPE cloister_db_writes_queued gauge\n\
             cloister_db_writes_queued {}\n\
             # HELP cloister_db_writes_refused_total Sends, redactions and to-device messages refused with 429 because the writer's queue was past limits.max_write_wait_ms.\n\
             # TYPE cloister_db_writes_refused_total counter\n\
             cloister_db_writes_refused_total {}\n\
             # HELP cloister_access_token_copies_used_total Requests whose access token was checked against this node's copy of its row instead of the database (limits.access_token_cache_ms).\n\
             # TYPE cloister_access_token_copies_used_total counter\n\
             cloister_access_token_copies_used_total {}\n\
             # HELP cloister_access_token_copies_dropped_total Times this node dropped every copy because sessions ended here, on another node, or maybe unheard.\n\
             # TYPE cloister_access_token_copies_dropped_total counter\n\
             cloister_access_token_copies_dropped_total {}\n",
            get(&self.events_sent),
            get(&self.sync_responses),
            get(&self.sync_events_delivered),
            pool.max,
            pool.open,
            pool.idle,
            pool.reads,
            pool.writes,
            pool.read_wait_seconds,
            pool.write_wait_seconds,
            pool.group_commits,
            pool.group_members,
            pool.writes_queued,
            pool.writes_refused,
            pool.token_copies_used,
            pool.token_copies_dropped,
        );
    }

    fn render_push(&self, out: &mut String) {
        render_counters(
            out,
            &[
                (
                    "cloister_pushes_sent_total",
                    "Pushes a push gateway accepted.",
                    &self.pushes_sent,
                ),
                (
                    "cloister_pushes_failed_total",
                    "Pushes given up on after retries or a 4xx answer.",
                    &self.pushes_failed,
                ),
                (
                    "cloister_push_retries_total",
                    "Push attempts that failed and were scheduled again.",
                    &self.push_retries,
                ),
                (
                    "cloister_pushkeys_rejected_total",
                    "Pushkeys a gateway rejected (their pushers were deleted).",
                    &self.pushkeys_rejected,
                ),
            ],
        );
    }

    fn render_sso(&self, out: &mut String) {
        render_counters(
            out,
            &[
                (
                    "cloister_sso_logins_total",
                    "Single sign-ons completed at an identity provider (login tokens issued).",
                    &self.sso_logins,
                ),
                (
                    "cloister_sso_refusals_total",
                    "Single sign-ons refused, for any reason (the audit log names it).",
                    &self.sso_refusals,
                ),
                (
                    "cloister_sso_soft_logouts_total",
                    "Devices an identity provider logged out softly (back-channel logout).",
                    &self.sso_soft_logouts,
                ),
            ],
        );
    }

    fn render_cluster(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let gauge = |c: &AtomicI64| c.load(Ordering::Relaxed).max(0);
        let _ = write!(
            out,
            "# HELP cloister_sync_long_polls /sync requests waiting for news on this node.\n\
             # TYPE cloister_sync_long_polls gauge\n\
             cloister_sync_long_polls {}\n\
             # HELP cloister_cluster_notifications_sent_total Wake-up notifications this node sent to other nodes.\n\
             # TYPE cloister_cluster_notifications_sent_total counter\n\
             cloister_cluster_notifications_sent_total {}\n\
             # HELP cloister_cluster_notifications_received_total Wake-up notifications received from other nodes.\n\
             # TYPE cloister_cluster_notifications_received_total counter\n\
             cloister_cluster_notifications_received_total {}\n\
             # HELP cloister_cluster_wake_all_total Times every waiting long-poll was woken because a wake-up may have been lost.\n\
             # TYPE cloister_cluster_wake_all_total counter\n\
             cloister_cluster_wake_all_total{{reason=\"reconnect\"}} {}\n\
             cloister_cluster_wake_all_total{{reason=\"peer_lost\"}} {}\n\
             cloister_cluster_wake_all_total{{reason=\"peer_asked\"}} {}\n\
             # HELP cloister_jobs_leader 1 while this node runs the background jobs (purge, checkpoints, expiries).\n\
             # TYPE cloister_jobs_leader gauge\n\
             cloister_jobs_leader {}\n",
            gauge(&self.long_polls),
            get(&self.cluster_sent),
            get(&self.cluster_received),
            get(&self.wake_all_reconnect),
            get(&self.wake_all_peer_lost),
            get(&self.wake_all_peer_asked),
            gauge(&self.jobs_leader),
        );
    }
}

/// Plain counters, each with its help and type lines.
fn render_counters(out: &mut String, counters: &[(&str, &str, &AtomicU64)]) {
    for (name, help, c) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            c.load(Ordering::Relaxed)
        );
    }
}
