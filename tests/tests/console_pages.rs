//! What staff do in the web console, on both backends: the operator's
//! accounts, devices and registration tokens; the data-protection
//! officer's retention overview and purge, legal holds, erasure (preview,
//! then confirmed), sealed subject-access exports, and the audit log
//! (filtered, paged, exported and verified offline).

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use cloister_server::config::Registration;
use cloister_tests::console::{create_staff, Console, Role};
use cloister_tests::{
    assert_refused, both_backends, encode, Backend, Client, ManualClock, TestServer,
};
use reqwest::Method;
use serde_json::{json, Value};

fn user_ids(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .unwrap_or_else(|| panic!("no users: {page}"))
        .iter()
        .map(|u| u["user_id"].as_str().unwrap().to_owned())
        .collect()
}

fn device_ids(detail: &Value) -> Vec<String> {
    let mut ids: Vec<String> = detail["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices: {detail}"))
        .iter()
        .map(|d| d["device_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn operator_manages_accounts(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    create_staff(&server, "op", "op-pw", &[Role::Operator]).await;
    let op = Console::sign_in(&url, "op", "op-pw").await;

    // A new account can log in to Matrix with the password it was given.
    let created = op
        .post_ok(
            "/users",
            json!({ "localpart": "carol", "password": "carol-pw" }),
        )
        .await;
    assert_eq!(created["user_id"], "@carol:localhost");
    let phone = Client::login(&url, "carol", "carol-pw", Some("PHONE")).await;
    let laptop = Client::login(&url, "carol", "carol-pw", Some("LAPTOP")).await;
    assert_eq!(phone.whoami().await["user_id"], "@carol:localhost");
    assert_eq!(
        server.audit_count("%\"action\":\"account_created\"%").await,
        2,
        "the operator's account and carol's"
    );

    for (body, code) in [
        (
            json!({ "localpart": "carol", "password": "x" }),
            "M_USER_IN_USE",
        ),
        (
            json!({ "localpart": "Carol", "password": "x" }),
            "M_USER_IN_USE",
        ),
        (
            json!({ "localpart": "bad name", "password": "x" }),
            "M_INVALID_USERNAME",
        ),
        (
            json!({ "localpart": "ca:rol", "password": "x" }),
            "M_INVALID_USERNAME",
        ),
    ] {
        let what = format!("creating {body}");
        assert_refused(op.post("/users", body).await, 400, code, &what);
    }

    // Search, paged by user id.
    for name in ["team-c", "team-a", "team-e", "team-b", "team-d"] {
        op.post_ok("/users", json!({ "localpart": name, "password": "pw" }))
            .await;
    }
    let mut seen = Vec::new();
    let mut path = "/users?q=team&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = op.get_ok(&path).await;
        pages += 1;
        let ids = user_ids(&page);
        assert!(ids.len() <= 2, "{page}");
        seen.extend(ids.clone());
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(Some(next), ids.last().map(String::as_str));
                path = format!("/users?q=team&limit=2&from={}", encode(next));
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end: {page}");
    }
    let team: Vec<String> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|c| format!("@team-{c}:localhost"))
        .collect();
    assert_eq!(seen, team);
    assert_eq!(pages, 3);
    assert_eq!(user_ids(&op.get_ok("/users?q=TEAM&limit=50").await), team);
    assert_eq!(
        user_ids(&op.get_ok("/users?q=carol").await),
        ["@carol:localhost"]
    );
    assert_eq!(
        user_ids(&op.get_ok("/users?q=nobody-here").await),
        Vec::<String>::new()
    );
    let all = user_ids(&op.get_ok("/users").await);
    assert!(
        all.contains(&"@op:localhost".to_owned()) && all.len() == 7,
        "{all:?}"
    );

    // An account's page lists its devices; deleting one ends its token.
    let carol = format!("/users/{}", encode("@carol:localhost"));
    let detail = op.get_ok(&carol).await;
    assert_eq!(detail["user_id"], "@carol:localhost");
    assert_eq!(detail["deactivated"], false);
    assert_eq!(detail["roles"], json!([]));
    assert_eq!(device_ids(&detail), ["LAPTOP", "PHONE"]);
    let (status, body) = op.delete(&format!("{carol}/devices/PHONE")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = phone.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!(status, 401, "the deleted device's token: {body}");
    assert_eq!(laptop.whoami().await["device_id"], "LAPTOP");
    assert_eq!(device_ids(&op.get_ok(&carol).await), ["LAPTOP"]);
    assert_refused(
        op.delete(&format!("{carol}/devices/PHONE")).await,
        404,
        "M_NOT_FOUND",
        "deleting a deleted device",
    );

    for unknown in ["@nobody:localhost", "@carol:elsewhere.example"] {
        let got = op.get(&format!("/users/{}", encode(unknown))).await;
        assert_refused(got, 404, "M_NOT_FOUND", unknown);
    }
    let health = op.get_ok("/health").await;
    assert!(health.is_object(), "{health}");
    server.stop().await;
}

