//! Erasure (GDPR Art. 17) on both backends: after `POST …/erase` no row of
//! any table names the person, their files are gone, the rooms they shared
//! still work for everyone else, the receipt's counts are right, and the id
//! cannot be registered again. A legal hold keeps what it covers.

use cloister_server::store::personal_data;
use cloister_tests::personal::{self, media_file, populate, scan};
use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

fn erase_path(user_id: &str) -> String {
    format!("/_cloister/admin/v1/users/{}/erase", encode(user_id))
}

async fn sender_events(server: &TestServer, user_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_id FROM events WHERE sender = $1 ORDER BY stream_pos")
        .bind(user_id)
        .fetch_all(server.state().store.pool())
        .await
        .unwrap()
}

async fn count(server: &TestServer, sql: &str, user_id: &str) -> u64 {
    let n: i64 = sqlx::query_scalar(sql)
        .bind(user_id)
        .fetch_one(server.state().store.pool())
        .await
        .unwrap();
    n as u64
}

async fn erasure_removes_every_trace(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.url();
    let admin = server.register_admin("admin").await;
    let p = populate(&server, "alice", "bob").await;
    let uid = p.client.user_id.clone();
    let file = media_file(&server, &p.media);
    assert!(file.exists(), "the upload is on disk");
    let tables_before = personal::per_table(&scan(&server, &uid).await);
    for table in [
        "users",
        "devices",
        "events",
        "media",
        "to_device",
        "key_signatures",
        "uia_sessions",
        "typing",
        "receipts",
        "backup_keys",
        "cross_signing_keys",
        "account_data",
        "filters",
        "rooms",
        "room_aliases",
    ] {
        assert!(
            tables_before.contains_key(table),
            "no {table} row to erase: {tables_before:?}"
        );
    }
    let sent_before = sender_events(&server, &uid).await;
    let to_device_before = count(
        &server,
        "SELECT COUNT(*) FROM to_device WHERE user_id = $1 OR sender = $1",
        &uid,
    )
    .await;

    // Non-admins are refused; unknown users are 404.
    let (s, r) = p.bob.post(&erase_path(&uid), json!({})).await;
    assert_eq!((s, errcode(&r)), (403, Some("M_FORBIDDEN")), "{r}");
    let (s, r) = admin
        .post(&erase_path("@nobody:localhost"), json!({}))
        .await;
    assert_eq!((s, errcode(&r)), (404, Some("M_NOT_FOUND")), "{r}");

    let (s, receipt) = admin.post(&erase_path(&uid), json!({})).await;
    assert_eq!(s, 200, "{receipt}");
    let counts = &receipt["counts"];

    // Nothing names her any more, anywhere.
    let left = scan(&server, &uid).await;
    assert!(left.is_empty(), "rows still name {uid}: {left:#?}");
    assert!(!file.exists(), "the uploaded file is deleted");
    if backend == Backend::Sqlite {
        // Nor do the database files: deleted and rewritten rows are
        // overwritten, not left in free space or the write-ahead log.
        for suffix in ["", "-wal"] {
            let path = server.data_dir().join(format!("cloister.db{suffix}"));
            let bytes = std::fs::read(&path).unwrap_or_default();
            let found = bytes.windows(uid.len()).any(|w| w == uid.as_bytes());
            assert!(!found, "{} still holds {uid}", path.display());
        }
    }

    // The receipt's counts.
    let gone: Vec<&String> = {
        let after = sender_events(&server, &uid).await;
        assert!(after.is_empty());
        let pool = server.state().store.pool();
        let mut gone = Vec::new();
        for id in &sent_before {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap();
            if n == 0 {
                gone.push(id);
            }
        }
        gone
    };
    for m in &p.messages {
        assert!(gone.contains(&m), "message {m} was deleted");
    }
    assert_eq!(counts["deleted_events"], json!(gone.len()), "{receipt}");
    assert_eq!(counts["deleted_devices"], 2, "{receipt}");
    assert_eq!(counts["deleted_media"], 1, "{receipt}");
    assert_eq!(
        counts["deleted_to_device"],
        json!(to_device_before),
        "{receipt}"
    );
    assert_eq!(counts["deleted_cross_signing_keys"], 3, "{receipt}");
    assert_eq!(counts["deleted_key_signatures"], 3, "{receipt}");
    assert_eq!(counts["deleted_backup_keys"], 1, "{receipt}");
    assert_eq!(counts["deleted_account"], 1, "{receipt}");
    assert!(
        counts["pseudonymized_state_events"].as_u64().unwrap() >= 5,
        "{receipt}"
    );
    assert_eq!(receipt["complete"], true);
    assert_eq!(receipt["kept_under_hold"], json!([]));
    let replaced = receipt["replaced_by"].as_str().unwrap().to_owned();
    assert!(
        replaced.starts_with("@erased-")
            && replaced.ends_with(":localhost")
            && replaced.len() == "@erased-:localhost".len() + 16
    );

    // Shared state names the pseudonymous id, without a display name.
    let (s, create) = p.bob.get_state(&p.own_room, "m.room.create", "").await;
    assert_eq!(s, 200, "{create}");
    let (s, power) = p
        .bob
        .get_state(&p.own_room, "m.room.power_levels", "")
        .await;
    assert_eq!(
        (s, &power["users"][&replaced]),
        (200, &json!(100)),
        "{power}"
    );
    let (s, member) = p
        .bob
        .get_state(&p.own_room, "m.room.member", &replaced)
        .await;
    assert_eq!(s, 200, "{member}");
    assert_eq!(member["membership"], "leave");
    assert!(member.get("displayname").is_none(), "{member}");
    let (_, power) = p
        .bob
        .get_state(&p.bobs_room, "m.room.power_levels", "")
        .await;
    assert_eq!(power["users"][&replaced], 50, "{power}");

    // Bob's rooms still work: he sends, and sync shows it.
    for room in [&p.own_room, &p.bobs_room] {
        let id = p.bob.send_encrypted(room, &format!("after-{room}")).await;
        let sync = p.bob.sync(None, 0).await;
        let timeline = personal::arr(&sync["rooms"]["join"][room.as_str()]["timeline"]["events"]);
        assert!(
            timeline.iter().any(|e| e["event_id"] == json!(id)),
            "{sync}"
        );
    }
    let (s, _) = p
        .bob
        .get(&format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
            encode(&p.own_room)
        ))
        .await;
    assert_eq!(s, 200);

    // The id is never handed out again.
    let (s, r) = Client::anonymous(&url)
        .get("/_matrix/client/v3/register/available?username=alice")
        .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_USER_IN_USE")), "{r}");
    let err = Client::try_register(
        &url,
        json!({ "username": "alice", "password": "x", "auth": { "type": "m.login.dummy" } }),
    )
    .await
    .unwrap_err();
    assert_eq!(errcode(&err.1), Some("M_USER_IN_USE"), "{err:?}");
    assert_eq!(
        Client::try_login(&url, "alice", personal::PASSWORD, None)
            .await
            .unwrap_err()
            .0,
        403
    );

    // The receipt is in the audit log, under her pseudonym.
    let pseudonym = receipt["pseudonym"].as_str().unwrap();
    let (s, log) = admin.get("/_cloister/admin/v1/audit/export").await;
    assert_eq!(s, 200);
    let entry = personal::arr(&log["entries"])
        .into_iter()
        .find(|e| e["action"] == "erasure")
        .expect("an erasure entry");
    assert_eq!(entry["target"], pseudonym);
    // Every non-zero count of the receipt (zeros say nothing in a log).
    let nonzero: serde_json::Map<String, Value> = receipt["counts"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(k, n)| (k.clone(), n.clone()))
        .collect();
    assert!(nonzero.len() > 5, "{receipt}");
    assert_eq!(entry["details"], Value::Object(nonzero));
    assert_eq!(entry["seq"], receipt["audit_seq"]);
    assert!(!log.to_string().contains(&uid));

    // Running it again finds nothing new and still succeeds.
    let (s, again) = admin.post(&erase_path(&uid), json!({})).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["already_erased"], true);
    assert_eq!(again["counts"]["deleted_events"], Value::Null, "{again}");
    assert!(scan(&server, &uid).await.is_empty());
    server.stop().await;
}

