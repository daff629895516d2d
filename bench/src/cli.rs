//! Command-line options.

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// Users in rooms send encrypted messages while they long-poll /sync.
    Load,
    /// Rounds of concurrent registrations and logins, with the server's RSS
    /// after each (needs --server-pid).
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SyncApi {
    /// `GET /_matrix/client/v3/sync` with --sync-filter.
    V3,
    /// Simplified sliding sync (MSC4186): `POST
    /// /_matrix/client/unstable/org.matrix.simplified_msc3575/sync` with
    /// --sliding-request.
    Sliding,
}

impl SyncApi {
    /// The name the report gives it (the value of `--sync`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            SyncApi::V3 => "v3",
            SyncApi::Sliding => "sliding",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Mode {
    /// Every user keeps --in-flight sends outstanding: finds the most the
    /// server accepts.
    Closed,
    /// --rate messages per second offered in total, whatever the server's
    /// answers take: shows latency at a given load.
    Rate,
}

/// Load generator for a Matrix homeserver, over the plain Client-Server
/// API. Sends Megolm-shaped `m.room.encrypted` events and measures how
/// fast they are accepted and how soon every room member's /sync sees them.
#[derive(Debug, Clone, Parser)]
#[command(name = "cloister-bench", version)]
pub(crate) struct Args {
    /// The homeserver's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    pub url: String,

    #[arg(long, value_enum, default_value_t = Scenario::Load)]
    pub scenario: Scenario,

    /// Simulated users (each one device).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub users: u32,

    /// Rooms; users are spread evenly over them (user i in room i mod M).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub rooms: u32,

    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,

    /// Closed mode: sends each user keeps in flight.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub in_flight: u32,

    /// Rate mode: messages per second offered, over all users.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,

    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 5.0)]
    pub warmup: f64,

    /// Seconds to wait after the last send for every delivery to arrive.
    #[arg(long, default_value_t = 15.0)]
    pub drain: f64,

    /// The sync API every syncing user long-polls.
    #[arg(long = "sync", value_enum, default_value_t = SyncApi::V3)]
    pub sync: SyncApi,

    /// Users that long-poll /sync (the first K, which covers the rooms
    /// evenly); default all.
    #[arg(long)]
    pub syncers: Option<u32>,

    /// Long-poll timeout of each /sync, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(0..=120_000))]
    pub sync_timeout_ms: u64,

    /// The `/sync` filter (inline JSON). The default asks for what Element
    /// does: a long timeline, lazy-loaded members, no presence.
    #[arg(long, default_value = crate::sync::DEFAULT_FILTER)]
    pub sync_filter: String,

    /// `--sync sliding`: the request body (JSON), sent with every request;
    /// the default asks for the user's first 20 rooms with their last 10
    /// events, and the to-device and E2EE extensions, as a mobile client
    /// does.
    #[arg(long, default_value = crate::sync::DEFAULT_SLIDING_REQUEST)]
    pub sliding_request: String,

    /// Events asked for in each `/messages` page that fills a `limited`
    /// timeline's gap. Element and Element X page by 20 to 50; the
    /// default asks for the most a server must give, the heaviest fill.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub backfill_limit: u32,

    /// The server's process id: CPU and RSS are read from /proc/PID.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Create the users (the default), or log them in if they exist.
    #[arg(long, conflicts_with = "login")]
    pub register: bool,

    /// Log in existing users instead of registering them.
    #[arg(long)]
    pub login: bool,

    /// For servers whose registration needs a token.
    #[arg(long)]
    pub registration_token: Option<String>,

    /// User i is PREFIX + i.
    #[arg(long, default_value = "bench")]
    pub user_prefix: String,

    /// User i's password is PREFIX + i.
    #[arg(long, default_value = "bench-password-")]
    pub password_prefix: String,

    /// Registrations, logins and joins at once during setup.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub setup_concurrency: u32,

    /// Memory scenario: rounds.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub memory_rounds: u32,

    /// Memory scenario: registrations (then logins) at once in each round.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub memory_burst: u32,

    /// A name for this run in the report (the comparison table's column).
    #[arg(long)]
    pub label: Option<String>,

    /// Report the peak RSS, and the latencies of the messages sent, in each
    /// interval of this many seconds from the start of the warm-up (for a
    /// soak: is memory flat, and when was it slow?).
    #[arg(long, default_value_t = 60.0)]
    pub rss_interval: f64,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// Print a side-by-side table of earlier --json reports and exit
    /// (repeat: --compare Cloister=a.json --compare Synapse=b.json).
    #[arg(long, value_name = "LABEL=FILE")]
    pub compare: Vec<String>,
}

