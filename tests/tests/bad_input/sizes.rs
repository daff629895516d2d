//! Request bodies, event contents and uploads beyond their limits.

use cloister_tests::{encode, megolm_content, Backend, Client};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{
    chunked, expect_error, parse_body, raw, raw_http, send_path, MAX_BODY, MAX_EVENT, MAX_UPLOAD, R,
};
use crate::snapshot::{assert_unchanged, setup, snapshot};

// ----- size limits ---------------------------------------------------------------

/// Megolm content whose serialized form is exactly `size` bytes.
fn content_of_size(size: usize) -> Value {
    let mut content = megolm_content("k", "ALICE1");
    content["ciphertext"] = json!("");
    let empty = content.to_string().len();
    content["ciphertext"] = json!("A".repeat(size - empty));
    assert_eq!(content.to_string().len(), size);
    content
}

fn media_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(media_files(&path));
        } else {
            out.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    out
}

pub(crate) async fn limits(backend: Backend) {
    let w = setup(backend).await;
    let (alice, bob) = (&w.alice, &w.bob);
    let anon = Client::anonymous(&w.server.url());
    let room = encode(&w.room);
    let alice_id = encode(&alice.user_id);
    let data_path = format!("{R}/user/{alice_id}/account_data/org.example.big");

    // Accepted at the limits (before the snapshot): an event content of
    // exactly 65536 bytes, a body of exactly max_request_body bytes, a
    // chunked upload without a length.
    let (s, r) = alice
        .send_event(
            &w.room,
            "m.room.encrypted",
            "exact",
            content_of_size(MAX_EVENT),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let pad = MAX_BODY - json!({ "pad": "" }).to_string().len();
    let exact = json!({ "pad": "x".repeat(pad) }).to_string();
    assert_eq!(exact.len(), MAX_BODY);
    let (s, r) = raw(alice, Method::PUT, &data_path, exact.as_bytes()).await;
    assert_eq!(s, 200, "{r}");
    let head = format!(
        "POST /_matrix/media/v3/upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        alice.access_token
    );
    let (s, body) = raw_http(w.server.addr(), &head, &chunked(&[7u8; 5000])).await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&body));
    let small = parse_body(&body)["content_uri"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(bob.download_media(&small).await, (200, vec![7u8; 5000]));
    let before = snapshot(&w).await;
    let files_before = media_files(&w.server.config().media_dir());
    assert_eq!(files_before.len(), 2, "{files_before:?}");

    // Event content over 65536 bytes: 413 M_TOO_LARGE, as message, state
    // and to-device content.
    expect_error(
        alice
            .send_event(
                &w.room,
                "m.room.encrypted",
                "big",
                content_of_size(MAX_EVENT + 1),
            )
            .await,
        413,
        "M_TOO_LARGE",
        "event content of 65537 bytes",
    );
    expect_error(
        alice
            .put_state(
                &w.room,
                "m.room.topic",
                "",
                json!({ "topic": "t".repeat(MAX_EVENT) }),
            )
            .await,
        413,
        "M_TOO_LARGE",
        "state content over 65536 bytes",
    );
    expect_error(
        alice
            .put(
                &format!("{R}/sendToDevice/m.test/big"),
                json!({ "messages": { &bob.user_id: { "BOB1": { "x": "A".repeat(MAX_EVENT) } } } }),
            )
            .await,
        413,
        "M_TOO_LARGE",
        "to-device content over 65536 bytes",
    );

    // Bodies over max_request_body: 413 M_TOO_LARGE, authenticated or not.
    let big = "x".repeat(MAX_BODY);
    let over = format!("{{\"pad\":\"{}\"}}", &big[..MAX_BODY - 9]);
    assert_eq!(over.len(), MAX_BODY + 1);
    expect_error(
        raw(alice, Method::PUT, &data_path, over.as_bytes()).await,
        413,
        "M_TOO_LARGE",
        "account data one byte over the body limit",
    );
    for (client, method, path, body) in [
        (
            alice,
            Method::POST,
            format!("{R}/createRoom"),
            json!({ "name": big }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/upload"),
            json!({ "one_time_keys": { "x:y": big } }),
        ),
        (
            alice,
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "huge"),
            json!({ "ciphertext": big }),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/{room}/state/m.room.topic"),
            json!({ "topic": big }),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/query"),
            json!({ "device_keys": { big.as_str(): [] } }),
        ),
        (
            &anon,
            Method::POST,
            format!("{R}/login"),
            json!({ "type": "m.login.password", "user": "alice", "password": big }),
        ),
        (
            &anon,
            Method::POST,
            format!("{R}/register"),
            json!({ "username": "dave", "password": big }),
        ),
    ] {
        let what = format!(
            "{method} {path} with a {}-byte body",
            body.to_string().len()
        );
        expect_error(
            client.request(method, &path, body).await,
            413,
            "M_TOO_LARGE",
            &what,
        );
    }

    // Uploads over max_upload_size: 413 M_TOO_LARGE, whether the length is
    // declared up front or only discovered while streaming.
    let too_big = vec![1u8; MAX_UPLOAD + 1];
    let (s, _, body) = alice
        .request_bytes(
            Method::POST,
            "/_matrix/media/v3/upload?filename=big.bin",
            Some("application/octet-stream"),
            too_big.clone(),
        )
        .await;
    expect_error(
        (s, parse_body(&body)),
        413,
        "M_TOO_LARGE",
        "declared oversized upload",
    );
    let (s, body) = raw_http(w.server.addr(), &head, &chunked(&too_big)).await;
    expect_error(
        (s, parse_body(&body)),
        413,
        "M_TOO_LARGE",
        "chunked oversized upload",
    );

    assert_unchanged(&before, &snapshot(&w).await);
    let (s, r) = alice.get(&data_path).await;
    assert_eq!((s, r["pad"].as_str().map(str::len)), (200, Some(pad)));
    // No partial or temporary file was left behind.
    let files_after = media_files(&w.server.config().media_dir());
    assert_eq!(files_before, files_after);
    w.server.stop().await;
}