async fn half_erased_user_is_finished(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.register_admin("admin").await;
    let p = populate(&server, "carol", "dave").await;
    let uid = p.client.user_id.clone();
    // A crash after deactivation and file removal, before the big
    // transaction: the account is locked, the file gone, rows remain.
    let (s, _) = admin
        .post(
            &format!("/_cloister/admin/v1/users/{}/deactivate", encode(&uid)),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    std::fs::remove_file(media_file(&server, &p.media)).unwrap();
    let (s, receipt) = admin.post(&erase_path(&uid), json!({})).await;
    assert_eq!(s, 200, "{receipt}");
    assert_eq!(receipt["counts"]["deleted_media"], 1, "{receipt}");
    assert_eq!(receipt["already_erased"], false);
    let left = scan(&server, &uid).await;
    assert!(left.is_empty(), "{left:#?}");
    server.stop().await;
}

async fn a_room_hold_keeps_that_room(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.register_admin("admin").await;
    let p = populate(&server, "erin", "frank").await;
    let uid = p.client.user_id.clone();
    let held_room = p.bobs_room.clone();
    let (s, hold) = admin
        .post(
            "/_cloister/admin/v1/holds",
            json!({ "scope": "room", "target": held_room, "case_id": "CASE-2026-17", "reason": "litigation" }),
        )
        .await;
    assert_eq!(s, 200, "{hold}");
    let held_message = p.messages[1].clone();
    let (s, receipt) = admin.post(&erase_path(&uid), json!({})).await;
    assert_eq!(s, 200, "{receipt}");

    assert_eq!(receipt["complete"], false);
    let kept = personal::arr(&receipt["kept_under_hold"]);
    assert_eq!(kept.len(), 1, "{receipt}");
    assert_eq!(kept[0]["case_id"], "CASE-2026-17");
    assert_eq!(kept[0]["room_id"], json!(held_room));
    assert!(kept[0]["kept_events"].as_u64().unwrap() >= 3, "{receipt}");
    assert_eq!(
        receipt["counts"]["kept_events_under_hold"],
        kept[0]["kept_events"]
    );

    // What still names her is in the held room, untouched; nothing else.
    let left = scan(&server, &uid).await;
    assert!(!left.is_empty());
    for hit in &left {
        match hit.table.as_str() {
            "events" | "current_state" | "memberships" => {
                assert_eq!(hit.get("room_id"), Some(held_room.as_str()), "{hit:?}")
            }
            other => panic!("{other} still names {uid}: {hit:?}"),
        }
    }
    let kept_message = left
        .iter()
        .find(|h| h.table == "events" && h.get("event_id") == Some(held_message.as_str()))
        .expect("her message in the held room is kept");
    assert_eq!(kept_message.get("sender"), Some(uid.as_str()));
    // Outside the hold her messages are gone.
    let gone: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE event_id = $1")
        .bind(&p.messages[0])
        .fetch_one(server.state().store.pool())
        .await
        .unwrap();
    assert_eq!(gone, 0);
    assert_eq!(
        receipt["counts"]["deleted_media"], 1,
        "the upload was not in the held room"
    );
    server.stop().await;
}

async fn registry_matches_schema(backend: Backend) {
    let server = TestServer::start(backend).await;
    let store = &server.state().store;
    let problems = personal_data::check_schema(&mut store.read().await.unwrap(), store.backend())
        .await
        .unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    server.stop().await;
}

both_backends!(
    erasure_removes_every_trace, erasure_removes_every_trace;
    half_erased_user_is_finished, half_erased_user_is_finished;
    a_room_hold_keeps_that_room, a_room_hold_keeps_that_room;
    registry_matches_schema, registry_matches_schema;
);
