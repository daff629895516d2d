//! The web console's defences on both backends: security headers on every
//! answer and no CORS grant, the session cookie's flags, Matrix tokens and
//! console cookies not standing in for each other, the CSRF token on every
//! change, no sign-in from another site's form. A console switched off is
//! not there at all. Roles and session ends: console_sessions.rs.

use cloister_server::service::staff;
use cloister_tests::console::{
    cookie_attributes, create_staff, json_body, Console, Role, API, COOKIE_NAME,
};
use cloister_tests::{assert_refused, both_backends, encode, Backend, Client, TestServer};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

const EVIL_ORIGIN: &str = "https://evil.example";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v| v.to_str().expect("an ASCII header"))
}

/// The console's security headers, and no CORS grant.
#[track_caller]
fn assert_console_headers(what: &str, headers: &HeaderMap) {
    let csp = header(headers, "content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy in {headers:?}"));
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{what}: {directive:?} not in {csp}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(header(headers, "x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        header(headers, "access-control-allow-origin"),
        None,
        "{what}: the console grants no other origin"
    );
}

/// `method url` from `https://evil.example`: status, headers, body.
async fn from_elsewhere(method: Method, url: &str) -> (u16, HeaderMap, Vec<u8>) {
    let response = reqwest::Client::new()
        .request(method.clone(), url)
        .header("Origin", EVIL_ORIGIN)
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

async fn security_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();

    // The Matrix API does grant any origin: the same request there shows
    // the absence below is the console's doing.
    let (status, headers, _) =
        from_elsewhere(Method::GET, &format!("{url}/_matrix/client/versions")).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "access-control-allow-origin").is_some());

    let (status, headers, body) =
        from_elsewhere(Method::GET, &format!("{url}/_cloister/console/")).await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("<html"));
    assert_console_headers("the page", &headers);

    let (status, headers, body) = from_elsewhere(
        Method::GET,
        &format!("{url}/_cloister/console/assets/verify.mjs"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(!body.is_empty());
    assert_console_headers("an asset", &headers);

    let (status, headers, body) = from_elsewhere(Method::GET, &format!("{url}{API}/session")).await;
    assert_refused(
        (status, json_body(&body)),
        401,
        "M_MISSING_TOKEN",
        "no cookie",
    );
    assert_console_headers("an API error", &headers);

    // A preflight from elsewhere is granted nothing either.
    let (_, headers, _) = from_elsewhere(Method::OPTIONS, &format!("{url}{API}/session")).await;
    assert_console_headers("a preflight", &headers);

    let (status, headers, body) = from_elsewhere(
        Method::GET,
        &format!("{url}/_cloister/console/assets/no-such-file.js"),
    )
    .await;
    assert_refused(
        (status, json_body(&body)),
        404,
        "M_NOT_FOUND",
        "unknown asset",
    );
    assert_console_headers("an unknown asset", &headers);

    for escape in [
        "..%2F..%2FCargo.toml",
        "..%2F..%2F..%2FCargo.toml",
        "%2E%2E%2F%2E%2E%2Fsrc%2Fmain.rs",
        "%2Fetc%2Fpasswd",
    ] {
        let (status, headers, body) = from_elsewhere(
            Method::GET,
            &format!("{url}/_cloister/console/assets/{escape}"),
        )
        .await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, 404, "{escape}: {text}");
        assert!(
            !text.contains("[package]") && !text.contains("root:"),
            "{escape}"
        );
        assert_console_headers(escape, &headers);
    }
    server.stop().await;
}

