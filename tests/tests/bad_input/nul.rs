//! NUL bytes (U+0000) in identifiers and request bodies.

use cloister_tests::{encode, errcode, megolm_content, Backend, Client};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{send_path, R};
use crate::snapshot::setup;

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
pub(crate) async fn nul_bytes(backend: Backend) {
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
