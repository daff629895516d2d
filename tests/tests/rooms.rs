//! Rooms over HTTP on both backends: membership rules, power levels, the
//! encryption-only rule for state, aliases, pagination, redaction, leaving
//! and forgetting.

use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

fn ids(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn membership_and_power(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;
    let room = alice.create_room(json!({ "name": "staff" })).await;
    let rooms = |c: &Client, path: &str| {
        format!("/_matrix/client/v3/rooms/{}/{path}", encode(&room)).replace("{c}", &c.user_id)
    };

    // Invite-only: an uninvited user cannot join or post.
    let (status, body) = bob
        .post(
            &format!("/_matrix/client/v3/join/{}", encode(&room)),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, _) = carol
        .send_event(
            &room,
            "m.room.encrypted",
            "x",
            cloister_tests::megolm_content("k", "D"),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    bob.join(&room).await;
    bob.join(&room).await; // joining twice is harmless

    // Power levels: Bob (0) cannot name the room, kick, or promote himself.
    let (status, body) = bob
        .put_state(&room, "m.room.name", "", json!({ "name": "mine" }))
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, _) = bob
        .post(&rooms(&bob, "kick"), json!({ "user_id": alice.user_id }))
        .await;
    assert_eq!(status, 403);
    let (_, mut power) = alice.get_state(&room, "m.room.power_levels", "").await;
    power["users"][&bob.user_id] = json!(100);
    assert_eq!(
        bob.put_state(&room, "m.room.power_levels", "", power.clone())
            .await
            .0,
        403
    );
    // Alice promotes Bob to moderator; he may now set the topic but not exceed his level.
    power["users"][&bob.user_id] = json!(50);
    assert_eq!(
        alice
            .put_state(&room, "m.room.power_levels", "", power.clone())
            .await
            .0,
        200
    );
    assert_eq!(
        bob.put_state(&room, "m.room.topic", "", json!({ "topic": "t" }))
            .await
            .0,
        200
    );
    power["users"][&bob.user_id] = json!(75);
    assert_eq!(
        bob.put_state(&room, "m.room.power_levels", "", power)
            .await
            .0,
        403
    );
    // Nobody sets state keyed to another user.
    assert_eq!(
        bob.put_state(&room, "m.custom", &alice.user_id, json!({}))
            .await
            .0,
        403
    );

    // Encryption state may not be removed or downgraded, only kept.
    for bad in [
        json!({}),
        json!({ "algorithm": "m.olm.v1.curve25519-aes-sha2" }),
    ] {
        let (status, body) = alice.put_state(&room, "m.room.encryption", "", bad).await;
        assert_eq!(
            (status, errcode(&body)),
            (403, Some("M_FORBIDDEN")),
            "{body}"
        );
    }
    let keep = json!({ "algorithm": "m.megolm.v1.aes-sha2", "rotation_period_msgs": 50 });
    assert_eq!(
        alice
            .put_state(&room, "m.room.encryption", "", keep)
            .await
            .0,
        200
    );
    let (_, now) = alice.get_state(&room, "m.room.encryption", "").await;
    assert_eq!(now["algorithm"], "m.megolm.v1.aes-sha2");

    // Kick and ban: Bob (50) cannot kick Alice (100); Alice kicks, bans and unbans Bob.
    assert_eq!(
        bob.post(&rooms(&bob, "kick"), json!({ "user_id": alice.user_id }))
            .await
            .0,
        403
    );
    assert_eq!(
        alice
            .post(
                &rooms(&alice, "kick"),
                json!({ "user_id": bob.user_id, "reason": "r" })
            )
            .await
            .0,
        200
    );
    let (status, _) = bob
        .send_event(
            &room,
            "m.room.encrypted",
            "after-kick",
            cloister_tests::megolm_content("k", "D"),
        )
        .await;
    assert_eq!(status, 403, "a kicked user cannot post");
    assert_eq!(
        alice
            .post(&rooms(&alice, "ban"), json!({ "user_id": bob.user_id }))
            .await
            .0,
        200
    );
    assert_eq!(
        alice.invite(&room, &bob.user_id).await.0,
        403,
        "banned users cannot be invited"
    );
    assert_eq!(
        alice
            .post(&rooms(&alice, "unban"), json!({ "user_id": bob.user_id }))
            .await
            .0,
        200
    );
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    bob.join(&room).await;

    // Member lists.
    let (_, joined) = alice.get(&rooms(&alice, "joined_members")).await;
    let members: Vec<&String> = joined["joined"].as_object().unwrap().keys().collect();
    assert_eq!(members, vec![&alice.user_id, &bob.user_id]);
    let (_, all) = carol.get(&rooms(&carol, "members")).await;
    assert_eq!(
        errcode(&all),
        Some("M_FORBIDDEN"),
        "non-members see no member list"
    );
    let (_, list) = bob.get("/_matrix/client/v3/joined_rooms").await;
    assert_eq!(list["joined_rooms"], json!([room]));

    // Version 9 (which Element asks for when a room is restricted to a
    // space) and 10 are created; others and non-Megolm encryption refused.
    let v9 = alice.create_room(json!({ "room_version": "9" })).await;
    let (_, create) = alice.get_state(&v9, "m.room.create", "").await;
    assert_eq!(create["room_version"], "9", "{create}");
    let (_, caps) = alice.get("/_matrix/client/v3/capabilities").await;
    assert_eq!(
        caps["capabilities"]["m.room_versions"],
        json!({ "default": "10", "available": { "9": "stable", "10": "stable" } })
    );
    for version in ["11", "8", "x"] {
        let (status, body) = alice
            .post(
                "/_matrix/client/v3/createRoom",
                json!({ "room_version": version }),
            )
            .await;
        assert_eq!(
            (status, errcode(&body)),
            (400, Some("M_UNSUPPORTED_ROOM_VERSION")),
            "room version {version}"
        );
    }
    let initial = json!([{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "none" } }]);
    let (status, _) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "initial_state": initial }),
        )
        .await;
    assert_eq!(status, 403);
    server.stop().await;
}

