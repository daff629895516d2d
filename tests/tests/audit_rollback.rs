//! `cloister audit verify --trusted` against a real server's log, on both
//! backends: someone with database access truncates the audit log and
//! deletes the checkpoints that covered the removed entries. The export
//! made afterwards verifies on its own — the hole issue #15 describes —
//! and fails against the checkpoint the DPO kept from the last time.

use std::path::Path;

use cloister_tests::process::run_command;
use cloister_tests::{both_backends, Backend, Client, TestServer};

async fn cloister(server: &TestServer, args: &[&str]) -> (bool, String) {
    let out = run_command(server, args, Vec::new()).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "cloister {args:?} failed to run: {stderr}\n{stdout}"
    );
    (out.status.success(), stdout)
}

async fn export(server: &TestServer, to: &Path) {
    let to = to.to_str().unwrap();
    let (ok, out) = cloister(server, &["audit", "export", "--out", to]).await;
    assert!(ok, "{out}");
}

async fn verify(server: &TestServer, key: &str, file: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["audit", "verify", file.to_str().unwrap(), "--key", key];
    args.extend(extra);
    cloister(server, &args).await
}

async fn truncation_is_caught_against_a_kept_checkpoint(backend: Backend) {
    let server = TestServer::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let (first, second, third) = (
        dir.path().join("first.json"),
        dir.path().join("second.json"),
        dir.path().join("third.json"),
    );
    let kept = dir.path().join("trusted.checkpoint");
    let kept_arg = kept.to_str().unwrap();
    let (ok, key) = cloister(&server, &["audit", "key"]).await;
    assert!(ok);
    let key = key.trim().to_owned();

    for name in ["alice", "bob"] {
        Client::register(&server.url(), name, "pw").await;
    }
    export(&server, &first).await;
    let (ok, out) = verify(&server, &key, &first, &["--save-trusted", kept_arg]).await;
    assert!(ok, "{out}");
    let trusted_size = server.audit_count("%").await;
    assert!(std::fs::read_to_string(&kept)
        .unwrap()
        .contains(&format!("\n{trusted_size}\n")));

    // The log grows; the next export extends the kept checkpoint.
    Client::register(&server.url(), "carol", "pw").await;
    export(&server, &second).await;
    let (ok, out) = verify(&server, &key, &second, &["--trusted", kept_arg]).await;
    assert!(ok, "{out}");
    assert!(out.contains("consistency proof verified"), "{out}");

    // Someone with the database removes everything from entry 2 on and
    // every checkpoint that covered it.
    let store = server.state().store.pool();
    sqlx::query("DELETE FROM audit_entries WHERE seq >= 2")
        .execute(store)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_checkpoints WHERE tree_size > 2")
        .execute(store)
        .await
        .unwrap();
    export(&server, &third).await;
    let (ok, out) = verify(&server, &key, &third, &[]).await;
    assert!(ok, "on its own the rolled-back log verifies: {out}");
    let (ok, out) = verify(&server, &key, &third, &["--trusted", kept_arg]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED: the log was truncated"), "{out}");

    // A checkpoint of another server's log is bad input, not a pass.
    let other = TestServer::start(backend).await;
    let (_, other_key) = cloister(&other, &["audit", "key"]).await;
    let out = run_command(
        &other,
        &[
            "audit",
            "verify",
            second.to_str().unwrap(),
            "--key",
            other_key.trim(),
            "--trusted",
            kept_arg,
        ],
        Vec::new(),
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    other.stop().await;
    server.stop().await;
}

/// With `audit.checkpoint_drop_dir`, each checkpoint is also written where
/// the DPO keeps it, ready for `--trusted`.
async fn checkpoints_are_dropped_for_the_dpo(backend: Backend) {
    let share = tempfile::tempdir().unwrap();
    let drop_dir = share.path().to_str().unwrap().to_owned();
    let server = TestServer::start_with(backend, |c| c.audit.checkpoint_drop_dir = drop_dir).await;
    Client::register(&server.url(), "alice", "pw").await;
    let note = cloister_server::service::audit::checkpoint(server.state())
        .await
        .unwrap();
    let size = server.audit_count("%").await;
    let dropped = share.path().join(format!("{size}.checkpoint"));
    assert_eq!(std::fs::read_to_string(&dropped).unwrap(), note);
    let leftovers: Vec<_> = std::fs::read_dir(share.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    Client::register(&server.url(), "bob", "pw").await;
    let export_file = share.path().join("export.json");
    export(&server, &export_file).await;
    let (_, key) = cloister(&server, &["audit", "key"]).await;
    let (ok, out) = verify(
        &server,
        key.trim(),
        &export_file,
        &["--trusted", dropped.to_str().unwrap()],
    )
    .await;
    assert!(ok, "{out}");
    server.stop().await;
}

both_backends!(
    truncated, truncation_is_caught_against_a_kept_checkpoint;
    dropped, checkpoints_are_dropped_for_the_dpo;
);
