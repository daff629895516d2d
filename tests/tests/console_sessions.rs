//! Who the web console lets in, and for how long, on both backends: the
//! operator and DPO roles (refusals audited), and sessions ending when idle,
//! when too old, on losing a role, on deactivation and on a password reset.

use cloister_server::service::staff;
use cloister_tests::console::{cookie_attributes, create_staff, Console, Role, API};
use cloister_tests::{
    assert_refused, both_backends, encode, errcode, Backend, Client, ManualClock, TestServer,
};
use reqwest::Method;
use serde_json::{json, Value};

fn denied_targets(entries: &Value) -> Vec<String> {
    let mut targets: Vec<String> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "admin_call" && e["details"]["denied"] == 1)
        .map(|e| e["target"].as_str().unwrap().to_owned())
        .collect();
    targets.sort();
    targets
}

async fn roles_are_enforced_and_audited(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;
    let operator = create_staff(&server, "op", "op-pw", &[Role::Operator]).await;
    let both = create_staff(&server, "both", "both-pw", &[Role::Operator, Role::Dpo]).await;
    let alice = Client::register(&url, "alice", "alice-pw").await;
    let dpo = Console::sign_in(&url, "dpo", "dpo-pw").await;
    let op = Console::sign_in(&url, "op", "op-pw").await;

    let erasure = format!("/users/{}/erasure", encode(&alice.user_id));
    let operator_routes: Vec<(Method, &str, Value)> = vec![
        (Method::GET, "/users", Value::Null),
        (Method::GET, "/registration_tokens", Value::Null),
        (Method::GET, "/health", Value::Null),
        (Method::POST, "/registration_tokens", json!({})),
    ];
    let hold = json!({
        "scope": "user", "target": alice.user_id, "case_id": "c", "reason": "r",
    });
    let dpo_routes: Vec<(Method, &str, Value)> = vec![
        (Method::GET, "/retention", Value::Null),
        (Method::GET, "/holds", Value::Null),
        (Method::GET, "/audit/entries", Value::Null),
        (Method::GET, "/audit/export", Value::Null),
        (Method::GET, "/processing", Value::Null),
        (Method::GET, &erasure, Value::Null),
        (Method::POST, "/holds", hold),
    ];
    for (console, other, routes) in [(&dpo, &op, &operator_routes), (&op, &dpo, &dpo_routes)] {
        for (method, path, body) in routes {
            let what = format!("{method} {path} as {}", console.user_id());
            let csrf = Some(console.csrf_token.as_str());
            let got = console.call(method.clone(), path, body, csrf).await;
            assert_refused(got, 403, "M_FORBIDDEN", &what);
            // The same call with the role goes through (POSTs aside: they
            // would change what is checked below).
            if *method == Method::GET {
                let (status, body) = other.get(path).await;
                assert_eq!(
                    status,
                    200,
                    "{method} {path} as {}: {body}",
                    other.user_id()
                );
            }
        }
    }
    // Nothing refused happened.
    assert!(staff::registration_tokens(server.state())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(dpo.get_ok("/holds").await["holds"], json!([]));

    // Every refusal is in the log, under the route it tried.
    let page = dpo
        .get_ok("/audit/entries?action=admin_call&limit=500")
        .await;
    let mut expected: Vec<String> = operator_routes
        .iter()
        .chain(&dpo_routes)
        .map(|(_, path, _)| {
            format!(
                "{API}{}",
                path.replace(&encode(&alice.user_id), "{user_id}")
            )
        })
        .collect();
    expected.sort();
    assert_eq!(denied_targets(&page["entries"]), expected);
    assert_eq!(
        server
            .audit_count("%\"action\":\"admin_call\"%\"details\":{\"denied\":1}%")
            .await,
        expected.len() as i64
    );
    let refused_health =
        "%\"admin_call\"%{\"denied\":1}%\"target\":\"/_cloister/console/api/health\"%";
    assert_eq!(server.audit_count(refused_health).await, 1);

    // Revoking a role ends the sessions at once; signing in again gives
    // the roles left, or nothing.
    let busy = Console::sign_in(&url, "both", "both-pw").await;
    assert_eq!(busy.get("/holds").await.0, 200);
    assert!(staff::revoke_role(server.state(), &both, Role::Dpo)
        .await
        .unwrap());
    assert_refused(
        busy.get("/users").await,
        401,
        "M_UNKNOWN_TOKEN",
        "after a role was revoked",
    );
    let again = Console::sign_in(&url, "both", "both-pw").await;
    assert_eq!(again.session["roles"], json!(["operator"]));
    assert_eq!(again.get("/holds").await.0, 403);
    assert_eq!(again.get("/users").await.0, 200);

    assert!(
        staff::revoke_role(server.state(), &operator, Role::Operator)
            .await
            .unwrap()
    );
    assert_refused(
        op.get("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "the operator after revocation",
    );
    let answer = Console::try_sign_in(&url, "op", "op-pw").await;
    assert_eq!((answer.status, answer.set_cookie), (403, None));
    assert_eq!(dpo.get("/session").await.0, 200, "others stay signed in");
    server.stop().await;
}

const START: i64 = 1_800_000_000_000;

async fn sessions_expire(backend: Backend) {
    let server = TestServer::start_with_clock(backend, ManualClock::new(START), |c| {
        c.console.idle_timeout_secs = 60;
        c.console.session_lifetime_secs = 300;
    })
    .await;
    let url = server.url();
    let clock = server.clock().unwrap().clone();
    create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;

    // Idle for longer than the limit: over.
    let idle = Console::sign_in(&url, "dpo", "dpo-pw").await;
    assert_eq!(idle.session["idle_timeout_ms"], 60_000);
    assert_eq!(idle.session["expires_ts"], START + 300_000);
    assert_eq!(idle.get("/session").await.0, 200);
    clock.advance_ms(61_000);
    assert_refused(
        idle.get("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "idle for 61 s",
    );

    // Used every 30 s: alive well past the idle limit, until it idles.
    let busy = Console::sign_in(&url, "dpo", "dpo-pw").await;
    for _ in 0..4 {
        clock.advance_ms(30_000);
        assert_eq!(busy.get("/holds").await.0, 200);
    }
    clock.advance_ms(61_000);
    assert_refused(
        busy.get("/holds").await,
        401,
        "M_UNKNOWN_TOKEN",
        "idle after being busy",
    );

    // The absolute lifetime ends even a busy session.
    let signed_in = START + 61_000 + 4 * 30_000 + 61_000;
    let answer = Console::try_sign_in(&url, "dpo", "dpo-pw").await;
    let set_cookie = answer.set_cookie.unwrap();
    assert!(cookie_attributes(&set_cookie).contains(&"max-age=300".to_owned()));
    let long = Console::sign_in(&url, "dpo", "dpo-pw").await;
    assert_eq!(long.session["expires_ts"], signed_in + 300_000);
    for _ in 0..9 {
        clock.advance_ms(30_000);
        assert_eq!(long.get("/session").await.0, 200);
    }
    clock.advance_ms(30_000);
    assert_refused(
        long.get("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "at the session's lifetime",
    );
    // The person can sign in again.
    let fresh = Console::sign_in(&url, "dpo", "dpo-pw").await;
    assert_eq!(fresh.get("/session").await.0, 200);
    server.stop().await;
}

async fn deactivation_and_password_reset_end_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    create_staff(&server, "op", "op-pw", &[Role::Operator]).await;
    let bob = create_staff(&server, "bob", "bob-pw", &[Role::Dpo]).await;
    let carol = create_staff(&server, "carol", "carol-pw", &[Role::Dpo]).await;
    let op = Console::sign_in(&url, "op", "op-pw").await;

    // Deactivation: the console session and the Matrix login both end.
    let bob_console = Console::sign_in(&url, "bob", "bob-pw").await;
    let bob_matrix = Client::login(&url, "bob", "bob-pw", None).await;
    let deactivate = format!("/users/{}/deactivate", encode(&bob));
    let got = op.call(Method::POST, &deactivate, &json!({}), None).await;
    assert_refused(got, 403, "M_FORBIDDEN", "deactivation without CSRF");
    assert_eq!(bob_console.get("/session").await.0, 200);
    op.post_ok(&deactivate, json!({})).await;
    assert_refused(
        bob_console.get("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "a deactivated staff member's session",
    );
    assert_eq!(
        bob_matrix.get("/_matrix/client/v3/account/whoami").await.0,
        401
    );
    let answer = Console::try_sign_in(&url, "bob", "bob-pw").await;
    assert_eq!((answer.status, answer.set_cookie), (403, None));
    assert_eq!(
        op.post(&deactivate, json!({})).await.0,
        400,
        "already deactivated"
    );

    // A password reset: every session ends, the old password no longer
    // works, the new one does.
    let carol_console = Console::sign_in(&url, "carol", "carol-pw").await;
    let carol_matrix = Client::login(&url, "carol", "carol-pw", None).await;
    let reset = format!("/users/{}/password", encode(&carol));
    op.post_ok(&reset, json!({ "password": "carol-new-pw" }))
        .await;
    assert_refused(
        carol_console.get("/session").await,
        401,
        "M_UNKNOWN_TOKEN",
        "the session after a password reset",
    );
    let (status, body) = carol_matrix.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(
        (status, errcode(&body)),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{body}"
    );
    assert_eq!(
        Console::try_sign_in(&url, "carol", "carol-pw").await.status,
        403
    );
    let again = Console::sign_in(&url, "carol", "carol-new-pw").await;
    assert_eq!(again.get("/holds").await.0, 200);
    Client::login(&url, "carol", "carol-new-pw", None).await;
    assert_eq!(op.get("/session").await.0, 200, "the operator stays");
    server.stop().await;
}

both_backends!(
    roles_are_enforced_and_audited, roles_are_enforced_and_audited;
    sessions_expire, sessions_expire;
    deactivation_and_password_reset_end_sessions, deactivation_and_password_reset_end_sessions;
);
