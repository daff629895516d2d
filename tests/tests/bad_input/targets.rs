//! Wrong targets, tokens, endpoints, pagination tokens, path traversal.

use cloister_tests::{encode, errcode, megolm_content, Backend, Client};
use reqwest::Method;
use serde_json::{json, Value};

use crate::common::{expect_error, parse_body, raw_http, send_path, with_headers, MAX_UPLOAD, R};
use crate::snapshot::{assert_unchanged, setup, snapshot};

// ----- wrong targets, tokens, endpoints, tokens, traversal -----------------------

pub(crate) async fn wrong_targets(backend: Backend) {
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
