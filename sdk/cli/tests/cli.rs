//! `cloister-cli` as a script would use it, against the real server (the
//! `cloister-tests` harness, SQLite): two users, each with a store
//! directory, share an encrypted room; text and a file go both ways;
//! messages that arrive during another command are kept for `listen`; a
//! wrong store passphrase fails clearly.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cloister_tests::{unique, Backend, Client as RawClient, TestServer};
use serde_json::Value;

const PASSWORD: &str = "a long enough password";

struct User {
    store: tempfile::TempDir,
    passphrase: String,
    url: String,
}

impl User {
    fn new(url: &str, passphrase: &str) -> Self {
        Self {
            store: tempfile::tempdir().unwrap(),
            passphrase: passphrase.to_owned(),
            url: url.to_owned(),
        }
    }

    async fn run(&self, args: &[&str]) -> Output {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloister-cli"))
            .arg("--homeserver")
            .arg(&self.url)
            .arg("--store")
            .arg(self.store.path())
            .args(args)
            .env("CLOISTER_STORE_PASSPHRASE", &self.passphrase)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        output
    }

    /// Run; must succeed; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "cloister-cli {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `listen --json` for `count` messages.
    async fn listen(&self, room: &str, count: usize) -> Vec<Value> {
        let count = count.to_string();
        let out = self
            .ok(&[
                "listen",
                room,
                "--count",
                &count,
                "--timeout",
                "30",
                "--json",
            ])
            .await;
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn body(event: &Value) -> &str {
    event["content"]["body"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cli_users_exchange_messages_and_files() {
    tokio::time::timeout(Duration::from_secs(300), scenario())
        .await
        .expect("timed out");
}

async fn scenario() {
    let server = TestServer::start(Backend::Sqlite).await;
    let url = server.url();
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    RawClient::register(&url, &alice_name, PASSWORD).await;
    RawClient::register(&url, &bob_name, PASSWORD).await;
    let bob_id = server.user_id(&bob_name);
    let alice = User::new(&url, "alice store secret");
    let bob = User::new(&url, "bob store secret");

    let out = alice
        .ok(&["login", &alice_name, "--password", PASSWORD])
        .await;
    assert!(out.contains("logged in as @alice"), "{out}");
    bob.ok(&["login", &bob_name, "--password", PASSWORD]).await;
    assert!(alice.ok(&["whoami"]).await.contains("fingerprint: "));

    // A wrong passphrase is a clear error and changes nothing.
    let wrong = User {
        store: tempfile::tempdir().unwrap(),
        passphrase: "not it".into(),
        url: url.clone(),
    };
    std::fs::remove_dir(wrong.store.path()).unwrap();
    copy_dir(alice.store.path(), wrong.store.path());
    let output = wrong.run(&["rooms"]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");

    let room = alice
        .ok(&["create-room", "--name", "cli", "--invite", &bob_id])
        .await
        .trim()
        .to_owned();
    assert!(room.starts_with('!'), "{room}");
    let rooms = bob.ok(&["rooms", "--json"]).await;
    let listed: Value = serde_json::from_str(rooms.lines().next().unwrap()).unwrap();
    assert_eq!(listed["room_id"], room.as_str());
    assert_eq!(listed["membership"], "invite");
    assert_eq!(bob.ok(&["join", &room]).await.trim(), room);

    let sent = alice.ok(&["send", &room, "hello bob, from a script"]).await;
    let got = bob.listen(&room, 1).await;
    assert_eq!(body(&got[0]), "hello bob, from a script");
    assert_eq!(got[0]["event_id"], sent.trim());
    assert_eq!(got[0]["encryption"]["state"], "decrypted");

    // Bob answers with text and a file. Alice runs another command first:
    // what arrives then is kept for her next listen.
    bob.ok(&["send", &room, "hi alice"]).await;
    let file = bob.store.path().join("notes.txt");
    let contents: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&file, &contents).unwrap();
    let file_event = bob
        .ok(&[
            "send-file",
            &room,
            file.to_str().unwrap(),
            "--mimetype",
            "text/plain",
        ])
        .await
        .trim()
        .to_owned();
    alice.ok(&["rooms"]).await;
    let got = alice.listen(&room, 2).await;
    assert_eq!(body(&got[0]), "hi alice");
    assert_eq!(body(&got[1]), "notes.txt");
    assert_eq!(got[1]["event_id"], file_event.as_str());
    assert!(got[1]["content"]["file"]["url"]
        .as_str()
        .unwrap()
        .starts_with("mxc://"));
    let saved = alice.store.path().join("downloaded.txt");
    alice
        .ok(&["download", &file_event, saved.to_str().unwrap()])
        .await;
    assert_eq!(std::fs::read(&saved).unwrap(), contents);

    // Nothing more is pending: a listen for one more message times out.
    let output = alice
        .run(&["listen", &room, "--count", "1", "--timeout", "1"])
        .await;
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("timed out with 0 of 1"));

    let history = bob.ok(&["history", &room, "--json"]).await;
    let bodies: Vec<String> = history
        .lines()
        .map(|l| body(&serde_json::from_str(l).unwrap()).to_owned())
        .collect();
    assert_eq!(
        bodies,
        ["hello bob, from a script", "hi alice", "notes.txt"]
    );

    // Alice compares Bob's fingerprint with him, marks his device verified,
    // and his next message shows as verified.
    let whoami = bob.ok(&["whoami"]).await;
    let bob_device = whoami
        .lines()
        .find_map(|l| l.strip_prefix("device:"))
        .unwrap()
        .trim()
        .to_owned();
    let devices = alice.ok(&["devices", &bob_id]).await;
    assert!(
        devices.starts_with(&format!("{bob_device}\t")) && devices.contains("\tunverified\t"),
        "{devices}"
    );
    let out = alice.ok(&["trust", &bob_id, &bob_device, "verified"]).await;
    assert!(out.trim().ends_with(": verified"), "{out}");
    assert!(alice
        .ok(&["devices", &bob_id])
        .await
        .contains("\tverified\t"));
    let refused = alice
        .run(&["trust", &bob_id, "NO-SUCH-DEVICE", "verified"])
        .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no device NO-SUCH-DEVICE"));
    bob.ok(&["send", &room, "verified now"]).await;
    let got = alice.listen(&room, 1).await;
    assert_eq!(body(&got[0]), "verified now");
    assert_eq!(got[0]["encryption"]["verified"], true, "{}", got[0]);

    bob.ok(&["logout"]).await;
    let output = bob.run(&["rooms"]).await;
    assert!(String::from_utf8_lossy(&output.stderr).contains("not logged in"));
    server.stop().await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
