//! End to end: the generator against a real Cloister for a couple of
//! seconds, then the memory scenario. The server is the `cloister` binary
//! of this workspace, started as an operator would (the generator must not
//! depend on the server crate), on a free loopback port with a throwaway
//! SQLite directory. Only correctness is asserted (every accepted message
//! reaches every member once, no errors); never a performance figure.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills the child on drop, so a failing assertion leaves no server behind.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server binary: $CLOISTER_BIN, or target/debug/cloister, built here
/// if it is not there yet. An existing binary is used as it is: building
/// it with `-p cloister-server` would resolve features differently from
/// `cargo test --workspace` and rebuild much of the tree each time.
fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("CLOISTER_BIN") {
        return PathBuf::from(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("debug").join("cloister");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "cloister-server", "--bin", "cloister"])
            .current_dir(root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the cloister binary failed");
    }
    bin
}

/// The port from the server's "listening" log line, once it is written.
fn listening_port(log: &Path) -> Option<u16> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["message"] == "cloister is listening")
        .and_then(|line| {
            line["fields"]["address"]
                .as_str()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

/// Serves on port 0 and learns the port from the log: a port chosen in
/// advance can be taken by another test's outgoing connection first.
fn start_server(data: &Path) -> (Guard, u16) {
    let log_path = data.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let child = Command::new(server_binary())
        .arg("serve")
        .env("CLOISTER_LISTEN", "127.0.0.1:0")
        .env("CLOISTER_LOG_FORMAT", "json")
        .env("CLOISTER_DATA_DIR", data.join("data"))
        .env("CLOISTER_REGISTRATION", "open")
        .env("CLOISTER_RATE_LIMIT__ENABLED", "false")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start cloister");
    let mut guard = Guard(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut port = None;
    while !port.is_some_and(healthy) {
        port = port.or_else(|| listening_port(&log_path));
        if let Some(status) = guard.0.try_wait().unwrap() {
            panic!(
                "cloister exited ({status}) before answering /health:\n{}",
                std::fs::read_to_string(data.join("server.log")).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "cloister not healthy after 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    (guard, port.unwrap())
}

/// Runs the generator with `args` and returns its JSON report; at most
/// two minutes.
fn bench(args: &[String]) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloister-bench"))
        .args(args)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cloister-bench");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("cloister-bench ran for over two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "cloister-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

fn n(report: &Value, pointer: &str) -> f64 {
    report
        .pointer(pointer)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{pointer} missing in {report:#}"))
}

/// Something was sent, and every accepted message reached every syncing
/// member of its room once, without a failed request.
fn assert_complete(report: &Value) {
    assert!(n(report, "/throughput/accepted") > 0.0, "{report:#}");
    assert_eq!(n(report, "/completeness/missing"), 0.0, "{report:#}");
    assert_eq!(n(report, "/completeness/duplicates"), 0.0, "{report:#}");
    assert_eq!(n(report, "/errors/send_failed"), 0.0, "{report:#}");
    assert_eq!(n(report, "/errors/sync_failed"), 0.0, "{report:#}");
}

#[test]
fn generator_against_a_real_cloister() {
    let dir = tempfile::tempdir().unwrap();
    let (server, port) = start_server(dir.path());
    let url = format!("http://127.0.0.1:{port}");
    let pid = server.0.id().to_string();
    let common = |extra: &[&str]| -> Vec<String> {
        ["--url", &url, "--server-pid", &pid]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };

    let short_closed = [
        "--users",
        "6",
        "--rooms",
        "2",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--drain",
        "20",
    ];
    let closed = bench(&common(&short_closed));
    assert_complete(&closed);
    // Every member of a room sees each message: 3 members per room.
    assert_eq!(
        n(&closed, "/completeness/expected_deliveries") % 3.0,
        0.0,
        "{closed:#}"
    );
    assert!(n(&closed, "/seen_latency/count") >= n(&closed, "/throughput/accepted"));
    assert!(n(&closed, "/server/rss_end_mib") > 0.0);
    assert!(n(&closed, "/server/cpu_cores") >= 0.0);
    assert!(n(&closed, "/generator/cpu_cores") >= 0.0);
    assert_eq!(closed["sync"], "v3");
    assert!(n(&closed, "/throughput/sync_responses_in_window") > 0.0);
    assert!(n(&closed, "/server_cpu_ms_per_sync_response") >= 0.0);

    // A rerun with the same names logs the users in; only half of them sync.
    let rate = bench(&common(&[
        "--users",
        "6",
        "--rooms",
        "2",
        "--mode",
        "rate",
        "--rate",
        "20",
        "--syncers",
        "3",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--drain",
        "20",
    ]));
    assert!(n(&rate, "/throughput/accepted") > 0.0, "{rate:#}");
    assert_eq!(n(&rate, "/completeness/missing"), 0.0, "{rate:#}");
    assert_eq!(n(&rate, "/syncers"), 3.0);

    // The same with every long-poll on sliding sync (MSC4186).
    let sliding = bench(&common(
        &[&["--sync", "sliding"], &short_closed[..]].concat(),
    ));
    assert_eq!(sliding["sync"], "sliding");
    assert_complete(&sliding);
    assert!(n(&sliding, "/throughput/sync_responses_in_window") > 0.0);

    let memory = bench(&common(&[
        "--scenario",
        "memory",
        "--memory-rounds",
        "2",
        "--memory-burst",
        "3",
    ]));
    let rounds = memory["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        assert_eq!(round["registered"], 3, "{memory:#}");
        assert_eq!(round["logged_in"], 3, "{memory:#}");
        assert!(round["rss_mib"].as_f64().unwrap() > 0.0);
    }
    drop(server);
}
