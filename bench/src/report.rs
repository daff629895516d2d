//! What a load run found, as JSON or as text for a person.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::procfs::ProcessReport;
use crate::send::SendLog;
use crate::stats::{Latencies, Summary};
use crate::sync::SeenLog;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub scenario: &'static str,
    pub label: Option<String>,
    pub url: String,
    pub mode: String,
    /// The sync API the users long-polled: `v3` or `sliding`.
    pub sync: &'static str,
    pub users: u32,
    pub rooms: u32,
    pub syncers: u32,
    pub in_flight: Option<u32>,
    pub target_rate: Option<f64>,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub throughput: Throughput,
    pub send_latency: Summary,
    pub seen_latency: Summary,
    /// The same, for the messages sent in each `--rss-interval` from the
    /// warm-up's start (the warm-up's own are not measured).
    pub send_latency_per_interval: Vec<Summary>,
    pub seen_latency_per_interval: Vec<Summary>,
    pub completeness: Completeness,
    pub errors: Errors,
    pub server: Option<ProcessReport>,
    /// The server's CPU time in the window over the sync answers that
    /// arrived in it (sends and the rest included: the same load in both
    /// sync modes makes the figures comparable).
    pub server_cpu_ms_per_sync_response: Option<f64>,
    pub generator: ProcessReport,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Throughput {
    /// Messages accepted (200 with an event id) whose send started in the
    /// measured window, per second of it.
    pub accepted: u64,
    pub accepted_per_s: f64,
    /// Sends answered with success inside the window, whenever started.
    pub acknowledged_in_window: u64,
    pub acknowledged_in_window_per_s: f64,
    /// Sends started in the window (rate mode: offered, including the ones
    /// dropped for backlog).
    pub attempted: u64,
    /// First sightings of measured messages by syncing users.
    pub delivered: u64,
    pub delivered_per_s: f64,
    /// Sync requests made, whole run, failures included.
    pub sync_requests: u64,
    /// Successful sync answers that arrived in the measured window.
    pub sync_responses_in_window: u64,
    pub sync_responses_per_s: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Completeness {
    /// Every accepted message of the run (warm-up included) times the
    /// syncing members of its room.
    pub expected_deliveries: u64,
    /// Of those, never seen by the end of the drain.
    pub missing: u64,
    /// A message seen twice by the same user.
    pub duplicates: u64,
    /// Seen by someone although its send was not acknowledged (timed out
    /// or failed after the server stored it).
    pub unacknowledged_seen: u64,
    pub limited_syncs: u64,
    pub backfilled: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Errors {
    pub send_failed: u64,
    pub send_429: u64,
    pub sync_failed: u64,
    pub sync_429: u64,
    /// Rate mode: sends skipped because a user already had its maximum
    /// outstanding (the server fell behind the offered rate).
    pub backlog_dropped: u64,
    pub by_kind: BTreeMap<String, u64>,
}

/// Folds the per-user logs into totals and the completeness check.
pub(crate) struct Tally {
    pub throughput: Throughput,
    pub send_latency: Summary,
    pub seen_latency: Summary,
    pub send_latency_per_interval: Vec<Summary>,
    pub seen_latency_per_interval: Vec<Summary>,
    pub completeness: Completeness,
    pub errors: Errors,
}

/// `sends[u]` is user u's log and `rooms_of_sender[u]` its room;
/// `seen[u]` is Some for users that synced; `syncing_members[r]` lists
/// the syncing users of room r.
pub(crate) fn tally(
    sends: &[SendLog],
    rooms_of_sender: &[usize],
    seen: &[Option<&SeenLog>],
    syncing_members: &[Vec<u32>],
    measured_seconds: f64,
) -> Tally {
    let mut t = Throughput::default();
    let mut c = Completeness::default();
    let mut e = Errors::default();
    let mut send_lat = Latencies::default();
    let mut acknowledged: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for (user, log) in sends.iter().enumerate() {
        t.accepted += log.accepted_measured;
        t.acknowledged_in_window += log.acknowledged_in_window;
        t.attempted += log.attempted_measured;
        send_lat.extend(&log.latencies);
        e.send_failed += log.failed;
        e.send_429 += log.rate_limited;
        e.backlog_dropped += log.backlog_dropped;
        for (kind, n) in &log.errors {
            *e.by_kind.entry(kind.clone()).or_default() += n;
        }
        let members = &syncing_members[rooms_of_sender[user]];
        for &seq in &log.accepted {
            let key = (user as u64) << 32 | u64::from(seq);
            acknowledged.insert(key);
            c.expected_deliveries += members.len() as u64;
            c.missing += members
                .iter()
                .filter(|&&m| seen[m as usize].is_some_and(|s| !s.seen.contains(&key)))
                .count() as u64;
        }
    }
    let mut seen_lat = Latencies::default();
    let mut unacknowledged: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for log in seen.iter().flatten() {
        t.delivered += log.seen_measured;
        t.sync_requests += log.requests;
        t.sync_responses_in_window += log.responses_in_window;
        seen_lat.extend(&log.latencies);
        c.duplicates += log.duplicates;
        c.limited_syncs += log.limited;
        c.backfilled += log.backfilled;
        e.sync_429 += log.rate_limited;
        for (kind, n) in &log.errors {
            e.sync_failed += n;
            *e.by_kind.entry(kind.clone()).or_default() += n;
        }
        unacknowledged.extend(log.seen.iter().filter(|k| !acknowledged.contains(k)));
    }
    c.unacknowledged_seen = unacknowledged.len() as u64;
    let per_s = |n: u64| {
        if measured_seconds > 0.0 {
            n as f64 / measured_seconds
        } else {
            0.0
        }
    };
    t.accepted_per_s = per_s(t.accepted);
    t.acknowledged_in_window_per_s = per_s(t.acknowledged_in_window);
    t.delivered_per_s = per_s(t.delivered);
    t.sync_responses_per_s = per_s(t.sync_responses_in_window);
    Tally {
        throughput: t,
        send_latency: send_lat.summary(),
        seen_latency: seen_lat.summary(),
        send_latency_per_interval: send_lat.per_interval(),
        seen_latency_per_interval: seen_lat.per_interval(),
        completeness: c,
        errors: e,
    }
}

/// Server CPU milliseconds per sync answer, both over the window.
pub(crate) fn cpu_ms_per_response(server: Option<&ProcessReport>, responses: u64) -> Option<f64> {
    let cpu = server?.cpu_seconds?;
    (responses > 0).then(|| cpu * 1000.0 / responses as f64)
}

/// Width of the text report's labels.
const LABEL: usize = 32;

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}{unit}"))
}

