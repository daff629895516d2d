//! Push notifications (issue #13) on both backends, against a real HTTP
//! push gateway (`push_gateway.rs`, standing in for Sygnal): pushes are
//! `event_id_only`, muted rooms stay silent, 5xx answers are retried,
//! rejected pushkeys lose their pusher, bad pushers are refused, and
//! `/notifications` and `/sync` counts follow the rules and read receipts.

use std::time::{Duration, Instant};

use cloister_tests::push_gateway::{Answer, PushGateway};
use cloister_tests::{assert_refused, both_backends, encode, Backend, Client, TestServer};
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(30);

fn pusher(url: &str, pushkey: &str) -> Value {
    json!({
        "kind": "http",
        "app_id": "org.example.app",
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "lang": "en",
        "pushkey": pushkey,
        // Asks for the full format: the server must send event_id_only anyway.
        "data": { "url": url, "format": "full", "default_payload": { "aps": { "mutable-content": 1 } } },
    })
}

async fn set_pusher(c: &Client, body: Value) -> (u16, Value) {
    c.post("/_matrix/client/v3/pushers/set", body).await
}

async fn pushkeys(c: &Client) -> Vec<String> {
    let (status, body) = c.get("/_matrix/client/v3/pushers").await;
    assert_eq!(status, 200, "{body}");
    body["pushers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pushkey"].as_str().unwrap().to_owned())
        .collect()
}

/// Alice and Bob in one encrypted room; Bob has a pusher.
async fn pair(server: &TestServer, gateway: &PushGateway) -> (Client, Client, String) {
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    // Public: an invite would notify Bob too (tested on its own).
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&room).await;
    let (status, body) = set_pusher(&bob, pusher(&gateway.url(), "bob-key")).await;
    assert_eq!(status, 200, "{body}");
    (alice, bob, room)
}

async fn poll<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn room_counts(sync: &Value, room: &str) -> Value {
    sync["rooms"]["join"][room]["unread_notifications"].clone()
}

