//! Retention on both backends with a manual clock: a DPO's room policy
//! hides expired messages at once (sync, messages, event, context, the
//! files they carried), the purge then deletes rows and files for real,
//! to-device messages expire, legal holds keep what they cover and are
//! visible to the room, and every purge run lands in the audit log.

use cloister_tests::{
    both_backends, encode, errcode, event_ids, megolm_content, Backend, Client, ManualClock,
    TestServer,
};
use serde_json::{json, Value};

const HOUR: i64 = 3_600_000;
const START: i64 = 1_800_000_000_000;

/// A server on a manual clock with a DPO (server admin), Alice and Bob.
struct Scene {
    server: TestServer,
    dpo: Client,
    alice: Client,
    bob: Client,
}

async fn scene(backend: Backend, tweak: impl FnOnce(&mut cloister_tests::Config)) -> Scene {
    let server = TestServer::start_with_clock(backend, ManualClock::new(START), |c| {
        // Only the purges a test starts itself: a scheduled one racing it
        // would make its counts a matter of timing.
        c.retention.purge_interval = "520w".parse().unwrap();
        tweak(c);
    })
    .await;
    let url = server.url();
    Scene {
        dpo: server.register_admin("dpo").await,
        alice: Client::register(&url, "alice", "pw").await,
        bob: Client::register(&url, "bob", "pw").await,
        server,
    }
}

fn timeline_ids(sync: &Value, room_id: &str) -> Vec<String> {
    event_ids(&sync["rooms"]["join"][room_id]["timeline"]["events"])
}

async fn message_ids(client: &Client, room_id: &str) -> Vec<String> {
    event_ids(&client.messages(room_id, 100).await["chunk"])
}

fn media_id(mxc: &str) -> &str {
    mxc.rsplit('/').next().unwrap()
}

/// Sends a Megolm event that declares it carries `mxc`.
async fn send_with_file(client: &Client, room_id: &str, txn: &str, mxc: &str) -> String {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/{txn}?attach_media={}",
        encode(room_id),
        encode(mxc)
    );
    let (status, body) = client
        .put(&path, megolm_content("c2VuZGVyIGtleQ", &client.device_id))
        .await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

async fn purge(admin: &Client) -> Value {
    let (status, summary) = admin.post("/_cloister/admin/v1/purge", json!({})).await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["errors"], json!([]), "{summary}");
    summary
}

async fn set_policy(admin: &Client, room_id: &str, content: Value) -> (u16, Value) {
    admin
        .put(
            &format!("/_cloister/admin/v1/rooms/{}/retention", encode(room_id)),
            content,
        )
        .await
}