fn latency_line(name: &str, s: &Summary) -> String {
    format!(
        "{name:<LABEL$} n={:<8} p50 {} ms  p95 {} ms  p99 {} ms  max {} ms\n",
        s.count,
        ms(s.p50_ms),
        ms(s.p95_ms),
        ms(s.p99_ms),
        ms(s.max_ms)
    )
}

fn interval_line(name: &str, by: &[Summary], pick: impl Fn(&Summary) -> Option<f64>) -> String {
    let figures: Vec<String> = by.iter().map(|s| ms(pick(s))).collect();
    format!(
        "{:<LABEL$} {name} per interval (ms): {}\n",
        "",
        figures.join(" ")
    )
}

fn process_line(name: &str, p: &ProcessReport) -> String {
    let mut line = format!(
        "{name:<LABEL$} cpu {} cores  rss start {}  peak {}  end {}  (VmHWM {})\n",
        opt(p.cpu_cores, ""),
        opt(p.rss_start_mib, " MiB"),
        opt(p.rss_peak_mib, " MiB"),
        opt(p.rss_end_mib, " MiB"),
        opt(p.rss_hwm_mib, " MiB"),
    );
    if p.rss_peak_per_interval_mib.len() > 1 {
        let peaks: Vec<String> = p
            .rss_peak_per_interval_mib
            .iter()
            .map(|m| format!("{m:.1}"))
            .collect();
        line.push_str(&format!(
            "{:<LABEL$} rss peak per interval (MiB): {}\n",
            "",
            peaks.join(" ")
        ));
    }
    line
}

