//! The data directory is private: no other local user may read the
//! database, its journals, media or audit keys. New files are created so,
//! and files an older version left readable are tightened at start-up.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use cloister_tests::{both_backends, Backend, Client, TestServer};
use serde_json::json;

/// Every path under `root` (itself included) with its permission bits.
fn modes(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat a data file");
        found.push((path.clone(), meta.permissions().mode() & 0o777));
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list a data directory") {
                pending.push(entry.expect("a directory entry").path());
            }
        }
    }
    found
}

/// Directories 0700, files 0600, and the files that must be there exist.
fn assert_private(server: &TestServer) {
    let found = modes(&server.config().data_dir);
    for (path, mode) in &found {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(
            *mode,
            want,
            "{} is {mode:o}, expected {want:o}",
            path.display()
        );
    }
    let has = |name: &str| found.iter().any(|(p, _)| p.ends_with(name));
    if server.backend() == Backend::Sqlite {
        for db_file in ["cloister.db", "cloister.db-wal", "cloister.db-shm"] {
            assert!(has(db_file), "{db_file} is missing: {found:?}");
        }
    }
    let media = server.config().media_dir();
    assert!(
        found
            .iter()
            .any(|(p, _)| p.starts_with(&media) && p.is_file()),
        "no media file was written: {found:?}"
    );
}

/// A message and an uploaded file, so the database, its journals and the
/// media tree all exist; returns what to read back later.
async fn write_some(server: &TestServer) -> (Client, String, String, String) {
    let alice = Client::register(&server.url(), "alice", "alice-pw").await;
    let room = alice.create_room(json!({})).await;
    let event_id = alice.send_encrypted(&room, "m1").await;
    let mxc = alice
        .upload_media(
            b"ciphertext bytes".to_vec(),
            "application/octet-stream",
            "f",
        )
        .await;
    (alice, room, event_id, mxc)
}

async fn new_files_are_private(backend: Backend) {
    // A data directory the server creates itself, inside the harness's.
    let server = TestServer::start_with(backend, |config| config.data_dir.push("fresh")).await;
    write_some(&server).await;
    assert_private(&server);
    server.stop().await;
}

async fn start_up_tightens_what_is_readable(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let (alice, room, event_id, mxc) = write_some(&server).await;
    let data_dir = server.config().data_dir.clone();
    // What an older version, or a copy made under umask 022, leaves behind.
    server
        .restart_with(|_| {
            for (path, _) in modes(&data_dir) {
                let mode = if path.is_dir() { 0o755 } else { 0o644 };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        })
        .await;
    assert_private(&server);

    // Nothing was lost on the way.
    let alice = alice.with_base(&server.url());
    let messages = alice.messages(&room, 10).await;
    assert!(
        messages["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_id"] == event_id.as_str()),
        "{messages}"
    );
    let (status, bytes) = alice.download_media(&mxc).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, b"ciphertext bytes");
    server.stop().await;
}

both_backends!(
    new_files, new_files_are_private;
    tightened_at_start, start_up_tightens_what_is_readable;
);
