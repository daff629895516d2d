//! Rate limiting.

use cloister_tests::{encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

use crate::common::{expect_error, R};

// ----- rate limiting -------------------------------------------------------------

#[track_caller]
fn expect_limited(got: (u16, Value), what: &str) {
    let body = got.1.clone();
    expect_error(got, 429, "M_LIMIT_EXCEEDED", what);
    assert!(
        body["retry_after_ms"].is_u64() && body["retry_after_ms"].as_u64() > Some(0),
        "{what}: retry_after_ms must be a positive integer: {body}"
    );
}

pub(crate) async fn rate_limits(backend: Backend) {
    const BURST: usize = 20;
    const LOGIN_BURST: usize = 3;
    let server = TestServer::start_with(backend, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 0.001;
        c.rate_limit.burst = BURST as f64;
        c.rate_limit.login_per_second = 0.001;
        c.rate_limit.login_burst = LOGIN_BURST as f64;
    })
    .await;
    let url = server.url();
    // Unauthenticated requests share the address's bucket: 2 + 2 + 1 so far.
    let alice = Client::register_device(&url, "alice", "alice-pw", "ALICE1").await;
    let bob = Client::register_device(&url, "bob", "bob-pw", "BOB1").await;
    let alice2 = Client::login(&url, "alice", "alice-pw", Some("ALICE2")).await;

    // Login attempts have their own, smaller bucket: one used above.
    for i in 1..LOGIN_BURST {
        let (s, r) = Client::try_login(&url, "bob", "wrong", None)
            .await
            .unwrap_err();
        assert_eq!(
            (s, errcode(&r)),
            (403, Some("M_FORBIDDEN")),
            "attempt {i}: {r}"
        );
    }
    let refused = Client::try_login(&url, "bob", "bob-pw", None)
        .await
        .unwrap_err();
    expect_limited(
        refused,
        "a login past the login burst, even with the right password",
    );

    // Each access token has its own bucket; refused writes store nothing.
    let path = format!(
        "{R}/user/{}/account_data/org.example.n",
        encode(&alice.user_id)
    );
    let mut statuses = Vec::new();
    for n in 0..BURST + 10 {
        let got = alice.put(&path, json!({ "n": n })).await;
        if got.0 != 200 {
            expect_limited(got.clone(), &format!("write {n}"));
        }
        statuses.push(got.0);
    }
    assert_eq!(
        statuses,
        [vec![200; BURST], vec![429; 10]].concat(),
        "the first {BURST} writes pass, then every one is refused"
    );
    expect_limited(
        alice.get(&format!("{R}/account/whoami")).await,
        "whoami past the burst",
    );
    let (s, r) = alice2.get(&path).await;
    assert_eq!(
        (s, r),
        (200, json!({ "n": BURST - 1 })),
        "the refused writes stored nothing"
    );
    assert_eq!(bob.whoami().await["user_id"], bob.user_id.as_str());

    // /health is never limited; the address's bucket runs out for the rest.
    let anon = Client::anonymous(&url);
    for _ in 0..BURST + 5 {
        assert_eq!(anon.get("/health").await.0, 200);
    }
    let mut refused = None;
    for _ in 0..BURST + 5 {
        let got = anon.get("/_matrix/client/versions").await;
        if got.0 != 200 {
            refused = Some(got);
            break;
        }
    }
    expect_limited(
        refused.expect("unauthenticated requests are limited too"),
        "versions",
    );
    server.stop().await;
}
