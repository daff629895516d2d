//! Bad input, on SQLite and PostgreSQL: every refused request gets the
//! exact status and Matrix `errcode` (with an `error` message), and none of
//! them changes anything. Each scenario takes a snapshot of what the users
//! can see (room history and state, profiles, account data, devices, keys,
//! media, joined rooms) before the bad requests and compares it afterwards.
//!
//! Covered: malformed JSON, wrong types, numbers outside canonical JSON,
//! request bodies, event contents and uploads beyond their limits (also a
//! chunked upload without a length), unknown rooms and users, missing and
//! bad access tokens, other users' devices and data, unknown endpoints and
//! methods, invalid sync and pagination tokens, path traversal on media
//! downloads, and rate limiting.

use std::net::SocketAddr;
use std::time::Duration;

use cloister_tests::{both_backends, encode, errcode, megolm_content, Backend, Client, TestServer};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const R: &str = "/_matrix/client/v3";
/// `limits.max_request_body` of the test servers here.
const MAX_BODY: usize = 100_000;
/// `limits.max_upload_size`: larger than `MAX_BODY`, since uploads are raw
/// bytes and not JSON bodies.
const MAX_UPLOAD: usize = 200_000;
const MAX_EVENT: usize = 65_536;

// ----- requests and assertions ---------------------------------------------

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// Sends `body` verbatim as `application/json`.
async fn raw(c: &Client, method: Method, path: &str, body: &[u8]) -> (u16, Value) {
    let (s, _, bytes) = c
        .request_bytes(method, path, Some("application/json"), body.to_vec())
        .await;
    (s, parse_body(&bytes))
}

/// A request with exactly the given headers (no access token of a client).
async fn with_headers(
    base: &str,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    (status, parse_body(&response.bytes().await.unwrap()))
}

/// Asserts a Matrix error: the status, the errcode and a string `error`.
#[track_caller]
fn expect_error(got: (u16, Value), status: u16, code: &str, what: &str) {
    let (s, body) = got;
    assert_eq!(
        (s, errcode(&body)),
        (status, Some(code)),
        "{what}: expected {status} {code}, got {s} {body}"
    );
    assert!(
        body["error"].is_string(),
        "{what}: the error has no message: {body}"
    );
}

/// A raw HTTP/1.1 exchange over TCP, for requests `reqwest` would not send
/// as written (dot segments, chunked uploads). Returns status and body.
async fn raw_http(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    // The server may answer (and close) before it has read everything.
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut answer)).await;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&answer)));
    let head = String::from_utf8_lossy(&answer[..split]).to_lowercase();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let mut rest = &answer[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap_or(0);
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..line_end])
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .unwrap_or(0);
            if size == 0 {
                break;
            }
            rest = &rest[line_end + 2..];
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        out
    } else {
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(rest.len());
        rest[..length.min(rest.len())].to_vec()
    };
    (status, body)
}

/// `Transfer-Encoding: chunked` encoding of `data` in 1000-byte chunks.
fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in data.chunks(1000) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn send_path(room: &str, event_type: &str, txn: &str) -> String {
    format!(
        "{R}/rooms/{}/send/{}/{}",
        encode(room),
        encode(event_type),
        encode(txn)
    )
}

// ----- the world and its snapshot --------------------------------------------

struct World {
    server: TestServer,
    alice: Client,
    bob: Client,
    /// Registered, but in no room with Alice and Bob.
    carol: Client,
    /// Encrypted; Alice (creator, power 100) and Bob (power 0) are joined.
    room: String,
    /// Ids of Alice's encrypted events in `room`.
    events: Vec<String>,
    media: String,
}

