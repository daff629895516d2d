//! One load run: setup, listeners, warm-up, the measured window, the drain,
//! and the report.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::watch;
use tokio::time::sleep_until;

use crate::cli::{Args, Mode};
use crate::matrix::Http;
use crate::procfs::{PeakWatcher, ProcessReport, Timed};
use crate::report::{cpu_ms_per_response, tally, Report};
use crate::send::{self, unix_us, Clock, Plan};
use crate::setup;
use crate::sync::{SeenLog, SyncRequest, Syncer};

/// Longest wait for every syncer's initial sync.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the drain checks whether everything has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// Rate mode: sends one user may have waiting before further ones are
/// dropped (and counted), so a stalled server cannot pile up tasks.
const MAX_OUTSTANDING_PER_USER: usize = 64;
/// How often the server's and the generator's RSS are read.
const RSS_SAMPLE: Duration = Duration::from_millis(250);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Progress goes to standard error, so `--json` output stays clean.
fn log(message: &str) {
    eprintln!("{message}");
}

pub(crate) async fn load(args: &Args) -> anyhow::Result<Report> {
    let http = Http::new(&args.url)?;
    let world = setup::build(&http, args).await?;
    let run: u32 = rand::thread_rng().gen();

    let window = Arc::new(OnceLock::new());
    let request = SyncRequest::new(args.sync, &args.sync_filter, &args.sliding_request)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let ready = Arc::new(AtomicU32::new(0));
    let mut seen_logs: Vec<Option<Arc<Mutex<SeenLog>>>> = vec![];
    let mut syncers = tokio::task::JoinSet::new();
    for user in &world.users {
        if !user.syncs {
            seen_logs.push(None);
            continue;
        }
        let log = Arc::new(Mutex::new(SeenLog::default()));
        seen_logs.push(Some(log.clone()));
        let syncer = Syncer {
            http: http.clone(),
            session: user.session.clone(),
            run,
            window: window.clone(),
            timeout_ms: args.sync_timeout_ms,
            request: request.clone(),
            backfill_limit: args.backfill_limit,
            log,
            ready: ready.clone(),
        };
        syncers.spawn(syncer.run(stop_rx.clone()));
    }
    let syncer_count = args.syncer_count();
    let ready_deadline = Instant::now() + READY_TIMEOUT;
    while ready.load(Ordering::SeqCst) < syncer_count {
        if let Some(Ok(Err(e))) = syncers.try_join_next() {
            return Err(e.context("a syncer's initial sync failed"));
        }
        anyhow::ensure!(
            Instant::now() < ready_deadline,
            "syncers not ready after {READY_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log(&format!(
        "run {run:08x}: {syncer_count} syncers listening; sending"
    ));

    // The window is fixed before anything is sent, so senders and receivers
    // judge "measured" by the same timestamps.
    let t0 = Instant::now();
    let t0_us = unix_us();
    let window_start = t0 + secs(args.warmup);
    let send_end = window_start + secs(args.duration);
    let clock = Clock {
        run,
        measure_from_us: t0_us + secs(args.warmup).as_micros() as u64,
        measure_until_us: t0_us + secs(args.warmup + args.duration).as_micros() as u64,
        intervals_from_us: t0_us,
        interval_us: secs(args.rss_interval).as_micros() as u64,
    };
    window.set(clock).expect("the window is set once");

    let server_peak = args
        .server_pid
        .map(|pid| PeakWatcher::start(Some(pid), RSS_SAMPLE, secs(args.rss_interval)));
    let self_peak = PeakWatcher::start(None, RSS_SAMPLE, secs(args.rss_interval));

    let users = world.users.len() as f64;
    let mut senders = tokio::task::JoinSet::new();
    let mut rooms_of_sender = vec![];
    for user in world.users {
        let plan = match args.mode {
            Mode::Closed => Plan::Closed {
                in_flight: args.in_flight,
            },
            Mode::Rate => {
                let per_user = args.rate.unwrap_or(1.0) / users;
                let interval = Duration::from_secs_f64(1.0 / per_user);
                let offset = interval.mul_f64(rand::thread_rng().gen::<f64>());
                Plan::Rate {
                    interval,
                    offset,
                    max_outstanding: MAX_OUTSTANDING_PER_USER,
                }
            }
        };
        rooms_of_sender.push(user.room);
        let room_id = world.rooms[user.room].clone();
        let index = user.index;
        let fut = send::run(http.clone(), Arc::new(user), room_id, clock, plan, send_end);
        senders.spawn(async move { (index, fut.await) });
    }

    sleep_until(window_start.into()).await;
    let server_start = args.server_pid.and_then(|pid| Timed::now(Some(pid)));
    let self_start = Timed::now(None);
    sleep_until(send_end.into()).await;
    let server_end = args.server_pid.and_then(|pid| Timed::now(Some(pid)));
    let self_end = Timed::now(None);
    log("measured window over; waiting for outstanding sends");

    let mut sends: Vec<(u32, send::SendLog)> = vec![];
    while let Some(joined) = senders.join_next().await {
        sends.push(joined?);
    }
    sends.sort_by_key(|(i, _)| *i);
    let sends: Vec<send::SendLog> = sends.into_iter().map(|(_, l)| l).collect();

    // Drain: wait until every accepted message reached every syncing member
    // of its room, or the drain time is up.
    let drain_end = Instant::now() + secs(args.drain);
    let expected: usize = sends
        .iter()
        .zip(&rooms_of_sender)
        .map(|(log, &room)| log.accepted.len() * world.syncing_members[room].len())
        .sum();
    loop {
        // The full tally sorts every latency sample while holding every
        // receiver's log, which in a long run stalled the receivers and
        // inflated the last messages' latencies. It runs only once as many
        // messages were seen as could complete the run.
        let seen: usize = seen_logs
            .iter()
            .flatten()
            .map(|l| l.lock().expect("seen log").seen.len())
            .sum();
        if seen < expected {
            if Instant::now() >= drain_end {
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
            continue;
        }
        let guards: Vec<_> = seen_logs
            .iter()
            .map(|l| l.as_ref().map(|l| l.lock().expect("seen log")))
            .collect();
        let views: Vec<Option<&SeenLog>> = guards.iter().map(|g| g.as_deref()).collect();
        let t = tally(
            &sends,
            &rooms_of_sender,
            &views,
            &world.syncing_members,
            1.0,
        );
        drop(views);
        drop(guards);
        if t.completeness.missing == 0 || Instant::now() >= drain_end {
            break;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let _ = stop_tx.send(true);
    // Syncers leave their long-poll at once on the stop signal.
    let stop_deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(stop_deadline);
    loop {
        tokio::select! {
            next = syncers.join_next() => if next.is_none() { break },
            _ = &mut stop_deadline => { syncers.abort_all(); break }
        }
    }

    let server_final = args
        .server_pid
        .and_then(|pid| crate::procfs::sample(Some(pid)).ok());
    let self_final = crate::procfs::sample(None).ok();
    let server = args.server_pid.map(|pid| {
        let peak = server_peak.map_or_else(Default::default, PeakWatcher::stop);
        ProcessReport::build(Some(pid), server_start.zip(server_end), peak, server_final)
    });
    let generator = ProcessReport::build(
        Some(std::process::id()),
        self_start.zip(self_end),
        self_peak.stop(),
        self_final,
    );

    let logs: Vec<Option<SeenLog>> = seen_logs
        .into_iter()
        .map(|l| l.map(|l| std::mem::take(&mut *l.lock().expect("seen log"))))
        .collect();
    let views: Vec<Option<&SeenLog>> = logs.iter().map(Option::as_ref).collect();
    let t = tally(
        &sends,
        &rooms_of_sender,
        &views,
        &world.syncing_members,
        args.duration,
    );
    let server_cpu_ms_per_sync_response =
        cpu_ms_per_response(server.as_ref(), t.throughput.sync_responses_in_window);
    Ok(Report {
        scenario: "load",
        label: args.label.clone(),
        url: args.url.clone(),
        mode: format!("{:?}", args.mode).to_lowercase(),
        sync: args.sync.name(),
        users: args.users,
        rooms: args.rooms,
        syncers: syncer_count,
        in_flight: (args.mode == Mode::Closed).then_some(args.in_flight),
        target_rate: (args.mode == Mode::Rate).then_some(args.rate.unwrap_or(0.0)),
        warmup_s: args.warmup,
        duration_s: args.duration,
        throughput: t.throughput,
        send_latency: t.send_latency,
        seen_latency: t.seen_latency,
        send_latency_per_interval: t.send_latency_per_interval,
        seen_latency_per_interval: t.seen_latency_per_interval,
        completeness: t.completeness,
        errors: t.errors,
        server_cpu_ms_per_sync_response,
        server,
        generator,
    })
}
