//! The real `cloister` binary as a child process, for what an in-process
//! server cannot show: a node killed with SIGKILL, its sessions ended by
//! the operating system and not by any code of ours.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::sync::OnceCell;

use crate::TestServer;

/// How long a starting server may take to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Set by cargo for a test binary, not for a cargo run from a shell.
const TEST_ONLY_CARGO_VARS: &[&str] = &[
    "CARGO_MANIFEST_",
    "CARGO_PKG_",
    "CARGO_CRATE_",
    "CARGO_BIN_",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
];

/// Runs `cloister <args>` (an operator's command, not `serve`) against
/// `server`'s data directory and database, with `env` on top.
pub async fn run_command(
    server: &TestServer,
    args: &[&str],
    env: Vec<(String, String)>,
) -> std::process::Output {
    Command::new(cloister_binary().await)
        .args(args)
        .env("CLOISTER_SERVER_NAME", server.server_name())
        .env("CLOISTER_DATA_DIR", server.data_dir())
        .env("CLOISTER_DATABASE_URL", server.database_url())
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("run cloister {args:?}: {e}"))
}

/// `cloister serve` running as a child process; killed when dropped.
pub struct ServerProcess {
    child: Child,
    url: String,
    log: PathBuf,
    _log_dir: TempDir,
}

/// The `cloister` binary: `CLOISTER_BIN` if set, else built now with
/// `cargo build -p cloister-server --bin cloister` (quick when up to date;
/// `cargo test -p cloister-tests` alone does not build it).
pub async fn cloister_binary() -> &'static Path {
    static BINARY: OnceCell<PathBuf> = OnceCell::const_new();
    BINARY.get_or_init(build_binary).await
}

async fn build_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CLOISTER_BIN") {
        return PathBuf::from(bin);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    // What cargo set for this test binary: some build scripts (ring's)
    // watch these variables, and seeing them would rebuild half the tree
    // here and again in the next plain `cargo build`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if TEST_ONLY_CARGO_VARS.iter().any(|v| name.starts_with(v)) {
            build.env_remove(&*name);
        }
    }
    let output = build
        .current_dir(workspace)
        .args(["build", "-p", "cloister-server", "--bin", "cloister"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run cargo build");
    assert!(
        output.status.success(),
        "building the cloister binary failed"
    );
    // Cargo names the file it built, wherever the target directory is.
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|message| message["executable"].as_str().map(PathBuf::from))
        .find(|path| path.file_stem().is_some_and(|stem| stem == "cloister"))
        .expect("cargo build reported the cloister executable")
}

impl ServerProcess {
    /// Starts `cloister serve` as another node of `server`: the same
    /// database, data directory and server name, open registration and no
    /// rate limits, on a free port of 127.0.0.1. Returns once it answers.
    pub async fn start_peer(server: &TestServer) -> ServerProcess {
        Self::start_peer_with_env(server, Vec::new()).await
    }

    /// Like [`ServerProcess::start_peer`], with more `CLOISTER_*` settings.
    pub async fn start_peer_with_env(
        server: &TestServer,
        env: Vec<(String, String)>,
    ) -> ServerProcess {
        let binary = cloister_binary().await;
        let log_dir = tempfile::Builder::new()
            .prefix("cloister-node-log-")
            .tempdir()
            .expect("create a log directory");
        let log = log_dir.path().join("server.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let log_file = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new(binary)
            .arg("serve")
            .env("CLOISTER_SERVER_NAME", server.server_name())
            .env("CLOISTER_LISTEN", format!("127.0.0.1:{port}"))
            .env("CLOISTER_DATA_DIR", server.data_dir())
            .env("CLOISTER_DATABASE_URL", server.database_url())
            .env("CLOISTER_REGISTRATION", "open")
            .env("CLOISTER_RATE_LIMIT__ENABLED", "false")
            .env("RUST_LOG", "info,sqlx=warn")
            .env("NO_COLOR", "1")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("share the log file"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut process = ServerProcess {
            child,
            url,
            log,
            _log_dir: log_dir,
        };
        process.wait_until_healthy().await;
        process
    }

    async fn wait_until_healthy(&mut self) {
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let health = http.get(format!("{}/health", self.url)).send().await;
            if health.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the cloister node exited ({status}):\n{}", self.log());
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "the cloister node did not answer within {START_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// What the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no graceful shutdown, no flushing; the operating system
    /// closes its sockets. Returns once the process is gone.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill the cloister node");
    }
}
