//! Subject-access exports (GDPR Art. 15/20) and the record of processing
//! (Art. 30) on both backends: every row that names the person is in the
//! export, sealed exports open only with the right key, and the record
//! names the controller, the retention in force and active holds.

use std::collections::BTreeMap;

use base64::Engine;
use cloister_tests::personal::{arr, per_table, populate, scan};
use cloister_tests::{both_backends, encode, errcode, Backend, Client, TestServer};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

fn export_path(user_id: &str) -> String {
    format!("/_cloister/admin/v1/users/{}/export", encode(user_id))
}

/// Rows per table as the export presents them (see docs/subject-export.md).
fn export_counts(doc: &Value) -> BTreeMap<String, usize> {
    let s = &doc["sections"];
    let n = |v: &Value| arr(v).len();
    let others = &doc["not_included"]["other_users_private_data"];
    let tokens = s["account"]["access_tokens"]["count"].as_u64().unwrap() as usize;
    let mut m = BTreeMap::new();
    for (table, count) in [
        ("users", 1),
        ("access_tokens", tokens),
        ("devices", n(&s["devices"])),
        ("device_keys", n(&s["keys"]["device_keys"])),
        ("one_time_keys", n(&s["keys"]["one_time_keys"])),
        ("fallback_keys", n(&s["keys"]["fallback_keys"])),
        ("cross_signing_keys", n(&s["keys"]["cross_signing_keys"])),
        ("key_signatures", n(&s["keys"]["signatures"])),
        ("device_list_changes", n(&s["device_list_changes"])),
        ("memberships", n(&s["memberships"])),
        ("rooms", n(&s["rooms_created"])),
        ("room_aliases", n(&s["room_aliases"])),
        ("current_state", n(&s["room_state"])),
        (
            "events",
            n(&s["events"]["sent"]) + n(&s["events"]["naming_you"]),
        ),
        ("media", n(&s["media"])),
        (
            "account_data",
            n(&s["account_data"])
                + others["account_data_rows_naming_you"].as_u64().unwrap() as usize,
        ),
        (
            "filters",
            n(&s["filters"]) + others["filters_rows_naming_you"].as_u64().unwrap() as usize,
        ),
        ("backup_versions", n(&s["key_backup"]["versions"])),
        ("backup_keys", n(&s["key_backup"]["keys"])),
        (
            "to_device",
            n(&s["to_device"]["received"])
                + n(&s["to_device"]["sent"])
                + others["to_device_rows_naming_you"].as_u64().unwrap() as usize,
        ),
        ("receipts", n(&s["receipts"])),
        ("typing", n(&s["typing"])),
        ("pushers", n(&s["push"]["pushers"])),
        ("notifications", n(&s["push"]["notifications"])),
        ("notification_counts", n(&s["push"]["unread_counts"])),
        ("push_outbox", n(&s["push"]["pending"])),
        ("txn_ids", n(&s["transactions"])),
        ("uia_sessions", n(&s["auth_sessions"])),
        ("legal_holds", n(&s["legal_holds"])),
    ] {
        if count > 0 {
            m.insert(table.to_owned(), count);
        }
    }
    m
}

