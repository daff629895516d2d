//! The data-subject commands of the `cloister` binary, run as real
//! processes against a test server's database on both backends:
//! `keygen` → `export --recipient` → `open-export` (which needs no
//! database), `report processing`, `erase`, and `user create` refusing an
//! erased id.

use std::process::{Command, Output};

use cloister_tests::process::{cloister_binary, run_command};

use cloister_tests::personal::scan;
use cloister_tests::{both_backends, Backend, Client, TestServer};
use serde_json::Value;

/// `cloister <args>` against `server`'s data, as the operator would run it.
async fn run(server: &TestServer, args: &[&str]) -> Output {
    let env = vec![(
        "CLOISTER_PROCESSING__CONTROLLER".to_owned(),
        "Praxis Muster".to_owned(),
    )];
    run_command(server, args, env).await
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cloister failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

async fn cli_round_trip(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let room = alice.create_room(serde_json::json!({})).await;
    let message = alice.send_encrypted(&room, "t1").await;
    let work = tempfile::tempdir().unwrap();
    let secret = work.path().join("recipient.key");
    let sealed = work.path().join("alice.sealed");
    let opened = work.path().join("alice.json");

    let public = ok(&run(
        &server,
        &["admin", "keygen", "--out", secret.to_str().unwrap()],
    )
    .await);
    let public = public.trim();
    assert_eq!(public.len(), 43, "unpadded base64 of 32 bytes: {public}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    ok(&run(
        &server,
        &[
            "admin",
            "export",
            "alice",
            "--recipient",
            public,
            "--out",
            sealed.to_str().unwrap(),
        ],
    )
    .await);
    assert_eq!(&std::fs::read(&sealed).unwrap()[..4], b"CLSL");
    let refused = run(&server, &["admin", "export", "alice"]).await;
    assert!(
        !refused.status.success(),
        "--recipient or --plain is required"
    );

    // Opening needs no database: run it with an empty data directory.
    let out = Command::new(cloister_binary().await)
        .args([
            "admin",
            "open-export",
            sealed.to_str().unwrap(),
            "--key",
            secret.to_str().unwrap(),
        ])
        .args(["--out", opened.to_str().unwrap()])
        .env_clear()
        .env("CLOISTER_DATA_DIR", work.path().join("nowhere"))
        .output()
        .unwrap();
    ok(&out);
    assert!(
        !work.path().join("nowhere").exists(),
        "open-export touched no database"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&opened).unwrap()).unwrap();
    assert_eq!(doc["format"], "cloister.subject_export");
    assert_eq!(doc["user_id"], alice.user_id);
    assert!(doc.to_string().contains(&message));
    let (other, _) = cloister_audit::seal::generate_recipient_key();
    let wrong = work.path().join("wrong.key");
    std::fs::write(&wrong, base64_key(other.as_bytes())).unwrap();
    let out = Command::new(cloister_binary().await)
        .args([
            "admin",
            "open-export",
            sealed.to_str().unwrap(),
            "--key",
            wrong.to_str().unwrap(),
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success(), "a wrong key does not open it");

    let plain = ok(&run(&server, &["admin", "export", "@alice:localhost", "--plain"]).await);
    let plain: Value = serde_json::from_str(&plain).unwrap();
    assert_eq!(plain["user_id"], alice.user_id);

    let report = ok(&run(&server, &["admin", "report", "processing"]).await);
    assert!(report.contains("Praxis Muster"), "{report}");
    let report: Value = serde_json::from_str(&ok(&run(
        &server,
        &["admin", "report", "processing", "--json"],
    )
    .await))
    .unwrap();
    assert_eq!(report["controller"], "Praxis Muster");

    let receipt: Value =
        serde_json::from_str(&ok(&run(&server, &["admin", "erase", "alice"]).await)).unwrap();
    assert_eq!(receipt["counts"]["deleted_account"], 1, "{receipt}");
    assert!(scan(&server, &alice.user_id).await.is_empty());
    let again = run(&server, &["user", "create", "alice", "--password", "x"]).await;
    assert!(
        !again.status.success(),
        "an erased id cannot be created again"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("erased"));

    // Each action on the database is in the audit log, as the operator.
    let entries: Vec<String> = sqlx::query_scalar("SELECT entry FROM audit_entries ORDER BY seq")
        .fetch_all(server.state().store.pool())
        .await
        .unwrap();
    let actions: Vec<Value> = entries
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let by_system = |action: &str| {
        actions
            .iter()
            .filter(|e| e["action"] == action && e["actor"] == "system")
            .count()
    };
    assert_eq!(by_system("export"), 2);
    assert_eq!(by_system("erasure"), 1);
    assert!(actions.iter().any(|e| e["target"] == "report.processing"));
    server.stop().await;
}

fn base64_key(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

both_backends!(cli_round_trip, cli_round_trip);
