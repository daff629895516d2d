//! The `m.oauth` stage (MSC4312) on both backends: an app signed in
//! through the OAuth API replaces the cross-signing keys only after the
//! person approved it on the account management page, once, within ten
//! minutes; apps signed in with a password keep the password stage.

use cloister_tests::keys::b64;
use cloister_tests::oauth::{App, Browser};
use cloister_tests::{both_backends, Backend, Client, ManualClock, TestServer};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

const PW: &str = "pw-alice-123";

fn master(user_id: &str, seed: u8) -> Value {
    let public = b64(SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .as_bytes());
    json!({ "master_key": { "user_id": user_id, "usage": ["master"], "keys": { format!("ed25519:{public}"): public } } })
}

async fn upload(c: &Client, body: Value) -> (u16, Value) {
    c.post("/_matrix/client/v3/keys/device_signing/upload", body)
        .await
}

/// Approves (or not) on the page an `m.oauth` challenge names.
async fn answer_on_the_account_page(url: &str, allow: bool) -> String {
    let mut browser = Browser::new();
    let (page_url, page) = browser.open(url).await;
    assert_eq!(page.status, 200, "{page:?}");
    let question = browser.sign_in(&page_url, &page, "alice", PW).await;
    assert_eq!(question.status, 200, "{question:?}");
    assert!(question.body.contains("cross-signing"), "{}", question.body);
    let done = browser.decide_device(&page_url, &question, allow).await;
    assert_eq!(done.status, 200, "{done:?}");
    done.body
}

async fn cross_signing_reset_needs_the_account_page(backend: Backend) {
    let server =
        TestServer::start_with_clock(backend, ManualClock::new(1_800_000_000_000), |_| {}).await;
    let clock = server.clock().unwrap();
    let url = server.url();
    let alice = Client::register(&url, "alice", PW).await;
    let (_, meta) = alice.get("/_matrix/client/v1/auth_metadata").await;
    let account = meta["account_management_uri"].as_str().unwrap().to_owned();
    assert!(account.ends_with("/_cloister/account/"), "{meta}");
    assert_eq!(
        meta["account_management_actions_supported"],
        json!(["org.matrix.cross_signing_reset"])
    );

    let app = App::register(&url).await;
    let tokens = app.sign_in("alice", PW, "ALICEPHONE1").await;
    let phone = alice.with_token(tokens["access_token"].as_str().unwrap());
    let me = alice.user_id.clone();
    // Setting keys up the first time needs nothing.
    assert_eq!(upload(&phone, master(&me, 1)).await.0, 200);

    // Replacing them: the app is sent to the account page.
    let (status, challenge) = upload(&phone, master(&me, 2)).await;
    assert_eq!(status, 401, "{challenge}");
    let flows: Vec<&Value> = challenge["flows"].as_array().unwrap().iter().collect();
    assert!(
        flows.iter().any(|f| f["stages"] == json!(["m.oauth"])),
        "{challenge}"
    );
    let reset = challenge["params"]["m.oauth"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        reset,
        format!("{account}?action=org.matrix.cross_signing_reset")
    );
    // Retrying before the person approved changes nothing.
    let retry = json!({ "type": "m.oauth", "session": challenge["session"] });
    let mut body = master(&me, 2);
    body["auth"] = retry;
    assert_eq!(upload(&phone, body).await.0, 401);

    // Denied: still no.
    let page = answer_on_the_account_page(&reset, false).await;
    assert!(page.contains("role=\"status\""), "{page}");
    assert_eq!(upload(&phone, master(&me, 2)).await.0, 401);

    // Allowed: the app's next try goes through, once.
    answer_on_the_account_page(&reset, true).await;
    let (status, body) = upload(&phone, master(&me, 2)).await;
    assert_eq!(status, 200, "{body}");
    let (_, keys) = phone
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { &me: [] } }),
        )
        .await;
    assert_eq!(
        keys["master_keys"][&me]["keys"],
        master(&me, 2)["master_key"]["keys"]
    );
    assert_eq!(
        upload(&phone, master(&me, 3)).await.0,
        401,
        "an approval is spent once"
    );

    // An approval not used within 10 minutes lapses.
    answer_on_the_account_page(&reset, true).await;
    clock.advance_ms(11 * 60_000);
    assert_eq!(upload(&phone, master(&me, 3)).await.0, 401);

    // A device signed in with a password confirms with the password.
    let (status, challenge) = upload(&alice, master(&me, 3)).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge["flows"],
        json!([{ "stages": ["m.login.password"] }]),
        "{challenge}"
    );
    // An unknown action is refused.
    let odd = Browser::new()
        .get(&format!("{account}?action=org.matrix.profile"))
        .await;
    assert_eq!(odd.status, 400, "{odd:?}");
    server.stop().await;
}

both_backends!(
    cross_signing_reset_needs_the_account_page,
    cross_signing_reset_needs_the_account_page
);
