//! The encryption-only rule against the ways around it, on both backends:
//! message types sent as room state, `m.room.encryption` as a message or
//! under another state key, plaintext through `createRoom`'s
//! `initial_state`, and readable fields beside the ciphertext. Every
//! refusal is checked for its status and errcode, and for storing nothing.

use cloister_tests::{
    assert_refused, both_backends, encode, errcode, megolm_content, Backend, Client, TestServer,
};
use serde_json::{json, Value};

const MEGOLM: &str = "m.megolm.v1.aes-sha2";

async fn room_events(server: &TestServer, room: &str) -> i64 {
    server
        .count("SELECT COUNT(*) FROM events WHERE room_id = $1", room)
        .await
}

async fn plaintext_cannot_pass_as_state(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let before = room_events(&server, &room).await;

    let secret = json!({ "msgtype": "m.text", "body": "the secret" });
    for (event_type, state_key, content) in [
        ("m.room.message", "", secret.clone()),
        ("m.room.message", "x", secret.clone()),
        (
            "m.room.encrypted",
            "",
            json!({ "algorithm": "none", "body": "the secret" }),
        ),
        // Refused as state even when it looks like ciphertext: clients
        // never send it so, and nothing checks what state carries.
        ("m.room.encrypted", "", megolm_content("k", "D")),
        (
            "m.sticker",
            "",
            json!({ "body": "the secret", "url": "mxc://x/y" }),
        ),
        ("m.reaction", "", json!({ "body": "the secret" })),
        ("m.call.invite", "", json!({ "body": "the secret" })),
        ("m.room.encryption", "other", json!({ "algorithm": MEGOLM })),
    ] {
        assert_refused(
            alice.put_state(&room, event_type, state_key, content).await,
            403,
            "M_FORBIDDEN",
            &format!("{event_type} as state with key {state_key:?}"),
        );
    }
    assert_refused(
        alice
            .send_event(
                &room,
                "m.room.encryption",
                "e1",
                json!({ "algorithm": MEGOLM }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "m.room.encryption as a message event",
    );
    assert_eq!(room_events(&server, &room).await, before, "nothing stored");
    let (status, body) = alice.get_state(&room, "m.room.message", "").await;
    assert_eq!((status, errcode(&body)), (404, Some("M_NOT_FOUND")));
    let (_, encryption) = alice.get_state(&room, "m.room.encryption", "").await;
    assert_eq!(encryption["algorithm"], MEGOLM);

    // Real state still passes, and so does re-sending the encryption event.
    let (status, body) = alice
        .put_state(&room, "m.room.topic", "", json!({ "topic": "t" }))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice
        .put_state(
            &room,
            "m.room.encryption",
            "",
            json!({ "algorithm": MEGOLM }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

async fn initial_state_is_checked(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let all_events = "SELECT COUNT(*) FROM events WHERE sender = $1";
    let before = server.count(all_events, &alice.user_id).await;
    let item = |t: &str, k: &str, c: Value| json!({ "type": t, "state_key": k, "content": c });
    for (initial, status, code, what) in [
        (
            item(
                "m.room.message",
                "",
                json!({ "msgtype": "m.text", "body": "hi" }),
            ),
            403,
            "M_FORBIDDEN",
            "a plaintext message",
        ),
        (
            item(
                "m.room.encrypted",
                "",
                json!({ "algorithm": "none", "body": "hi" }),
            ),
            403,
            "M_FORBIDDEN",
            "m.room.encrypted with algorithm none",
        ),
        (
            item("org.example.profile", &bob.user_id, json!({ "x": 1 })),
            403,
            "M_FORBIDDEN",
            "state keyed to another user",
        ),
        (
            item("m.room.encryption", "x", json!({ "algorithm": MEGOLM })),
            403,
            "M_FORBIDDEN",
            "m.room.encryption under another state key",
        ),
        (
            item("org.cloister.legal_hold", "", json!({ "held": false })),
            403,
            "M_FORBIDDEN",
            "a legal-hold notice",
        ),
        (
            item("m.room.retention", "", json!({ "max_lifetime": "soon" })),
            400,
            "M_BAD_JSON",
            "a malformed retention policy",
        ),
    ] {
        assert_refused(
            alice
                .post(
                    "/_matrix/client/v3/createRoom",
                    json!({ "initial_state": [initial] }),
                )
                .await,
            status,
            code,
            what,
        );
    }
    assert_eq!(
        server.count(all_events, &alice.user_id).await,
        before,
        "no room was created"
    );
    let (_, joined) = alice.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(joined["joined_rooms"], json!([]));

    // Ordinary initial state, and state keyed to the creator, still pass.
    let room = alice
        .create_room(json!({ "initial_state": [
            item("m.room.topic", "", json!({ "topic": "t" })),
            item("org.example.profile", &alice.user_id, json!({ "x": 1 })),
        ] }))
        .await;
    let (status, topic) = alice.get_state(&room, "m.room.topic", "").await;
    assert_eq!((status, &topic["topic"]), (200, &json!("t")));
    server.stop().await;
}

async fn only_megolm_fields_beside_the_ciphertext(backend: Backend) {
    // The strict setting: no reaction key in the clear either (by default
    // an encrypted reaction may show its key; tests/tests/reactions.rs).
    let server =
        TestServer::start_with(backend, |c| c.encryption.plaintext_reactions = false).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let anchor = alice.send_encrypted(&room, "t0").await;
    let before = room_events(&server, &room).await;

    let with = |field: &str, value: Value| {
        let mut content = megolm_content("sender-key", &alice.device_id);
        content[field] = value;
        content
    };
    for (n, (content, field)) in [
        (
            with("m.new_content", json!({ "body": "edited secret" })),
            "m.new_content",
        ),
        (
            with("org.example.summary", json!("the secret")),
            "org.example.summary",
        ),
        (
            with(
                "m.relates_to",
                json!({ "rel_type": "m.annotation", "event_id": anchor, "key": "the secret" }),
            ),
            "m.relates_to.key",
        ),
        (
            with(
                "m.relates_to",
                json!({ "m.in_reply_to": { "event_id": anchor, "body": "quoted secret" } }),
            ),
            "m.relates_to.m.in_reply_to.body",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let got = alice
            .send_event(&room, "m.room.encrypted", &format!("bad{n}"), content)
            .await;
        let message = got.1["error"].as_str().unwrap_or_default().to_owned();
        assert_refused(got, 403, "M_FORBIDDEN", field);
        assert!(
            message.contains(&format!("`{field}`")),
            "the refusal names {field}: {message}"
        );
    }
    assert_refused(
        alice
            .send_event(
                &room,
                "m.room.encrypted",
                "bad-type",
                with("sender_key", json!({ "body": "the secret" })),
            )
            .await,
        400,
        "M_BAD_JSON",
        "a sender_key that is not a string",
    );
    assert_eq!(room_events(&server, &room).await, before, "nothing stored");

    // Threads and replies keep their relation in the clear, as clients send it.
    let thread = json!({ "rel_type": "m.thread", "event_id": anchor, "is_falling_back": true,
                         "m.in_reply_to": { "event_id": anchor } });
    let (status, body) = alice
        .send_event(
            &room,
            "m.room.encrypted",
            "t1",
            with("m.relates_to", thread.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, event) = alice
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room),
            encode(body["event_id"].as_str().unwrap())
        ))
        .await;
    assert_eq!(event["content"]["m.relates_to"], thread);
    server.stop().await;
}

both_backends!(
    state_plaintext, plaintext_cannot_pass_as_state;
    initial_state, initial_state_is_checked;
    ciphertext_fields, only_megolm_fields_beside_the_ciphertext;
);
