//! The plaintext an encrypted room accepts, exactly: reactions (an
//! `m.annotation` and nothing else, unless the operator refuses them) and
//! the in-room key-verification messages with the spec's fields for their
//! type. Everything else plaintext stays refused, on both backends.

use cloister_tests::{
    assert_refused, both_backends, encode, megolm_content, Backend, Client, TestServer,
};
use serde_json::{json, Value};

async fn room_with_message(server: &TestServer) -> (Client, String, String) {
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let message = alice.send_encrypted(&room, "m1").await;
    (alice, room, message)
}

async fn history_types(c: &Client, room: &str) -> Vec<String> {
    let (_, page) = c
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
            encode(room)
        ))
        .await;
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn reactions_are_annotations_and_nothing_else(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, room, message) = room_with_message(&server).await;
    let reaction = |key: &str| json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": message, "key": key } });
    let (status, body) = alice
        .send_event(&room, "m.reaction", "r1", reaction("👍"))
        .await;
    assert_eq!(status, 200, "{body}");
    // Encrypted reactions keep their annotation in the clear.
    let mut encrypted = megolm_content("sender-key", &alice.device_id);
    encrypted["m.relates_to"] = reaction("🎉")["m.relates_to"].clone();
    let (status, body) = alice
        .send_event(&room, "m.room.encrypted", "r2", encrypted)
        .await;
    assert_eq!(status, 200, "{body}");
    let before = history_types(&alice, &room).await;
    assert_eq!(before.iter().filter(|t| *t == "m.reaction").count(), 1);

    let mut with_body = reaction("👍");
    with_body["body"] = json!("a plaintext body");
    assert_refused(
        alice.send_event(&room, "m.reaction", "r3", with_body).await,
        403,
        "M_FORBIDDEN",
        "a reaction with a body",
    );
    let mut with_extra = reaction("👍");
    with_extra["m.relates_to"]["note"] = json!("x");
    assert_refused(
        alice
            .send_event(&room, "m.reaction", "r4", with_extra)
            .await,
        403,
        "M_FORBIDDEN",
        "a relation with an extra field",
    );
    assert_refused(
        alice
            .send_event(&room, "m.reaction", "r5", reaction(&"x".repeat(65)))
            .await,
        400,
        "M_INVALID_PARAM",
        "a 65-byte key",
    );
    let mut reference = reaction("👍");
    reference["m.relates_to"]["rel_type"] = json!("m.reference");
    assert_refused(
        alice.send_event(&room, "m.reaction", "r6", reference).await,
        400,
        "M_BAD_JSON",
        "a reaction that is no annotation",
    );
    assert_eq!(history_types(&alice, &room).await, before, "nothing stored");
    server.stop().await;
}

async fn an_operator_can_refuse_reaction_keys(backend: Backend) {
    let server =
        TestServer::start_with(backend, |c| c.encryption.plaintext_reactions = false).await;
    let (alice, room, message) = room_with_message(&server).await;
    let relation = json!({ "rel_type": "m.annotation", "event_id": message, "key": "👍" });
    assert_refused(
        alice
            .send_event(
                &room,
                "m.reaction",
                "r1",
                json!({ "m.relates_to": relation }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "a plaintext reaction",
    );
    let mut encrypted = megolm_content("sender-key", &alice.device_id);
    encrypted["m.relates_to"] = relation;
    assert_refused(
        alice
            .send_event(&room, "m.room.encrypted", "r2", encrypted)
            .await,
        403,
        "M_FORBIDDEN",
        "an encrypted reaction's key in the clear",
    );
    server.stop().await;
}

async fn verification_in_a_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (alice, room, _) = room_with_message(&server).await;
    let request = json!({
        "msgtype": "m.key.verification.request",
        "body": "@alice:localhost is requesting to verify your key",
        "from_device": alice.device_id, "methods": ["m.sas.v1"], "to": "@bob:localhost",
    });
    let (status, body) = alice
        .send_event(&room, "m.room.message", "v0", request.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    let request_id = body["event_id"].as_str().unwrap().to_owned();
    let rel = json!({ "rel_type": "m.reference", "event_id": request_id });
    let flow: Vec<(&str, Value)> = vec![
        (
            "m.key.verification.ready",
            json!({ "from_device": "D", "methods": ["m.sas.v1"], "m.relates_to": rel }),
        ),
        (
            "m.key.verification.start",
            json!({ "from_device": "D", "method": "m.sas.v1",
            "key_agreement_protocols": ["curve25519-hkdf-sha256"], "hashes": ["sha256"],
            "message_authentication_codes": ["hkdf-hmac-sha256.v2"],
            "short_authentication_string": ["decimal", "emoji"], "m.relates_to": rel }),
        ),
        (
            "m.key.verification.accept",
            json!({ "method": "m.sas.v1",
            "key_agreement_protocol": "curve25519-hkdf-sha256", "hash": "sha256",
            "message_authentication_code": "hkdf-hmac-sha256.v2",
            "short_authentication_string": ["decimal", "emoji"], "commitment": "abc", "m.relates_to": rel }),
        ),
        (
            "m.key.verification.key",
            json!({ "key": "pubkey", "m.relates_to": rel }),
        ),
        (
            "m.key.verification.mac",
            json!({ "mac": { "ed25519:D": "m" }, "keys": "k", "m.relates_to": rel }),
        ),
        ("m.key.verification.done", json!({ "m.relates_to": rel })),
        (
            "m.key.verification.cancel",
            json!({ "code": "m.user", "reason": "cancelled", "m.relates_to": rel }),
        ),
    ];
    for (n, (event_type, content)) in flow.into_iter().enumerate() {
        let (status, body) = alice
            .send_event(&room, event_type, &format!("v{}", n + 1), content)
            .await;
        assert_eq!(status, 200, "{event_type}: {body}");
    }

    let mut chatty = request;
    chatty["formatted_body"] = json!("<b>plaintext</b>");
    assert_refused(
        alice
            .send_event(&room, "m.room.message", "x1", chatty)
            .await,
        403,
        "M_FORBIDDEN",
        "a request with an extra field",
    );
    assert_refused(
        alice
            .send_event(
                &room,
                "m.key.verification.key",
                "x2",
                json!({ "key": "k", "m.relates_to": rel, "note": "plaintext" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "a key event with an extra field",
    );
    assert_refused(
        alice
            .send_event(
                &room,
                "m.room.message",
                "x3",
                json!({ "msgtype": "m.text", "body": "hello" }),
            )
            .await,
        403,
        "M_FORBIDDEN",
        "an ordinary plaintext message",
    );
    server.stop().await;
}

both_backends!(
    reactions, reactions_are_annotations_and_nothing_else;
    refused_reactions, an_operator_can_refuse_reaction_keys;
    verification, verification_in_a_room;
);
