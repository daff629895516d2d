//! CPU time and resident memory of a process, from `/proc` (Linux only).
//!
//! The server's figures say what a load costs it; the generator's own say
//! whether the generator, not the server, was the bottleneck.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// User plus system CPU time, in clock ticks, over all threads.
    pub cpu_ticks: u64,
    pub rss_kib: u64,
    /// The kernel's high-water mark of the RSS since the process started.
    pub hwm_kib: u64,
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (field
/// 2) is in parentheses and may itself contain spaces and parentheses, so
/// fields are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// (VmRSS, VmHWM) in KiB from the text of `/proc/PID/status`.
pub(crate) fn parse_status(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Reads process `pid`, or this process for None.
pub(crate) fn sample(pid: Option<u32>) -> std::io::Result<Sample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let cpu_ticks = parse_stat(&std::fs::read_to_string(format!("{dir}/stat"))?)
        .ok_or_else(|| bad("unexpected /proc/PID/stat"))?;
    let (rss_kib, hwm_kib) = parse_status(&std::fs::read_to_string(format!("{dir}/status"))?)
        .ok_or_else(|| bad("unexpected /proc/PID/status"))?;
    Ok(Sample {
        cpu_ticks,
        rss_kib,
        hwm_kib,
    })
}

pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the C library; no memory is shared.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

/// CPU seconds a process used between two samples.
pub(crate) fn cpu_seconds(start: &Sample, end: &Sample) -> f64 {
    end.cpu_ticks.saturating_sub(start.cpu_ticks) as f64 / clock_ticks_per_second() as f64
}

/// CPU cores a process used on average between two samples.
pub(crate) fn cores_used(start: &Sample, end: &Sample, wall: Duration) -> f64 {
    let secs = cpu_seconds(start, end);
    if wall.is_zero() {
        0.0
    } else {
        secs / wall.as_secs_f64()
    }
}

/// A sample with the time it was taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timed {
    pub at: Instant,
    pub sample: Sample,
}

impl Timed {
    pub(crate) fn now(pid: Option<u32>) -> Option<Timed> {
        Some(Timed {
            at: Instant::now(),
            sample: sample(pid).ok()?,
        })
    }
}

/// Watches a process's RSS in the background for its peak over the run and
/// in each interval of it (a soak's memory profile: flat, or growing); the
/// kernel's VmHWM covers the whole life of the process, this only the run.
pub(crate) struct PeakWatcher {
    peaks: Arc<Mutex<Peaks>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Peaks {
    overall_kib: u64,
    /// The peak in each interval so far, the last one still open.
    per_interval_kib: Vec<u64>,
}

impl PeakWatcher {
    /// Samples every `every`; a new interval starts each `interval`.
    pub(crate) fn start(pid: Option<u32>, every: Duration, interval: Duration) -> PeakWatcher {
        let peaks = Arc::new(Mutex::new(Peaks::default()));
        let shared = peaks.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Ok(s) = sample(pid) else { return };
                let index = interval_index(started.elapsed(), interval);
                let mut p = shared.lock().expect("peak lock");
                p.overall_kib = p.overall_kib.max(s.rss_kib);
                if p.per_interval_kib.len() <= index {
                    p.per_interval_kib.resize(index + 1, 0);
                }
                p.per_interval_kib[index] = p.per_interval_kib[index].max(s.rss_kib);
            }
        });
        PeakWatcher { peaks, task }
    }

    /// The peak over the run and per interval, in KiB.
    pub(crate) fn stop(self) -> (u64, Vec<u64>) {
        self.task.abort();
        let p = self.peaks.lock().expect("peak lock");
        (p.overall_kib, p.per_interval_kib.clone())
    }
}

/// Which interval `elapsed` falls in (a zero interval means one for all).
fn interval_index(elapsed: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        0
    } else {
        (elapsed.as_secs_f64() / interval.as_secs_f64()) as usize
    }
}