async fn setup(backend: Backend) -> World {
    let server = TestServer::start_with(backend, |c| {
        c.limits.max_request_body = MAX_BODY;
        c.limits.max_upload_size = MAX_UPLOAD;
    })
    .await;
    let url = server.url();
    let alice = Client::register_device(&url, "alice", "alice-pw", "ALICE1").await;
    let bob = Client::register_device(&url, "bob", "bob-pw", "BOB1").await;
    let carol = Client::register_device(&url, "carol", "carol-pw", "CAROL1").await;
    for (c, name) in [(&alice, "Alice"), (&bob, "Bob"), (&carol, "Carol")] {
        let (s, r) = c
            .put(
                &format!("{R}/profile/{}/displayname", encode(&c.user_id)),
                json!({ "displayname": name }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
        c.upload_keys(&c.device_keys(), 5).await;
        let (s, r) = c
            .put(
                &format!(
                    "{R}/user/{}/account_data/org.example.data",
                    encode(&c.user_id)
                ),
                json!({ "owner": c.user_id, "n": 1 }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
    let room = alice
        .create_room(json!({ "invite": [bob.user_id], "name": "bad input", "topic": "t" }))
        .await;
    bob.join(&room).await;
    let mut events = Vec::new();
    for i in 0..3 {
        events.push(alice.send_encrypted(&room, &format!("setup-{i}")).await);
    }
    let bytes: Vec<u8> = (0..MAX_UPLOAD).map(|i| (i % 251) as u8).collect();
    let media = alice
        .upload_media(bytes, "application/octet-stream", "blob.bin")
        .await;
    World {
        server,
        alice,
        bob,
        carol,
        room,
        events,
        media,
    }
}

/// Everything the bad requests must leave alone, as seen through the API.
async fn snapshot(w: &World) -> Value {
    let mut out = serde_json::Map::new();
    let history = w.alice.messages(&w.room, 1000).await;
    let ids: Vec<Value> = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].clone())
        .collect();
    out.insert("messages".into(), Value::Array(ids));
    let (s, state) = w
        .alice
        .get(&format!("{R}/rooms/{}/state", encode(&w.room)))
        .await;
    assert_eq!(s, 200, "{state}");
    let mut state: Vec<Value> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| json!([e["type"], e["state_key"], e["event_id"], e["content"]]))
        .collect();
    state.sort_by_key(|v| v.to_string());
    out.insert("state".into(), Value::Array(state));
    for c in [&w.alice, &w.bob, &w.carol] {
        let mut me = serde_json::Map::new();
        let uid = encode(&c.user_id);
        for (name, path) in [
            ("profile", format!("{R}/profile/{uid}")),
            (
                "data",
                format!("{R}/user/{uid}/account_data/org.example.data"),
            ),
            (
                "room_data",
                format!(
                    "{R}/user/{uid}/rooms/{}/account_data/org.example.data",
                    encode(&w.room)
                ),
            ),
            ("devices", format!("{R}/devices")),
            ("joined", format!("{R}/joined_rooms")),
            ("whoami", format!("{R}/account/whoami")),
            ("pushrules", format!("{R}/pushrules/")),
            ("backup", format!("{R}/room_keys/version")),
        ] {
            let (s, body) = c.get(&path).await;
            me.insert(name.into(), json!([s, body]));
        }
        let keys = c
            .expect_ok(
                Method::POST,
                &format!("{R}/keys/query"),
                json!({ "device_keys": { &w.alice.user_id: [], &w.bob.user_id: [], &w.carol.user_id: [] } }),
            )
            .await;
        me.insert("keys".into(), keys);
        let sync = c.sync(None, 0).await;
        me.insert(
            "one_time_keys".into(),
            sync["device_one_time_keys_count"].clone(),
        );
        out.insert(c.user_id.clone(), Value::Object(me));
    }
    let (s, bytes) = w.bob.download_media(&w.media).await;
    assert_eq!(s, 200);
    out.insert("media".into(), json!(bytes.len()));
    out.insert(
        "media_ok".into(),
        json!(bytes.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8)),
    );
    Value::Object(out)
}

#[track_caller]
fn assert_unchanged(before: &Value, after: &Value) {
    if before != after {
        let (b, a) = (before.as_object().unwrap(), after.as_object().unwrap());
        for (k, v) in b {
            assert_eq!(Some(v), a.get(k), "{k} changed");
        }
        panic!("snapshots differ: {before} vs {after}");
    }
}

// ----- malformed JSON, wrong types, numbers ------------------------------------

async fn malformed(backend: Backend) {
    let w = setup(backend).await;
    let (alice, bob) = (&w.alice, &w.bob);
    let anon = Client::anonymous(&w.server.url());
    let room = encode(&w.room);
    let alice_id = encode(&alice.user_id);

    // The largest canonical integers are accepted (before the snapshot).
    let mut content = megolm_content("k", "ALICE1");
    content["n"] = json!((1i64 << 53) - 1);
    content["m"] = json!([-((1i64 << 53) - 1)]);
    let (s, r) = alice
        .send_event(&w.room, "m.room.encrypted", "max-int", content)
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

async fn limits(backend: Backend) {
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

// ----- wrong targets, tokens, endpoints, tokens, traversal -----------------------

async fn wrong_targets(backend: Backend) {
    let w = setup(backend).await;
    let (alice, bob, carol) = (&w.alice, &w.bob, &w.carol);
    let url = w.server.url();
    let room = encode(&w.room);
    let bob_id = encode(&bob.user_id);
    let nope = encode("!nope:localhost");
    let before = snapshot(&w).await;

    // Unknown room: 404 M_NOT_FOUND (service/events.rs and
    // service/rooms.rs check that the room exists before anything else).
    for (method, path, body) in [
        (
            Method::PUT,
            send_path("!nope:localhost", "m.room.encrypted", "t1"),
            megolm_content("k", "D"),
        ),
        (
            Method::GET,
            format!("{R}/rooms/{nope}/messages?dir=b"),
            Value::Null,
        ),
        (Method::GET, format!("{R}/rooms/{nope}/state"), Value::Null),
        (
            Method::GET,
            format!("{R}/rooms/{nope}/state/m.room.encryption"),
            Value::Null,
        ),
        (
            Method::PUT,
            format!("{R}/rooms/{nope}/state/m.room.topic"),
            json!({ "topic": "x" }),
        ),
        (
            Method::GET,
            format!("{R}/rooms/{nope}/members"),
            Value::Null,
        ),
        (
            Method::GET,
            format!("{R}/rooms/{nope}/aliases"),
            Value::Null,
        ),
        (
            Method::GET,
            format!("{R}/rooms/{nope}/event/%24x"),
            Value::Null,
        ),
        (Method::POST, format!("{R}/join/{nope}"), json!({})),
        (Method::POST, format!("{R}/rooms/{nope}/join"), json!({})),
        (
            Method::POST,
            format!("{R}/join/{}", encode("#nope:localhost")),
            json!({}),
        ),
        (
            Method::POST,
            format!("{R}/rooms/{nope}/invite"),
            json!({ "user_id": bob.user_id }),
        ),
        (Method::POST, format!("{R}/rooms/{nope}/leave"), json!({})),
        (
            Method::POST,
            format!("{R}/rooms/{nope}/kick"),
            json!({ "user_id": bob.user_id }),
        ),
        (
            Method::POST,
            format!("{R}/rooms/{nope}/ban"),
            json!({ "user_id": bob.user_id }),
        ),
        (Method::POST, format!("{R}/rooms/{nope}/forget"), json!({})),
    ] {
        let what = format!("{method} {path}");
        expect_error(
            alice.request(method, &path, body).await,
            404,
            "M_NOT_FOUND",
            &what,
        );
    }
    // Rooms one is not in: 403 M_FORBIDDEN.
    for (method, path, body) in [
        (
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "c1"),
            megolm_content("k", "CAROL1"),
        ),
        (
            Method::GET,
            format!("{R}/rooms/{room}/messages?dir=b"),
            Value::Null,
        ),
        (Method::GET, format!("{R}/rooms/{room}/state"), Value::Null),
        (
            Method::GET,
            format!("{R}/rooms/{room}/members"),
            Value::Null,
        ),
        (
            Method::GET,
            format!("{R}/rooms/{room}/joined_members"),
            Value::Null,
        ),
        (
            Method::GET,
            format!("{R}/rooms/{room}/event/{}", encode(&w.events[0])),
            Value::Null,
        ),
        (
            Method::GET,
            format!("{R}/rooms/{room}/context/{}", encode(&w.events[0])),
            Value::Null,
        ),
        (Method::POST, format!("{R}/join/{room}"), json!({})),
        (
            Method::POST,
            format!("{R}/rooms/{room}/invite"),
            json!({ "user_id": carol.user_id }),
        ),
        (
            Method::PUT,
            format!("{R}/rooms/{room}/typing/{}", encode(&carol.user_id)),
            json!({ "typing": true }),
        ),
        (
            Method::POST,
            format!("{R}/rooms/{room}/receipt/m.read/{}", encode(&w.events[0])),
            json!({}),
        ),
        (
            Method::GET,
            format!("{R}/rooms/{nope}/joined_members"),
            Value::Null,
        ),
    ] {
        let what = format!("carol {method} {path}");
        expect_error(
            carol.request(method, &path, body).await,
            403,
            "M_FORBIDDEN",
            &what,
        );
    }

    // Unknown users: 404 M_NOT_FOUND, and no room is created.
    for user in ["@ghost:localhost", "@x:elsewhere", "not-a-user-id"] {
        expect_error(alice.invite(&w.room, user).await, 404, "M_NOT_FOUND", user);
        expect_error(
            alice
                .post(&format!("{R}/createRoom"), json!({ "invite": [user] }))
                .await,
            404,
            "M_NOT_FOUND",
            &format!("createRoom inviting {user}"),
        );
    }

    // The encryption-only rule and power levels.
    expect_error(
        alice
            .send_event(
                &w.room,
                "m.room.message",
                "plain",
                json!({ "msgtype": "m.text", "body": "hi" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "plaintext message",
    );
    let mut smuggled = megolm_content("k", "ALICE1");
    smuggled["body"] = json!("plaintext");
    expect_error(
        alice
            .send_event(&w.room, "m.room.encrypted", "smuggle", smuggled)
            .await,
        403,
        "M_FORBIDDEN",
        "ciphertext with a plaintext body",
    );
    expect_error(
        alice
            .put_state(
                &w.room,
                "m.room.encryption",
                "",
                json!({ "algorithm": "none" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "switching the encryption algorithm",
    );
    expect_error(
        bob.put_state(
            &w.room,
            "m.room.power_levels",
            "",
            json!({ "users": { &bob.user_id: 100 } }),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "Bob raising his own power",
    );
    expect_error(
        bob.put(
            &format!("{R}/rooms/{room}/redact/{}/r1", encode(&w.events[0])),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
        "Bob redacting Alice's event",
    );
    expect_error(
        alice
            .put_state(
                &w.room,
                "m.room.member",
                &bob.user_id,
                json!({ "membership": "join" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "Alice joining as Bob",
    );
    expect_error(
        alice
            .put_state(
                &w.room,
                "org.example.owned",
                &bob.user_id,
                json!({ "x": 1 }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "a state key naming Bob",
    );

    // Another user's devices: 404, as if they did not exist.
    for (method, body) in [
        (Method::GET, Value::Null),
        (Method::PUT, json!({ "display_name": "pwned" })),
        (Method::DELETE, json!({})),
    ] {
        let what = format!("alice {method} /devices/BOB1");
        expect_error(
            alice
                .request(method, &format!("{R}/devices/BOB1"), body)
                .await,
            404,
            "M_NOT_FOUND",
            &what,
        );
    }
    // Deleting "BOB1" among one's own devices, with valid auth, deletes nothing of Bob's.
    let (s, r) = alice
        .post(
            &format!("{R}/delete_devices"),
            json!({ "devices": ["BOB1"] }),
        )
        .await;
    assert_eq!(s, 401, "{r}");
    let auth = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "alice-pw", "session": r["session"] });
    let (s, r) = alice
        .post(
            &format!("{R}/delete_devices"),
            json!({ "devices": ["BOB1"], "auth": auth }),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // Acting as another user: 403 M_FORBIDDEN.
    for (method, path, body) in [
        (
            Method::PUT,
            format!("{R}/profile/{bob_id}/displayname"),
            json!({ "displayname": "pwned" }),
        ),
        (
            Method::PUT,
            format!("{R}/profile/{bob_id}/avatar_url"),
            json!({ "avatar_url": "mxc://localhost/abc" }),
        ),
        (
            Method::GET,
            format!("{R}/user/{bob_id}/account_data/org.example.data"),
            Value::Null,
        ),
        (
            Method::PUT,
            format!("{R}/user/{bob_id}/account_data/org.example.data"),
            json!({ "pwned": true }),
        ),
        (
            Method::GET,
            format!("{R}/user/{bob_id}/rooms/{room}/account_data/org.example.data"),
            Value::Null,
        ),
        (
            Method::PUT,
            format!("{R}/user/{bob_id}/rooms/{room}/account_data/org.example.data"),
            json!({ "pwned": true }),
        ),
        (Method::POST, format!("{R}/user/{bob_id}/filter"), json!({})),
        (
            Method::GET,
            format!("{R}/user/{bob_id}/filter/0"),
            Value::Null,
        ),
        (
            Method::PUT,
            format!("{R}/rooms/{room}/typing/{bob_id}"),
            json!({ "typing": true }),
        ),
    ] {
        let what = format!("alice {method} {path}");
        expect_error(
            alice.request(method, &path, body).await,
            403,
            "M_FORBIDDEN",
            &what,
        );
    }

    // Missing and bad access tokens: 401 M_MISSING_TOKEN / M_UNKNOWN_TOKEN.
    let logged_out = Client::login(&url, "carol", "carol-pw", Some("GONE")).await;
    assert_eq!(logged_out.logout().await.0, 200);
    let mxc = w.media.strip_prefix("mxc://localhost/").unwrap();
    let authed: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("{R}/account/whoami"), None),
        (Method::GET, format!("{R}/sync"), None),
        (Method::POST, format!("{R}/createRoom"), Some(json!({}))),
        (Method::POST, format!("{R}/keys/upload"), Some(json!({}))),
        (Method::GET, format!("{R}/profile/{bob_id}"), None),
        (
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "tok"),
            Some(megolm_content("k", "D")),
        ),
        (
            Method::POST,
            "/_matrix/media/v3/upload".to_owned(),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/_matrix/client/v1/media/download/localhost/{mxc}"),
            None,
        ),
        (
            Method::GET,
            "/_matrix/client/v1/media/config".to_owned(),
            None,
        ),
        (Method::POST, format!("{R}/logout/all"), Some(json!({}))),
    ];
    for (method, path, body) in &authed {
        for (headers, code) in [
            (vec![], "M_MISSING_TOKEN"),
            (
                vec![("Authorization", "Basic YWxpY2U6YWxpY2UtcHc=")],
                "M_MISSING_TOKEN",
            ),
            (
                vec![("Authorization", "Bearer not-a-token")],
                "M_UNKNOWN_TOKEN",
            ),
            // Trailing whitespace is not part of a header value (RFC 9110):
            // this is "Bearer" without a token.
            (vec![("Authorization", "Bearer ")], "M_MISSING_TOKEN"),
            (vec![("Authorization", "Bearer  x")], "M_UNKNOWN_TOKEN"),
        ] {
            let what = format!("{method} {path} with {headers:?}");
            let got = with_headers(&url, method.clone(), path, &headers, body.clone()).await;
            expect_error(got, 401, code, &what);
        }
        let bearer = format!("Bearer {}", logged_out.access_token);
        let got = with_headers(
            &url,
            method.clone(),
            path,
            &[("Authorization", &bearer)],
            body.clone(),
        )
        .await;
        expect_error(
            got,
            401,
            "M_UNKNOWN_TOKEN",
            &format!("{method} {path} with a logged-out token"),
        );
        let sep = if path.contains('?') { '&' } else { '?' };
        let query = format!("{path}{sep}access_token=not-a-token");
        let got = with_headers(&url, method.clone(), &query, &[], body.clone()).await;
        expect_error(got, 401, "M_UNKNOWN_TOKEN", &format!("{method} {query}"));
    }
    let (_, r) = with_headers(
        &url,
        Method::GET,
        &format!("{R}/account/whoami"),
        &[("Authorization", "Bearer nope")],
        None,
    )
    .await;
    assert_eq!(r["soft_logout"], false, "{r}");

    // Unknown endpoints: 404 M_UNRECOGNIZED; known ones with the wrong
    // method: 405 M_UNRECOGNIZED.
    for path in [
        format!("{R}/nope"),
        "/nope".to_owned(),
        "/_matrix/client/v4/sync".to_owned(),
        format!("{R}/rooms/{room}/nope"),
        format!("{R}/keys/upload/extra"),
        "/_matrix/federation/v1/version".to_owned(),
        "/_synapse/admin/v1/users".to_owned(),
    ] {
        expect_error(alice.get(&path).await, 404, "M_UNRECOGNIZED", &path);
        expect_error(
            alice.post(&path, json!({})).await,
            404,
            "M_UNRECOGNIZED",
            &path,
        );
    }
    for (method, path) in [
        (Method::DELETE, format!("{R}/createRoom")),
        (Method::GET, format!("{R}/createRoom")),
        (Method::POST, format!("{R}/sync")),
        (Method::PATCH, format!("{R}/account/whoami")),
        (Method::PUT, format!("{R}/keys/query")),
        (
            Method::GET,
            format!("{R}/rooms/{room}/send/m.room.encrypted/x"),
        ),
        (Method::DELETE, format!("{R}/profile/{bob_id}/displayname")),
        (Method::POST, "/_matrix/client/versions".to_owned()),
    ] {
        let what = format!("{method} {path}");
        expect_error(
            alice.request(method, &path, json!({})).await,
            405,
            "M_UNRECOGNIZED",
            &what,
        );
    }

    // Invalid sync and pagination tokens and query parameters: 400.
    for (path, code) in [
        (format!("{R}/sync?since=garbage"), "M_INVALID_PARAM"),
        (format!("{R}/sync?since=s-1_0"), "M_INVALID_PARAM"),
        (format!("{R}/sync?since=s1"), "M_INVALID_PARAM"),
        (
            format!("{R}/sync?since=s99999999999999999999_0"),
            "M_INVALID_PARAM",
        ),
        (format!("{R}/sync?timeout=soon"), "M_INVALID_PARAM"),
        (format!("{R}/sync?filter=%7Bbad"), "M_NOT_JSON"),
        (format!("{R}/sync?filter=12345"), "M_INVALID_PARAM"),
        (
            format!("{R}/rooms/{room}/messages?dir=b&from=garbage"),
            "M_INVALID_PARAM",
        ),
        (
            format!("{R}/rooms/{room}/messages?dir=b&to=t-5"),
            "M_INVALID_PARAM",
        ),
        (
            format!("{R}/rooms/{room}/messages?dir=sideways"),
            "M_INVALID_PARAM",
        ),
        (format!("{R}/rooms/{room}/messages"), "M_INVALID_PARAM"),
        (
            format!("{R}/rooms/{room}/messages?dir=b&limit=many"),
            "M_INVALID_PARAM",
        ),
        (
            format!("{R}/keys/changes?from=garbage&to=s1_0"),
            "M_INVALID_PARAM",
        ),
        (format!("{R}/keys/changes?from=s1_0"), "M_INVALID_PARAM"),
        (format!("{R}/room_keys/keys"), "M_MISSING_PARAM"),
    ] {
        expect_error(alice.get(&path).await, 400, code, &path);
    }

    // Path traversal on media downloads: a Matrix error, never a file.
    for path in [
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fcloister.db".to_owned(),
        "/_matrix/client/v1/media/download/localhost/..%2F..%2Fetc%2Fpasswd/passwd".to_owned(),
        "/_matrix/client/v1/media/download/..%2F..%2Fetc/passwd".to_owned(),
        "/_matrix/client/v1/media/download/localhost/%252E%252E%252Fetc%252Fpasswd".to_owned(),
        format!("/_matrix/client/v1/media/download/localhost/{}", &mxc[..2]),
        "/_matrix/client/v1/media/thumbnail/localhost/..%2F..%2Fetc%2Fpasswd".to_owned(),
        "/_matrix/media/v3/download/localhost/..%2F..%2Fetc%2Fpasswd".to_owned(),
    ] {
        let (s, _, bytes) = alice
            .request_bytes(Method::GET, &path, None, Vec::new())
            .await;
        expect_error((s, parse_body(&bytes)), 404, "M_NOT_FOUND", &path);
    }
    // NUL is refused before any lookup.
    let (s, _, bytes) = alice
        .request_bytes(
            Method::GET,
            "/_matrix/client/v1/media/download/localhost/media%00",
            None,
            Vec::new(),
        )
        .await;
    expect_error((s, parse_body(&bytes)), 400, "M_INVALID_PARAM", "media%00");
    for path in [
        "/_matrix/client/v1/media/download/localhost/../../../../etc/passwd",
        "/_matrix/client/v1/media/download/localhost/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/_matrix/client/v1/media/download/localhost/..",
        "/_matrix/client/v1/media/download/localhost/%2E%2E",
        "/_matrix/client/v1/media/download/../../etc/passwd",
    ] {
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            alice.access_token
        );
        let (s, bytes) = raw_http(w.server.addr(), &head, b"").await;
        let body = parse_body(&bytes);
        assert!((400..500).contains(&s), "{path}: {s} {body}");
        assert!(
            errcode(&body).is_some() && body["error"].is_string(),
            "{path}: {body}"
        );
        assert!(!String::from_utf8_lossy(&bytes).contains("root:"), "{path}");
    }
    // A file name in the URL only names the download; the bytes are the media's.
    let (s, _, bytes) = alice
        .request_bytes(
            Method::GET,
            &format!("/_matrix/client/v1/media/download/localhost/{mxc}/..%2F..%2Fetc%2Fpasswd"),
            None,
            Vec::new(),
        )
        .await;
    assert_eq!((s, bytes.len()), (200, MAX_UPLOAD));

    assert_unchanged(&before, &snapshot(&w).await);
    // Bob's device and token survived everything above.
    assert_eq!(bob.whoami().await["device_id"], "BOB1");
    w.server.stop().await;
}

// ----- NUL bytes ------------------------------------------------------------------

/// What a request carrying U+0000 in an identifier may get.
enum Expect {
    /// The answer the server gives for any other unknown value, or a blanket
    /// refusal of NUL: 400 M_INVALID_PARAM.
    AsUnknown(u16, &'static str),
    /// Accepted (200) and then readable exactly, or 400 M_INVALID_PARAM.
    Stored(ReadBack),
    /// Exactly this.
    Exact(u16, &'static str),
}

enum ReadBack {
    /// `GET` this path: 200 with this body.
    Get(String, Value),
    /// Repeating the (idempotent) request gives the same answer.
    Repeat,
}

/// PostgreSQL cannot store U+0000 in text; SQLite can. Either way a NUL in
/// an id must get a Matrix answer, the same one a client gets for any other
/// unknown value, never a 500; and whatever is accepted must read back.
async fn nul_bytes(backend: Backend) {
    let w = setup(backend).await;
    let alice = &w.alice;
    let anon = Client::anonymous(&w.server.url());
    let r = encode(&w.room);
    let a = encode(&alice.user_id);
    let target = alice.send_encrypted(&w.room, "to-redact").await;
    let e = encode(&target);
    let (s, body) = alice
        .post(
            &format!("{R}/room_keys/version"),
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": {} }),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let backup_key = json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": { "c": "x" } });
    use Expect::*;
    let cases: Vec<(&Client, Method, String, Value, Expect)> = vec![
        // Lookups of ids containing NUL.
        (
            alice,
            Method::GET,
            format!("{R}/profile/%00"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/profile/%00/displayname"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/rooms/%00/state"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/rooms/%00/state/m.room.member/"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/rooms/{r}/state/m.room%00/"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/rooms/%00/messages?dir=b"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/rooms/%00/joined_members"),
            Value::Null,
            AsUnknown(403, "M_FORBIDDEN"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/rooms/{r}/event/%24a%00"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/devices/%00"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/devices/%00"),
            json!({ "display_name": "x" }),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::DELETE,
            format!("{R}/devices/%00"),
            json!({}),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/user/{a}/account_data/%00"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/user/{a}/rooms/{r}/account_data/%00"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/user/{a}/filter/%00"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/directory/room/%23a%00%3Alocalhost"),
            Value::Null,
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/join/%21a%00%3Alocalhost"),
            json!({}),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/rooms/%21a%00%3Alocalhost/forget"),
            json!({}),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/rooms/{r}/invite"),
            json!({ "user_id": "@a\u{0}:localhost" }),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/{r}/redact/%24a%00/t1"),
            json!({}),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/%00/typing/{a}"),
            json!({ "typing": true }),
            AsUnknown(403, "M_FORBIDDEN"),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/rooms/{r}/receipt/m.read/%24a%00"),
            json!({}),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/rooms/{r}/read_markers"),
            json!({ "m.read": "$a\u{0}" }),
            AsUnknown(404, "M_NOT_FOUND"),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/sync?filter=%00"),
            Value::Null,
            AsUnknown(400, "M_INVALID_PARAM"),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/delete_devices"),
            json!({ "devices": ["\u{0}"], "auth": { "type": "m.login.password", "session": "\u{0}", "password": "x" } }),
            AsUnknown(400, "M_UNKNOWN"),
        ),
        (
            &anon,
            Method::POST,
            format!("{R}/register"),
            json!({ "username": "newuser", "password": "x", "auth": { "type": "m.login.dummy", "session": "\u{0}" } }),
            AsUnknown(400, "M_UNKNOWN"),
        ),
        (
            &anon,
            Method::POST,
            format!("{R}/login"),
            json!({ "type": "m.login.password", "user": "a\u{0}", "password": "x" }),
            AsUnknown(403, "M_FORBIDDEN"),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/claim"),
            json!({ "one_time_keys": { &alice.user_id: { "\u{0}": "signed_curve25519" } } }),
            Stored(ReadBack::Repeat),
        ),
        (
            alice,
            Method::POST,
            format!("{R}/keys/signatures/upload"),
            json!({ &alice.user_id: { "\u{0}": { "a": 1 } } }),
            Stored(ReadBack::Repeat),
        ),
        (
            alice,
            Method::GET,
            format!("{R}/room_keys/keys/%00?version=1"),
            Value::Null,
            Stored(ReadBack::Repeat),
        ),
        // Writes of ids containing NUL: stored and readable, or refused.
        (
            alice,
            Method::PUT,
            format!("{R}/user/{a}/account_data/%00"),
            json!({ "nul": 1 }),
            Stored(ReadBack::Get(
                format!("{R}/user/{a}/account_data/%00"),
                json!({ "nul": 1 }),
            )),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/user/{a}/rooms/{r}/account_data/%00"),
            json!({ "nul": 2 }),
            Stored(ReadBack::Get(
                format!("{R}/user/{a}/rooms/{r}/account_data/%00"),
                json!({ "nul": 2 }),
            )),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/{r}/state/org.example/%00"),
            json!({ "nul": 3 }),
            Stored(ReadBack::Get(
                format!("{R}/rooms/{r}/state/org.example/%00"),
                json!({ "nul": 3 }),
            )),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/{r}/state/org.example%00/"),
            json!({ "nul": 4 }),
            Stored(ReadBack::Get(
                format!("{R}/rooms/{r}/state/org.example%00"),
                json!({ "nul": 4 }),
            )),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/room_keys/keys/%00/S?version=1"),
            backup_key.clone(),
            Stored(ReadBack::Get(
                format!("{R}/room_keys/keys/%00/S?version=1"),
                backup_key,
            )),
        ),
        (
            alice,
            Method::PUT,
            send_path(&w.room, "m.room.encrypted", "\u{0}"),
            megolm_content("k", "ALICE1"),
            Stored(ReadBack::Repeat),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/rooms/{r}/redact/{e}/%00"),
            json!({}),
            Stored(ReadBack::Repeat),
        ),
        (
            alice,
            Method::PUT,
            format!("{R}/sendToDevice/m.test/%00"),
            json!({ "messages": {} }),
            Stored(ReadBack::Repeat),
        ),
        (
            alice,
            Method::PUT,
            send_path(&w.room, "m.room.encrypted\u{0}", "t2"),
            megolm_content("k", "ALICE1"),
            // Never accepted as ciphertext: refused as plaintext or as NUL.
            AsUnknown(403, "M_FORBIDDEN"),
        ),
        // The spec excludes NUL from room alias localparts.
        (
            alice,
            Method::POST,
            format!("{R}/createRoom"),
            json!({ "room_alias_name": "a\u{0}" }),
            Exact(400, "M_INVALID_PARAM"),
        ),
    ];

    let mut failures = Vec::new();
    for (client, method, path, body, expect) in cases {
        let what = format!("{method} {path} {body}");
        let (s, answer) = client.request(method.clone(), &path, body.clone()).await;
        let got = (s, errcode(&answer).map(str::to_owned));
        let refused = got == (400, Some("M_INVALID_PARAM".to_owned()));
        let shaped = (200..300).contains(&s) || answer["error"].is_string();
        let ok = shaped
            && match &expect {
                AsUnknown(status, code) => refused || got == (*status, Some((*code).to_owned())),
                Exact(status, code) => got == (*status, Some((*code).to_owned())),
                Stored(_) => refused || s == 200,
            };
        if !ok {
            let wanted = match &expect {
                AsUnknown(status, code) => format!("{status} {code} (or 400 M_INVALID_PARAM)"),
                Exact(status, code) => format!("{status} {code}"),
                Stored(_) => "200, or 400 M_INVALID_PARAM".to_owned(),
            };
            failures.push(format!("{what}\n    expected {wanted}, got {s} {answer}"));
            continue;
        }
        if let (Stored(read_back), 200) = (&expect, s) {
            let (again, stored) = match read_back {
                ReadBack::Get(get, expected) => (alice.get(get).await, expected.clone()),
                ReadBack::Repeat => (client.request(method, &path, body).await, answer.clone()),
            };
            if again != (200, stored.clone()) {
                failures.push(format!(
                    "{what}\n    accepted, but reads back as {} {} instead of 200 {stored}",
                    again.0, again.1
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} requests with NUL in an id were mishandled on {backend}:\n{}",
        failures.len(),
        failures.join("\n")
    );
    w.server.stop().await;
}

// ----- rate limiting -------------------------------------------------------------

#[track_caller]
fn expect_limited(got: (u16, Value), what: &str) {
    let body = got.1.clone();
    expect_error(got, 429, "M_LIMIT_EXCEEDED", what);
    assert!(
        body["retry_after_ms"].is_u64() && body["retry_after_ms"].as_u64() > Some(0),
        "{what}: retry_after_ms must be a positive integer: {body}"
    );
}

async fn rate_limits(backend: Backend) {
    const BURST: usize = 20;
    const LOGIN_BURST: usize = 3;
    let server = TestServer::start_with(backend, |c| {
        c.rate_limit.enabled = true;
        c.rate_limit.per_second = 0.001;
        c.rate_limit.burst = BURST as f64;
        c.rate_limit.login_per_second = 0.001;
        c.rate_limit.login_burst = LOGIN_BURST as f64;
    })
    .await;
    let url = server.url();
    // Unauthenticated requests share the address's bucket: 2 + 2 + 1 so far.
    let alice = Client::register_device(&url, "alice", "alice-pw", "ALICE1").await;
    let bob = Client::register_device(&url, "bob", "bob-pw", "BOB1").await;
    let alice2 = Client::login(&url, "alice", "alice-pw", Some("ALICE2")).await;

    // Login attempts have their own, smaller bucket: one used above.
    for i in 1..LOGIN_BURST {
        let (s, r) = Client::try_login(&url, "bob", "wrong", None)
            .await
            .unwrap_err();
        assert_eq!(
            (s, errcode(&r)),
            (403, Some("M_FORBIDDEN")),
            "attempt {i}: {r}"
        );
    }
    let refused = Client::try_login(&url, "bob", "bob-pw", None)
        .await
        .unwrap_err();
    expect_limited(
        refused,
        "a login past the login burst, even with the right password",
    );

    // Each access token has its own bucket; refused writes store nothing.
    let path = format!(
        "{R}/user/{}/account_data/org.example.n",
        encode(&alice.user_id)
    );
    let mut statuses = Vec::new();
    for n in 0..BURST + 10 {
        let got = alice.put(&path, json!({ "n": n })).await;
        if got.0 != 200 {
            expect_limited(got.clone(), &format!("write {n}"));
        }
        statuses.push(got.0);
    }
    assert_eq!(
        statuses,
        [vec![200; BURST], vec![429; 10]].concat(),
        "the first {BURST} writes pass, then every one is refused"
    );
    expect_limited(
        alice.get(&format!("{R}/account/whoami")).await,
        "whoami past the burst",
    );
    let (s, r) = alice2.get(&path).await;
    assert_eq!(
        (s, r),
        (200, json!({ "n": BURST - 1 })),
        "the refused writes stored nothing"
    );
    assert_eq!(bob.whoami().await["user_id"], bob.user_id.as_str());

    // /health is never limited; the address's bucket runs out for the rest.
    let anon = Client::anonymous(&url);
    for _ in 0..BURST + 5 {
        assert_eq!(anon.get("/health").await.0, 200);
    }
    let mut refused = None;
    for _ in 0..BURST + 5 {
        let got = anon.get("/_matrix/client/versions").await;
        if got.0 != 200 {
            refused = Some(got);
            break;
        }
    }
    expect_limited(
        refused.expect("unauthenticated requests are limited too"),
        "versions",
    );
    server.stop().await;
}

both_backends!(
    bad_json, malformed;
    bad_sizes, limits;
    bad_targets, wrong_targets;
    bad_rate, rate_limits;
    bad_nul_bytes, nul_bytes;
);