async fn expiry_hides_then_purge_deletes(backend: Backend) {
    let Scene {
        server,
        dpo,
        alice,
        bob,
    } = scene(backend, |_| {}).await;
    let clock = server.clock().unwrap();
    let room = alice
        .create_room(json!({ "invite": [bob.user_id], "preset": "private_chat" }))
        .await;
    bob.join(&room).await;

    let (status, set) = set_policy(&dpo, &room, json!({ "max_lifetime": HOUR })).await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["policy"]["max_lifetime"], HOUR);
    // Members see the policy as ordinary room state, sent by the server.
    let (status, state) = bob.get_state(&room, "m.room.retention", "").await;
    assert_eq!((status, &state["max_lifetime"]), (200, &json!(HOUR)));

    let mxc = alice
        .upload_media(
            b"ciphertext of a photo".to_vec(),
            "application/octet-stream",
            "p",
        )
        .await;
    let old = send_with_file(&alice, &room, "t1", &mxc).await;
    clock.advance_ms(30 * 60_000);
    let fresh = alice.send_encrypted(&room, "t2").await;
    assert!(message_ids(&bob, &room).await.contains(&old));
    assert_eq!(bob.download_media(&mxc).await.0, 200);

    // 61 minutes after the first message: it has expired, the second not.
    clock.advance_ms(31 * 60_000);
    let listed = message_ids(&bob, &room).await;
    assert!(
        !listed.contains(&old) && listed.contains(&fresh),
        "{listed:?}"
    );
    let initial = bob.sync(None, 0).await;
    let timeline = timeline_ids(&initial, &room);
    assert!(!timeline.contains(&old) && timeline.contains(&fresh));
    let event_path = |id: &str| {
        format!(
            "/_matrix/client/v3/rooms/{}/event/{}",
            encode(&room),
            encode(id)
        )
    };
    let (status, body) = bob.get(&event_path(&old)).await;
    assert_eq!((status, errcode(&body)), (404, Some("M_NOT_FOUND")));
    let (status, context) = bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/context/{}",
            encode(&room),
            encode(&fresh)
        ))
        .await;
    assert_eq!(status, 200);
    assert!(!event_ids(&context["events_before"]).contains(&old));
    assert_eq!(
        bob.download_media(&mxc).await.0,
        404,
        "its file expired with it"
    );
    // Hidden is not deleted: until the purge runs, the row is still there.
    let in_db = "SELECT COUNT(*) FROM events WHERE event_id = $1";
    assert_eq!(server.count(in_db, &old).await, 1);

    let content: String = sqlx::query_scalar("SELECT content FROM events WHERE event_id = $1")
        .bind(&old)
        .fetch_one(server.state().store.pool())
        .await
        .unwrap();
    let ciphertext = serde_json::from_str::<Value>(&content).unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .to_owned();
    let summary = purge(&dpo).await;
    assert_eq!(summary["events"], 1, "{summary}");
    assert_eq!(summary["media_files"], 1, "{summary}");
    if backend == Backend::Sqlite {
        // Deleted means gone from the files too, not left in free pages or
        // the write-ahead log.
        for suffix in ["", "-wal"] {
            let path = server.data_dir().join(format!("cloister.db{suffix}"));
            let bytes = std::fs::read(&path).unwrap_or_default();
            let found = bytes
                .windows(ciphertext.len())
                .any(|w| w == ciphertext.as_bytes());
            assert!(
                !found,
                "the purged ciphertext is still in {}",
                path.display()
            );
        }
    }
    assert_eq!(summary["media_bytes"], 21, "{summary}");
    assert_eq!(server.count(in_db, &old).await, 0);
    assert_eq!(server.count(in_db, &fresh).await, 1);
    let media_rows = "SELECT COUNT(*) FROM media WHERE media_id = $1";
    assert_eq!(server.count(media_rows, media_id(&mxc)).await, 0);
    let file = cloister_server::store::media::path(&server.config().media_dir(), media_id(&mxc));
    assert!(!file.exists(), "the file is gone from disk");
    // State events never expire: the room still works.
    assert_eq!(bob.get_state(&room, "m.room.create", "").await.0, 200);
    alice.send_encrypted(&room, "t3").await;

    // The run is in the audit log, with its counts.
    let (_, export) = dpo.get("/_cloister/admin/v1/audit/export").await;
    let run = export["entries"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["action"] == "purge_run")
        .unwrap_or_else(|| panic!("no purge_run entry: {export}"));
    assert_eq!(run["details"]["events"], 1, "{run}");
    assert_eq!(run["details"]["errors"], 0);
    let policy = export["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "policy_changed")
        .expect("the policy change is audited");
    assert_eq!(
        policy["target"],
        server.state().audit.target(&room).as_str()
    );
}

async fn media_and_to_device_lifetimes(backend: Backend) {
    let Scene {
        server,
        dpo,
        alice,
        bob,
    } = scene(backend, |c| {
        c.retention.media_lifetime = "2h".parse().unwrap();
        c.retention.to_device_lifetime = "1h".parse().unwrap();
    })
    .await;
    let clock = server.clock().unwrap();
    let mxc = alice
        .upload_media(vec![7u8; 1000], "application/octet-stream", "f")
        .await;
    let send = |txn: &str| {
        let body =
            json!({ "messages": { bob.user_id.clone(): { bob.device_id.clone(): { "n": txn } } } });
        let alice = &alice;
        let path = format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
        async move { alice.put(&path, body).await }
    };
    assert_eq!(send("d1").await.0, 200);
    clock.advance_ms(HOUR / 2);
    assert_eq!(send("d2").await.0, 200);
    clock.advance_ms(HOUR / 2 + 60_000);

    // d1 is older than the to-device lifetime: never delivered.
    let sync = bob.sync(None, 0).await;
    let delivered: Vec<&Value> = sync["to_device"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["content"]["n"])
        .collect();
    assert_eq!(delivered, vec![&json!("d2")], "{sync}");
    assert_eq!(bob.download_media(&mxc).await.0, 200, "media lives 2h");

    let summary = purge(&dpo).await;
    assert_eq!(summary["to_device"], 1, "{summary}");
    assert_eq!(summary["media_files"], 0);
    clock.advance_ms(HOUR);
    assert_eq!(bob.download_media(&mxc).await.0, 404);
    let summary = purge(&dpo).await;
    assert_eq!(summary["media_files"], 1, "{summary}");
    assert_eq!(summary["media_bytes"], 1000);
    let file = cloister_server::store::media::path(&server.config().media_dir(), media_id(&mxc));
    assert!(!file.exists());
}