/// Registers `localpart` with a registration token through the
/// user-interactive auth: `(status, body)` of the completing request.
async fn register_with_token(url: &str, localpart: &str, token: &str) -> (u16, Value) {
    let anon = Client::anonymous(url);
    let path = "/_matrix/client/v3/register";
    let mut body = json!({ "username": localpart, "password": "new-pw" });
    let (status, challenge) = anon.post(path, body.clone()).await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(
        challenge["flows"],
        json!([{ "stages": ["m.login.registration_token"] }])
    );
    body["auth"] = json!({
        "type": "m.login.registration_token",
        "token": token,
        "session": challenge["session"],
    });
    anon.post(path, body).await
}

async fn operator_manages_registration_tokens(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.registration = Registration::Token).await;
    let url = server.url();
    create_staff(&server, "op", "op-pw", &[Role::Operator]).await;
    let op = Console::sign_in(&url, "op", "op-pw").await;

    let once = op
        .post_ok("/registration_tokens", json!({ "uses_allowed": 1 }))
        .await;
    let token = once["token"].as_str().unwrap().to_owned();
    let id = once["id"].as_str().unwrap().to_owned();
    assert!(token.len() >= 20, "{once}");
    assert_eq!(
        (&once["uses_allowed"], &once["uses"]),
        (&json!(1), &json!(0))
    );
    for body in [
        json!({ "uses_allowed": 0 }),
        json!({ "uses_allowed": -1 }),
        json!({ "expiry_hours": 0 }),
    ] {
        let what = format!("a token with {body}");
        assert_refused(
            op.post("/registration_tokens", body).await,
            400,
            "M_INVALID_PARAM",
            &what,
        );
    }

    // The list shows the handle and the uses, never the token.
    let listed = op.get_ok("/registration_tokens").await;
    let tokens = listed["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{listed}");
    assert_eq!(tokens[0]["id"], json!(id));
    assert_eq!(tokens[0]["uses"], 0);
    assert!(tokens[0].get("token").is_none(), "{listed}");
    assert!(!listed.to_string().contains(&token), "{listed}");

    let (status, body) = register_with_token(&url, "dave", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@dave:localhost");
    Client::login(&url, "dave", "new-pw", None).await;
    let listed = op.get_ok("/registration_tokens").await;
    assert_eq!(listed["tokens"][0]["uses"], 1, "{listed}");
    let (status, body) = register_with_token(&url, "dora", &token).await;
    assert_eq!(status, 401, "a used-up token: {body}");

    // A deleted token registers no one.
    let open = op.post_ok("/registration_tokens", json!({})).await;
    let open_id = open["id"].as_str().unwrap();
    assert_eq!(open["uses_allowed"], Value::Null);
    let (status, body) = op.delete(&format!("/registration_tokens/{open_id}")).await;
    assert_eq!(status, 200, "{body}");
    let remaining = op.get_ok("/registration_tokens").await;
    assert!(
        remaining["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["id"] != json!(open_id)),
        "{remaining}"
    );
    let (status, body) = register_with_token(&url, "erin", open["token"].as_str().unwrap()).await;
    assert_eq!(status, 401, "a deleted token: {body}");
    assert!(Client::try_login(&url, "erin", "new-pw", None)
        .await
        .is_err());
    assert_refused(
        op.delete(&format!("/registration_tokens/{open_id}")).await,
        404,
        "M_NOT_FOUND",
        "deleting twice",
    );
    server.stop().await;
}

const START: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

async fn clocked_server(backend: Backend) -> TestServer {
    TestServer::start_with_clock(backend, ManualClock::new(START), |_| {}).await
}

async fn dpo_sets_retention_and_purges(backend: Backend) {
    let server = clocked_server(backend).await;
    let url = server.url();
    let clock = server.clock().unwrap().clone();
    create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;
    let alice = Client::register(&url, "alice", "alice-pw").await;
    let room = alice.create_room(json!({})).await;
    let dpo = Console::sign_in(&url, "dpo", "dpo-pw").await;

    let overview = dpo.get_ok("/retention").await;
    assert_eq!(overview["rooms"], json!([]), "{overview}");
    assert!(overview["server"].is_object(), "{overview}");

    let path = format!("/rooms/{}/retention", encode(&room));
    let (status, set) = dpo.put(&path, json!({ "max_lifetime": DAY })).await;
    assert_eq!(status, 200, "{set}");
    assert!(set["event_id"].as_str().unwrap().starts_with('$'));
    assert_eq!(set["policy"]["max_lifetime"], DAY);
    // Members see it as room state.
    let (status, state) = alice.get_state(&room, "m.room.retention", "").await;
    assert_eq!((status, &state["max_lifetime"]), (200, &json!(DAY)));
    let policy = dpo.get_ok(&path).await;
    assert_eq!(policy["requested"]["max_lifetime"], DAY, "{policy}");

    let overview = dpo.get_ok("/retention").await;
    let rooms = overview["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1, "{overview}");
    assert_eq!(rooms[0]["room_id"], json!(room));
    assert_eq!(rooms[0]["policy"]["max_lifetime"], DAY);
    assert_eq!(overview["last_purge"], Value::Null);
    assert_eq!(overview["next_purge_ts"], Value::Null);

    let (status, body) = dpo.put(&path, json!({ "max_lifetime": "soon" })).await;
    assert_eq!(status, 400, "{body}");

    clock.advance_ms(5_000);
    let summary = dpo.post_ok("/purge", json!({})).await;
    assert_eq!(summary["errors"], json!([]), "{summary}");
    let overview = dpo.get_ok("/retention").await;
    let last = &overview["last_purge"];
    assert_eq!(last["ts"], START + 5_000, "{overview}");
    assert!(last["counts"].is_object(), "{overview}");
    // The default purge_interval, one hour.
    assert_eq!(overview["next_purge_ts"], START + 5_000 + 3_600_000);
    server.stop().await;
}

async fn dpo_holds_and_erases(backend: Backend) {
    let server = clocked_server(backend).await;
    let url = server.url();
    let dpo_id = create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;
    let alice = Client::register(&url, "alice", "alice-pw").await;
    let bob = Client::register(&url, "bob", "bob-pw").await;
    let room = alice.create_room(json!({})).await;
    alice.send_encrypted(&room, "t1").await;
    let dpo = Console::sign_in(&url, "dpo", "dpo-pw").await;

    let hold = dpo
        .post_ok(
            "/holds",
            json!({
                "scope": "user", "target": alice.user_id,
                "case_id": "case-7", "reason": "litigation",
            }),
        )
        .await;
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
    assert_eq!(hold["set_by"], json!(dpo_id));
    assert_eq!(hold["set_ts"], START);

    // The preview names what would go, and the hold that would keep part.
    let alice_path = format!("/users/{}", encode(&alice.user_id));
    let preview = dpo.get_ok(&format!("{alice_path}/erasure")).await;
    assert_eq!(preview["user_id"], json!(alice.user_id));
    assert_eq!(
        (&preview["exists"], &preview["erased"]),
        (&json!(true), &json!(false))
    );
    let deletes = &preview["deletes"];
    assert_eq!(deletes["deleted_account"], 1, "{preview}");
    assert!(
        deletes["deleted_events"].as_u64().unwrap() >= 1,
        "{preview}"
    );
    let holds = preview["holds"].as_array().unwrap();
    assert_eq!(holds.len(), 1, "{preview}");
    assert_eq!(holds[0]["hold_id"], json!(hold_id));
    assert_eq!(holds[0]["case_id"], "case-7");
    let bob_preview = dpo
        .get_ok(&format!("/users/{}/erasure", encode(&bob.user_id)))
        .await;
    assert_eq!(bob_preview["holds"], json!([]));
    let got = dpo
        .get(&format!("/users/{}/erasure", encode("@nobody:localhost")))
        .await;
    assert_refused(got, 404, "M_NOT_FOUND", "previewing no one");

    // The confirmation must repeat the user id.
    let erase = format!("{alice_path}/erase");
    for body in [json!({ "confirm": bob.user_id }), json!({ "confirm": "" })] {
        let what = format!("erasing with {body}");
        assert_refused(dpo.post(&erase, body).await, 400, "M_INVALID_PARAM", &what);
    }
    assert_eq!(dpo.post(&erase, json!({})).await.0, 400);
    assert_eq!(alice.whoami().await["user_id"], json!(alice.user_id));
    assert!(Client::try_login(&url, "alice", "alice-pw", None)
        .await
        .is_ok());
    assert_eq!(server.audit_count("%\"action\":\"erasure\"%").await, 0);

    let released = dpo
        .post_ok(&format!("/holds/{hold_id}/release"), json!({}))
        .await;
    assert_eq!(released["released_by"], json!(dpo_id));
    assert_eq!(dpo.get_ok("/holds").await["holds"], json!([]));
    let all = dpo.get_ok("/holds?include_released=true").await;
    assert_eq!(all["holds"].as_array().unwrap().len(), 1, "{all}");

    let receipt = dpo
        .post_ok(&erase, json!({ "confirm": alice.user_id }))
        .await;
    assert_eq!(receipt["counts"]["deleted_account"], 1, "{receipt}");
    assert_eq!(receipt["complete"], true, "{receipt}");
    assert!(receipt["pseudonym"].is_string(), "{receipt}");
    assert!(Client::try_login(&url, "alice", "alice-pw", None)
        .await
        .is_err());
    assert_eq!(alice.get("/_matrix/client/v3/account/whoami").await.0, 401);
    let after = dpo.get_ok(&format!("{alice_path}/erasure")).await;
    assert_eq!(
        (&after["exists"], &after["erased"]),
        (&json!(false), &json!(true))
    );
    assert_eq!(server.audit_count("%\"action\":\"erasure\"%").await, 1);
    server.stop().await;
}

async fn dpo_exports_sealed_only(backend: Backend) {
    let server = clocked_server(backend).await;
    let url = server.url();
    create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;
    let bob = Client::register(&url, "bob", "bob-pw").await;
    let dpo = Console::sign_in(&url, "dpo", "dpo-pw").await;
    let path = format!("/users/{}/export", encode(&bob.user_id));

    let (secret, public) = cloister_audit::seal::generate_recipient_key();
    let body = json!({ "recipient_key": B64.encode(public.as_bytes()) });
    let response = dpo
        .send(Method::POST, &path, &body, Some(&dpo.csrf_token))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/octet-stream"
    );
    let sealed = response.bytes().await.unwrap();
    assert_eq!(&sealed[..4], b"CLSL");
    let opened = cloister_audit::seal::open(&sealed, &secret).unwrap();
    let opened: Value = serde_json::from_slice(&opened).unwrap();
    assert_eq!(opened["user_id"], json!(bob.user_id));

    // Random bytes are an X25519 public key too.
    let random: [u8; 32] = rand::random();
    let body = json!({ "recipient_key": B64.encode(random) });
    let (status, _, _) = dpo
        .call_full(Method::POST, &path, &body, Some(&dpo.csrf_token))
        .await;
    assert_eq!(status, 200);

    for (body, status, code) in [
        (json!({ "plain": true }), 403, "M_FORBIDDEN"),
        (json!({}), 400, "M_MISSING_PARAM"),
        (
            json!({ "recipient_key": "not a key" }),
            400,
            "M_INVALID_PARAM",
        ),
        (
            json!({ "recipient_key": B64.encode([0u8; 32]) }),
            400,
            "M_INVALID_PARAM",
        ),
    ] {
        let what = format!("exporting with {body}");
        assert_refused(dpo.post(&path, body).await, status, code, &what);
    }
    assert_eq!(
        server.audit_count("%\"action\":\"export\"%").await,
        2,
        "the two sealed exports"
    );
    server.stop().await;
}

fn entries(page: &Value) -> &Vec<Value> {
    page["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("no entries: {page}"))
}

fn seqs(page: &Value) -> Vec<u64> {
    entries(page)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

async fn dpo_browses_and_verifies_the_audit_log(backend: Backend) {
    let server = clocked_server(backend).await;
    let url = server.url();
    let clock = server.clock().unwrap().clone();
    create_staff(&server, "dpo", "dpo-pw", &[Role::Dpo]).await;
    let bob = Client::register(&url, "bob", "bob-pw").await;
    let room = bob.create_room(json!({})).await;
    let dpo = Console::sign_in(&url, "dpo", "dpo-pw").await;
    let hold = |scope: &str, target: &str| json!({ "scope": scope, "target": target, "case_id": "c-1", "reason": "r" });
    dpo.post_ok("/holds", hold("user", &bob.user_id)).await;
    clock.advance_ms(10_000);
    dpo.post_ok("/holds", hold("room", &room)).await;
    clock.advance_ms(10_000);

    let page = dpo.get_ok("/audit/entries?action=hold_set").await;
    let found = entries(&page);
    assert_eq!(found.len(), 2, "{page}");
    assert!(found.iter().all(|e| e["action"] == "hold_set"), "{page}");
    assert_eq!(found[0]["ts"], START + 10_000, "newest first");
    assert_eq!(found[1]["ts"], START);
    assert_eq!(page["actions"].as_array().unwrap().len(), 14);
    assert!(page["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("hold_set")));

    let since = dpo
        .get_ok(&format!(
            "/audit/entries?action=hold_set&since={}",
            START + 10_000
        ))
        .await;
    assert_eq!(entries(&since).len(), 1, "{since}");
    assert_eq!(entries(&since)[0]["ts"], START + 10_000);
    let until = dpo
        .get_ok(&format!(
            "/audit/entries?action=hold_set&until={}",
            START + 9_999
        ))
        .await;
    assert_eq!(entries(&until).len(), 1, "{until}");
    assert_eq!(entries(&until)[0]["ts"], START);
    let window = dpo
        .get_ok(&format!("/audit/entries?since={}", START + 10_000))
        .await;
    assert!(entries(&window)
        .iter()
        .all(|e| e["ts"].as_u64().unwrap() >= (START + 10_000) as u64));
    assert!(entries(&window).iter().any(|e| e["action"] == "admin_call"));
    assert_refused(
        dpo.get("/audit/entries?action=no_such_action").await,
        400,
        "M_INVALID_PARAM",
        "an unknown action",
    );

    // Paging back through the whole log: newest first, no overlap, no gap.
    let first = dpo.get_ok("/audit/entries?limit=3").await;
    let top = seqs(&first);
    assert_eq!(top.len(), 3, "{first}");
    assert!(top.windows(2).all(|w| w[0] == w[1] + 1), "{top:?}");
    let mut all = top.clone();
    let mut before = first["next_before"].as_u64();
    assert_eq!(before, top.last().copied());
    while let Some(cursor) = before {
        let page = dpo
            .get_ok(&format!("/audit/entries?limit=4&before={cursor}"))
            .await;
        let got = seqs(&page);
        assert!(got.iter().all(|s| *s < cursor), "{cursor}: {got:?}");
        all.extend(got);
        before = page["next_before"].as_u64();
        assert!(all.len() < 1000, "paging does not end");
    }
    let expected: Vec<u64> = (0..=top[0]).rev().collect();
    assert_eq!(all, expected, "every entry once, newest first");

    // The export verifies offline with the published key, and names no one.
    let key = dpo.get_ok("/audit/key").await;
    assert_eq!(key["origin"], "localhost/audit");
    let export = dpo.get_ok("/audit/export").await;
    let text = export.to_string();
    assert!(
        !text.contains("@bob") && !text.contains("@dpo"),
        "the log names users"
    );
    let parsed = cloister_audit::AuditExport::from_json(text.as_bytes()).unwrap();
    let verifier =
        cloister_audit::NoteVerifier::parse(key["verifier_key"].as_str().unwrap()).unwrap();
    let report = cloister_audit::verify_export(&parsed, &verifier);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.unsigned_entries, 0);
    assert!(
        report.entries > top[0],
        "the export reaches past the pages read"
    );
    server.stop().await;
}

both_backends!(
    operator_manages_accounts, operator_manages_accounts;
    operator_manages_registration_tokens, operator_manages_registration_tokens;
    dpo_sets_retention_and_purges, dpo_sets_retention_and_purges;
    dpo_holds_and_erases, dpo_holds_and_erases;
    dpo_exports_sealed_only, dpo_exports_sealed_only;
    dpo_browses_and_verifies_the_audit_log, dpo_browses_and_verifies_the_audit_log;
);