/// The longest a run may be told to last, so a typo cannot start a load
/// that runs for days.
const MAX_SECONDS: f64 = 3600.0;

impl Args {
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        for (name, value) in [
            ("--duration", self.duration),
            ("--warmup", self.warmup),
            ("--drain", self.drain),
            ("--rss-interval", self.rss_interval),
        ] {
            anyhow::ensure!(
                value.is_finite() && (0.0..=MAX_SECONDS).contains(&value),
                "{name} must be between 0 and {MAX_SECONDS} seconds"
            );
        }
        anyhow::ensure!(self.duration > 0.0, "--duration must be positive");
        anyhow::ensure!(self.rooms <= self.users, "--rooms must not exceed --users");
        if self.mode == Mode::Rate {
            let rate = self
                .rate
                .ok_or_else(|| anyhow::anyhow!("--mode rate needs --rate"))?;
            anyhow::ensure!(
                rate.is_finite() && rate > 0.0 && rate <= 100_000.0,
                "--rate must be between 0 and 100000 messages per second"
            );
        }
        if let Some(k) = self.syncers {
            anyhow::ensure!(k <= self.users, "--syncers must not exceed --users");
        }
        for (name, text) in [
            ("--sync-filter", &self.sync_filter),
            ("--sliding-request", &self.sliding_request),
        ] {
            anyhow::ensure!(
                serde_json::from_str::<serde_json::Value>(text).is_ok_and(|f| f.is_object()),
                "{name} must be a JSON object"
            );
        }
        anyhow::ensure!(
            self.url.starts_with("http://") || self.url.starts_with("https://"),
            "--url must be an http:// or https:// URL"
        );
        Ok(())
    }

    pub(crate) fn syncer_count(&self) -> u32 {
        self.syncers.unwrap_or(self.users)
    }

    pub(crate) fn localpart(&self, user: u32) -> String {
        format!("{}{user}", self.user_prefix)
    }

    pub(crate) fn password(&self, user: u32) -> String {
        format!("{}{user}", self.password_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        let args =
            Args::try_parse_from(std::iter::once("cloister-bench").chain(args.iter().copied()))?;
        args.check()?;
        Ok(args)
    }

    #[test]
    fn defaults_are_the_issue_scenario() {
        let a = parse(&[]).unwrap();
        assert_eq!((a.users, a.rooms, a.in_flight), (100, 10, 2));
        assert_eq!(a.mode, Mode::Closed);
        assert_eq!(a.sync, SyncApi::V3);
        assert_eq!(
            parse(&["--sync", "sliding"]).unwrap().sync,
            SyncApi::Sliding
        );
        assert_eq!(a.syncer_count(), 100);
        assert_eq!(a.localpart(7), "bench7");
    }

    #[test]
    fn nonsense_is_refused() {
        assert!(parse(&["--mode", "rate"]).is_err());
        assert!(parse(&["--mode", "rate", "--rate", "-1"]).is_err());
        assert!(parse(&["--duration", "1e9"]).is_err());
        assert!(parse(&["--users", "5", "--rooms", "6"]).is_err());
        assert!(parse(&["--users", "0"]).is_err());
        assert!(parse(&["--register", "--login"]).is_err());
        assert!(parse(&["--url", "127.0.0.1:8008"]).is_err());
        assert!(parse(&["--sync-filter", "not json"]).is_err());
        assert!(parse(&["--sliding-request", "[]"]).is_err());
        assert!(parse(&["--sync", "v2"]).is_err());
        assert!(parse(&["--mode", "rate", "--rate", "100"]).is_ok());
    }
}
