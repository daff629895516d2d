//! Counters for operators' monitoring, served in the Prometheus text format
//! at `/_cloister/metrics`. They hold counts only — nothing about anyone.
//! Today they cover the retention purge, whose failures must be impossible
//! to miss; an alert on `cloister_purge_failures_total` increasing, or on
//! `cloister_purge_last_success_timestamp_seconds` falling behind, catches a
//! purge that stopped working.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::service::purge::Summary;

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
    pub fn render(&self) -> String {
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
        out
    }
}