async fn legal_holds(backend: Backend) {
    let Scene {
        server,
        dpo,
        alice,
        bob,
    } = scene(backend, |_| {}).await;
    let clock = server.clock().unwrap();
    let held_room = alice
        .create_room(json!({ "invite": [bob.user_id], "preset": "private_chat" }))
        .await;
    bob.join(&held_room).await;
    let other_room = bob.create_room(json!({})).await;
    for room in [&held_room, &other_room] {
        assert_eq!(
            set_policy(&dpo, room, json!({ "max_lifetime": HOUR }))
                .await
                .0,
            200
        );
    }

    let (status, hold) = dpo
        .post(
            "/_cloister/admin/v1/holds",
            json!({ "scope": "room", "target": held_room, "case_id": "CASE-7", "reason": "litigation" }),
        )
        .await;
    assert_eq!(status, 200, "{hold}");
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
    // No silent holds: the members see it, without the confidential case id.
    let (status, notice) = bob
        .get_state(&held_room, "org.cloister.legal_hold", "")
        .await;
    assert_eq!((status, &notice["held"]), (200, &json!(true)), "{notice}");
    assert!(!notice.to_string().contains("CASE-7"));

    // A custodian hold on Bob shows in every room he is in.
    let (status, custodian) = dpo
        .post(
            "/_cloister/admin/v1/holds",
            json!({ "scope": "user", "target": bob.user_id, "case_id": "CASE-8", "reason": "r" }),
        )
        .await;
    assert_eq!(status, 200, "{custodian}");
    let (status, notice) = alice
        .get_state(&held_room, "org.cloister.legal_hold", &bob.user_id)
        .await;
    assert_eq!((status, &notice["held"]), (200, &json!(true)));

    // A room Bob joins later learns of his hold as well.
    let later = alice
        .create_room(json!({ "invite": [bob.user_id], "preset": "private_chat" }))
        .await;
    let (status, notice) = alice
        .get_state(&later, "org.cloister.legal_hold", &bob.user_id)
        .await;
    assert_eq!((status, &notice["held"]), (200, &json!(true)), "{notice}");

    let in_held = alice.send_encrypted(&held_room, "h1").await;
    let by_bob = bob.send_encrypted(&other_room, "b1").await;
    clock.advance_ms(HOUR + 60_000);
    // Expired for the members all the same: a hold preserves, it does not display.
    assert!(!message_ids(&bob, &held_room).await.contains(&in_held));

    let summary = purge(&dpo).await;
    assert_eq!(summary["events"], 0, "{summary}");
    assert_eq!(summary["kept_under_hold"], 2, "{summary}");
    let in_db = "SELECT COUNT(*) FROM events WHERE event_id = $1";
    assert_eq!(server.count(in_db, &in_held).await, 1);
    assert_eq!(server.count(in_db, &by_bob).await, 1);

    let (status, list) = dpo.get("/_cloister/admin/v1/holds").await;
    assert_eq!(status, 200);
    assert_eq!(list["holds"].as_array().unwrap().len(), 2, "{list}");

    // Releasing resumes normal retention.
    let release = format!("/_cloister/admin/v1/holds/{hold_id}/release");
    let (status, released) = dpo.post(&release, json!({})).await;
    assert_eq!(status, 200, "{released}");
    assert!(released["released_ts"].is_i64());
    let (status, body) = dpo.post(&release, json!({})).await;
    assert_eq!((status, errcode(&body)), (400, Some("M_INVALID_PARAM")));
    let (_, notice) = bob
        .get_state(&held_room, "org.cloister.legal_hold", "")
        .await;
    assert_eq!(notice["held"], false);
    let summary = purge(&dpo).await;
    assert_eq!(
        summary["events"], 1,
        "only Bob's held message stays: {summary}"
    );
    assert_eq!(server.count(in_db, &in_held).await, 0);
    assert_eq!(server.count(in_db, &by_bob).await, 1);

    let (_, all) = dpo
        .get("/_cloister/admin/v1/holds?include_released=true")
        .await;
    assert_eq!(all["holds"].as_array().unwrap().len(), 2);
    let (_, active) = dpo.get("/_cloister/admin/v1/holds").await;
    assert_eq!(active["holds"].as_array().unwrap().len(), 1, "{active}");

    let (_, export) = dpo.get("/_cloister/admin/v1/audit/export").await;
    let actions: Vec<&Value> = export["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["action"])
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "hold_set").count(), 2);
    assert_eq!(actions.iter().filter(|a| **a == "hold_released").count(), 1);
}