async fn cookie_flags_and_sign_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let dpo = create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;
    Client::register(&url, "plain", "plain-pw").await;
    server.register_admin("root").await;

    let answer = Console::try_sign_in(&url, "dpo", "dpo-pw").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let set_cookie = answer.set_cookie.clone().expect("a Set-Cookie header");
    let (name, value) = set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap();
    assert_eq!(name, COOKIE_NAME);
    assert!(name.starts_with("__Host-"));
    assert!(value.len() >= 32, "{set_cookie}");
    let attributes = cookie_attributes(&set_cookie);
    for wanted in ["httponly", "secure", "samesite=strict", "path=/"] {
        assert!(
            attributes.iter().any(|a| a == wanted),
            "{wanted} missing: {set_cookie}"
        );
    }
    assert!(
        !attributes.iter().any(|a| a.starts_with("domain")),
        "{set_cookie}"
    );
    assert!(attributes.contains(&format!("max-age={}", 8 * 3600)));
    let body = &answer.body;
    assert_eq!(body["user_id"], json!(dpo));
    assert_eq!(body["roles"], json!(["dpo"]));
    assert_eq!(body["idle_timeout_ms"], 15 * 60 * 1000);
    let csrf = body["csrf_token"].as_str().unwrap();
    assert!(csrf.len() >= 32 && csrf != value, "{body}");

    let console = Console::sign_in(&url, "dpo", "dpo-pw").await;
    let current = console.get_ok("/session").await;
    assert_eq!(current["user_id"], json!(dpo));
    assert_eq!(current["csrf_token"], json!(console.csrf_token));

    // Wrong credentials, and accounts without a console role (a server
    // admin included), get no cookie.
    for (user, password, what) in [
        ("dpo", "wrong", "wrong password"),
        ("nobody", "dpo-pw", "unknown account"),
        ("plain", "plain-pw", "account without a role"),
        ("root", "admin-pw", "server admin without a role"),
    ] {
        let answer = Console::try_sign_in(&url, user, password).await;
        assert_refused(
            (answer.status, answer.body.clone()),
            403,
            "M_FORBIDDEN",
            what,
        );
        assert_eq!(answer.set_cookie, None, "{what}");
    }
    assert_eq!(
        server
            .audit_count("%\"action\":\"login_failed\"%\"target\":\"console\"%")
            .await,
        2,
        "both refusals for want of a role are audited"
    );

    // Sign-out needs the CSRF token too; then it clears the cookie, ends
    // that session and only that one.
    let other = Console::sign_in(&url, "dpo", "dpo-pw").await;
    let refused = console
        .call(Method::DELETE, "/session", &Value::Null, None)
        .await;
    assert_refused(refused, 403, "M_FORBIDDEN", "sign-out without CSRF");
    assert_eq!(console.get("/session").await.0, 200);
    let (status, headers, body) = console
        .call_full(
            Method::DELETE,
            "/session",
            &Value::Null,
            Some(&console.csrf_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let cleared = header(&headers, "set-cookie").expect("sign-out clears the cookie");
    assert!(
        cleared.starts_with(&format!("{COOKIE_NAME}=;")),
        "{cleared}"
    );
    assert!(cookie_attributes(cleared).contains(&"max-age=0".to_owned()));
    assert_refused(
        console.get("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "a signed-out cookie",
    );
    assert_refused(
        console.delete("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "signing out twice",
    );
    assert_eq!(other.get("/session").await.0, 200);
    server.stop().await;
}

/// A Matrix access token, as `Authorization: Bearer`.
async fn with_bearer(url: &str, method: Method, path: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .bearer_auth(token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json_body(&response.bytes().await.unwrap()))
}

async fn matrix_token_is_not_a_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    // A server admin who is also staff: still two separate credentials.
    let admin = server.register_admin("root").await;
    for role in [Role::Operator, Role::Dpo] {
        staff::grant_role(server.state(), &admin.user_id, role)
            .await
            .unwrap();
    }
    for (method, path) in [
        (Method::GET, "/session"),
        (Method::GET, "/users"),
        (Method::GET, "/audit/entries"),
        (Method::POST, "/registration_tokens"),
        (Method::DELETE, "/session"),
    ] {
        let what = format!("{method} {path} with a Matrix token");
        let got = with_bearer(&url, method, &format!("{API}{path}"), &admin.access_token).await;
        assert_refused(got, 401, "M_MISSING_TOKEN", &what);
    }
    assert!(staff::registration_tokens(server.state())
        .await
        .unwrap()
        .is_empty());

    // The Matrix token as the cookie's value is no session either.
    let mut forged = Console::sign_in(&url, "root", "admin-pw").await;
    forged.cookie = admin.access_token.clone();
    assert_refused(
        forged.get("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "a Matrix token as the cookie",
    );

    // And the console's cookie (or its CSRF token) is no Matrix token.
    let console = Console::sign_in(&url, "root", "admin-pw").await;
    let whoami = "/_matrix/client/v3/account/whoami";
    let response = reqwest::Client::new()
        .get(format!("{url}{whoami}"))
        .header("Cookie", console.cookie_header())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = json_body(&response.bytes().await.unwrap());
    assert_refused(
        (status, body),
        401,
        "M_MISSING_TOKEN",
        "whoami with the cookie",
    );
    for (token, what) in [
        (&console.cookie, "the cookie as a bearer token"),
        (&console.csrf_token, "the CSRF token as a bearer token"),
    ] {
        let got = with_bearer(&url, Method::GET, whoami, token).await;
        assert_refused(got, 401, "M_UNKNOWN_TOKEN", what);
        let got = with_bearer(&url, Method::GET, "/_cloister/admin/v1/audit/key", token).await;
        assert_eq!(got.0, 401, "{what} on the admin API: {}", got.1);
    }
    assert_eq!(admin.whoami().await["user_id"], json!(admin.user_id));
    assert_eq!(console.get("/session").await.0, 200);
    server.stop().await;
}

async fn csrf_token_guards_every_change(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    create_staff(&server, "staff", "staff-pw", &[Role::Operator, Role::Dpo]).await;
    let alice = Client::register(&url, "alice", "alice-pw").await;
    let room = alice.create_room(json!({})).await;
    let console = Console::sign_in(&url, "staff", "staff-pw").await;
    // A valid token, but another session's.
    let second = Console::sign_in(&url, "staff", "staff-pw").await;
    assert_ne!(console.csrf_token, second.csrf_token);
    let wrong: [(Option<&str>, &str); 4] = [
        (None, "no token"),
        (Some(""), "an empty token"),
        (Some("0000000000000000"), "a made-up token"),
        (Some(&second.csrf_token), "another session's token"),
    ];

    // POST: a legal hold.
    let hold = json!({
        "scope": "user", "target": alice.user_id, "case_id": "case-1", "reason": "litigation",
    });
    for (token, what) in wrong {
        let got = console.call(Method::POST, "/holds", &hold, token).await;
        assert_refused(got, 403, "M_FORBIDDEN", &format!("POST holds, {what}"));
    }
    assert_eq!(console.get_ok("/holds").await["holds"], json!([]));
    assert_eq!(server.audit_count("%\"action\":\"hold_set\"%").await, 0);
    let set = console.post_ok("/holds", hold).await;
    assert_eq!(set["target"], json!(alice.user_id));
    assert_eq!(
        console.get_ok("/holds").await["holds"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // DELETE: a registration token.
    let token = console.post_ok("/registration_tokens", json!({})).await;
    let id = token["id"].as_str().unwrap();
    let path = format!("/registration_tokens/{id}");
    for (csrf, what) in wrong {
        let got = console
            .call(Method::DELETE, &path, &Value::Null, csrf)
            .await;
        assert_refused(got, 403, "M_FORBIDDEN", &format!("DELETE token, {what}"));
    }
    let listed = console.get_ok("/registration_tokens").await;
    assert_eq!(listed["tokens"][0]["id"], json!(id), "{listed}");
    assert_eq!(console.delete(&path).await.0, 200);
    assert_eq!(
        console.get_ok("/registration_tokens").await["tokens"],
        json!([])
    );

    // PUT: a room's retention.
    let path = format!("/rooms/{}/retention", encode(&room));
    let policy = json!({ "max_lifetime": 86_400_000 });
    for (csrf, what) in wrong {
        let got = console.call(Method::PUT, &path, &policy, csrf).await;
        assert_refused(got, 403, "M_FORBIDDEN", &format!("PUT retention, {what}"));
    }
    let unchanged = console.get_ok(&path).await;
    assert_eq!(
        unchanged["requested"]["max_lifetime"],
        Value::Null,
        "{unchanged}"
    );
    assert_eq!(alice.get_state(&room, "m.room.retention", "").await.0, 404);
    let set = console.put(&path, policy).await;
    assert_eq!(set.0, 200, "{}", set.1);
    let changed = console.get_ok(&path).await;
    assert_eq!(
        changed["requested"]["max_lifetime"], 86_400_000,
        "{changed}"
    );
    server.stop().await;
}

/// The route templates (as audited) of refused calls, sorted.
/// A cross-site HTML form can post `text/plain` whose body is JSON
/// (`name={"user":…,"password":"p` and `value=w"}` join with `=`); the
/// sign-in must not accept it, or another site could sign a browser in to
/// an account of its choosing.
async fn sign_in_refuses_a_cross_site_form(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    create_staff(&server, "dpo", "p=w", &[Role::Dpo]).await;
    let response = reqwest::Client::new()
        .post(format!("{url}{API}/session"))
        .header("Content-Type", "text/plain")
        .header("Origin", EVIL_ORIGIN)
        .header("Sec-Fetch-Site", "cross-site")
        .body(r#"{"user":"dpo","password":"p=w"}"#)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let set_cookie = response.headers().get("set-cookie").cloned();
    let body = json_body(&response.bytes().await.unwrap());
    assert!(
        (400..500).contains(&status) && set_cookie.is_none(),
        "a text/plain cross-site sign-in was answered {status} {body} with Set-Cookie {set_cookie:?}"
    );
    server.stop().await;
}

async fn disabled_console_is_not_there(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.console.enabled = false).await;
    let url = server.url();
    create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;
    for path in [
        "/_cloister/console/".to_owned(),
        "/_cloister/console/assets/verify.mjs".to_owned(),
        format!("{API}/session"),
        format!("{API}/holds"),
    ] {
        let (status, _, body) = from_elsewhere(Method::GET, &format!("{url}{path}")).await;
        assert_refused((status, json_body(&body)), 404, "M_UNRECOGNIZED", &path);
    }
    let answer = Console::try_sign_in(&url, "dpo", "dpo-pw").await;
    assert_refused(
        (answer.status, answer.body.clone()),
        404,
        "M_UNRECOGNIZED",
        "sign-in",
    );
    assert_eq!(answer.set_cookie, None);
    assert_eq!(
        server
            .audit_count("%\"action\":\"login\"%\"target\":\"console\"%")
            .await,
        0
    );
    // The rest of the server is there.
    let (status, _, _) =
        from_elsewhere(Method::GET, &format!("{url}/_matrix/client/versions")).await;
    assert_eq!(status, 200);
    server.stop().await;
}

both_backends!(
    security_headers, security_headers;
    cookie_flags_and_sign_out, cookie_flags_and_sign_out;
    matrix_token_is_not_a_session, matrix_token_is_not_a_session;
    csrf_token_guards_every_change, csrf_token_guards_every_change;
    sign_in_refuses_a_cross_site_form, sign_in_refuses_a_cross_site_form;
    disabled_console_is_not_there, disabled_console_is_not_there;
);
