//! Devices and sessions on both backends: the device list with coarse
//! last-seen times, renaming, deletion behind user-interactive auth, logout,
//! and password changes that log out other sessions; and the copies of
//! token rows kept for `limits.access_token_cache_ms` (`store::token_cache`):
//! every way a session ends through the server ends it at once however
//! long copies live, so does one ended by the admin commands, and a change
//! nothing announced (a row deleted behind the server's back) is seen
//! within that time, or at once with copies off.

use std::time::{Duration, Instant};

use cloister_tests::process::run_command;
use cloister_tests::{both_backends, encode, errcode, Backend, Client, ManualClock, TestServer};
use serde_json::{json, Value};

fn device<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == id)
        .unwrap_or(&Value::Null)
}

async fn devices_and_sessions(backend: Backend) {
    let start = 1_800_000_000_000;
    let clock = ManualClock::new(start);
    let server = TestServer::start_with_clock(backend, clock.clone(), |_| {}).await;
    let url = server.url();
    let phone = Client::register_device(&url, "alice", "pw", "PHONE").await;
    let laptop = Client::login(&url, "alice", "pw", Some("LAPTOP")).await;

    // Last seen is kept at a five-minute grain.
    let (_, list) = phone.get("/_matrix/client/v3/devices").await;
    assert_eq!(device(&list, "PHONE")["last_seen_ts"], start);
    clock.advance_ms(60_000);
    phone.whoami().await;
    let (_, list) = phone.get("/_matrix/client/v3/devices").await;
    assert_eq!(
        device(&list, "PHONE")["last_seen_ts"],
        start,
        "not rewritten within five minutes"
    );
    clock.advance_ms(10 * 60_000);
    phone.whoami().await;
    let (_, list) = laptop.get("/_matrix/client/v3/devices").await;
    assert_eq!(device(&list, "PHONE")["last_seen_ts"], start + 11 * 60_000);

    // Renaming.
    let laptop_path = format!("/_matrix/client/v3/devices/{}", encode("LAPTOP"));
    assert_eq!(
        phone
            .put(&laptop_path, json!({ "display_name": "Work laptop" }))
            .await
            .0,
        200
    );
    let (_, one) = phone.get(&laptop_path).await;
    assert_eq!(one["display_name"], "Work laptop");

    // Deleting a device needs the password; then its token is dead.
    let (status, challenge) = phone.delete(&laptop_path, json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(challenge["flows"][0]["stages"][0], "m.login.password");
    let session = challenge["session"].as_str().unwrap();
    let wrong = json!({ "auth": { "type": "m.login.password", "session": session, "password": "nope", "identifier": { "type": "m.id.user", "user": "alice" } } });
    let (status, body) = phone.delete(&laptop_path, wrong).await;
    assert_eq!(
        (status, errcode(&body)),
        (401, Some("M_FORBIDDEN")),
        "a wrong password is a failed stage: {body}"
    );
    let right = json!({ "auth": { "type": "m.login.password", "session": session, "password": "pw", "identifier": { "type": "m.id.user", "user": "alice" } } });
    assert_eq!(phone.delete(&laptop_path, right).await.0, 200);
    let (status, body) = laptop.get("/_matrix/client/v3/account/whoami").await;
    assert_eq!((status, errcode(&body)), (401, Some("M_UNKNOWN_TOKEN")));
    let (_, list) = phone.get("/_matrix/client/v3/devices").await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);

    // A password change logs out the other sessions, not this one.
    let tablet = Client::login(&url, "alice", "pw", Some("TABLET")).await;
    let change = json!({ "new_password": "pw2", "auth": { "type": "m.login.password", "password": "pw", "identifier": { "type": "m.id.user", "user": "alice" } } });
    assert_eq!(
        phone
            .post("/_matrix/client/v3/account/password", change)
            .await
            .0,
        200
    );
    assert_eq!(tablet.get("/_matrix/client/v3/account/whoami").await.0, 401);
    assert_eq!(phone.get("/_matrix/client/v3/account/whoami").await.0, 200);

    // Logout deletes the device; logout/all every device.
    let other = Client::login(&url, "alice", "pw2", Some("OTHER")).await;
    assert_eq!(other.logout().await.0, 200);
    let (_, list) = phone.get("/_matrix/client/v3/devices").await;
    assert!(device(&list, "OTHER").is_null(), "{list}");
    let again = Client::login(&url, "alice", "pw2", Some("AGAIN")).await;
    assert_eq!(
        phone
            .post("/_matrix/client/v3/logout/all", json!({}))
            .await
            .0,
        200
    );
    assert_eq!(phone.get("/_matrix/client/v3/account/whoami").await.0, 401);
    assert_eq!(again.get("/_matrix/client/v3/account/whoami").await.0, 401);
    server.stop().await;
}

const R: &str = "/_matrix/client/v3";

fn password_auth(user: &str, password: &str) -> Value {
    json!({ "type": "m.login.password", "password": password,
            "identifier": { "type": "m.id.user", "user": user } })
}

/// Asks as `client`, so that a copy of its token's row is kept if any is.
async fn used(client: &Client) {
    assert_eq!(whoami_status(client).await, 200);
}

async fn whoami_status(client: &Client) -> u16 {
    client.get(&format!("{R}/account/whoami")).await.0
}