async fn scheduled_purge(backend: Backend) {
    let server = TestServer::start_with_clock(backend, ManualClock::new(START), |c| {
        c.retention.default_max_lifetime = "1h".parse().unwrap();
        c.retention.purge_interval = "2h".parse().unwrap();
    })
    .await;
    let clock = server.clock().unwrap();
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let event = alice.send_encrypted(&room, "s1").await;
    clock.advance_ms(2 * HOUR + 1);
    let in_db = "SELECT COUNT(*) FROM events WHERE event_id = $1";
    // The housekeeping task ticks each second; wait for a whole run.
    for _ in 0..100 {
        if server
            .state()
            .render_metrics()
            .contains("cloister_purge_runs_total 1")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        server.count(in_db, &event).await,
        0,
        "the scheduled purge ran"
    );
    let rendered = server.state().render_metrics();
    assert!(
        rendered.contains("cloister_purged_total{kind=\"events\"} 1"),
        "{rendered}"
    );
    assert_eq!(server.state().metrics.purge_failures(), 0);
}

async fn devices_and_backups(backend: Backend) {
    let Scene {
        server, dpo, alice, ..
    } = scene(backend, |c| {
        c.retention.inactive_device_lifetime = "30d".parse().unwrap();
        c.retention.backup_lifetime = "7d".parse().unwrap();
    })
    .await;
    let clock = server.clock().unwrap();
    let (status, _) = alice
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "abc" } }),
        )
        .await;
    assert_eq!(status, 200);
    let key = json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": false, "session_data": { "c": "x" } });
    let keys = "/_matrix/client/v3/room_keys/keys/%21r%3Alocalhost";
    assert_eq!(
        alice
            .put(&format!("{keys}/OLD?version=1"), key.clone())
            .await
            .0,
        200
    );
    clock.advance_ms(6 * 24 * HOUR);
    assert_eq!(
        alice.put(&format!("{keys}/NEW?version=1"), key).await.0,
        200
    );
    clock.advance_ms(2 * 24 * HOUR);
    dpo.whoami().await; // the DPO's own device stays active

    let summary = purge(&dpo).await;
    assert_eq!(summary["backup_keys"], 1, "{summary}");
    assert_eq!(summary["devices"], 0);
    let (_, version) = alice.get("/_matrix/client/v3/room_keys/version").await;
    assert_eq!(
        (version["count"].as_i64(), version["etag"].as_str()),
        (Some(1), Some("3")),
        "{version}"
    );
    assert_eq!(alice.get(&format!("{keys}/OLD?version=1")).await.0, 404);

    clock.advance_ms(31 * 24 * HOUR);
    dpo.whoami().await;
    let summary = purge(&dpo).await;
    assert_eq!(
        summary["devices"], 2,
        "alice's and bob's devices, unseen for 31 days: {summary}"
    );
    assert_eq!(alice.get("/_matrix/client/v3/account/whoami").await.0, 401);
    assert_eq!(dpo.get("/_matrix/client/v3/account/whoami").await.0, 200);
}

