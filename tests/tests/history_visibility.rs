//! Who may read a room (spec: "History visibility"), on every read path:
//! `/messages` both ways, `/event`, `/context`, `/state`, `/members` and
//! `/sync` (`rooms.leave` and `rooms.join`).
//!
//! People who were never joined — a declined or withdrawn invite, a ban
//! before joining — read nothing but their own membership events; former
//! members read up to their last departure and not a position further,
//! whatever happens to their membership afterwards; each event is judged by
//! the visibility in force when it was sent; forgetting ends all reading.

use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

fn room_path(room: &str, rest: &str) -> String {
    format!("/_matrix/client/v3/rooms/{}/{rest}", encode(room))
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|l| {
            l.iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every event `reader` gets from paginating `/messages` in direction `dir`.
async fn paginate(reader: &Client, room: &str, dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..50 {
        let mut path = room_path(room, &format!("messages?dir={dir}&limit=7"));
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", encode(f)));
        }
        let (status, page) = reader.get(&path).await;
        assert_eq!(status, 200, "{}: /messages {page}", reader.user_id);
        out.extend(ids(&page["chunk"]));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

/// The `rooms.leave` entry of an initial sync that includes left rooms.
async fn left_section(reader: &Client, room: &str) -> Value {
    let filter = json!({ "room": { "include_leave": true, "timeline": { "limit": 100 } } });
    let (status, body) = reader
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&filter={}",
            encode(&filter.to_string())
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["rooms"]["leave"][room].clone()
}

/// `reader` sees every event of `visible` and none of `hidden`, on every
/// event-reading path.
async fn assert_reads(reader: &Client, room: &str, visible: &[&String], hidden: &[&String]) {
    let who = &reader.user_id;
    let backwards = paginate(reader, room, "b").await;
    let mut forwards = paginate(reader, room, "f").await;
    forwards.reverse();
    assert_eq!(backwards, forwards, "{who}: both directions agree");
    for id in visible {
        assert!(backwards.contains(id), "{who} should read {id}");
        let (status, _) = reader
            .get(&room_path(room, &format!("event/{}", encode(id))))
            .await;
        assert_eq!(status, 200, "{who}: /event {id}");
    }
    for id in hidden {
        assert!(!backwards.contains(id), "{who} must not read {id}");
        let (status, body) = reader
            .get(&room_path(room, &format!("event/{}", encode(id))))
            .await;
        assert_eq!(status, 404, "{who}: /event {id}: {body}");
        let (status, _) = reader
            .get(&room_path(room, &format!("context/{}", encode(id))))
            .await;
        assert_eq!(status, 404, "{who}: /context {id}");
    }
    if let Some(anchor) = visible.first() {
        let (status, ctx) = reader
            .get(&room_path(
                room,
                &format!("context/{}?limit=100", encode(anchor)),
            ))
            .await;
        assert_eq!(status, 200, "{who}: {ctx}");
        let around: Vec<String> = ids(&ctx["events_before"])
            .into_iter()
            .chain(ids(&ctx["events_after"]))
            .collect();
        for id in hidden {
            assert!(!around.contains(id), "{who}: /context leaks {id}");
        }
    }
}

/// `reader`, never joined, may read no state of the room on any path.
async fn assert_no_state(reader: &Client, room: &str) {
    let who = &reader.user_id;
    for path in ["state", "members", "state/m.room.name/", "aliases"] {
        let (status, body) = reader.get(&room_path(room, path)).await;
        assert_eq!(
            (status, errcode(&body)),
            (403, Some("M_FORBIDDEN")),
            "{who}: /{path}: {body}"
        );
    }
    let section = left_section(reader, room).await;
    assert_eq!(section["state"]["events"], json!([]), "{who}: {section}");
    for event in section["timeline"]["events"].as_array().unwrap() {
        assert_eq!(event["type"], "m.room.member", "{who}: {event}");
        assert_eq!(event["state_key"], who.as_str(), "{who}: {event}");
    }
}

/// `reader` left when the room was called `name`: that is the state they read.
async fn assert_state_at_departure(reader: &Client, room: &str, name: &str, members: usize) {
    let who = &reader.user_id;
    let (status, body) = reader.get(&room_path(room, "state/m.room.name/")).await;
    assert_eq!(
        (status, &body["name"]),
        (200, &json!(name)),
        "{who}: {body}"
    );
    let (status, body) = reader.get(&room_path(room, "members")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["chunk"].as_array().unwrap().len(),
        members,
        "{who}: {body}"
    );
    let section = left_section(reader, room).await;
    let names: Vec<&Value> = section["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .chain(section["timeline"]["events"].as_array().unwrap())
        .filter(|e| e["type"] == "m.room.name")
        .map(|e| &e["content"]["name"])
        .collect();
    assert_eq!(names, vec![&json!(name)], "{who}: {section}");
}

async fn never_joined_and_former_members(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let [decliner, withdrawn, banned, left_then_banned, reinvited] = [
        Client::register(&url, "decliner", "pw").await,
        Client::register(&url, "withdrawn", "pw").await,
        Client::register(&url, "banned", "pw").await,
        Client::register(&url, "leftbanned", "pw").await,
        Client::register(&url, "reinvited", "pw").await,
    ];
    // `shared` (the default): the most a former member could ever read.
    let room = alice.create_room(json!({ "name": "Secret" })).await;
    let early = alice.send_encrypted(&room, "early").await;

    // Two former members join, read, and leave.
    for c in [&left_then_banned, &reinvited] {
        assert_eq!(alice.invite(&room, &c.user_id).await.0, 200);
        c.join(&room).await;
    }
    let while_members = alice.send_encrypted(&room, "while").await;
    for c in [&left_then_banned, &reinvited] {
        assert_eq!(c.leave(&room).await.0, 200);
    }
    let after_they_left = alice.send_encrypted(&room, "after").await;
    assert_eq!(
        alice
            .put_state(&room, "m.room.name", "", json!({ "name": "Renamed" }))
            .await
            .0,
        200
    );

    // Declined invite; invite withdrawn (kicked before joining); ban before joining.
    assert_eq!(alice.invite(&room, &decliner.user_id).await.0, 200);
    assert_eq!(decliner.leave(&room).await.0, 200);
    assert_eq!(alice.invite(&room, &withdrawn.user_id).await.0, 200);
    let kick = json!({ "user_id": withdrawn.user_id });
    assert_eq!(alice.post(&room_path(&room, "kick"), kick).await.0, 200);
    let ban = |c: &Client| json!({ "user_id": c.user_id, "reason": "no" });
    assert_eq!(
        alice.post(&room_path(&room, "ban"), ban(&banned)).await.0,
        200
    );
    // A former member banned after leaving; another re-invited who declines.
    assert_eq!(
        alice
            .post(&room_path(&room, "ban"), ban(&left_then_banned))
            .await
            .0,
        200
    );
    assert_eq!(alice.invite(&room, &reinvited.user_id).await.0, 200);
    assert_eq!(reinvited.leave(&room).await.0, 200);
    let last = alice.send_encrypted(&room, "last").await;

    let all = [&early, &while_members, &after_they_left, &last];
    for never in [&decliner, &withdrawn, &banned] {
        assert_reads(never, &room, &[], &all).await;
        assert_no_state(never, &room).await;
    }
    for former in [&left_then_banned, &reinvited] {
        assert_reads(
            former,
            &room,
            &[&early, &while_members],
            &[&after_they_left, &last],
        )
        .await;
        // Alice and the two of them were in the room when they left.
        assert_state_at_departure(former, &room, "Secret", 3).await;
    }
    // Alice, a member throughout, reads everything.
    assert_reads(&alice, &room, &all, &[]).await;
    server.stop().await;
}

async fn visibility_is_judged_per_event(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;
    let room = alice.create_room(json!({})).await;
    let set = |v: &str| json!({ "history_visibility": v });
    let put = |v| alice.put_state(&room, "m.room.history_visibility", "", set(v));

    // Sent under `shared`, `joined`, `shared` again, then `invited`.
    let shared_1 = alice.send_encrypted(&room, "s1").await;
    assert_eq!(put("joined").await.0, 200);
    let joined_only = alice.send_encrypted(&room, "j1").await;
    assert_eq!(put("shared").await.0, 200);
    let shared_2 = alice.send_encrypted(&room, "s2").await;
    assert_eq!(put("invited").await.0, 200);
    let before_invite = alice.send_encrypted(&room, "i0").await;
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    let while_invited = alice.send_encrypted(&room, "i1").await;
    bob.join(&room).await;
    let after_join = alice.send_encrypted(&room, "i2").await;

    // Switching to `shared` later does not open what was sent before.
    assert_eq!(put("shared").await.0, 200);
    assert_reads(
        &bob,
        &room,
        &[&shared_1, &shared_2, &while_invited, &after_join],
        &[&joined_only, &before_invite],
    )
    .await;
    // Bob's initial /sync timeline follows the same rule.
    let filter = json!({ "room": { "timeline": { "limit": 100 } } });
    let (_, sync) = bob
        .get(&format!(
            "/_matrix/client/v3/sync?timeout=0&filter={}",
            encode(&filter.to_string())
        ))
        .await;
    let timeline = ids(&sync["rooms"]["join"][&room]["timeline"]["events"]);
    for id in [&shared_1, &shared_2, &while_invited, &after_join] {
        assert!(timeline.contains(id), "sync lacks {id}: {timeline:?}");
    }
    for id in [&joined_only, &before_invite] {
        assert!(!timeline.contains(id), "sync leaks {id}");
    }

    // Carol, invited and joined under `shared`, reads what was sent under
    // `shared`; what `invited` showed to Bob was never hers to read.
    assert_eq!(alice.invite(&room, &carol.user_id).await.0, 200);
    carol.join(&room).await;
    let now_shared = alice.send_encrypted(&room, "s3").await;
    assert_reads(
        &carol,
        &room,
        &[&shared_1, &shared_2, &now_shared],
        &[&joined_only, &before_invite, &while_invited, &after_join],
    )
    .await;
    server.stop().await;
}

async fn forgotten_rooms_are_unreadable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let room = alice.create_room(json!({ "name": "Old" })).await;
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    bob.join(&room).await;
    let seen = alice.send_encrypted(&room, "seen").await;
    assert_eq!(bob.leave(&room).await.0, 200);
    assert_reads(&bob, &room, &[&seen], &[]).await;
    assert_eq!(
        bob.post(&room_path(&room, "forget"), json!({})).await.0,
        200
    );
    for path in [
        "messages?dir=b".to_owned(),
        format!("event/{}", encode(&seen)),
        format!("context/{}", encode(&seen)),
        "state".to_owned(),
        "members".to_owned(),
    ] {
        let (status, body) = bob.get(&room_path(&room, &path)).await;
        assert_eq!(
            (status, errcode(&body)),
            (403, Some("M_FORBIDDEN")),
            "/{path} after forget: {body}"
        );
    }
    assert!(left_section(&bob, &room).await.is_null());
    // Invited and joined again, Bob reads the room as any member does.
    assert_eq!(alice.invite(&room, &bob.user_id).await.0, 200);
    bob.join(&room).await;
    assert_reads(&bob, &room, &[&seen], &[]).await;
    server.stop().await;
}

both_backends!(
    never_joined_or_left, never_joined_and_former_members;
    per_event, visibility_is_judged_per_event;
    forget, forgotten_rooms_are_unreadable;
);
