//! The `cloister` binary as an operator runs it: user administration,
//! registration tokens, serving with JSON logs that carry no secrets, and a
//! graceful stop on SIGTERM while a long-poll is waiting.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_cloister");

fn cloister(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CLOISTER_DATA_DIR", data)
        .envs(env.iter().copied())
        .output()
        .expect("run cloister")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

struct Serving {
    child: Child,
    base: String,
    /// The log lines read while waiting for the listening address.
    early: Vec<String>,
    /// The rest of the log, read by the same reader: its buffer may
    /// already hold lines after the listening one.
    stderr: BufReader<ChildStderr>,
}

/// A failed assertion must not leave the server running: it would outlive
/// the test and hold the test runner's output open.
impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves on port 0 and learns the port from the "listening" log line: a
/// port chosen in advance can be taken by another test's outgoing
/// connection before the server binds it.
fn serve(data: &Path, registration: &str) -> Serving {
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("CLOISTER_DATA_DIR", data)
        .env("CLOISTER_LISTEN", "127.0.0.1:0")
        .env("CLOISTER_REGISTRATION", registration)
        .env("CLOISTER_LOG_FORMAT", "json")
        .env("CLOISTER_RATE_LIMIT__ENABLED", "false")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cloister serve");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut early = Vec::new();
    let address = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!("cloister serve stopped before listening: {early:?}");
        }
        let line = line.trim_end().to_owned();
        let address = serde_json::from_str::<Value>(&line)
            .ok()
            .filter(|log| log["fields"]["message"] == "cloister is listening")
            .and_then(|log| log["fields"]["address"].as_str().map(str::to_owned));
        early.push(line);
        if let Some(address) = address {
            break address;
        }
    };
    Serving {
        child,
        base: format!("http://{address}"),
        early,
        stderr,
    }
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cloister serve did not become healthy");
}

