//! Audit log witnesses end to end, on both backends: the real `cloister audit
//! witness` process follows a server's log and cosigns each checkpoint that
//! extends what it saw; `cloister audit verify --witness` accepts the
//! export. Then someone with the database and the server's key rewrites the
//! log into another history of the same size and signs it: on its own the
//! export verifies, but the witness refuses to cosign the fork, and
//! verification that asks for the witness fails.

use std::process::Stdio;
use std::time::Duration;

use cloister_audit::{Action, Actor, NewEntry};
use cloister_server::config::AuditWitness;
use cloister_server::service::audit;
use cloister_tests::process::{cloister_binary, run_command};
use cloister_tests::{both_backends, Backend, Client, TestServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A running witness; killed on drop.
struct Witness {
    _child: Child,
    url: String,
    key: String,
    dir: tempfile::TempDir,
}

async fn start_witness(log_key: &str) -> Witness {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(cloister_binary().await)
        .args([
            "audit",
            "witness",
            "--name",
            "dpo.example/witness",
            "--log",
            log_key,
        ])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start cloister audit witness");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut key = None;
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(k) = line.strip_prefix("witness key: ") {
                key = Some(k.trim().to_owned());
            }
            if line.starts_with("listening:") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the witness starts");
    // Keep reading its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Witness {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
        key: key.expect("the witness printed its key"),
        dir,
    }
}

async fn verify(server: &TestServer, file: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let key = server.state().audit.verifier_key();
    let mut args = vec!["audit", "verify", file.to_str().unwrap(), "--key", &key];
    args.extend(extra);
    let out = run_command(server, &args, Vec::new()).await;
    assert!(out.status.code().is_some_and(|c| c <= 1), "{out:?}");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn metric(server: &TestServer, name: &str) -> u64 {
    let text = server.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

async fn export_to(server: &TestServer, path: &std::path::Path) {
    let export = audit::export(server.state()).await.unwrap();
    std::fs::write(path, export.to_json()).unwrap();
}

async fn a_witness_cosigns_one_history(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let witness = start_witness(&server.state().audit.verifier_key()).await;
    let configured = AuditWitness {
        url: witness.url.clone(),
        key: witness.key.clone(),
    };
    server
        .restart_with(|c| c.audit.witnesses = vec![configured])
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");

    Client::register(&server.url(), "alice", "pw").await;
    audit::checkpoint(server.state()).await.unwrap();
    Client::register(&server.url(), "bob", "pw").await;
    // The second checkpoint reaches the witness with a proof from the first.
    let note = audit::checkpoint(server.state()).await.unwrap();
    assert!(note.contains("\u{2014} dpo.example/witness "), "{note}");
    // The server may have signed one more on its own at start.
    assert!(metric(&server, "cloister_audit_witness_cosignatures_total").await >= 2);
    export_to(&server, &file).await;
    let (ok, out) = verify(&server, &file, &["--witness", &witness.key]).await;
    assert!(ok, "{out}");
    assert!(out.contains("cosigned by dpo.example/witness"), "{out}");
    let saved = std::fs::read_to_string(witness.dir.path().join("witness-state.json")).unwrap();
    let witnessed_size = server.audit_count("%").await;
    assert!(
        saved.contains(&format!("\"size\": {witnessed_size}")),
        "{saved}"
    );

    // Another history of the same size, signed with the server's own key,
    // after the checkpoints that recorded the witness's view were deleted.
    let pool = server.state().store.pool();
    for sql in [
        "DELETE FROM audit_entries WHERE seq >= 2",
        "DELETE FROM audit_checkpoints",
    ] {
        sqlx::query(sql).execute(pool).await.unwrap();
    }
    while server.audit_count("%").await < witnessed_size {
        let entry = NewEntry::new(1, Actor::system(), Action::PurgeRun);
        audit::record_alone(server.state(), entry).await.unwrap();
    }
    let forged = audit::checkpoint(server.state()).await.unwrap();
    assert!(!forged.contains("dpo.example/witness"), "{forged}");
    assert!(metric(&server, "cloister_audit_witness_failures_total").await >= 1);
    export_to(&server, &file).await;
    let (ok, out) = verify(&server, &file, &[]).await;
    assert!(ok, "without a witness the forged log verifies: {out}");
    let (ok, out) = verify(&server, &file, &["--witness", &witness.key]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("FAILED: the latest checkpoint carries 0 of the 1 witness cosignatures"),
        "{out}"
    );
    server.stop().await;
}

both_backends!(
    witnessed, a_witness_cosigns_one_history;
);
