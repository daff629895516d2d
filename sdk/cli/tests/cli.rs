//! `cloister-cli` as a script would use it, against the real server (the
//! `cloister-tests` harness, SQLite): two users, each with a store
//! directory, share an encrypted room; text and a file go both ways;
//! messages that arrive during another command are kept for `listen`; a
//! wrong store passphrase fails clearly. Two users set up cross-signing
//! and verify each other by emoji, answering the prompt as a person would
//! after comparing the screens; a "no" cancels on both sides.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use cloister_tests::{server_with_users, Backend};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

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

/// A `verify` run in the background, its output read line by line and its
/// prompt answered on standard input.
struct Verifying {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Verifying {
    fn start(user: &User, args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloister-cli"))
            .arg("--store")
            .arg(user.store.path())
            .args(args)
            .env("CLOISTER_STORE_PASSPHRASE", &user.passphrase)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        }
    }

    /// The rest of the line that starts with `prefix`.
    async fn line(&mut self, prefix: &str) -> String {
        while let Some(line) = self.lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
        panic!("cloister-cli ended before printing {prefix:?}");
    }

    async fn answer(&mut self, text: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
    }

    /// Whether it exited successfully, and its last line.
    async fn finish(mut self) -> (bool, String) {
        let mut last = String::new();
        while let Some(line) = self.lines.next_line().await.unwrap() {
            last = line;
        }
        (self.child.wait().await.unwrap().success(), last)
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
    let (server, names) = server_with_users(Backend::Sqlite, &["alice", "bob"], PASSWORD).await;
    let url = server.url();
    let (alice_name, bob_name) = (names[0].clone(), names[1].clone());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cli_users_verify_each_other_by_emoji() {
    tokio::time::timeout(Duration::from_secs(300), verification())
        .await
        .expect("timed out");
}

async fn verification() {
    let (server, names) = server_with_users(Backend::Sqlite, &["alice", "bob"], PASSWORD).await;
    let url = server.url();
    let (alice_name, bob_name) = (names[0].clone(), names[1].clone());
    let (alice_id, bob_id) = (server.user_id(&alice_name), server.user_id(&bob_name));
    let alice = User::new(&url, "alice store secret");
    let bob = User::new(&url, "bob store secret");
    for (user, name) in [(&alice, &alice_name), (&bob, &bob_name)] {
        user.ok(&["login", name, "--password", PASSWORD]).await;
        let out = user.ok(&["cross-signing", "setup"]).await;
        assert!(out.contains("this device is trusted"), "{out}");
    }
    let own = alice.ok(&["cross-signing", "status"]).await;
    assert!(own.contains("identity verified"), "{own}");
    assert!(own.contains("holds the private"), "{own}");
    // Replacing the identity without the password is refused clearly.
    let refused = alice.run(&["cross-signing", "setup", "--reset"]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("asks for your password"), "{stderr}");

    let room = alice
        .ok(&["create-room", "--invite", &bob_id])
        .await
        .trim()
        .to_owned();
    bob.ok(&["join", &room]).await;
    alice.ok(&["rooms"]).await;
    let before = alice.ok(&["cross-signing", "status", &bob_id]).await;
    assert!(before.contains("not verified"), "{before}");

    // Bob says no: both sides end without trusting anything.
    let mut bob_side = Verifying::start(&bob, &["verify", "--incoming", "--timeout", "60"]);
    let mut alice_side = Verifying::start(&alice, &["verify", &bob_id, "--timeout", "60"]);
    let (a, b) = (
        alice_side.line("emoji: ").await,
        bob_side.line("emoji: ").await,
    );
    assert_eq!(a, b);
    bob_side.answer("n").await;
    alice_side.answer("y").await;
    let (bob_ok, bob_last) = bob_side.finish().await;
    let (alice_ok, alice_last) = alice_side.finish().await;
    assert!(!bob_ok && !alice_ok, "{bob_last} / {alice_last}");
    assert!(alice_last.contains("m.mismatched_sas"), "{alice_last}");

    // Then both say yes.
    let mut bob_side = Verifying::start(&bob, &["verify", "--incoming", "--timeout", "60"]);
    let mut alice_side = Verifying::start(&alice, &["verify", &bob_id, "--timeout", "60"]);
    let request = bob_side.line("verification request from ").await;
    assert!(request.starts_with(&alice_id), "{request}");
    let (a, b) = (
        alice_side.line("emoji: ").await,
        bob_side.line("emoji: ").await,
    );
    assert_eq!(a, b);
    assert_eq!(a.split(' ').count(), 7, "{a}");
    assert_eq!(
        alice_side.line("numbers: ").await,
        bob_side.line("numbers: ").await
    );
    alice_side.answer("y").await;
    bob_side.answer("yes").await;
    let (alice_ok, alice_last) = alice_side.finish().await;
    let (bob_ok, bob_last) = bob_side.finish().await;
    assert!(alice_ok, "{alice_last}");
    assert!(bob_ok, "{bob_last}");
    assert!(
        alice_last.starts_with(&format!("verified {bob_id}")),
        "{alice_last}"
    );

    // Each user-signing key signed the other's identity.
    let after = alice.ok(&["cross-signing", "status", &bob_id]).await;
    assert!(after.contains("identity verified"), "{after}");
    let after = bob.ok(&["cross-signing", "status", &alice_id]).await;
    assert!(after.contains("identity verified"), "{after}");
    let devices = alice.ok(&["devices", &bob_id]).await;
    assert!(devices.contains("\tverified\t"), "{devices}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_cli_device_restores_history_with_the_recovery_key() {
    tokio::time::timeout(Duration::from_secs(300), recovery())
        .await
        .expect("timed out");
}

async fn recovery() {
    let (server, names) = server_with_users(Backend::Sqlite, &["alice", "bob"], PASSWORD).await;
    let url = server.url();
    let (alice_name, bob_name) = (names[0].clone(), names[1].clone());
    let bob_id = server.user_id(&bob_name);
    let alice = User::new(&url, "alice store secret");
    let bob = User::new(&url, "bob store secret");
    alice
        .ok(&["login", &alice_name, "--password", PASSWORD])
        .await;
    bob.ok(&["login", &bob_name, "--password", PASSWORD]).await;
    // Recovery keeps the cross-signing keys: set them up first.
    let refused = alice.run(&["recovery", "setup"]).await;
    assert!(!refused.status.success());
    alice.ok(&["cross-signing", "setup"]).await;

    let room = alice
        .ok(&["create-room", "--invite", &bob_id])
        .await
        .trim()
        .to_owned();
    bob.ok(&["join", &room]).await;
    alice.ok(&["rooms"]).await;
    bob.ok(&["send", &room, "kept for later"]).await;
    assert_eq!(body(&alice.listen(&room, 1).await[0]), "kept for later");
    let out = alice.ok(&["recovery", "setup"]).await;
    let key = out
        .lines()
        .find_map(|l| l.strip_prefix("recovery key: "))
        .expect("the recovery key is printed")
        .to_owned();

    // A second device with a new store: the history is unreadable until
    // the recovery key restores it.
    let laptop = User::new(&url, "laptop store secret");
    laptop
        .ok(&["login", &alice_name, "--password", PASSWORD])
        .await;
    let wrong = laptop
        .run(&["recovery", "restore", "--key", "EsTc not a key"])
        .await;
    assert!(!wrong.status.success());
    let restored = laptop.ok(&["recovery", "restore", "--key", &key]).await;
    assert!(restored.contains("restored 1 room keys"), "{restored}");
    assert!(restored.contains("this device is trusted"), "{restored}");
    let history = laptop.ok(&["history", &room, "--json"]).await;
    let bodies: Vec<String> = history
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| body(&e).to_owned())
        .collect();
    assert!(bodies.contains(&"kept for later".to_owned()), "{bodies:?}");
}
