//! Simplified sliding sync (MSC4186) on both backends: lists sorted by
//! recency, room windows, required_state filters, per-connection deltas
//! stored in the database (retries, unknown positions, restarts), the
//! extensions, long-polling and retention.

use std::time::Duration;

use cloister_tests::{
    alice_and_bob_in_a_room, both_backends, encode, errcode, event_ids, Backend, Client,
    ManualClock, TestServer,
};
use serde_json::{json, Value};

async fn ok(client: &Client, pos: Option<&str>, timeout_ms: u64, body: &Value) -> Value {
    let (status, answer) = client.sliding_sync(pos, timeout_ms, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn pos(answer: &Value) -> String {
    answer["pos"].as_str().expect("pos").to_owned()
}

/// The stored connection state a `pos` names (`<state>_<stream position>`).
fn state_of(answer: &Value) -> String {
    pos(answer).split('_').next().unwrap().to_owned()
}

/// (type, state_key) of a room's required_state, sorted.
fn state_keys(room: &Value) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = room["required_state"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["state_key"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    keys.sort();
    keys
}

/// Rooms here are end-to-end encrypted: the server takes only ciphertext.
async fn send_text(client: &Client, room: &str, txn: &str) -> String {
    client.send_encrypted(room, txn).await
}

fn list_body(range_end: u64, timeline_limit: u64) -> Value {
    json!({
        "lists": { "all": {
            "ranges": [[0, range_end]],
            "required_state": [["m.room.name", ""]],
            "timeline_limit": timeline_limit,
        } },
    })
}

async fn lists_and_deltas(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;

    let (status, versions) = alice.get("/_matrix/client/versions").await;
    assert_eq!(status, 200);
    assert_eq!(
        versions["unstable_features"]["org.matrix.simplified_msc3575"],
        true
    );

    let old = alice.create_room(json!({ "name": "old" })).await;
    let mid = alice.create_room(json!({ "name": "mid" })).await;
    let new = alice.create_room(json!({ "name": "new" })).await;

    // Only the two most recent rooms are in view; the count is all three.
    let body = list_body(1, 5);
    let first = ok(&alice, None, 0, &body).await;
    assert_eq!(first["lists"]["all"]["count"], 3, "{first}");
    let rooms = first["rooms"].as_object().unwrap();
    assert_eq!(rooms.len(), 2, "{first}");
    assert!(rooms.contains_key(&new) && rooms.contains_key(&mid));
    assert_eq!(first["rooms"][&new]["initial"], true);
    assert_eq!(first["rooms"][&new]["name"], "new");
    assert_eq!(
        state_keys(&first["rooms"][&new]),
        vec![("m.room.name".to_owned(), String::new())]
    );
    let old_bump = first["rooms"][&mid]["bump_stamp"].as_i64().unwrap();

    // Nothing happened: no rooms, and the same position.
    let quiet = ok(&alice, Some(&pos(&first)), 0, &body).await;
    assert_eq!(quiet["rooms"], json!({}), "{quiet}");
    assert_eq!(pos(&quiet), pos(&first));

    // A message in the oldest room moves it to the front, into view, whole.
    let hello = send_text(&alice, &old, "hello").await;
    let second = ok(&alice, Some(&pos(&first)), 0, &body).await;
    let rooms = second["rooms"].as_object().unwrap();
    assert_eq!(rooms.keys().collect::<Vec<_>>(), vec![&old], "{second}");
    assert_eq!(second["rooms"][&old]["initial"], true);
    assert!(second["rooms"][&old]["bump_stamp"].as_i64().unwrap() > old_bump);
    assert_eq!(
        event_ids(&second["rooms"][&old]["timeline"]).last(),
        Some(&hello)
    );

    // A new message in a room held: only that event, no state, not initial.
    let again = send_text(&alice, &new, "again").await;
    let third = ok(&alice, Some(&pos(&second)), 0, &body).await;
    let rooms = third["rooms"].as_object().unwrap();
    assert_eq!(rooms.keys().collect::<Vec<_>>(), vec![&new], "{third}");
    let room = &third["rooms"][&new];
    assert!(room.get("initial").is_none(), "{room}");
    assert_eq!(event_ids(&room["timeline"]), vec![again.clone()]);
    assert_eq!(room["limited"], false);
    assert!(room.get("required_state").is_none(), "{room}");
    // New messages in rooms held up to date leave what the client holds
    // as it was: the same stored state, a later stream position.
    assert_eq!(state_of(&third), state_of(&second));
    assert_ne!(pos(&third), pos(&second));

    // The response was lost: a retry from the previous position gets the
    // same event again, and goes on from there.
    let retried = ok(&alice, Some(&pos(&second)), 0, &body).await;
    assert_eq!(
        event_ids(&retried["rooms"][&new]["timeline"]),
        vec![again.clone()]
    );
    let after_retry = ok(&alice, Some(&pos(&retried)), 0, &body).await;
    assert_eq!(after_retry["rooms"], json!({}), "{after_retry}");

    // Positions older than the previous one, or made up, are refused.
    for stale in [pos(&first), "12345".to_owned(), "nonsense".to_owned()] {
        let (status, answer) = alice.sliding_sync(Some(&stale), 0, body.clone()).await;
        assert_eq!(
            (status, errcode(&answer)),
            (400, Some("M_UNKNOWN_POS")),
            "{answer}"
        );
    }

    // Another connection of the same device is separate.
    let mut other = body.clone();
    other["conn_id"] = json!("notifications");
    let fresh = ok(&alice, None, 0, &other).await;
    assert_eq!(fresh["rooms"].as_object().unwrap().len(), 2, "{fresh}");

    // Bad requests.
    let too_long = json!({ "lists": { "a": { "ranges": [[0, 1]], "timeline_limit": 1000 } } });
    let backwards = json!({ "lists": { "a": { "ranges": [[5, 1]] } } });
    for bad in [too_long, backwards] {
        let (status, answer) = alice.sliding_sync(None, 0, bad).await;
        assert_eq!((status, errcode(&answer)), (400, Some("M_INVALID_PARAM")));
    }
    server.stop().await;
}

/// A room held up to date that drops out of view while messages arrive is
/// held from where it dropped out: when it comes back, it gets exactly the
/// messages it missed, not the whole room and not a gap.
async fn rooms_out_of_view_miss_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let x = alice.create_room(json!({ "name": "x" })).await;
    let y = alice.create_room(json!({ "name": "y" })).await;
    // One room in view: the most recent.
    let body = list_body(0, 10);
    let first = ok(&alice, None, 0, &body).await;
    assert!(first["rooms"].get(&y).is_some(), "{first}");
    send_text(&alice, &x, "x1").await;
    let second = ok(&alice, Some(&pos(&first)), 0, &body).await;
    assert_eq!(second["rooms"][&x]["initial"], true, "{second}");
    // y is out of view when these arrive; x, in view, takes the last one.
    let y1 = send_text(&alice, &y, "y1").await;
    let x2 = send_text(&alice, &x, "x2").await;
    let third = ok(&alice, Some(&pos(&second)), 0, &body).await;
    assert_eq!(event_ids(&third["rooms"][&x]["timeline"]), vec![x2]);
    assert!(third["rooms"].get(&y).is_none(), "{third}");
    // Back in view: y1 and y2, as a delta.
    let y2 = send_text(&alice, &y, "y2").await;
    let fourth = ok(&alice, Some(&pos(&third)), 0, &body).await;
    let room = &fourth["rooms"][&y];
    assert!(room.get("initial").is_none(), "{room}");
    let missed = vec![y1, y2];
    assert_eq!(event_ids(&room["timeline"]), missed);
    assert_eq!(room["limited"], false, "{room}");
    // And a retry of that response gets the same.
    let retried = ok(&alice, Some(&pos(&third)), 0, &body).await;
    assert_eq!(event_ids(&retried["rooms"][&y]["timeline"]), missed);
    server.stop().await;
}

async fn required_state_and_timeline(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let carol = Client::register(&url, "carol", "pw").await;
    let room = alice
        .create_room(json!({ "name": "talk", "topic": "t", "preset": "public_chat" }))
        .await;
    bob.join(&room).await;
    carol.join(&room).await;
    for i in 0..4 {
        send_text(&alice, &room, &format!("a{i}")).await;
    }
    let last = send_text(&bob, &room, "b").await;

    let body = json!({ "room_subscriptions": { &room: {
        "required_state": [
            ["m.room.topic", ""],
            ["m.room.member", "$LAZY"],
            ["m.room.member", "$ME"],
            ["m.room.power_levels", "*"],
            ["*", "nothing-has-this-key"],
        ],
        "timeline_limit": 2,
    } } });
    let answer = ok(&carol, None, 0, &body).await;
    let got = &answer["rooms"][&room];
    assert_eq!(got["initial"], true, "{answer}");
    assert_eq!(got["limited"], true);
    assert!(got["prev_batch"].is_string());
    let timeline = event_ids(&got["timeline"]);
    assert_eq!(timeline.len(), 2);
    assert_eq!(timeline.last(), Some(&last));
    // Members: the timeline's senders (Alice, Bob) and Carol herself.
    let member = |u: &Client| ("m.room.member".to_owned(), u.user_id.clone());
    let mut expected = vec![
        member(&alice),
        member(&bob),
        member(&carol),
        ("m.room.power_levels".to_owned(), String::new()),
        ("m.room.topic".to_owned(), String::new()),
    ];
    expected.sort();
    assert_eq!(state_keys(got), expected, "{got}");
    assert_eq!(got["joined_count"], 3);
    assert_eq!(got["name"], "talk");

    // Asking for more: a longer timeline and more state, not the room anew.
    let mut more = body.clone();
    more["room_subscriptions"][&room]["timeline_limit"] = json!(4);
    more["room_subscriptions"][&room]["required_state"]
        .as_array_mut()
        .unwrap()
        .push(json!(["m.room.name", ""]));
    let expanded = ok(&carol, Some(&pos(&answer)), 0, &more).await;
    let got = &expanded["rooms"][&room];
    assert!(got.get("initial").is_none(), "{expanded}");
    assert_eq!(got["unstable_expanded_timeline"], true);
    assert_eq!(event_ids(&got["timeline"]).len(), 4);
    assert!(state_keys(got).contains(&("m.room.name".to_owned(), String::new())));
    // Asking for less again sends nothing; asking for more once more
    // expands again, measured against what was asked last.
    let less = ok(&carol, Some(&pos(&expanded)), 0, &body).await;
    assert_eq!(less["rooms"], json!({}), "{less}");
    let again = ok(&carol, Some(&pos(&less)), 0, &more).await;
    assert_eq!(
        again["rooms"][&room]["unstable_expanded_timeline"], true,
        "{again}"
    );

    // Wildcards: every state event.
    let all = json!({ "room_subscriptions": { &room: {
        "required_state": [["*", "*"]], "timeline_limit": 0,
    } } });
    let answer = ok(&bob, None, 0, &all).await;
    let got = &answer["rooms"][&room];
    let keys = state_keys(got);
    assert!(keys.contains(&("m.room.create".to_owned(), String::new())));
    assert!(keys.contains(&("m.room.name".to_owned(), String::new())));
    assert_eq!(
        keys.iter().filter(|(t, _)| t == "m.room.member").count(),
        3,
        "{got}"
    );
    assert!(got.get("timeline").is_none(), "{got}");

    // A state change comes as changed required_state to a connection holding the room.
    let p = pos(&answer);
    let (status, _) = alice
        .put_state(&room, "m.room.topic", "", json!({ "topic": "new" }))
        .await;
    assert_eq!(status, 200);
    let answer = ok(&bob, Some(&p), 0, &all).await;
    let got = &answer["rooms"][&room];
    assert_eq!(
        state_keys(got),
        vec![("m.room.topic".to_owned(), String::new())],
        "{got}"
    );

    // Leaving: the room comes once more, with the leave, then no more.
    let p = pos(&answer);
    assert_eq!(bob.leave(&room).await.0, 200);
    let answer = ok(&bob, Some(&p), 0, &all).await;
    let last = answer["rooms"][&room]["timeline"]
        .as_array()
        .and_then(|t| t.last().cloned())
        .unwrap_or_else(|| panic!("no leave in {answer}"));
    assert_eq!(
        (&last["type"], &last["content"]["membership"]),
        (&json!("m.room.member"), &json!("leave"))
    );
    // And in required_state, where matrix-sdk (Element X) reads its own
    // membership: without it the room stayed joined there (issue #14).
    let own = &answer["rooms"][&room]["required_state"][0];
    assert_eq!(own["event_id"], last["event_id"], "{answer}");
    let after = ok(&bob, Some(&pos(&answer)), 0, &all).await;
    assert_eq!(after["rooms"], json!({}), "{after}");
    server.stop().await;
}

async fn extensions_and_restart(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let room = alice.create_room(json!({ "invite": [bob.user_id] })).await;

    // An invite is in Bob's list with its stripped state.
    let body = json!({
        "lists": { "all": { "ranges": [[0, 10]], "timeline_limit": 5 } },
        "extensions": {
            "e2ee": { "enabled": true },
            "to_device": { "enabled": true },
            "account_data": { "enabled": true },
            "receipts": { "enabled": true },
            "typing": { "enabled": true },
        },
    });
    let mut with_invites = body.clone();
    with_invites["lists"]["invites"] =
        json!({ "ranges": [[0, 10]], "filters": { "is_invite": true } });
    with_invites["lists"]["joined"] =
        json!({ "ranges": [[0, 10]], "filters": { "is_invite": false } });
    let invited = ok(&bob, None, 0, &with_invites).await;
    assert!(
        invited["rooms"][&room]["invite_state"].is_array(),
        "{invited}"
    );
    assert_eq!(invited["lists"]["invites"]["count"], 1, "{invited}");
    assert_eq!(invited["lists"]["joined"]["count"], 0, "{invited}");
    bob.join(&room).await;
    let keys = alice.device_keys();
    alice.upload_keys(&keys, 3).await;

    let first = ok(&alice, None, 0, &body).await;
    let ext = &first["extensions"];
    assert_eq!(
        ext["e2ee"]["device_one_time_keys_count"]["signed_curve25519"], 3,
        "{first}"
    );
    assert!(ext["e2ee"]["device_unused_fallback_key_types"].is_array());
    assert!(ext["account_data"]["global"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.push_rules"));
    let mut since = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
    let mut p = pos(&first);

    // Bob's new device keys, a to-device message, typing, a receipt and
    // account data all come to Alice's connection.
    let bob_keys = bob.device_keys();
    bob.upload_keys(&bob_keys, 1).await;
    send_olm(&bob, &alice, "td1", "AwoA").await;
    let last = send_text(&bob, &room, "read me").await;
    let typing = format!(
        "/_matrix/client/v3/rooms/{}/typing/{}",
        encode(&room),
        encode(&bob.user_id)
    );
    assert_eq!(
        bob.put(&typing, json!({ "typing": true, "timeout": 30000 }))
            .await
            .0,
        200
    );
    let receipt = format!(
        "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
        encode(&room),
        encode(&last)
    );
    assert_eq!(bob.post(&receipt, json!({})).await.0, 200);
    let data = format!(
        "/_matrix/client/v3/user/{}/account_data/org.example.setting",
        encode(&alice.user_id)
    );
    assert_eq!(alice.put(&data, json!({ "on": true })).await.0, 200);

    let mut with_since = body.clone();
    with_since["extensions"]["to_device"]["since"] = json!(since);
    let next = ok(&alice, Some(&p), 0, &with_since).await;
    let ext = &next["extensions"];
    assert!(
        ext["e2ee"]["device_lists"]["changed"]
            .as_array()
            .unwrap()
            .contains(&json!(bob.user_id)),
        "{next}"
    );
    let to_device = ext["to_device"]["events"].as_array().unwrap();
    assert_eq!(to_device.len(), 1, "{next}");
    assert_eq!(to_device[0]["sender"], bob.user_id.as_str());
    assert_eq!(
        ext["typing"]["rooms"][&room]["content"]["user_ids"],
        json!([bob.user_id])
    );
    assert!(
        ext["receipts"]["rooms"][&room]["content"][&last].is_object(),
        "{next}"
    );
    assert_eq!(
        ext["account_data"]["global"],
        json!([{ "type": "org.example.setting", "content": { "on": true } }])
    );
    assert_eq!(event_ids(&next["rooms"][&room]["timeline"]), vec![last]);

    // Not acknowledged yet: after a restart the message comes again, once
    // acknowledged it never does. The connection survives the restart.
    server.restart().await;
    let alice = alice.with_base(&server.url());
    let again = ok(&alice, Some(&p), 0, &with_since).await;
    assert_eq!(
        again["extensions"]["to_device"]["events"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{again}"
    );
    since = again["extensions"]["to_device"]["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    p = pos(&again);
    with_since["extensions"]["to_device"]["since"] = json!(since);
    let acked = ok(&alice, Some(&p), 0, &with_since).await;
    assert_eq!(
        acked["extensions"]["to_device"]["events"],
        json!([]),
        "{acked}"
    );
    // With nothing pending, the `next_batch` handed back acknowledges
    // nothing more (it spares the next request a delete), and a message
    // sent after it still comes, once.
    send_olm(&bob, &alice, "td2", "second").await;
    with_since["extensions"]["to_device"]["since"] =
        acked["extensions"]["to_device"]["next_batch"].clone();
    let second = ok(&alice, Some(&pos(&acked)), 0, &with_since).await;
    let events = second["extensions"]["to_device"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(events.len(), 1, "{second}");
    assert_eq!(events[0]["content"]["ciphertext"]["x"]["body"], "second");
    with_since["extensions"]["to_device"]["since"] =
        second["extensions"]["to_device"]["next_batch"].clone();
    let p = pos(&second);
    let after = ok(&alice, Some(&p), 0, &with_since).await;
    assert_eq!(
        after["extensions"]["to_device"]["events"],
        json!([]),
        "{after}"
    );
    server.restart().await;
    let alice = alice.with_base(&server.url());
    let (status, _) = alice.sliding_sync(Some(&p), 0, with_since.clone()).await;
    assert_eq!(status, 200);
    let later = ok(&alice, None, 0, &with_since).await;
    assert_eq!(later["extensions"]["to_device"]["events"], json!([]));
    server.stop().await;
}

/// An Olm-shaped to-device message from `from` to `to`'s device.
async fn send_olm(from: &Client, to: &Client, txn: &str, body: &str) {
    let olm = json!({ "algorithm": "m.olm.v1.curve25519-aes-sha2", "sender_key": "k", "ciphertext": { "x": { "type": 0, "body": body } } });
    let (status, _) = from
        .put(
            &format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/{txn}"),
            json!({ "messages": { &to.user_id: { &to.device_id: olm } } }),
        )
        .await;
    assert_eq!(status, 200);
}

async fn long_poll_wakes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let (alice, bob, room) = alice_and_bob_in_a_room(&url, &url).await;
    let body = list_body(10, 5);
    let first = ok(&alice, None, 0, &body).await;
    let sender = {
        let (bob, room) = (bob.clone(), room.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            send_text(&bob, &room, "wake").await
        })
    };
    let woken = ok(&alice, Some(&pos(&first)), 30_000, &body).await;
    let sent = sender.await.unwrap();
    assert_eq!(
        event_ids(&woken["rooms"][&room]["timeline"]),
        vec![sent],
        "{woken}"
    );

    // A request from the last response's position that asks the same
    // waits at once, without reading (`service::sliding_sync::sync`), but
    // only while nothing was sent since: a message sent between the two
    // requests is answered at once.
    let again = send_text(&bob, &room, "between").await;
    let started = std::time::Instant::now();
    let answered = ok(&alice, Some(&pos(&woken)), 30_000, &body).await;
    assert!(started.elapsed() < Duration::from_secs(10), "waited");
    assert_eq!(
        event_ids(&answered["rooms"][&room]["timeline"]),
        vec![again],
        "{answered}"
    );
    // And with nothing new, it waits out its timeout.
    let started = std::time::Instant::now();
    let idle = ok(&alice, Some(&pos(&answered)), 500, &body).await;
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert_eq!(idle["rooms"], json!({}), "{idle}");
    server.stop().await;
}

async fn expired_messages_are_not_served(backend: Backend) {
    const HOUR: i64 = 3_600_000;
    let server = TestServer::start_with_clock(backend, ManualClock::new(1_800_000_000_000), |c| {
        c.retention.purge_interval = "520w".parse().unwrap()
    })
    .await;
    let clock = server.clock().unwrap();
    let dpo = server.register_admin("dpo").await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let (status, set) = dpo
        .put(
            &format!("/_cloister/admin/v1/rooms/{}/retention", encode(&room)),
            json!({ "max_lifetime": HOUR }),
        )
        .await;
    assert_eq!(status, 200, "{set}");
    let old = send_text(&alice, &room, "old").await;
    clock.advance_ms(HOUR + 60_000);
    let fresh = send_text(&alice, &room, "fresh").await;
    let answer = ok(&alice, None, 0, &list_body(10, 20)).await;
    let timeline = event_ids(&answer["rooms"][&room]["timeline"]);
    assert!(
        timeline.contains(&fresh) && !timeline.contains(&old),
        "{answer}"
    );
    server.stop().await;
}

/// A subscription reaches only the user's own rooms: a stranger learns
/// nothing of a room by naming it, and a former member gets nothing sent
/// after they left.
async fn subscriptions_reach_only_the_users_rooms(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let alice = Client::register(&url, "alice", "pw").await;
    let bob = Client::register(&url, "bob", "pw").await;
    let eve = Client::register(&url, "eve", "pw").await;
    let room = alice
        .create_room(json!({ "name": "private", "preset": "public_chat" }))
        .await;
    bob.join(&room).await;
    send_text(&alice, &room, "before").await;
    assert_eq!(bob.leave(&room).await.0, 200);
    let after = send_text(&alice, &room, "after").await;
    let body = json!({ "room_subscriptions": { &room: {
        "required_state": [["*", "*"]],
        "timeline_limit": 10,
    } } });

    let stranger = ok(&eve, None, 0, &body).await;
    assert!(stranger["rooms"].get(&room).is_none(), "{stranger}");

    let former = ok(&bob, None, 0, &body).await;
    let served = &former["rooms"][&room];
    let timeline = event_ids(&served["timeline"]);
    assert!(!timeline.contains(&after), "sent after bob left: {former}");
    server.stop().await;
}

/// A connection no request moved on for 30 days is forgotten by the
/// housekeeping job; its client must start afresh.
async fn idle_connections_are_forgotten(backend: Backend) {
    const DAY: i64 = 24 * 3_600_000;
    let server =
        TestServer::start_with_clock(backend, ManualClock::new(1_800_000_000_000), |_| {}).await;
    let clock = server.clock().unwrap();
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let body = list_body(10, 5);
    let first = ok(&alice, None, 0, &body).await;
    assert_eq!(first["rooms"][&room]["initial"], true, "{first}");
    let purge = || cloister_server::service::sliding_sync::purge_idle(server.state());
    clock.advance_ms(29 * DAY);
    assert_eq!(purge().await.unwrap(), 0);
    // A request with nothing new still counts as use.
    let quiet = ok(&alice, Some(&pos(&first)), 0, &body).await;
    assert_eq!(pos(&quiet), pos(&first));
    clock.advance_ms(29 * DAY);
    assert_eq!(purge().await.unwrap(), 0);
    clock.advance_ms(2 * DAY);
    assert!(purge().await.unwrap() > 0);
    let (status, answer) = alice
        .sliding_sync(Some(&pos(&first)), 0, body.clone())
        .await;
    assert_eq!(
        (status, errcode(&answer)),
        (400, Some("M_UNKNOWN_POS")),
        "{answer}"
    );
    let sql = "SELECT COUNT(*) FROM sliding_sync_rooms WHERE user_id = $1";
    assert_eq!(server.count(sql, &alice.user_id).await, 0);
    // A fresh start works.
    let again = ok(&alice, None, 0, &body).await;
    assert_eq!(again["rooms"][&room]["initial"], true, "{again}");
    server.stop().await;
}

/// Two nodes on one PostgreSQL: a connection continues on the other node,
/// and a long-poll there wakes for a message sent through the first.
async fn connections_span_nodes(_: Backend) {
    let a = TestServer::start(Backend::Postgres).await;
    let mut b = a.start_peer().await;
    let alice = Client::register(&a.url(), "alice", "pw").await;
    let alice_b = alice.with_base(&b.url());
    let room = alice.create_room(json!({})).await;
    let body = list_body(10, 5);
    let first = ok(&alice, None, 0, &body).await;
    assert_eq!(first["rooms"][&room]["initial"], true, "{first}");
    let one = send_text(&alice, &room, "one").await;
    let second = ok(&alice_b, Some(&pos(&first)), 0, &body).await;
    assert_eq!(
        event_ids(&second["rooms"][&room]["timeline"]),
        vec![one],
        "{second}"
    );
    let sender = {
        let (alice, room) = (alice.clone(), room.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            send_text(&alice, &room, "two").await
        })
    };
    let woken = ok(&alice_b, Some(&pos(&second)), 30_000, &body).await;
    let two = sender.await.unwrap();
    assert_eq!(
        event_ids(&woken["rooms"][&room]["timeline"]),
        vec![two],
        "{woken}"
    );
    b.stop_node().await;
    a.stop().await;
}

/// A node answers a bounded number of fresh connections at once
/// (`service::sliding_sync::MAX_FIRST_BUILDS`); more than that many at the
/// same moment, as after a restart, must all be answered, each with its
/// own connection that then carries on.
async fn a_burst_of_fresh_connections(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let (alice, bob, room) = alice_and_bob_in_a_room(&url, &url).await;
    let first = send_text(&bob, &room, "first").await;
    let fresh = (0..80).map(|i| {
        let (alice, room, first) = (alice.clone(), room.clone(), first.clone());
        tokio::spawn(async move {
            let mut body = list_body(10, 1);
            body["conn_id"] = json!(format!("c{i}"));
            let answer = ok(&alice, None, 0, &body).await;
            let timeline = &answer["rooms"][&room]["timeline"];
            assert_eq!(event_ids(timeline), vec![first], "{answer}");
            (body, pos(&answer))
        })
    });
    let tasks: Vec<_> = fresh.collect();
    // A permit never given back would leave the later ones waiting.
    let connections = tokio::time::timeout(Duration::from_secs(120), async {
        let mut connections = Vec::new();
        for task in tasks {
            connections.push(task.await.expect("a fresh connection"));
        }
        connections
    })
    .await
    .expect("every fresh connection answered");
    let next = send_text(&bob, &room, "next").await;
    for (body, at) in &connections {
        let answer = ok(&alice, Some(at), 0, body).await;
        let timeline = &answer["rooms"][&room]["timeline"];
        assert_eq!(event_ids(timeline), vec![next.clone()], "{answer}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_continue_across_nodes() {
    cloister_tests::run_test(Backend::Postgres, connections_span_nodes).await;
}

both_backends!(
    lists_and_deltas, lists_and_deltas;
    rooms_out_of_view_miss_nothing, rooms_out_of_view_miss_nothing;
    required_state_and_timeline, required_state_and_timeline;
    extensions_and_restart, extensions_and_restart;
    long_poll_wakes, long_poll_wakes;
    expired_messages_are_not_served, expired_messages_are_not_served;
    idle_connections_are_forgotten, idle_connections_are_forgotten;
    subscriptions_reach_only_the_users_rooms, subscriptions_reach_only_the_users_rooms;
    a_burst_of_fresh_connections, a_burst_of_fresh_connections;
);
