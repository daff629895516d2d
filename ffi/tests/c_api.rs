//! Builds the C tests in `tests/c/` with the system C compiler against the
//! library cargo built for this test (the cdylib and the staticlib), and
//! runs them against a real server: the positive one also under valgrind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cloister_tests::{unique, Backend, TestServer};

const PASSWORD: &str = "correct horse battery staple";
/// Valgrind makes everything 20–50 times slower.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

/// Where cargo put the library built with this test: next to the test
/// binary (`target/<profile>/deps/`), where `cargo test` writes the cdylib
/// and staticlib of the package's lib target.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().expect("target/<profile>/deps").to_path_buf()
}

fn ffi_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[derive(Clone, Copy)]
enum Link {
    Dynamic,
    Static,
}

/// Compile `tests/c/<name>.c` into `out_dir`; returns the executable.
fn compile(name: &str, link: Link, out_dir: &Path) -> PathBuf {
    let lib_dir = target_dir();
    let (lib, file) = match link {
        Link::Dynamic => ("cdylib", "libcloister.so"),
        Link::Static => ("staticlib", "libcloister.a"),
    };
    assert!(
        lib_dir.join(file).exists(),
        "{} ({lib}) is missing: cargo builds it with the tests",
        lib_dir.join(file).display()
    );
    let source = ffi_dir().join("tests/c").join(format!("{name}.c"));
    let exe = out_dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let mut command = std::process::Command::new(&cc);
    command
        .args([
            "-std=c11",
            "-D_POSIX_C_SOURCE=200809L",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
        ])
        .arg("-I")
        .arg(ffi_dir().join("include"))
        .arg(&source)
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Dynamic => {
            command
                .arg(format!("-L{}", lib_dir.display()))
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
                .arg("-lcloister");
        }
        Link::Static => {
            command.arg(lib_dir.join(file));
        }
    }
    command.args(["-lpthread", "-ldl", "-lm"]);
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {cc}: {e}"));
    assert!(
        output.status.success(),
        "compiling {name}.c failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

/// Run a C test (optionally under valgrind) and require exit status 0.
async fn run(program: &Path, args: &[String], valgrind: Option<&Path>) {
    let mut command = match valgrind {
        Some(suppressions) => {
            let mut c = tokio::process::Command::new("valgrind");
            c.args([
                "--leak-check=full",
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=99",
                "--fair-sched=yes",
            ])
            .arg(format!("--suppressions={}", suppressions.display()))
            .arg(program);
            c
        }
        None => tokio::process::Command::new(program),
    };
    // Cargo's LD_LIBRARY_PATH may hold an older libcloister.so (in
    // target/<profile>): load the one built with this test.
    command
        .args(args)
        .env("LD_LIBRARY_PATH", target_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("start the C test");
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} timed out", program.display()))
        .expect("wait for the C test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "{} failed with {}:\n{stdout}\n{stderr}",
        program.display(),
        output.status
    );
}

async fn register(server: &TestServer, prefix: &str) -> String {
    let localpart = unique(prefix);
    cloister_tests::Client::register(&server.url(), &localpart, PASSWORD).await;
    localpart
}

/// Run the C program `name` (usage: URL ALICE BOB PASSWORD WORK_DIR) with
/// two new accounts on a fresh server.
async fn alice_and_bob(name: &str, valgrind: Option<&Path>) {
    let work = tempfile::tempdir().unwrap();
    let exe = compile(name, Link::Dynamic, work.path());
    let server = TestServer::start(Backend::Sqlite).await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let args = [
        server.url(),
        alice,
        bob,
        PASSWORD.to_owned(),
        work.path().display().to_string(),
    ];
    run(&exe, &args, valgrind).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_example_chat_exchanges_encrypted_messages_and_files() {
    alice_and_bob("example_chat", None).await;
}

async fn negative(valgrind: Option<&Path>) {
    let work = tempfile::tempdir().unwrap();
    let exe = compile("negative", Link::Static, work.path());
    let server = TestServer::start(Backend::Sqlite).await;
    let user = register(&server, "carol").await;
    let args = [
        server.url(),
        user,
        PASSWORD.to_owned(),
        work.path().display().to_string(),
    ];
    run(&exe, &args, valgrind).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_negative_cases_return_their_documented_codes() {
    negative(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_clients_verify_each_other_by_emoji() {
    // Two C clients verify each other by emoji, by QR code, in their room,
    // then one restores with the recovery key.
    alice_and_bob("verification", None).await;
}

/// The SAS state machine from C under valgrind: no invalid accesses, no
/// definite leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_verification_under_valgrind() {
    if let Some(suppressions) = valgrind_suppressions() {
        alice_and_bob("verification", Some(&suppressions)).await;
    }
}

/// One handle, several threads: concurrent sends while sync runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_threads_share_one_client() {
    let work = tempfile::tempdir().unwrap();
    let exe = compile("threads", Link::Dynamic, work.path());
    let server = TestServer::start(Backend::Sqlite).await;
    let user = register(&server, "dave").await;
    let args = [
        server.url(),
        user,
        PASSWORD.to_owned(),
        work.path().display().to_string(),
    ];
    run(&exe, &args, None).await;
    server.stop().await;
}

/// A server that rate-limits logins (three attempts, then one every
/// ~17 minutes): the C API reports `CLOISTER_RESULT_LIMIT_EXCEEDED` and
/// the server's retry delay, which is longer than the SDK waits out itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_rate_limited_login_gives_limit_exceeded_and_the_delay() {
    let work = tempfile::tempdir().unwrap();
    let exe = compile("rate_limit", Link::Dynamic, work.path());
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.rate_limit.enabled = true;
        config.rate_limit.login_per_second = 0.001;
        config.rate_limit.login_burst = 3.0;
    })
    .await;
    let user = register(&server, "erin").await;
    let args = [
        server.url(),
        user,
        PASSWORD.to_owned(),
        work.path().display().to_string(),
    ];
    run(&exe, &args, None).await;
    server.stop().await;
}

fn have_valgrind() -> bool {
    std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The suppressions file, when valgrind is installed. Without it the
/// valgrind tests are skipped (loudly), except in CI (`CI=true`), where
/// they fail.
fn valgrind_suppressions() -> Option<PathBuf> {
    if !have_valgrind() {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "valgrind is not installed; .ci/run installs it");
        eprintln!("SKIPPED: valgrind is not installed (apt-get install valgrind)");
        return None;
    }
    Some(ffi_dir().join("tests/valgrind.supp"))
}

/// The positive test under valgrind: no invalid accesses, no definite
/// leaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_example_chat_under_valgrind() {
    if let Some(suppressions) = valgrind_suppressions() {
        alice_and_bob("example_chat", Some(&suppressions)).await;
    }
}

/// The negative test (error paths, close while waiting, callbacks) under
/// valgrind, linked statically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_negative_cases_under_valgrind() {
    if let Some(suppressions) = valgrind_suppressions() {
        negative(Some(&suppressions)).await;
    }
}

/// docs/ffi.md's complete example is this test file, verbatim.
#[test]
fn the_documented_example_is_the_tested_one() {
    let doc = std::fs::read_to_string(ffi_dir().join("../docs/ffi.md")).unwrap();
    let example = std::fs::read_to_string(ffi_dir().join("tests/c/example_chat.c")).unwrap();
    assert!(
        doc.contains(&format!("```c\n{example}```")),
        "docs/ffi.md must quote ffi/tests/c/example_chat.c verbatim in a ```c block"
    );
}
