//! What the harnesses of outside programs share (the OpenID provider of
//! `oidc.rs`, the SAML IdP of `saml.rs`): installing their packages one
//! process at a time, starting them until they announce where they listen,
//! and their JSON `/control/*` API.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{oneshot, OnceCell};

/// Runs `install` once per test process, on a blocking thread, holding the
/// file lock `lock_name` in the temporary directory: outside the
/// repository, so test processes (and checkouts) take turns.
pub(crate) async fn install_once(
    done: &'static OnceCell<()>,
    lock_name: &'static str,
    install: fn(),
) {
    done.get_or_init(|| async move {
        tokio::task::spawn_blocking(move || under_file_lock(lock_name, install))
            .await
            .unwrap_or_else(|e| panic!("installing under {lock_name} failed: {e}"))
    })
    .await;
}

fn under_file_lock(name: &str, install: fn()) {
    let path = std::env::temp_dir().join(name);
    let lock =
        std::fs::File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("lock {}: {e}", path.display()));
    install();
}

/// A program a harness started, killed when dropped.
pub(crate) struct Program {
    child: Child,
    // The program exits when this closes, so even a test process killed
    // with SIGKILL leaves nothing behind.
    _stdin: ChildStdin,
    /// Where it listens, as it announced it.
    pub(crate) url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Program {
    /// Spawns `command` with its stderr in `log` and waits up to `timeout`
    /// for the stdout line `<prefix> <url>`; panics with the log if the
    /// program exits. One that stays silent is killed and started again,
    /// twice at most: about one start in a hundred of oidc-provider under a
    /// loaded test run never announced itself, and a test should not fail
    /// for the harness's program.
    pub(crate) async fn start(
        mut command: Command,
        log: &Path,
        prefix: &'static str,
        what: &str,
        timeout: Duration,
    ) -> Program {
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("open the program's log");
            let mut child = command
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log_file)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("start {what}: {e}"));
            let stdin = child.stdin.take().expect("the program's stdin");
            let url = announced(&mut child, prefix);
            let mut program = Program {
                child,
                _stdin: stdin,
                url: String::new(),
                log: log.to_owned(),
                http: reqwest::Client::new(),
            };
            match tokio::time::timeout(timeout, url).await {
                Ok(Ok(url)) => {
                    program.url = url;
                    return program;
                }
                Ok(Err(_)) => {
                    let status = program.child.wait().await.expect("wait for the program");
                    panic!("{what} exited ({status}):\n{}", program.log())
                }
                Err(_) if attempt < ATTEMPTS => {
                    eprintln!("{what} did not listen within {timeout:?}; starting it again");
                    let _ = program.child.kill().await;
                }
                Err(_) => panic!(
                    "{what} did not listen within {timeout:?}, {ATTEMPTS} times:\n{}",
                    program.log()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// What the program logged so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `POST <url>/control/<action>` with `body`; its JSON answer.
    pub(crate) async fn control(&self, action: &str, body: Value) -> Value {
        let url = format!("{}/control/{action}", self.url);
        self.answer(self.http.post(url).json(&body), action).await
    }

    /// `GET <url>/control/<action>?<query>`; its JSON answer.
    pub(crate) async fn query(&self, action: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("{}/control/{action}", self.url);
        self.answer(self.http.get(url).query(query), action).await
    }

    async fn answer(&self, request: reqwest::RequestBuilder, action: &str) -> Value {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("/control/{action}: {e}\n{}", self.log()));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "/control/{action}: {status} {body}\n{}",
            self.log()
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/control/{action}: {e}: {body}"))
    }
}

/// The rest of the first stdout line starting with `prefix` and a space;
/// stdout is read to its end so the program never blocks on a full pipe.
/// Fails if stdout closes first.
fn announced(child: &mut Child, prefix: &'static str) -> oneshot::Receiver<String> {
    let stdout = child.stdout.take().expect("the program's stdout");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let rest = line.strip_prefix(prefix).and_then(|r| r.strip_prefix(' '));
            if let (Some(rest), Some(tx)) = (rest, tx.take()) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    rx
}
