//! Smoke test of the harness and the server foundation, on both backends:
//! discovery, registration (with user-interactive auth), login, an
//! authenticated request, and a restart that keeps accounts and tokens.

use cloister_tests::{both_backends, errcode, Backend, Client, TestServer};
use serde_json::json;

async fn smoke(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let anon = Client::anonymous(&server.url());

    // Discovery.
    let (status, versions) = anon.get("/_matrix/client/versions").await;
    assert_eq!(status, 200, "{versions}");
    let listed: Vec<&str> = versions["versions"]
        .as_array()
        .expect("versions is an array")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(listed.contains(&"v1.11"), "versions: {versions}");
    let (status, health) = anon.get("/health").await;
    assert_eq!(status, 200, "{health}");

    // Registration through user-interactive auth.
    let alice = Client::register(&server.url(), "alice", "alice-password").await;
    let bob = Client::register(&server.url(), "bob", "bob-password").await;
    assert_eq!(alice.user_id, server.user_id("alice"));
    assert_eq!(bob.user_id, "@bob:localhost");
    assert!(!alice.device_id.is_empty() && !alice.access_token.is_empty());
    assert_ne!(alice.access_token, bob.access_token);

    // The user id is taken now.
    let taken =
        Client::try_register(&server.url(), json!({"username": "alice", "password": "x"})).await;
    let (status, body) = taken.expect_err("a second alice must be refused");
    assert_eq!(status, 400, "{body}");
    assert_eq!(errcode(&body), Some("M_USER_IN_USE"), "{body}");

    // whoami names the user and device behind a token.
    let me = alice.whoami().await;
    assert_eq!(me["user_id"], alice.user_id.as_str(), "{me}");
    assert_eq!(me["device_id"], alice.device_id.as_str(), "{me}");

    // Authenticated requests need a valid token.
    let (status, caps) = alice.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(status, 200, "{caps}");
    let (status, body) = anon.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(errcode(&body), Some("M_MISSING_TOKEN"), "{body}");
    let (status, body) = alice
        .with_token("not-a-token")
        .get("/_matrix/client/v3/capabilities")
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(errcode(&body), Some("M_UNKNOWN_TOKEN"), "{body}");

    // Password login, with and without a chosen device id.
    let alice2 = Client::login(&server.url(), "alice", "alice-password", Some("LAPTOP")).await;
    assert_eq!(alice2.user_id, alice.user_id);
    assert_eq!(alice2.device_id, "LAPTOP");
    let wrong = Client::try_login(&server.url(), "alice", "wrong", None).await;
    let (status, body) = wrong.expect_err("a wrong password must be refused");
    assert_eq!(status, 403, "{body}");
    assert_eq!(errcode(&body), Some("M_FORBIDDEN"), "{body}");

    // A restart keeps accounts, devices and access tokens.
    server.restart().await;
    let alice = alice.with_base(&server.url());
    let (status, caps) = alice.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(status, 200, "the token survives a restart: {caps}");
    assert_eq!(alice.whoami().await["user_id"], alice.user_id.as_str());
    let again = Client::login(&server.url(), "alice", "alice-password", None).await;
    assert_eq!(again.user_id, alice.user_id);
    assert_eq!(again.whoami().await["user_id"], alice.user_id.as_str());
    let bob = Client::login(&server.url(), "bob", "bob-password", None).await;
    assert_eq!(bob.user_id, "@bob:localhost");

    server.stop().await;
}

/// The harness's room, sync, key and media helpers against the real server.
async fn helpers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw-alice").await;
    let bob = Client::register(&server.url(), "bob", "pw-bob").await;

    let keys = alice.device_keys();
    let counts = alice.upload_keys(&keys, 5).await;
    assert_eq!(counts["signed_curve25519"], 5, "{counts}");
    let (status, query) = bob
        .post(
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": { alice.user_id.as_str(): [] } }),
        )
        .await;
    assert_eq!(status, 200, "{query}");
    let published = &query["device_keys"][alice.user_id.as_str()][alice.device_id.as_str()];
    assert!(
        cloister_tests::keys::verify_json(
            published,
            &alice.user_id,
            &keys.ed25519_key_id(),
            &keys.ed25519()
        ),
        "published keys keep a valid signature: {published}"
    );

    let room = alice.create_room(json!({ "preset": "private_chat" })).await;
    let (status, encryption) = alice.get_state(&room, "m.room.encryption", "").await;
    assert_eq!(status, 200, "{encryption}");
    let (status, body) = alice.invite(&room, &bob.user_id).await;
    assert_eq!(status, 200, "{body}");
    let initial = bob.sync(None, 0).await;
    assert!(
        initial["rooms"]["invite"].get(&room).is_some(),
        "bob sees the invite: {initial}"
    );
    assert_eq!(bob.join(&room).await, room);

    let since = bob.sync(None, 0).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let event_id = alice.send_encrypted(&room, "txn1").await;
    let got = bob
        .sync_until(Some(&since), std::time::Duration::from_secs(20), |r| {
            r["rooms"]["join"][room.as_str()]["timeline"]["events"]
                .as_array()
                .is_some_and(|events| events.iter().any(|e| e["event_id"] == event_id.as_str()))
        })
        .await;
    assert!(got["next_batch"].is_string());
    let messages = bob.messages(&room, 10).await;
    assert!(
        messages["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_id"] == event_id.as_str() && e["type"] == "m.room.encrypted"),
        "{messages}"
    );

    let blob: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let mxc = alice
        .upload_media(blob.clone(), "application/octet-stream", "blob.bin")
        .await;
    let (status, downloaded) = bob.download_media(&mxc).await;
    assert_eq!(status, 200);
    assert_eq!(downloaded, blob);

    server.stop().await;
}

both_backends!(smoke_test, smoke; helper_test, helpers);

/// The harness's own promise: a Postgres test server's database is gone
/// after `stop`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_is_dropped_on_stop() {
    use sqlx::{Connection, Row};

    let server = TestServer::start(Backend::Postgres).await;
    let url = server.database_url();
    let name = url
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .unwrap()
        .to_owned();
    assert!(name.starts_with("cloister_test_"), "{url}");
    server.stop().await;

    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&cloister_tests::postgres::admin_url())
        .await
        .unwrap();
    let row = sqlx::query("SELECT COUNT(*) AS n FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(row.get::<i64, _>("n"), 0, "{name} still exists");
    conn.close().await.unwrap();
}