async fn export_contains_every_row(backend: Backend) {
    let server = TestServer::start(backend).await;
    let admin = server.register_admin("admin").await;
    let p = populate(&server, "alice", "bob").await;
    let uid = p.client.user_id.clone();
    let (s, hold) = admin
        .post(
            "/_cloister/admin/v1/holds",
            json!({ "scope": "user", "target": uid, "case_id": "CASE-1", "reason": "r" }),
        )
        .await;
    assert_eq!(s, 200, "{hold}");

    // Refusals: non-admins, unknown users, bad keys, neither or both modes.
    let (s, r) = p
        .bob
        .post(&export_path(&uid), json!({ "plain": true }))
        .await;
    assert_eq!((s, errcode(&r)), (403, Some("M_FORBIDDEN")), "{r}");
    let (s, r) = admin
        .post(&export_path("@nobody:localhost"), json!({ "plain": true }))
        .await;
    assert_eq!((s, errcode(&r)), (404, Some("M_NOT_FOUND")), "{r}");
    for bad in ["abc", "", &B64.encode([0u8; 32]), &B64.encode([1u8; 31])] {
        let (s, r) = admin
            .post(&export_path(&uid), json!({ "recipient_key": bad }))
            .await;
        assert_eq!(
            (s, errcode(&r)),
            (400, Some("M_INVALID_PARAM")),
            "{bad:?}: {r}"
        );
    }
    let (s, _) = admin.post(&export_path(&uid), json!({})).await;
    assert_eq!(s, 400);
    let (s, _) = admin
        .post(
            &export_path(&uid),
            json!({ "plain": true, "recipient_key": B64.encode([9u8; 32]) }),
        )
        .await;
    assert_eq!(s, 400);

    let hits = scan(&server, &uid).await;
    let (s, doc) = admin
        .post(&export_path(&uid), json!({ "plain": true }))
        .await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["format"], "cloister.subject_export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["user_id"], json!(uid));
    assert_eq!(
        per_table(&hits),
        export_counts(&doc),
        "rows naming {uid} vs. the export"
    );

    // Spot checks: content is there, secrets are not.
    let s = &doc["sections"];
    let text = doc.to_string();
    for m in &p.messages {
        assert!(text.contains(m.as_str()), "message {m} is exported");
    }
    let sent = arr(&s["events"]["sent"]);
    let first = sent
        .iter()
        .find(|e| e["event_id"] == json!(p.messages[0]))
        .unwrap();
    assert_eq!(first["type"], "m.room.encrypted");
    assert!(first["content"]["ciphertext"].is_string());
    let media_id = p.media.rsplit('/').next().unwrap();
    let media = arr(&s["media"]);
    assert_eq!(media[0]["media_id"], media_id);
    assert_eq!(media[0]["filename"], "scan.pdf");
    assert_eq!(arr(&media[0]["attached_to_events"]).len(), 1);
    assert_eq!(s["key_backup"]["keys"][0]["session_id"], "SESSION1");
    assert_eq!(s["legal_holds"][0]["case_id"], "CASE-1");
    assert_eq!(s["account"]["password"]["stored"], true);
    assert!(!text.contains("$argon2"), "no password hash");
    assert!(!text.contains(&p.client.access_token), "no access token");
    assert!(arr(&s["rooms_created"])
        .iter()
        .any(|r| r["room_id"] == json!(p.own_room)));
    let audit = arr(&s["audit_log"]);
    for action in ["account_created", "login", "export"] {
        assert!(
            audit.iter().any(|e| e["action"] == action),
            "{action} in {audit:?}"
        );
    }
    assert_eq!(
        doc["not_included"]["other_users_private_data"]["account_data_rows_naming_you"],
        1
    );

    // Sealed: opens with the right key only.
    let (secret, public) = cloister_audit::seal::generate_recipient_key();
    let (s, _, sealed) = admin
        .request_bytes(
            reqwest::Method::POST,
            &export_path(&uid),
            Some("application/json"),
            json!({ "recipient_key": B64.encode(public.as_bytes()) })
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(&sealed[..4], b"CLSL");
    let opened = cloister_audit::seal::open(&sealed, &secret).unwrap();
    let opened: Value = serde_json::from_slice(&opened).unwrap();
    assert_eq!(opened["user_id"], json!(uid));
    assert_eq!(per_table(&hits), export_counts(&opened));
    let (wrong, _) = cloister_audit::seal::generate_recipient_key();
    assert!(cloister_audit::seal::open(&sealed, &wrong).is_err());
    server.stop().await;
}

async fn processing_record(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.processing.controller = "Klinik Beispiel, Hauptstr. 1, Berlin".into();
        c.processing.dpo_contact = "dpo@klinik.example".into();
        c.retention.default_max_lifetime = "90d".parse().unwrap();
        c.retention.media_lifetime = "30d".parse().unwrap();
    })
    .await;
    let url = server.url();
    let admin = server.register_admin("admin").await;
    let room = admin.create_room(json!({})).await;
    let (s, r) = admin
        .put_state(
            &room,
            "m.room.retention",
            "",
            json!({ "max_lifetime": 7 * 86_400_000i64 }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, hold) = admin
        .post(
            "/_cloister/admin/v1/holds",
            json!({ "scope": "room", "target": room, "case_id": "AZ-4711", "reason": "audit" }),
        )
        .await;
    assert_eq!(s, 200, "{hold}");
    let bob = Client::register(&url, "bob", "pw").await;
    let (s, _) = bob.get("/_cloister/admin/v1/report/processing").await;
    assert_eq!(s, 403);

    let (s, record) = admin
        .get("/_cloister/admin/v1/report/processing?format=json")
        .await;
    assert_eq!(s, 200, "{record}");
    assert_eq!(record["controller"], "Klinik Beispiel, Hauptstr. 1, Berlin");
    assert_eq!(record["dpo_contact"], "dpo@klinik.example");
    assert_eq!(record["retention"]["messages_default"]["text"], "90d");
    assert_eq!(record["retention"]["media"]["text"], "30d");
    let rooms = arr(&record["retention"]["rooms_with_own_policy"]);
    assert_eq!(rooms.len(), 1, "{record}");
    assert_eq!(rooms[0]["room_id"], json!(room));
    assert_eq!(rooms[0]["max_lifetime_in_force"]["text"], "1w");
    assert_eq!(record["legal_holds"]["active"], 1);
    assert_eq!(record["legal_holds"]["case_ids"], json!(["AZ-4711"]));
    assert_eq!(record["transfers"]["federation"], false);
    assert!(arr(&record["data_categories"])
        .iter()
        .any(|c| c["table"] == "events"));

    let (s, _, md) = admin
        .request_bytes(
            reqwest::Method::GET,
            "/_cloister/admin/v1/report/processing",
            None,
            Vec::new(),
        )
        .await;
    assert_eq!(s, 200);
    let md = String::from_utf8(md).unwrap();
    for needle in [
        "# Record of processing",
        "Klinik Beispiel",
        "dpo@klinik.example",
        "90d",
        "AZ-4711",
        "1w",
    ] {
        assert!(md.contains(needle), "{needle} missing from:\n{md}");
    }
    let (s, r) = admin
        .get("/_cloister/admin/v1/report/processing?format=pdf")
        .await;
    assert_eq!((s, errcode(&r)), (400, Some("M_INVALID_PARAM")));
    server.stop().await;
}

both_backends!(
    export_contains_every_row, export_contains_every_row;
    processing_record, processing_record;
);