impl Report {
    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        let load = match (self.in_flight, self.target_rate) {
            (Some(k), _) => format!("closed loop, {k} in flight per user"),
            (_, Some(r)) => format!("{r} msg/s offered"),
            _ => self.mode.clone(),
        };
        let _ = writeln!(
            out,
            "{} — {} users, {} rooms, {} syncing ({} sync); {load}; {:.0} s measured after {:.0} s warm-up",
            self.label.as_deref().unwrap_or(&self.url),
            self.users,
            self.rooms,
            self.syncers,
            self.sync,
            self.duration_s,
            self.warmup_s
        );
        let t = &self.throughput;
        let _ = writeln!(
            out,
            "{:<LABEL$} {:.1} msg/s accepted ({} of {} sends), {:.1} deliveries/s ({} sync requests)",
            "throughput",
            t.accepted_per_s,
            t.accepted,
            t.attempted,
            t.delivered_per_s,
            t.sync_requests
        );
        let _ = writeln!(
            out,
            "{:<LABEL$} {:.1} ({} answered in the window)",
            "sync responses/s", t.sync_responses_per_s, t.sync_responses_in_window
        );
        out.push_str(&latency_line("send latency", &self.send_latency));
        out.push_str(&latency_line("send→seen latency", &self.seen_latency));
        if self.seen_latency_per_interval.len() > 1 {
            let by = &self.seen_latency_per_interval;
            out.push_str(&interval_line("send→seen p99", by, |s| s.p99_ms));
            out.push_str(&interval_line("send→seen max", by, |s| s.max_ms));
        }
        let c = &self.completeness;
        let _ = writeln!(
            out,
            "{:<LABEL$} {} missing of {} expected deliveries, {} duplicates, {} unacknowledged seen, {} limited syncs ({} backfilled)",
            "completeness", c.missing, c.expected_deliveries, c.duplicates, c.unacknowledged_seen, c.limited_syncs, c.backfilled
        );
        let e = &self.errors;
        let _ = writeln!(
            out,
            "{:<LABEL$} send {} failed ({} × 429), sync {} failed ({} × 429), {} dropped for backlog",
            "errors", e.send_failed, e.send_429, e.sync_failed, e.sync_429, e.backlog_dropped
        );
        for (kind, n) in &e.by_kind {
            let _ = writeln!(out, "{:<LABEL$}   {n} × {kind}", "");
        }
        match &self.server {
            Some(s) => {
                out.push_str(&process_line("server", s));
                let _ = writeln!(
                    out,
                    "{:<LABEL$} {}",
                    "server CPU ms per sync response",
                    opt(self.server_cpu_ms_per_sync_response, "")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<LABEL$} (no --server-pid: CPU and memory not measured)",
                    "server"
                );
            }
        }
        out.push_str(&process_line("generator", &self.generator));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latencies(samples: &[(u16, u64)]) -> Latencies {
        let mut l = Latencies::default();
        for &(interval, us) in samples {
            l.push(interval, us);
        }
        l
    }

    #[test]
    fn completeness_counts_missing_duplicates_and_unacknowledged() {
        // Users 0 and 1 in room 0, both syncing; user 1 sent two messages.
        let sends = vec![
            SendLog::default(),
            SendLog {
                accepted: vec![0, 1],
                accepted_measured: 2,
                attempted_measured: 3,
                failed: 1,
                latencies: latencies(&[(0, 1_000), (1, 3_000)]),
                ..SendLog::default()
            },
        ];
        let key = |seq: u64| (1u64 << 32) | seq;
        let a = SeenLog {
            seen: [key(0), key(1), key(2)].into(),
            seen_measured: 2,
            latencies: latencies(&[(0, 5_000), (1, 7_000)]),
            duplicates: 1,
            ..SeenLog::default()
        };
        let b = SeenLog {
            seen: [key(0)].into(),
            seen_measured: 1,
            latencies: latencies(&[(1, 6_000)]),
            ..SeenLog::default()
        };
        let t = tally(&sends, &[0, 0], &[Some(&a), Some(&b)], &[vec![0, 1]], 2.0);
        assert_eq!(t.completeness.expected_deliveries, 4);
        assert_eq!(t.completeness.missing, 1);
        assert_eq!(t.completeness.duplicates, 1);
        assert_eq!(t.completeness.unacknowledged_seen, 1);
        assert_eq!(t.throughput.accepted, 2);
        assert_eq!(t.throughput.accepted_per_s, 1.0);
        assert_eq!(t.throughput.delivered, 3);
        assert_eq!(t.seen_latency.p50_ms, Some(6.0));
        assert_eq!(t.send_latency.max_ms, Some(3.0));
        let seen_p50: Vec<_> = t
            .seen_latency_per_interval
            .iter()
            .map(|s| s.p50_ms)
            .collect();
        assert_eq!(seen_p50, vec![Some(5.0), Some(6.0)]);
        assert_eq!(t.send_latency_per_interval[1].max_ms, Some(3.0));
        assert_eq!(t.errors.send_failed, 1);
    }

    #[test]
    fn cpu_per_sync_response() {
        let server = ProcessReport {
            cpu_seconds: Some(1.5),
            ..ProcessReport::default()
        };
        assert_eq!(cpu_ms_per_response(Some(&server), 1000), Some(1.5));
        assert_eq!(cpu_ms_per_response(Some(&server), 0), None);
        assert_eq!(cpu_ms_per_response(None, 1000), None);
        assert_eq!(
            cpu_ms_per_response(Some(&ProcessReport::default()), 1000),
            None
        );
    }
}