async fn aliases_history_and_redaction(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let room = alice
        .create_room(json!({ "room_alias_name": "town-hall", "preset": "public_chat" }))
        .await;

    // Aliases resolve, and a public room can be joined through one.
    let alias = "#town-hall:localhost";
    let (_, resolved) = bob
        .get(&format!(
            "/_matrix/client/v3/directory/room/{}",
            encode(alias)
        ))
        .await;
    assert_eq!(resolved["room_id"], room.as_str());
    assert_eq!(bob.join(alias).await, room);
    let (status, body) = alice
        .post(
            "/_matrix/client/v3/createRoom",
            json!({ "room_alias_name": "town-hall" }),
        )
        .await;
    assert_eq!((status, errcode(&body)), (400, Some("M_ROOM_IN_USE")));

    // Pagination: backwards in pages until the start, then forwards again.
    let mut sent = Vec::new();
    for i in 0..25 {
        sent.push(alice.send_encrypted(&room, &format!("m{i}")).await);
    }
    let mut backwards = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=10",
            encode(&room)
        );
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", encode(f)));
        }
        let (status, page) = bob.get(&path).await;
        assert_eq!(status, 200, "{page}");
        backwards.extend(ids(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<String> = sent.iter().rev().cloned().collect();
    assert_eq!(
        &backwards[..25],
        &newest_first[..],
        "newest first, no gaps or repeats"
    );
    assert!(backwards.len() > 25, "room creation events come after");
    let (_, forward) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=f&limit=1000",
            encode(&room)
        ))
        .await;
    let mut oldest_first = ids(&forward["chunk"]);
    oldest_first.reverse();
    assert_eq!(
        oldest_first, backwards,
        "forward pagination is the same history in order"
    );

    // Single event and context.
    let (status, event) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room),
            encode(&sent[3])
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(event["type"], "m.room.encrypted");
    let (_, context) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}?limit=4",
            encode(&room),
            encode(&sent[10])
        ))
        .await;
    assert_eq!(
        ids(&context["events_before"]),
        vec![sent[9].clone(), sent[8].clone()]
    );
    assert_eq!(
        ids(&context["events_after"]),
        vec![sent[11].clone(), sent[12].clone()]
    );

    // Redaction deletes content. Bob may not redact Alice's event; Alice may.
    let redact = |c: &Client, id: &str, txn: &str| {
        format!(
            "/_matrix/client/v3/rooms/{}/redact/{}/{txn}",
            encode(&room),
            encode(id)
        )
        .replace("{c}", &c.user_id)
    };
    assert_eq!(
        bob.put(&redact(&bob, &sent[0], "r1"), json!({})).await.0,
        403
    );
    assert_eq!(
        alice
            .put(&redact(&alice, &sent[0], "r2"), json!({ "reason": "oops" }))
            .await
            .0,
        200
    );
    let (_, redacted) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room),
            encode(&sent[0])
        ))
        .await;
    assert_eq!(redacted["content"], json!({}), "{redacted}");
    assert!(redacted["unsigned"]["redacted_because"].is_object());

    // After leaving, Bob sees history up to his departure and nothing after.
    assert_eq!(bob.leave(&room).await.0, 200);
    let later = alice.send_encrypted(&room, "after-bob").await;
    let (status, _) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room),
            encode(&later)
        ))
        .await;
    assert_eq!(status, 404, "events after leaving are invisible");
    let (_, page) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=5",
            encode(&room)
        ))
        .await;
    let visible = ids(&page["chunk"]);
    assert!(!visible.contains(&later));
    assert_eq!(
        page["chunk"][0]["type"], "m.room.member",
        "his own leave is the last he sees"
    );

    // Forgetting needs leaving first.
    let forget = |c: &Client| {
        format!("/_matrix/client/v3/rooms/{}/forget", encode(&room)).replace("{c}", &c.user_id)
    };
    assert_eq!(alice.post(&forget(&alice), json!({})).await.0, 400);
    assert_eq!(bob.post(&forget(&bob), json!({})).await.0, 200);
    server.stop().await;
}

