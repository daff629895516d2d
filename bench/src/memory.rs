//! The memory scenario: rounds of concurrent registrations then logins of
//! the same new accounts, with the server's RSS after each round. Password
//! hashing is the most memory-hungry thing a server does per request
//! (argon2id takes 19 MiB per hash), so a server whose RSS climbs round
//! after round is holding on to something it should not.

use std::fmt::Write as _;
use std::time::Instant;

use rand::Rng;
use serde::Serialize;

use crate::cli::Args;
use crate::matrix::Http;
use crate::procfs::{mib, sample};

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Round {
    pub round: u32,
    pub registered: u32,
    pub register_failed: u32,
    pub logged_in: u32,
    pub login_failed: u32,
    pub rate_limited: u32,
    pub seconds: f64,
    pub rss_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemoryReport {
    pub scenario: &'static str,
    pub label: Option<String>,
    pub url: String,
    pub burst: u32,
    pub rss_before_mib: Option<f64>,
    pub rounds: Vec<Round>,
    pub rss_hwm_mib: Option<f64>,
}

impl MemoryReport {
    pub(crate) fn to_text(&self) -> String {
        let mut out = format!(
            "{} — {} concurrent registrations then logins per round; RSS before: {}\n",
            self.label.as_deref().unwrap_or(&self.url),
            self.burst,
            fmt_mib(self.rss_before_mib)
        );
        out.push_str("round  registered  failed  logged in  failed  429s  seconds  server RSS\n");
        for r in &self.rounds {
            let _ = writeln!(
                out,
                "{:>5}  {:>10}  {:>6}  {:>9}  {:>6}  {:>4}  {:>7.2}  {}",
                r.round,
                r.registered,
                r.register_failed,
                r.logged_in,
                r.login_failed,
                r.rate_limited,
                r.seconds,
                fmt_mib(r.rss_mib)
            );
        }
        let _ = writeln!(
            out,
            "server VmHWM at the end: {}",
            fmt_mib(self.rss_hwm_mib)
        );
        out
    }
}

fn fmt_mib(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1} MiB"))
}

pub(crate) async fn run(args: &Args) -> anyhow::Result<MemoryReport> {
    let http = Http::new(&args.url)?;
    let run: u32 = rand::thread_rng().gen();
    let rss = || {
        args.server_pid
            .and_then(|pid| sample(Some(pid)).ok())
            .map(|s| mib(s.rss_kib))
    };
    if args.server_pid.is_none() {
        eprintln!("memory: no --server-pid, so no RSS figures; only the requests are made");
    }
    let mut report = MemoryReport {
        scenario: "memory",
        label: args.label.clone(),
        url: args.url.clone(),
        burst: args.memory_burst,
        rss_before_mib: rss(),
        rounds: vec![],
        rss_hwm_mib: None,
    };
    for round in 0..args.memory_rounds {
        let started = Instant::now();
        let names: Vec<(String, String)> = (0..args.memory_burst)
            .map(|k| {
                (
                    format!("{}m{run:08x}r{round}u{k}", args.user_prefix),
                    format!("{}m{round}-{k}", args.password_prefix),
                )
            })
            .collect();
        let token = args.registration_token.as_deref();
        let mut r = Round {
            round,
            ..Round::default()
        };
        let registrations =
            futures::future::join_all(names.iter().map(|(n, p)| http.register(n, p, token))).await;
        for result in &registrations {
            match result {
                Ok(_) => r.registered += 1,
                Err(f) => {
                    r.register_failed += 1;
                    r.rate_limited += u32::from(f.is_rate_limited());
                }
            }
        }
        let logins = futures::future::join_all(names.iter().map(|(n, p)| http.login(n, p))).await;
        for result in &logins {
            match result {
                Ok(_) => r.logged_in += 1,
                Err(f) => {
                    r.login_failed += 1;
                    r.rate_limited += u32::from(f.is_rate_limited());
                }
            }
        }
        r.seconds = started.elapsed().as_secs_f64();
        r.rss_mib = rss();
        eprintln!(
            "round {round}: {} registered, {} logged in, {:.2} s, server RSS {}",
            r.registered,
            r.logged_in,
            r.seconds,
            fmt_mib(r.rss_mib)
        );
        report.rounds.push(r);
    }
    report.rss_hwm_mib = args
        .server_pid
        .and_then(|pid| sample(Some(pid)).ok())
        .map(|s| mib(s.hwm_kib));
    Ok(report)
}