async fn pushes_are_event_id_only_and_counted(backend: Backend) {
    let server = TestServer::start(backend).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = pair(&server, &gateway).await;
    let first = bob.sync(None, 0).await;
    assert_eq!(
        room_counts(&first, &room),
        json!({ "notification_count": 0, "highlight_count": 0 })
    );
    let since = first["next_batch"].as_str().unwrap().to_owned();

    let event_id = alice.send_encrypted(&room, "m1").await;
    let n = gateway.wait_for(&event_id, Answer::Accept, WITHIN).await;
    assert_eq!(n["event_id"], event_id);
    assert_eq!(n["room_id"], room);
    assert_eq!(n["counts"]["unread"], 1);
    assert_eq!(n["prio"], "low");
    for absent in [
        "content",
        "sender",
        "sender_display_name",
        "room_name",
        "room_alias",
        "type",
        "user_is_target",
    ] {
        assert!(n.get(absent).is_none(), "{absent} leaked: {n}");
    }
    let device = &n["devices"][0];
    assert_eq!(device["app_id"], "org.example.app");
    assert_eq!(device["pushkey"], "bob-key");
    assert_eq!(device["data"]["format"], "event_id_only");
    assert!(device["data"].get("url").is_none(), "{device}");
    assert_eq!(
        device["data"]["default_payload"]["aps"]["mutable-content"],
        1
    );
    // A one-to-one encrypted room: `.m.rule.encrypted_room_one_to_one`.
    assert_eq!(device["tweaks"], json!({ "sound": "default" }));
    // Alice sent it: nothing for her.
    assert_eq!(gateway.requests_for(&event_id).len(), 1);

    // The incremental sync that carries the count (the evaluator may run
    // after the event's own wake-up, so wait for the count itself).
    let synced = bob
        .sync_until(Some(&since), WITHIN, |s| {
            room_counts(s, &room)["notification_count"] == 1
        })
        .await;
    assert_eq!(room_counts(&synced, &room)["highlight_count"], 0);
    let since = synced["next_batch"].as_str().unwrap().to_owned();
    let (status, list) = bob.get("/_matrix/client/v3/notifications").await;
    assert_eq!(status, 200, "{list}");
    let notes = list["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{list}");
    assert_eq!(notes[0]["event"]["event_id"], event_id);
    assert_eq!(notes[0]["room_id"], room);
    assert_eq!(notes[0]["read"], false);
    assert!(notes[0]["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("notify")));
    let (_, alices) = alice.get("/_matrix/client/v3/notifications").await;
    assert_eq!(alices["notifications"], json!([]));

    // A read receipt resets the count.
    let (status, body) = bob
        .post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                encode(&room),
                encode(&event_id)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let synced = bob
        .sync_until(Some(&since), WITHIN, |s| !room_counts(s, &room).is_null())
        .await;
    assert_eq!(
        room_counts(&synced, &room),
        json!({ "notification_count": 0, "highlight_count": 0 })
    );
    let (_, list) = bob.get("/_matrix/client/v3/notifications").await;
    assert_eq!(list["notifications"][0]["read"], true, "{list}");

    // An invite notifies the invitee (`.m.rule.invite_for_me`).
    let invited = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    let invite = poll("a push for the invite", async || {
        gateway
            .received()
            .into_iter()
            .find(|(b, _)| b["notification"]["room_id"] == invited)
    })
    .await;
    assert_eq!(
        invite.0["notification"]["devices"][0]["tweaks"]["sound"],
        "default"
    );

    // A pusher belongs to the device that made it: logging out deletes it.
    let phone = Client::login(&server.url(), "bob", "pw", None).await;
    let (status, body) = set_pusher(&phone, pusher(&gateway.url(), "phone-key")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pushkeys(&bob).await, ["bob-key", "phone-key"]);
    assert_eq!(phone.logout().await.0, 200);
    assert_eq!(pushkeys(&bob).await, ["bob-key"]);
    // `kind: null` deletes.
    let mut delete = pusher(&gateway.url(), "bob-key");
    delete["kind"] = Value::Null;
    assert_eq!(set_pusher(&bob, delete).await.0, 200);
    assert!(pushkeys(&bob).await.is_empty());
    server.stop().await;
}

async fn muted_rooms_stay_silent(backend: Backend) {
    let server = TestServer::start(backend).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, muted) = pair(&server, &gateway).await;
    let open = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join(&open).await;
    let room_rule = json!({ "actions": [] });
    let (status, body) = bob
        .put(
            &format!(
                "/_matrix/client/v3/pushrules/global/room/{}",
                encode(&muted)
            ),
            room_rule,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let silenced = alice.send_encrypted(&muted, "m1").await;
    // Events are evaluated in stream order: once the later event's push
    // arrived, the muted one was decided too.
    let later = alice.send_encrypted(&open, "m2").await;
    gateway.wait_for(&later, Answer::Accept, WITHIN).await;
    assert!(gateway.requests_for(&silenced).is_empty());
    let (_, list) = bob.get("/_matrix/client/v3/notifications").await;
    let ids: Vec<&Value> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["event"]["event_id"])
        .collect();
    assert_eq!(ids, [&json!(later)], "{list}");
    let sync = bob.sync(None, 0).await;
    assert_eq!(room_counts(&sync, &muted)["notification_count"], 0);
    assert_eq!(room_counts(&sync, &open)["notification_count"], 1);

    // Element's "mute": an override on the room id, with no actions.
    let (status, body) = bob
        .put(
            &format!("/_matrix/client/v3/pushrules/global/override/{}", encode(&open)),
            json!({ "actions": [], "conditions": [{ "kind": "event_match", "key": "room_id", "pattern": open }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The master rule silences everything.
    let silenced_open = alice.send_encrypted(&open, "m3").await;
    let (status, body) = bob
        .put(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled",
            json!({ "enabled": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = bob
        .delete(
            &format!(
                "/_matrix/client/v3/pushrules/global/room/{}",
                encode(&muted)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let silenced_master = alice.send_encrypted(&muted, "m4").await;
    // Rules are read when the event is evaluated, just after it commits:
    // wait for that (Alice's notification of a later event shows it)
    // before changing them again.
    let marker = bob.send_encrypted(&muted, "b1").await;
    poll("the evaluator to pass the muted event", async || {
        let (_, list) = alice.get("/_matrix/client/v3/notifications?limit=1").await;
        (list["notifications"][0]["event"]["event_id"] == marker).then_some(())
    })
    .await;
    // Without the master rule and the room rule, the room notifies again.
    let (status, body) = bob
        .put(
            "/_matrix/client/v3/pushrules/global/override/.m.rule.master/enabled",
            json!({ "enabled": false }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let heard = alice.send_encrypted(&muted, "m5").await;
    gateway.wait_for(&heard, Answer::Accept, WITHIN).await;
    assert!(gateway.requests_for(&silenced_open).is_empty());
    assert!(gateway.requests_for(&silenced_master).is_empty());
    server.stop().await;
}

async fn retries_and_rejections(backend: Backend) {
    let mut server = TestServer::start(backend).await;
    let gateway = PushGateway::start().await;
    let (alice, bob, room) = pair(&server, &gateway).await;

    gateway.answer_next(Answer::Status(503));
    let event_id = alice.send_encrypted(&room, "m1").await;
    gateway.wait_for(&event_id, Answer::Accept, WITHIN).await;
    let attempts: Vec<Answer> = gateway
        .requests_for(&event_id)
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    assert_eq!(attempts, [Answer::Status(503), Answer::Accept]);

    // The gateway rejects the pushkey: the pusher is deleted (spec).
    gateway.answer_next(Answer::Reject);
    let rejected = alice.send_encrypted(&room, "m2").await;
    gateway.wait_for(&rejected, Answer::Reject, WITHIN).await;
    poll("the rejected pusher to go", async || {
        pushkeys(&bob).await.is_empty().then_some(())
    })
    .await;
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("cloister_pushkeys_rejected_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloister_pushes_sent_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloister_push_retries_total 1"),
        "{metrics}"
    );
    // Nothing more goes to it.
    let after = alice.send_encrypted(&room, "m3").await;
    poll("the last notification to be recorded", async || {
        let (_, list) = bob.get("/_matrix/client/v3/notifications?limit=1").await;
        (list["notifications"][0]["event"]["event_id"] == after).then_some(())
    })
    .await;
    assert!(gateway.requests_for(&after).is_empty());

    // A push waiting for its retry is in the database: a restart keeps it.
    let (status, body) = set_pusher(&bob, pusher(&gateway.url(), "bob-key-2")).await;
    assert_eq!(status, 200, "{body}");
    gateway.answer_next(Answer::Status(502));
    let durable = alice.send_encrypted(&room, "m4").await;
    gateway
        .wait_for(&durable, Answer::Status(502), WITHIN)
        .await;
    server.restart().await;
    gateway.wait_for(&durable, Answer::Accept, WITHIN).await;
    assert_eq!(gateway.requests_for(&durable).len(), 2);
    server.stop().await;
}

async fn bad_pushers_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let gateway = PushGateway::start().await;
    let bob = Client::register(&server.url(), "bob", "pw").await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = pusher(&gateway.url(), "k");
        edit(&mut body);
        body
    };
    let port = server.url().rsplit(':').next().unwrap().to_owned();
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (
            with(&|b| b["data"]["url"] = json!("ftp://gw.example/_matrix/push/v1/notify")),
            400,
            "M_INVALID_PARAM",
            "an ftp URL",
        ),
        (
            with(&|b| b["data"]["url"] = json!(format!("{}/_matrix/push/v1/notify", server.url()))),
            400,
            "M_INVALID_PARAM",
            "this server's own URL",
        ),
        (
            with(&|b| {
                b["data"]["url"] = json!(format!("http://localhost:{port}/_matrix/push/v1/notify"))
            }),
            400,
            "M_INVALID_PARAM",
            "this server by localhost",
        ),
        (
            with(&|b| {
                b["data"]["url"] = json!(format!("http://[::1]:{port}/_matrix/push/v1/notify"))
            }),
            400,
            "M_INVALID_PARAM",
            "this server by ::1",
        ),
        (
            with(&|b| b["data"]["url"] = json!("https://gw.example/notify")),
            400,
            "M_INVALID_PARAM",
            "another path",
        ),
        (
            with(&|b| b["data"]["url"] = json!("not a url")),
            400,
            "M_INVALID_PARAM",
            "not a URL",
        ),
        (
            with(&|b| b["data"]["url"] = json!(5)),
            400,
            "M_BAD_JSON",
            "a number as URL",
        ),
        (
            with(&|b| {
                b["data"].as_object_mut().unwrap().remove("url");
            }),
            400,
            "M_MISSING_PARAM",
            "no URL",
        ),
        (
            with(&|b| b["pushkey"] = json!(5)),
            400,
            "M_BAD_JSON",
            "a number as pushkey",
        ),
        (
            with(&|b| b["pushkey"] = json!("k".repeat(513))),
            400,
            "M_INVALID_PARAM",
            "a 513-byte pushkey",
        ),
        (
            with(&|b| b["app_id"] = json!("a".repeat(65))),
            400,
            "M_INVALID_PARAM",
            "a 65-byte app id",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("app_id");
            }),
            400,
            "M_MISSING_PARAM",
            "no app id",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("kind");
            }),
            400,
            "M_MISSING_PARAM",
            "no kind",
        ),
        (
            with(&|b| {
                b.as_object_mut().unwrap().remove("lang");
            }),
            400,
            "M_MISSING_PARAM",
            "no lang",
        ),
        (
            with(&|b| b["kind"] = json!("email")),
            400,
            "M_INVALID_PARAM",
            "an email pusher",
        ),
        (
            with(&|b| b["kind"] = json!(1)),
            400,
            "M_BAD_JSON",
            "a number as kind",
        ),
        (
            with(&|b| b["append"] = json!("yes")),
            400,
            "M_BAD_JSON",
            "a string as append",
        ),
        (
            with(&|b| b["data"] = json!("x")),
            400,
            "M_BAD_JSON",
            "a string as data",
        ),
        (
            with(&|b| b["data"]["pad"] = json!("x".repeat(5000))),
            400,
            "M_INVALID_PARAM",
            "oversized data",
        ),
        (json!([]), 400, "M_BAD_JSON", "an array body"),
    ];
    for (body, status, code, what) in cases {
        assert_refused(set_pusher(&bob, body).await, status, code, what);
    }
    assert!(pushkeys(&bob).await.is_empty());
    for query in ["from=abc", "limit=x", "only=everything"] {
        let (status, body) = bob
            .get(&format!("/_matrix/client/v3/notifications?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {body}");
    }

    // Without `append`, a pushkey moves to the account that set it last.
    let carol = Client::register(&server.url(), "carol", "pw").await;
    assert_eq!(
        set_pusher(&bob, pusher(&gateway.url(), "shared")).await.0,
        200
    );
    let mut appended = pusher(&gateway.url(), "shared");
    appended["append"] = json!(true);
    assert_eq!(set_pusher(&carol, appended).await.0, 200);
    assert_eq!(pushkeys(&bob).await, ["shared"]);
    assert_eq!(
        set_pusher(&carol, pusher(&gateway.url(), "shared")).await.0,
        200
    );
    assert!(pushkeys(&bob).await.is_empty());
    assert_eq!(pushkeys(&carol).await, ["shared"]);

    // Deactivation deletes every device, and with them the pushers.
    let admin = server.register_admin("admin").await;
    let (status, body) = admin
        .post(
            &format!(
                "/_cloister/admin/v1/users/{}/deactivate",
                encode(&carol.user_id)
            ),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let left = server
        .count(
            "SELECT COUNT(*) FROM pushers WHERE user_id = $1",
            &carol.user_id,
        )
        .await;
    assert_eq!(left, 0);
    server.stop().await;
}

both_backends!(
    event_id_only, pushes_are_event_id_only_and_counted;
    muted, muted_rooms_stay_silent;
    retries, retries_and_rejections;
    refused, bad_pushers_are_refused;
);