/// What the report says about one process over the measured window.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ProcessReport {
    pub pid: Option<u32>,
    pub cpu_cores: Option<f64>,
    /// CPU time used over the window, user plus system.
    pub cpu_seconds: Option<f64>,
    pub rss_start_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    /// VmHWM at the end: the peak since the process started, setup included.
    pub rss_hwm_mib: Option<f64>,
    /// The peak in each `--rss-interval` from the start of the warm-up, so
    /// a long run shows whether memory stays flat.
    pub rss_peak_per_interval_mib: Vec<f64>,
}

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl ProcessReport {
    pub(crate) fn build(
        pid: Option<u32>,
        window: Option<(Timed, Timed)>,
        (peak_kib, per_interval_kib): (u64, Vec<u64>),
        end: Option<Sample>,
    ) -> ProcessReport {
        let (cpu, cpu_secs, start_rss) = match window {
            Some((a, b)) => (
                Some(cores_used(&a.sample, &b.sample, b.at - a.at)),
                Some(cpu_seconds(&a.sample, &b.sample)),
                Some(mib(a.sample.rss_kib)),
            ),
            None => (None, None, None),
        };
        let peak = peak_kib.max(end.map_or(0, |e| e.rss_kib));
        ProcessReport {
            pid,
            cpu_cores: cpu,
            cpu_seconds: cpu_secs,
            rss_start_mib: start_rss,
            rss_peak_mib: (peak > 0).then(|| mib(peak)),
            rss_end_mib: end.map(|e| mib(e.rss_kib)),
            rss_hwm_mib: end.map(|e| mib(e.hwm_kib)),
            rss_peak_per_interval_mib: per_interval_kib.into_iter().map(mib).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real line from a server process, with a name that has a space and
    // a parenthesis in it to test the field counting.
    const STAT: &str = "12345 (tokio-rt (w) 1) S 1 12345 12345 0 -1 4194560 8520 0 0 0 \
        1500 250 0 0 20 0 9 0 1234567 1073741824 20480 18446744073709551615 1 1 0 0 0 0 0 4096 17638 0 0 0 17 1 0 0 0 0 0";

    const STATUS: &str = "Name:\tcloister\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t 1234567 kB\nVmSize:\t 1048576 kB\nVmHWM:\t   98304 kB\nVmRSS:\t   81920 kB\n\
        RssAnon:\t   70000 kB\nThreads:\t9\n";

    #[test]
    fn stat_gives_user_plus_system_ticks() {
        assert_eq!(parse_stat(STAT), Some(1750));
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_gives_rss_and_high_water_mark() {
        assert_eq!(parse_status(STATUS), Some((81920, 98304)));
        assert_eq!(parse_status("Name:\tx\nVmRSS:\t1 kB\n"), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample(None).expect("/proc/self");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn intervals_are_counted_from_the_start() {
        let minute = Duration::from_secs(60);
        assert_eq!(interval_index(Duration::from_secs(59), minute), 0);
        assert_eq!(interval_index(Duration::from_secs(60), minute), 1);
        assert_eq!(interval_index(Duration::from_secs(1799), minute), 29);
        assert_eq!(interval_index(Duration::from_secs(1799), Duration::ZERO), 0);
    }

    #[test]
    fn cores_from_ticks_and_wall_time() {
        let a = Sample {
            cpu_ticks: 100,
            rss_kib: 0,
            hwm_kib: 0,
        };
        let b = Sample {
            cpu_ticks: 100 + 3 * clock_ticks_per_second(),
            ..a
        };
        let cores = cores_used(&a, &b, Duration::from_secs(2));
        assert!((cores - 1.5).abs() < 1e-9);
        assert!((cpu_seconds(&a, &b) - 3.0).abs() < 1e-9);
        assert_eq!(cores_used(&a, &b, Duration::ZERO), 0.0);
    }
}
