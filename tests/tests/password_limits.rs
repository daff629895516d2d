//! Password hashing under a burst of logins: each argon2id hash works in
//! 19 MiB, so the server runs only a few at once, in reused memory, and
//! refuses what it cannot queue with 429 `M_LIMIT_EXCEEDED` rather than
//! growing without bound.

use cloister_tests::{both_backends, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

const BURSTS: usize = 4;
const AT_ONCE: usize = 64;
/// Far above a few 19 MiB slots and the rest of the test process (both
/// backends' servers run in it), far below 64 hashes' worth (1.2 GiB).
const RSS_LIMIT_KIB: u64 = 400 * 1024;

/// This process's resident memory: the test servers run in it.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

async fn login(url: &str, user: &str, password: &str) -> (u16, Value) {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": user },
        "password": password,
    });
    Client::anonymous(url)
        .post("/_matrix/client/v3/login", body)
        .await
}

async fn login_bursts_stay_bounded(backend: Backend) {
    let server = TestServer::start_with(backend, |config| {
        config.limits.max_password_hashes = 2;
        config.limits.password_hash_queue = 4;
    })
    .await;
    Client::register(&server.url(), "alice", "alice-pw").await;
    let (mut accepted, mut busy) = (0, 0);
    for burst in 0..BURSTS {
        // Right, wrong and unknown-user passwords all cost a hash.
        let attempts = (0..AT_ONCE).map(|i| {
            let url = server.url();
            async move {
                let (user, password, expected) = match i % 3 {
                    0 => ("alice", "alice-pw", 200),
                    1 => ("alice", "wrong", 403),
                    _ => ("nobody", "alice-pw", 403),
                };
                (expected, login(&url, user, password).await)
            }
        });
        for (expected, (status, body)) in futures::future::join_all(attempts).await {
            if status == 429 {
                assert_eq!(errcode(&body), Some("M_LIMIT_EXCEEDED"), "{body}");
                assert!(
                    body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
                    "{body}"
                );
                busy += usize::from(body["error"].as_str().is_some_and(|e| e.contains("busy")));
            } else {
                assert_eq!(status, expected, "{body}");
                accepted += usize::from(status == 200);
            }
        }
        let rss = rss_kib();
        assert!(
            rss < RSS_LIMIT_KIB,
            "after burst {burst}: resident memory {} MiB",
            rss / 1024
        );
    }
    assert!(accepted > 0, "no login got through");
    // 64 at once against 2 slots and a queue of 4: the excess is refused.
    assert!(busy > 0, "no login was refused as busy");
    // Nothing is left waiting or wedged.
    Client::login(&server.url(), "alice", "alice-pw", None).await;
    server.stop().await;
}

both_backends!(login_bursts, login_bursts_stay_bounded);