/// A purge that cannot finish a step says so: in its summary, in the
/// audit entry (signed at once), in the metrics; and it loses nothing.
async fn failing_purge(backend: Backend) {
    let Scene {
        server, dpo, alice, ..
    } = scene(backend, |c| {
        c.retention.media_lifetime = "1h".parse().unwrap();
    })
    .await;
    let mxc = alice
        .upload_media(b"bytes".to_vec(), "application/octet-stream", "f")
        .await;
    // Even root cannot unlink a directory as a file: the deletion fails.
    let file = cloister_server::store::media::path(&server.config().media_dir(), media_id(&mxc));
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    server.clock().unwrap().advance_ms(HOUR + 1);

    let (status, summary) = dpo.post("/_cloister/admin/v1/purge", json!({})).await;
    assert_eq!(status, 200, "{summary}");
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{summary}");
    assert!(
        errors[0].as_str().unwrap().starts_with("media:"),
        "{summary}"
    );
    assert_eq!(summary["media_files"], 0);
    let media_rows = "SELECT COUNT(*) FROM media WHERE media_id = $1";
    assert_eq!(
        server.count(media_rows, media_id(&mxc)).await,
        1,
        "the row stays for the next run"
    );
    assert_eq!(server.state().metrics.purge_failures(), 1);
    assert!(server
        .state()
        .render_metrics()
        .contains("cloister_purge_failures_total 1"));

    // The failed run is in the log, already covered by a signed checkpoint.
    let pool = server.state().store.pool();
    let entries: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_entries")
        .fetch_one(pool)
        .await
        .unwrap();
    let signed: i64 = sqlx::query_scalar("SELECT MAX(tree_size) FROM audit_checkpoints")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(signed, entries);
    let last: String =
        sqlx::query_scalar("SELECT entry FROM audit_entries ORDER BY seq DESC LIMIT 1")
            .fetch_one(pool)
            .await
            .unwrap();
    let last: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(
        (&last["action"], &last["details"]["errors"]),
        (&json!("purge_run"), &json!(1)),
        "{last}"
    );

    // Once the obstacle is gone, the next run finishes the job.
    std::fs::remove_dir(&file).unwrap();
    let summary = purge(&dpo).await;
    assert_eq!(summary["media_files"], 1, "{summary}");
    assert_eq!(server.count(media_rows, media_id(&mxc)).await, 0);
}