async fn post(
    http: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn login(http: &reqwest::Client, base: &str, user: &str, password: &str) -> (u16, Value) {
    let body = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": user }, "password": password });
    post(http, format!("{base}/_matrix/client/v3/login"), None, body).await
}

async fn whoami(http: &reqwest::Client, base: &str, token: &str) -> u16 {
    let url = format!("{base}/_matrix/client/v3/account/whoami");
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    response.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    let created = cloister(
        data,
        &[
            "user",
            "create",
            "alice",
            "--password",
            "first-secret",
            "--admin",
        ],
        &[],
    );
    assert!(created.status.success(), "{created:?}");
    assert_eq!(stdout(&created), "created @alice:localhost (admin)");
    let again = cloister(data, &["user", "create", "alice", "--password", "x"], &[]);
    assert!(!again.status.success(), "a duplicate user is refused");
    let bad = cloister(
        data,
        &["user", "create", "Not Valid", "--password", "x"],
        &[],
    );
    assert!(!bad.status.success());
    let bad_config = cloister(
        data,
        &["migrate"],
        &[("CLOISTER_REGISTRATION", "sometimes")],
    );
    assert_eq!(
        bad_config.status.code(),
        Some(2),
        "invalid configuration exits with 2"
    );
    let token = cloister(data, &["registration-token", "create", "--uses", "1"], &[]);
    assert!(token.status.success(), "{token:?}");
    let token = stdout(&token);
    assert_eq!(token.len(), 32);

    let mut server = serve(data, "token");
    let http = reqwest::Client::new();
    wait_healthy(&http, &server.base).await;
    let base = server.base.clone();

    // The CLI-created admin logs in.
    let (status, session) = login(&http, &base, "alice", "first-secret").await;
    assert_eq!(status, 200, "{session}");
    let alice_token = session["access_token"].as_str().unwrap().to_owned();

    // Registration with the one-use token works once.
    let register = |name: &str| json!({ "username": name, "password": "bob-secret" });
    let (status, challenge) = post(
        &http,
        format!("{base}/_matrix/client/v3/register"),
        None,
        register("bob"),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge["flows"][0]["stages"][0],
        "m.login.registration_token"
    );
    let mut with_token = register("bob");
    with_token["auth"] = json!({ "type": "m.login.registration_token", "token": token, "session": challenge["session"] });
    let (status, bob) = post(
        &http,
        format!("{base}/_matrix/client/v3/register"),
        None,
        with_token,
    )
    .await;
    assert_eq!(status, 200, "{bob}");
    let (_, challenge) = post(
        &http,
        format!("{base}/_matrix/client/v3/register"),
        None,
        register("carol"),
    )
    .await;
    let mut reused = register("carol");
    reused["auth"] = json!({ "type": "m.login.registration_token", "token": token, "session": challenge["session"] });
    let (status, _) = post(
        &http,
        format!("{base}/_matrix/client/v3/register"),
        None,
        reused,
    )
    .await;
    assert_eq!(status, 401, "a used-up token is refused");

    // A room id that must not appear in the logs.
    let (_, room) = post(
        &http,
        format!("{base}/_matrix/client/v3/createRoom"),
        Some(&alice_token),
        json!({ "name": "secret plans" }),
    )
    .await;
    let room_id = room["room_id"].as_str().unwrap().to_owned();

    // The node keeps copies of access tokens' rows
    // (`limits.access_token_cache_ms`, on by default); the commands below
    // end sessions from another process, and the node must drop them at
    // once. Two requests each, so that the second is answered from a copy.
    let bob_token = bob["access_token"].as_str().unwrap().to_owned();
    for token in [&alice_token, &alice_token, &bob_token, &bob_token] {
        assert_eq!(whoami(&http, &base, token).await, 200);
    }

    // Resetting the password from the CLI logs out every session.
    let reset = cloister(
        data,
        &[
            "user",
            "reset-password",
            "alice",
            "--password",
            "second-secret",
        ],
        &[],
    );
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(whoami(&http, &base, &alice_token).await, 401);
    assert_eq!(login(&http, &base, "alice", "first-secret").await.0, 403);
    let (status, session) = login(&http, &base, "alice", "second-secret").await;
    assert_eq!(status, 200);
    let alice_token = session["access_token"].as_str().unwrap().to_owned();

    // Deactivation from the CLI locks Bob out.
    let gone = cloister(data, &["user", "deactivate", "bob"], &[]);
    assert!(gone.status.success(), "{gone:?}");
    assert_eq!(login(&http, &base, "bob", "bob-secret").await.0, 403);
    assert_eq!(whoami(&http, &base, &bob_token).await, 401);

    // SIGTERM while a long-poll waits: the poll is answered and the process exits 0.
    let (_, first) = {
        let r = http
            .get(format!("{base}/_matrix/client/v3/sync"))
            .bearer_auth(&alice_token)
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let poll = {
        let http = http.clone();
        let url = format!("{base}/_matrix/client/v3/sync?timeout=30000&since={since}");
        let token = alice_token.clone();
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit: {status:?}");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        stopped_at.elapsed()
    );
    assert_eq!(
        poll.await.unwrap().expect("the pending sync was answered"),
        200
    );

    // Logs: JSON lines, and never a secret, a token or an identifier from a path.
    let mut lines = std::mem::take(&mut server.early);
    lines.extend((&mut server.stderr).lines().map_while(Result::ok));
    assert!(lines.len() > 5, "{lines:?}");
    for line in &lines {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        for secret in [
            alice_token.as_str(),
            "first-secret",
            "second-secret",
            "bob-secret",
            token.as_str(),
            room_id.as_str(),
            "secret plans",
        ] {
            assert!(!line.contains(secret), "log line leaks {secret:?}: {line}");
        }
    }
    assert!(lines
        .iter()
        .any(|l| l.contains("/_matrix/client/v3/rooms/{room_id}")
            || l.contains("/_matrix/client/v3/createRoom")));

    // Compliance commands: a room policy, a hold placed and released, a purge.
    let run = |args: &[&str]| {
        let out = cloister(data, args, &[]);
        assert!(out.status.success(), "{args:?}: {out:?}");
        stdout(&out)
    };
    let set = run(&[
        "admin",
        "retention",
        "set",
        &room_id,
        "--max-lifetime",
        "2h",
    ]);
    assert!(set.contains("expire after 2h"), "{set}");
    let shown: Value =
        serde_json::from_str(&run(&["admin", "retention", "show", &room_id])).unwrap();
    assert_eq!(shown["max_lifetime"], 7_200_000, "{shown}");
    let bad = cloister(
        data,
        &[
            "admin",
            "retention",
            "set",
            &room_id,
            "--max-lifetime",
            "soon",
        ],
        &[],
    );
    assert!(!bad.status.success(), "an unparsable duration is refused");
    let hold_id = run(&[
        "admin", "hold", "set", "--room", &room_id, "--case", "C-1", "--reason", "claim",
    ]);
    assert!(hold_id.starts_with("hold_"), "{hold_id}");
    let listed: Value = serde_json::from_str(&run(&["admin", "hold", "list"])).unwrap();
    assert_eq!(listed["holds"][0]["case_id"], "C-1", "{listed}");
    assert_eq!(listed["holds"][0]["set_by"], "operator");
    run(&["admin", "hold", "release", &hold_id]);
    let again = cloister(data, &["admin", "hold", "release", &hold_id], &[]);
    assert!(
        !again.status.success(),
        "a released hold cannot be released again"
    );
    let summary: Value = serde_json::from_str(&run(&["admin", "purge"])).unwrap();
    assert_eq!(summary["errors"], json!([]), "{summary}");
    run(&["admin", "retention", "clear", &room_id]);

    // The audit log recorded all of it, pseudonymously, and verifies offline.
    let key = cloister(data, &["audit", "key"], &[]);
    assert!(key.status.success(), "{key:?}");
    let key = stdout(&key);
    assert!(key.starts_with("localhost/audit+"), "{key}");
    let export_path = data.join("audit-export.json");
    let exported = cloister(
        data,
        &["audit", "export", "--out", export_path.to_str().unwrap()],
        &[],
    );
    assert!(exported.status.success(), "{exported:?}");
    let text = std::fs::read_to_string(&export_path).unwrap();
    let export: Value = serde_json::from_str(&text).unwrap();
    let actions: Vec<&str> = export["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "account_created",
        "login",
        "login_failed",
        "device_added",
        "password_changed",
        "account_deactivated",
        "admin_call",
        "export",
        "policy_changed",
        "hold_set",
        "hold_released",
        "purge_run",
    ] {
        assert!(
            actions.contains(&expected),
            "no {expected} entry in {actions:?}"
        );
    }
    for personal in [
        "@alice",
        "@bob",
        "alice:localhost",
        "first-secret",
        room_id.as_str(),
    ] {
        assert!(!text.contains(personal), "the audit log names {personal:?}");
    }
    let verify = |path: &Path, key: &str| {
        Command::new(BIN)
            .args(["audit", "verify", path.to_str().unwrap(), "--key", key])
            .output()
            .unwrap()
    };
    let ok = verify(&export_path, &key);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(stdout(&ok).contains("OK:"), "{}", stdout(&ok));

    // A changed entry, or the right log under another key, fails verification.
    let tampered_path = data.join("tampered.json");
    assert!(text.contains("\"login_failed\""));
    std::fs::write(
        &tampered_path,
        text.replacen("\"login_failed\"", "\"login\"", 1),
    )
    .unwrap();
    let bad = verify(&tampered_path, &key);
    assert_eq!(bad.status.code(), Some(1), "{}", stdout(&bad));
    assert!(stdout(&bad).contains("FAILED"), "{}", stdout(&bad));
    let other = cloister_audit::CheckpointSigner::generate("localhost/audit")
        .unwrap()
        .verifier()
        .to_string();
    let wrong_key = verify(&export_path, &other);
    assert_eq!(wrong_key.status.code(), Some(1), "{}", stdout(&wrong_key));
}

/// A mistyped setting in the environment: a nested one stops the start
/// with the setting it probably meant; a plain one near a setting is run
/// with a warning naming it, not its value.
#[test]
fn mistyped_environment_variables_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let nested = cloister(
        dir.path(),
        &["migrate"],
        &[("CLOISTER_LIMITS__MAX_UPLOD_SIZE", "5")],
    );
    assert_eq!(nested.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&nested.stderr);
    assert!(
        stderr.contains("CLOISTER_LIMITS__MAX_UPLOD_SIZE is not a setting")
            && stderr.contains("did you mean CLOISTER_LIMITS__MAX_UPLOAD_SIZE?"),
        "{stderr}"
    );

    let plain = cloister(
        dir.path(),
        &["migrate"],
        &[("CLOISTER_REGISTRATON", "open-secret")],
    );
    assert!(plain.status.success(), "{plain:?}");
    let stderr = String::from_utf8_lossy(&plain.stderr);
    assert!(
        stderr.contains("CLOISTER_REGISTRATON is not a setting and is ignored; did you mean CLOISTER_REGISTRATION?"),
        "{stderr}"
    );
    assert!(!stderr.contains("open-secret"), "{stderr}");
}
