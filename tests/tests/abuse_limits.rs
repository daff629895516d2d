//! Limits an attacker must not get around, on both backends: account
//! enumeration through `register/available`, fresh rate-limit buckets
//! bought with forged access tokens, and password guessing through
//! user-interactive auth. Refusals are checked for status, errcode and
//! `retry_after_ms`, and for changing nothing.

use cloister_server::config::Registration;
use cloister_tests::{assert_refused, both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

const R: &str = "/_matrix/client/v3";

#[track_caller]
fn limited(got: (u16, Value), what: &str) {
    let body = got.1.clone();
    assert_refused(got, 429, "M_LIMIT_EXCEEDED", what);
    assert!(
        body["retry_after_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{what}: retry_after_ms must be a positive integer: {body}"
    );
}

/// A request as a client at `address` behind the (trusted, loopback)
/// proxy, with an optional bearer token.
async fn from_address(
    server: &TestServer,
    address: &str,
    token: Option<&str>,
    path: &str,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .get(format!("{}{path}", server.url()))
        .header("X-Forwarded-For", address);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn forged_token() -> String {
    format!("syt_{:032x}", rand::random::<u128>())
}

async fn availability_is_no_oracle(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    Client::register(&server.url(), "alice", "pw").await;
    let users = "SELECT COUNT(*) FROM users";
    let count = |server: &TestServer| {
        let pool = server.state().store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(users)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let before = count(&server).await;

    // Closed: the same answer for a taken, a free, an invalid or no name.
    server
        .restart_with(|c| c.registration = Registration::Closed)
        .await;
    let anon = Client::anonymous(&server.url());
    for query in ["?username=alice", "?username=nobody", "?username=!!", ""] {
        assert_refused(
            anon.get(&format!("{R}/register/available{query}")).await,
            403,
            "M_FORBIDDEN",
            &format!("availability {query:?} with registration closed"),
        );
    }

    // Open: the spec's answers, at the pace of login attempts per address.
    server
        .restart_with(|c| {
            c.registration = Registration::Open;
            c.rate_limit.enabled = true;
            c.rate_limit.per_second = 1000.0;
            c.rate_limit.burst = 1000.0;
            c.rate_limit.login_per_second = 0.001;
            c.rate_limit.login_burst = 3.0;
        })
        .await;
    let anon = Client::anonymous(&server.url());
    assert_refused(
        anon.get(&format!("{R}/register/available?username=alice"))
            .await,
        400,
        "M_USER_IN_USE",
        "a taken name while registration is open",
    );
    let (status, body) = anon
        .get(&format!("{R}/register/available?username=nobody"))
        .await;
    assert_eq!((status, &body["available"]), (200, &json!(true)), "{body}");
    anon.get(&format!("{R}/register/available?username=carol"))
        .await;
    limited(
        anon.get(&format!("{R}/register/available?username=alice"))
            .await,
        "the fourth lookup from one address",
    );
    assert_eq!(count(&server).await, before, "no account was created");
    server.stop().await;
}

async fn forged_tokens_buy_no_bucket(backend: Backend) {
    const BURST: usize = 20;
    const GUESSES: usize = 3;
    let server = TestServer::start_with(backend, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 0.001;
        c.rate_limit.burst = BURST as f64;
        c.rate_limit.login_per_second = 0.001;
        c.rate_limit.login_burst = GUESSES as f64;
    })
    .await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let versions = "/_matrix/client/versions";

    // One address spends its bucket; forged tokens do not refill it.
    let flooder = "203.0.113.1";
    for n in 0..BURST {
        assert_eq!(
            from_address(&server, flooder, None, versions).await.0,
            200,
            "request {n}"
        );
    }
    limited(
        from_address(&server, flooder, None, versions).await,
        "past the burst",
    );
    for n in 0..5 {
        limited(
            from_address(&server, flooder, Some(&forged_token()), versions).await,
            &format!("forged token {n} after the address was limited"),
        );
    }
    let account_data = format!(
        "{R}/user/{}/account_data/org.example.n",
        encode(&alice.user_id)
    );
    limited(
        from_address(&server, flooder, Some(&forged_token()), &account_data).await,
        "a forged token on an authenticated endpoint",
    );
    // A real session is limited on its own, wherever it connects from.
    let (status, me) = from_address(
        &server,
        flooder,
        Some(&alice.access_token),
        &format!("{R}/account/whoami"),
    )
    .await;
    assert_eq!((status, &me["user_id"]), (200, &json!(alice.user_id)));

    // Guessing tokens from a fresh address: a few wrong answers, then 429,
    // while the address's ordinary requests still pass.
    let guesser = "203.0.113.2";
    for n in 0..GUESSES {
        assert_refused(
            from_address(
                &server,
                guesser,
                Some(&forged_token()),
                &format!("{R}/account/whoami"),
            )
            .await,
            401,
            "M_UNKNOWN_TOKEN",
            &format!("guess {n}"),
        );
    }
    limited(
        from_address(
            &server,
            guesser,
            Some(&forged_token()),
            &format!("{R}/account/whoami"),
        )
        .await,
        "a guess past the failed-token burst",
    );
    assert_eq!(from_address(&server, guesser, None, versions).await.0, 200);
    let (status, body) = alice.get(&account_data).await;
    assert_eq!(
        (status, errcode(&body)),
        (404, Some("M_NOT_FOUND")),
        "nothing stored: {body}"
    );
    server.stop().await;
}

async fn uia_password_guessing_is_limited(backend: Backend) {
    const LOGIN_BURST: usize = 3;
    let server = TestServer::start_with(backend, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 1000.0;
        c.rate_limit.burst = 1000.0;
        c.rate_limit.login_per_second = 0.001;
        c.rate_limit.login_burst = LOGIN_BURST as f64;
    })
    .await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "right-pw").await;
    let deactivate = format!("{R}/account/deactivate");
    let (status, challenge) = alice.post(&deactivate, json!({})).await;
    assert_eq!(status, 401, "{challenge}");
    let session = challenge["session"].as_str().unwrap().to_owned();
    let attempt = |password: &str| {
        json!({ "auth": {
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "alice" },
            "password": password,
            "session": session,
        } })
    };
    for n in 0..LOGIN_BURST {
        let (status, body) = alice.post(&deactivate, attempt("wrong")).await;
        assert_eq!(
            (status, errcode(&body)),
            (401, Some("M_FORBIDDEN")),
            "wrong password {n}: {body}"
        );
    }
    limited(
        alice.post(&deactivate, attempt("wrong")).await,
        "a guess past the burst",
    );
    limited(
        alice.post(&deactivate, attempt("right-pw")).await,
        "even the right password, once limited",
    );
    // The same bucket as /login, so guesses cannot alternate between them.
    let (status, body) = Client::try_login(&url, "alice", "right-pw", None)
        .await
        .unwrap_err();
    limited((status, body), "login for the same account");
    let (status, me) = alice.get(&format!("{R}/account/whoami")).await;
    assert_eq!(
        (status, &me["user_id"]),
        (200, &json!(alice.user_id)),
        "the account was not deactivated"
    );
    server.stop().await;
}

both_backends!(
    register_available, availability_is_no_oracle;
    forged_tokens, forged_tokens_buy_no_bucket;
    uia_guessing, uia_password_guessing_is_limited;
);
