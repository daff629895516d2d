//! Devices and sessions on both backends: the device list with coarse
//! last-seen times, renaming, deletion behind user-interactive auth, logout,
//! and password changes that log out other sessions.

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

both_backends!(devices_and_sessions, devices_and_sessions);