async fn bad_input(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let dpo = server.register_admin("dpo").await;
    let alice = Client::register(&url, "alice", "pw").await;
    let room = alice.create_room(json!({})).await;

    let (status, body) = set_policy(&alice, &room, json!({ "max_lifetime": 1 })).await;
    assert_eq!((status, errcode(&body)), (403, Some("M_FORBIDDEN")));
    let (status, body) = alice.post("/_cloister/admin/v1/purge", json!({})).await;
    assert_eq!((status, errcode(&body)), (403, Some("M_FORBIDDEN")));
    for bad in [
        json!({ "max_lifetime": -5 }),
        json!({ "max_lifetime": "1h" }),
        json!({ "max_lifetime": 1.5 }),
        json!({ "max_lifetime": 10, "min_lifetime": 20 }),
        json!([1]),
    ] {
        let (status, body) = set_policy(&dpo, &room, bad.clone()).await;
        assert_eq!((status, errcode(&body)), (400, Some("M_BAD_JSON")), "{bad}");
        // Members get the same checks on the state endpoint.
        let (status, _) = alice
            .put_state(&room, "m.room.retention", "", bad.clone())
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = set_policy(&dpo, "!nowhere:localhost", json!({})).await;
    assert_eq!(status, 404);
    // A policy below the allowed minimum (1h by default) is clamped.
    let (status, set) = set_policy(&dpo, &room, json!({ "max_lifetime": 1000 })).await;
    assert_eq!(status, 200);
    assert_eq!(set["policy"]["max_lifetime"], HOUR, "{set}");
    let (_, shown) = dpo
        .get(&format!(
            "/_cloister/admin/v1/rooms/{}/retention",
            encode(&room)
        ))
        .await;
    assert_eq!(shown["requested"]["max_lifetime"], 1000, "{shown}");

    let hold = |body: Value| {
        let dpo = &dpo;
        async move { dpo.post("/_cloister/admin/v1/holds", body).await }
    };
    let (status, body) =
        hold(json!({ "scope": "room", "target": room, "case_id": " ", "reason": "r" })).await;
    assert_eq!((status, errcode(&body)), (400, Some("M_INVALID_PARAM")));
    let (status, _) =
        hold(json!({ "scope": "galaxy", "target": room, "case_id": "c", "reason": "r" })).await;
    assert_eq!(status, 400);
    let (status, _) = hold(
        json!({ "scope": "user", "target": "@ghost:localhost", "case_id": "c", "reason": "r" }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = hold(json!({ "scope": "room" })).await;
    assert_eq!(
        (status, errcode(&body)),
        (400, Some("M_BAD_JSON")),
        "{body}"
    );
    let (status, _) = dpo
        .post("/_cloister/admin/v1/holds/hold_nope/release", json!({}))
        .await;
    assert_eq!(status, 404);
    let (_, list) = dpo.get("/_cloister/admin/v1/holds").await;
    assert_eq!(list["holds"], json!([]), "refused requests stored nothing");

    // Metrics: for a scraper on this machine, not for what a proxy forwards.
    let http = reqwest::Client::new();
    let metrics = format!("{url}/_cloister/metrics");
    let local = http.get(&metrics).send().await.unwrap();
    assert_eq!(local.status().as_u16(), 200);
    assert!(local
        .text()
        .await
        .unwrap()
        .contains("cloister_purge_failures_total 0"));
    let forwarded = http
        .get(&metrics)
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status().as_u16(), 403);

    // The system user's name cannot be registered.
    let (status, body) = Client::try_register(
        &url,
        json!({ "username": "cloister-system", "password": "pw", "auth": { "type": "m.login.dummy" } }),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, errcode(&body)),
        (400, Some("M_EXCLUSIVE")),
        "{body}"
    );
}

/// Only the uploader may declare that an event carries a file. A refused
/// declaration stores nothing, and does not use up the transaction id: the
/// client's corrected retry is sent, once.
async fn attach_only_your_own_uploads(backend: Backend) {
    let Scene {
        server, alice, bob, ..
    } = scene(backend, |_| {}).await;
    let room = alice.create_room(json!({})).await;
    alice.invite(&room, &bob.user_id).await;
    bob.join(&room).await;
    let mxc = alice
        .upload_media(vec![1u8; 100], "application/octet-stream", "f")
        .await;
    let path = |attach: Option<&str>| {
        let base = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/t1",
            encode(&room)
        );
        match attach {
            Some(mxc) => format!("{base}?attach_media={}", encode(mxc)),
            None => base,
        }
    };
    let content = megolm_content("c2VuZGVyIGtleQ", &bob.device_id);
    for _ in 0..2 {
        let (status, body) = bob.put(&path(Some(&mxc)), content.clone()).await;
        assert_eq!(
            (status, errcode(&body)),
            (400, Some("M_INVALID_PARAM")),
            "{body}"
        );
    }
    let encrypted = || async {
        let history = alice.messages(&room, 100).await;
        let chunk = history["chunk"].as_array().cloned().unwrap_or_default();
        let ids: Vec<Value> = chunk
            .into_iter()
            .filter(|e| e["type"] == "m.room.encrypted")
            .map(|e| e["event_id"].clone())
            .collect();
        ids
    };
    assert!(encrypted().await.is_empty());
    let (status, sent) = bob.put(&path(None), content.clone()).await;
    assert_eq!(status, 200, "{sent}");
    let (status, again) = bob.put(&path(None), content).await;
    assert_eq!((status, &again["event_id"]), (200, &sent["event_id"]));
    assert_eq!(encrypted().await, vec![sent["event_id"].clone()]);
    server.stop().await;
}

both_backends!(
    expiry_hides_then_purge_deletes, expiry_hides_then_purge_deletes;
    media_and_to_device_lifetimes, media_and_to_device_lifetimes;
    legal_hold_keeps_data_and_is_visible, legal_holds;
    scheduled_purge_runs_on_the_clock, scheduled_purge;
    inactive_devices_and_old_backups_expire, devices_and_backups;
    a_failing_purge_is_loud_and_loses_nothing, failing_purge;
    bad_retention_and_hold_requests, bad_input;
    attach_only_your_own_uploads, attach_only_your_own_uploads;
);