/// An operator can exempt a listed room from the encryption-only rule; other
/// rooms stay encrypted-only.
async fn plaintext_room_exemption(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let announcements = alice.create_room(json!({ "name": "announcements" })).await;
    let other = alice.create_room(json!({ "name": "other" })).await;
    let text = json!({ "msgtype": "m.text", "body": "the canteen is closed" });
    assert_eq!(
        alice
            .send_event(&announcements, "m.room.message", "t1", text.clone())
            .await
            .0,
        403
    );
    let exempt = announcements.clone();
    server
        .restart_with(|c| {
            c.encryption.plaintext_rooms.insert(exempt);
        })
        .await;
    let alice = alice.with_base(&server.url());
    let (status, body) = alice
        .send_event(&announcements, "m.room.message", "t2", text.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = alice.send_event(&other, "m.room.message", "t3", text).await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "only the listed room is exempt"
    );
    server.stop().await;
}

/// A message's authorization follows the room as it changes, send after
/// send: a power-level change, a retry, a departure (on SQLite messages are
/// authorized outside the writer and checked against the room's state
/// serial there; see store::checked_append).
async fn messages_follow_the_room_as_it_changes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let room = alice.create_room(json!({})).await;
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    bob.join(&room).await;
    let send = |txn: &'static str| {
        bob.send_event(
            &room,
            "m.room.encrypted",
            txn,
            cloister_tests::megolm_content(txn, "D"),
        )
    };
    // Alice's message leaves a copy of the room that Bob's first send
    // may use (service::checked_send); Carol, only invited, may not.
    let (status, body) = alice
        .send_event(
            &room,
            "m.room.encrypted",
            "a1",
            cloister_tests::megolm_content("a1", "A"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let carol = Client::register(&url, "carol", "pw").await;
    assert_eq!(alice.invite(&room, &carol.user_id).await.0, 200);
    let (status, body) = carol
        .send_event(
            &room,
            "m.room.encrypted",
            "c1",
            cloister_tests::megolm_content("c1", "C"),
        )
        .await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    let (status, first) = send("t1").await;
    assert_eq!(status, 200, "{first}");
    let (status, again) = send("t1").await;
    assert_eq!(
        (status, &again["event_id"]),
        (200, &first["event_id"]),
        "a retry is the same send"
    );

    let levels_path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
        encode(&room)
    );
    let (status, mut levels) = alice.get(&levels_path).await;
    assert_eq!(status, 200, "{levels}");
    levels["events_default"] = json!(50);
    assert_eq!(alice.put(&levels_path, levels.clone()).await.0, 200);
    let (status, body) = send("t2").await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    levels["events_default"] = json!(0);
    assert_eq!(alice.put(&levels_path, levels).await.0, 200);
    let (status, body) = send("t3").await;
    assert_eq!(status, 200, "{body}");

    assert_eq!(bob.leave(&room).await.0, 200);
    let (status, body) = send("t4").await;
    assert_eq!(
        (status, errcode(&body)),
        (403, Some("M_FORBIDDEN")),
        "{body}"
    );
    // The refused sends stored nothing: a retry after rejoining sends.
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    bob.join(&room).await;
    let (status, body) = send("t4").await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["event_id"], first["event_id"]);
    server.stop().await;
}

both_backends!(
    membership_and_power, membership_and_power;
    aliases_history_and_redaction, aliases_history_and_redaction;
    plaintext_room_exemption, plaintext_room_exemption;
    messages_follow_the_room_as_it_changes, messages_follow_the_room_as_it_changes
);
