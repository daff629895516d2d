//! Malformed JSON, wrong types, numbers outside canonical JSON.

use cloister_tests::{encode, megolm_content, Backend, Client};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{expect_error, raw, send_path, R};
use crate::snapshot::{assert_unchanged, setup, snapshot};

// ----- malformed JSON, wrong types, numbers ------------------------------------

pub(crate) async fn malformed(backend: Backend) {
    let w = setup(backend).await;
    let (alice, bob) = (&w.alice, &w.bob);
    let anon = Client::anonymous(&w.server.url());
    let room = encode(&w.room);
    let alice_id = encode(&alice.user_id);

    // The largest canonical integers are accepted (before the snapshot).
    // Sent as room state: encrypted events may carry only Megolm's fields.
    let content = json!({ "n": (1i64 << 53) - 1, "m": [-((1i64 << 53) - 1)] });
    let (s, r) = alice
        .put_state(&w.room, "org.example.numbers", "", content)
        .await;
    assert_eq!(s, 200, "{r}");
    let before = snapshot(&w).await;

    // Not JSON at all: 400 M_NOT_JSON.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for (method, path, body) in [
        (Method::POST, format!("{R}/createRoom"), &b"{\"name\": "[..]),
        (
            Method::POST,
            format!("{R}/createRoom"),
            &b"{'name': 'x'}"[..],
        ),
        (
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "nj1"),
            &b"{\"algorithm\":"[..],
        ),
        (
            Method::PUT,
            format!("{R}/profile/{alice_id}/displayname"),
            &b"\xff\xfe"[..],
        ),
        (
            Method::PUT,
            format!("{R}/user/{alice_id}/account_data/org.example.data"),
            &b"{\"a\": 1}}"[..],
        ),
        (Method::POST, format!("{R}/keys/upload"), &b"[1, 2"[..]),
        (Method::POST, format!("{R}/keys/query"), &b"nul"[..]),
        (
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "nj2"),
            deep.as_bytes(),
        ),
    ] {
        expect_error(
            raw(alice, method.clone(), &path, body).await,
            400,
            "M_NOT_JSON",
            &format!(
                "{method} {path} {:?}",
                String::from_utf8_lossy(&body[..body.len().min(20)])
            ),
        );
    }
    expect_error(
        raw(&anon, Method::POST, &format!("{R}/login"), b"not json").await,
        400,
        "M_NOT_JSON",
        "login with a non-JSON body",
    );
    expect_error(
        raw(
            &anon,
            Method::POST,
            &format!("{R}/register"),
            b"{\"username\"",
        )
        .await,
        400,
        "M_NOT_JSON",
        "register with truncated JSON",
    );

    // JSON of the wrong shape: 400 M_BAD_JSON.
    let cases: Vec<(&Client, Method, String, Value)> = vec![
        (
            alice,
            Method::POST,
            format!("{R}/createRoom"),
            json!({ "invite": "x" }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/createRoom"),
            json!({ "name": 5 }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/createRoom"),
            json!({ "is_direct": "yes" }),
        ),
        (alice, Method::POST, format!("{R}/createRoom"), json!([])),
        (
            alice,
            Method::POST,
            format!("{R}/createRoom"),
            json!({ "initial_state": [{ "type": "m.room.topic" }] }),
        ),
        (
            &anon,
            Method::POST,
            format!("{R}/login"),
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": 123 }),
        ),
        (
            &anon,
            Method::POST,
            format!("{R}/login"),
            json!({ "password": "alice-pw" }),
        ),
        (
            &anon,
            Method::POST,
            format!("{R}/register"),
            json!({ "username": ["alice"] }),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/profile/{alice_id}/displayname"),
            json!({ "displayname": 5 }),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/profile/{alice_id}/avatar_url"),
            json!({ "avatar_url": { "url": "mxc://localhost/x" } }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/query"),
            json!({ "device_keys": { &bob.user_id: "BOB1" } }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/claim"),
            json!({ "one_time_keys": { &bob.user_id: ["BOB1"] } }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/upload"),
            json!({ "device_keys": "x" }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/upload"),
            json!({ "one_time_keys": [] }),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/sendToDevice/m.test/bj1"),
            json!({ "messages": [] }),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/sendToDevice/m.test/bj2"),
            json!({}),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/{room}/typing/{alice_id}"),
            json!({ "typing": "yes" }),
        ),
        (
            alice,
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "bj3"),
            json!([megolm_content("k", "D")]),
        ),
        (
            alice,
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "bj4"),
            json!("ciphertext"),
        ),
        (
            alice,
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "bj5"),
            json!({ "algorithm": "m.megolm.v1.aes-sha2", "session_id": "s" }),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/{room}/state/m.room.topic"),
            json!(["topic"]),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/user/{alice_id}/account_data/org.example.data"),
            json!([1]),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/user/{alice_id}/filter"),
            json!([]),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/room_keys/version"),
            json!({ "algorithm": 1, "auth_data": {} }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/rooms/{room}/invite"),
            json!({ "user_id": 7 }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/delete_devices"),
            json!({ "devices": "BOB1" }),
        ),
    ];
    for (client, method, path, body) in cases {
        let what = format!("{method} {path} {body}");
        expect_error(
            client.request(method, &path, body).await,
            400,
            "M_BAD_JSON",
            &what,
        );
    }

    // Numbers Matrix cannot sign: floats and integers beyond ±(2^53-1),
    // anywhere in the content. 400 M_BAD_JSON.
    let base = serde_json::to_string(&megolm_content("k", "ALICE1")).unwrap();
    let numbers = [
        "1.5",
        "0.0",
        "-2.25",
        "1e3",
        "1E-7",
        "9007199254740992",
        "-9007199254740992",
        "18446744073709551615",
        "100000000000000000000000000000",
        "[1, 2, 0.5]",
        "{\"deep\": {\"deeper\": [9007199254740993]}}",
    ];
    for (i, number) in numbers.iter().enumerate() {
        let body = format!("{},\"n\":{number}}}", &base[..base.len() - 1]);
        expect_error(
            raw(
                alice,
                Method::PUT,
                &send_path(&w.room, "m.room.encrypted", &format!("num-{i}")),
                body.as_bytes(),
            )
            .await,
            400,
            "M_BAD_JSON",
            &format!("event content with {number}"),
        );
        let state = format!("{{\"topic\":\"x\",\"n\":{number}}}");
        expect_error(
            raw(
                alice,
                Method::PUT,
                &format!("{R}/rooms/{room}/state/m.room.topic"),
                state.as_bytes(),
            )
            .await,
            400,
            "M_BAD_JSON",
            &format!("state content with {number}"),
        );
        let data = format!("{{\"n\":{number}}}");
        expect_error(
            raw(
                alice,
                Method::PUT,
                &format!("{R}/user/{alice_id}/account_data/org.example.data"),
                data.as_bytes(),
            )
            .await,
            400,
            "M_BAD_JSON",
            &format!("account data with {number}"),
        );
        let to_device = format!(
            "{{\"messages\":{{\"{}\":{{\"BOB1\":{{\"n\":{number}}}}}}}}}",
            bob.user_id
        );
        expect_error(
            raw(
                alice,
                Method::PUT,
                &format!("{R}/sendToDevice/m.test/num-{i}"),
                to_device.as_bytes(),
            )
            .await,
            400,
            "M_BAD_JSON",
            &format!("to-device content with {number}"),
        );
    }
    let (s, r) = alice
        .post(
            &format!("{R}/createRoom"),
            json!({ "power_level_content_override": { "ban": 9007199254740992i64 } }),
        )
        .await;
    expect_error((s, r), 400, "M_BAD_JSON", "power levels beyond 2^53");

    // The user-facing state is exactly as before.
    assert_unchanged(&before, &snapshot(&w).await);
    // Nothing was delivered to Bob's device either.
    let sync = bob.sync(None, 0).await;
    assert_eq!(sync["to_device"]["events"], json!([]), "{sync}");
    w.server.stop().await;
}