async fn refused(client: &Client, what: &str) {
    let (status, body) = client.get(&format!("{R}/account/whoami")).await;
    assert_eq!(
        (status, errcode(&body)),
        (401, Some("M_UNKNOWN_TOKEN")),
        "{what}: {body}"
    );
}

async fn sessions_end_at_once(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.access_token_cache_ms = 3_600_000;
    })
    .await;
    let url = server.url();

    let alice = Client::register_device(&url, "alice", "pw", "PHONE").await;
    let laptop = Client::login(&url, "alice", "pw", Some("LAPTOP")).await;
    let tablet = Client::login(&url, "alice", "pw", Some("TABLET")).await;
    for c in [&alice, &laptop, &tablet] {
        used(c).await;
    }

    // Logout.
    assert_eq!(tablet.logout().await.0, 200);
    refused(&tablet, "logged out").await;

    // Deleting a device.
    let path = format!("{R}/devices/LAPTOP");
    let (status, challenge) = alice.delete(&path, json!({})).await;
    assert_eq!(status, 401);
    let mut auth = password_auth("alice", "pw");
    auth["session"] = challenge["session"].clone();
    assert_eq!(alice.delete(&path, json!({ "auth": auth })).await.0, 200);
    refused(&laptop, "its device deleted").await;
    used(&alice).await;

    // A password change logs out the other sessions.
    let other = Client::login(&url, "alice", "pw", Some("OTHER")).await;
    used(&other).await;
    let change = json!({ "new_password": "pw2", "auth": password_auth("alice", "pw") });
    assert_eq!(
        alice.post(&format!("{R}/account/password"), change).await.0,
        200
    );
    refused(&other, "logged out by a password change").await;
    used(&alice).await;

    // Logout everywhere.
    let again = Client::login(&url, "alice", "pw2", Some("AGAIN")).await;
    used(&again).await;
    assert_eq!(
        alice.post(&format!("{R}/logout/all"), json!({})).await.0,
        200
    );
    refused(&alice, "logged out everywhere").await;
    refused(&again, "logged out everywhere, another device").await;

    // Deactivation.
    let bob = Client::register(&url, "bob", "pw").await;
    let bob_laptop = Client::login(&url, "bob", "pw", Some("BOBLAPTOP")).await;
    used(&bob).await;
    used(&bob_laptop).await;
    let body = json!({ "auth": password_auth("bob", "pw") });
    assert_eq!(
        bob.post(&format!("{R}/account/deactivate"), body).await.0,
        200
    );
    refused(&bob, "deactivated").await;
    refused(&bob_laptop, "deactivated, another device").await;
    // The copies were used, and dropped as sessions ended.
    let metrics = server.metrics().await;
    for name in [
        "cloister_access_token_copies_used_total",
        "cloister_access_token_copies_dropped_total",
    ] {
        let value: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"));
        assert!(value > 0, "{name} is 0");
    }
    server.stop().await;
}

/// Deletes a token's row behind the server's back, as another node or the
/// admin commands would.
async fn delete_elsewhere(server: &TestServer, client: &Client) {
    sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
        .bind(&client.user_id)
        .bind(&client.device_id)
        .execute(server.state().store.pool())
        .await
        .expect("delete the token's row");
}

async fn changes_elsewhere_within_the_time(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.access_token_cache_ms = 400;
    })
    .await;
    let carol = Client::register(&server.url(), "carol", "pw").await;
    used(&carol).await;
    delete_elsewhere(&server, &carol).await;
    // Within the time to live the copy still answers: this is the bound
    // operators accept with a non-zero setting (docs/operators.md).
    used(&carol).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    refused(&carol, "deleted elsewhere, after the time to live").await;
    server.stop().await;

    let server = TestServer::start_with(backend, |c| {
        c.limits.access_token_cache_ms = 0;
    })
    .await;
    let dave = Client::register(&server.url(), "dave", "pw").await;
    used(&dave).await;
    delete_elsewhere(&server, &dave).await;
    refused(&dave, "deleted elsewhere, with copies off").await;
    server.stop().await;
}

/// The admin commands run no node: they tell the running one themselves
/// (SQLite: a marker file beside the database; PostgreSQL: a notification
/// sent with their commit), so a password reset from the command line ends
/// sessions there even with copies kept for an hour.
async fn admin_commands_end_sessions_on_the_running_node(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.limits.access_token_cache_ms = 3_600_000;
    })
    .await;
    let erin = Client::register(&server.url(), "erin", "pw").await;
    // Twice: the second is answered from the copy the first kept.
    used(&erin).await;
    used(&erin).await;
    let args = [
        "user",
        "reset-password",
        "erin",
        "--password",
        "erin-2nd-secret",
    ];
    let out = run_command(&server, &args, Vec::new()).await;
    assert!(out.status.success(), "{out:?}");
    // SQLite: at once. PostgreSQL: once the node's listener has heard it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while whoami_status(&erin).await != 401 {
        assert!(
            backend == Backend::Postgres && Instant::now() < deadline,
            "a session ended by the admin commands still works on {}",
            backend.name()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refused(&erin, "after reset-password from the command line").await;
    server.stop().await;
}

both_backends!(
    devices_and_sessions, devices_and_sessions;
    admin_commands_end_sessions_on_the_running_node, admin_commands_end_sessions_on_the_running_node;
    sessions_end_at_once, sessions_end_at_once;
    changes_elsewhere_within_the_time, changes_elsewhere_within_the_time
);
