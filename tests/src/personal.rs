//! Support for erasure and subject-access tests: a scanner that finds every
//! row of every table with a text column containing a string, and a
//! builder that gives a person data in every table that can hold it.

use std::collections::BTreeMap;

use cloister_server::store::Backend as StoreBackend;
use serde_json::{json, Value};
use sqlx::Row;

use crate::{encode, Client, DeviceKeys, TestServer};

/// One row that names someone: its table and its text columns.
#[derive(Debug, Clone)]
pub struct Hit {
    pub table: String,
    pub columns: BTreeMap<String, Option<String>>,
}

impl Hit {
    pub fn get(&self, column: &str) -> Option<&str> {
        self.columns.get(column).and_then(|v| v.as_deref())
    }
}

/// Every row, in every table of the live schema, whose text columns contain
/// `needle` (exact substring). Tables come from `sqlite_master` or
/// `information_schema`, so a new table is scanned without anyone listing it.
pub async fn scan(server: &TestServer, needle: &str) -> Vec<Hit> {
    let store = &server.state().store;
    let backend = store.backend();
    let mut conn = store.read().await.unwrap();
    let tables: Vec<String> = match backend {
        StoreBackend::Sqlite => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        ),
        StoreBackend::Postgres => sqlx::query_scalar(
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        ),
    }
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert!(tables.len() > 20, "the scanner sees the schema: {tables:?}");
    let mut hits = Vec::new();
    for table in tables {
        let columns: Vec<(String, String)> = match backend {
            StoreBackend::Sqlite => sqlx::query("SELECT name, type FROM pragma_table_info($1)"),
            StoreBackend::Postgres => sqlx::query(
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
            ),
        }
        .bind(&table)
        .fetch_all(&mut *conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.get::<String, _>(0), r.get::<String, _>(1)))
        .collect();
        let text: Vec<String> = columns
            .into_iter()
            .filter(|(_, ty)| {
                let ty = ty.to_lowercase();
                ty == "text" || ty.starts_with("character") || ty.starts_with("varchar")
            })
            .map(|(name, _)| name)
            .collect();
        if text.is_empty() {
            continue;
        }
        let sql = format!("SELECT {} FROM {table}", text.join(", "));
        for row in sqlx::query(&sql).fetch_all(&mut *conn).await.unwrap() {
            let mut values = BTreeMap::new();
            let mut found = false;
            for (i, name) in text.iter().enumerate() {
                let v: Option<String> = row.get(i);
                found |= v.as_deref().is_some_and(|v| v.contains(needle));
                values.insert(name.clone(), v);
            }
            if found {
                hits.push(Hit {
                    table: table.clone(),
                    columns: values,
                });
            }
        }
    }
    hits
}

/// Rows naming `needle`, counted per table.
pub fn per_table(hits: &[Hit]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for hit in hits {
        *out.entry(hit.table.clone()).or_default() += 1;
    }
    out
}

pub const PASSWORD: &str = "subject-pw";

/// What [`populate`] made.
pub struct Person {
    pub client: Client,
    pub second_device: Client,
    pub bob: Client,
    /// A room the person created (power levels name them), bob joined.
    pub own_room: String,
    /// Bob's room, which the person joined; bob's power levels name them.
    pub bobs_room: String,
    pub messages: Vec<String>,
    pub media: String,
}

/// Registers `name` and `bob_name` and gives the person data in every table
/// that can hold personal data. Cross-signing keys and signatures are
/// written as the keys API would store them (the signing ceremony itself
/// is covered by the keys tests).
pub async fn populate(server: &TestServer, name: &str, bob_name: &str) -> Person {
    let url = server.url();
    let me = Client::register(&url, name, PASSWORD).await;
    let second = Client::login(&url, name, PASSWORD, Some("SECOND")).await;
    let bob = Client::register(&url, bob_name, "bob-pw").await;
    let uid = me.user_id.clone();

    // Rooms: one of theirs (alias, name twice, invite), one of bob's.
    let alias = format!("{name}-room");
    let own_room = me
        .create_room(
            json!({ "room_alias_name": alias, "invite": [bob.user_id], "name": "first name" }),
        )
        .await;
    bob.join(&own_room).await;
    let (s, r) = me
        .put_state(
            &own_room,
            "m.room.name",
            "",
            json!({ "name": "second name" }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let bobs_room = bob.create_room(json!({ "invite": [uid] })).await;
    me.join(&bobs_room).await;
    let (s, power) = bob.get_state(&bobs_room, "m.room.power_levels", "").await;
    assert_eq!(s, 200, "{power}");
    let mut power = power;
    power["users"][&uid] = json!(50);
    let (s, r) = bob
        .put_state(&bobs_room, "m.room.power_levels", "", power)
        .await;
    assert_eq!(s, 200, "{r}");

    // Messages, one carrying an upload.
    let media = me
        .upload_media(
            b"ciphertext of a file".to_vec(),
            "application/octet-stream",
            "scan.pdf",
        )
        .await;
    let mut messages = Vec::new();
    for (i, room) in [&own_room, &bobs_room, &own_room].into_iter().enumerate() {
        messages.push(me.send_encrypted(room, &format!("m{i}")).await);
    }
    let content = crate::megolm_content("senderkey", &me.device_id);
    let (s, r) = me
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.encrypted/att?attach_media={}",
                encode(&own_room),
                encode(&media)
            ),
            content,
        )
        .await;
    assert_eq!(s, 200, "{r}");
    messages.push(r["event_id"].as_str().unwrap().to_owned());
    bob.send_encrypted(&own_room, "b1").await;

    // Keys: device keys, one-time and fallback keys for both devices.
    for c in [&me, &second] {
        let keys = DeviceKeys::generate(&c.user_id, &c.device_id);
        c.upload_keys(&keys, 3).await;
    }
    let bob_keys = DeviceKeys::generate(&bob.user_id, &bob.device_id);
    bob.upload_keys(&bob_keys, 1).await;
    let pool = server.state().store.pool();
    for key_type in ["master", "self_signing", "user_signing"] {
        sqlx::query(
            "INSERT INTO cross_signing_keys (user_id, key_type, key_json) VALUES ($1, $2, $3)",
        )
        .bind(&uid)
        .bind(key_type)
        .bind(
            json!({ "user_id": uid, "usage": [key_type], "keys": { "ed25519:K": "K" } })
                .to_string(),
        )
        .execute(pool)
        .await
        .unwrap();
    }
    for (target, signer) in [(&uid, &bob.user_id), (&bob.user_id, &uid), (&uid, &uid)] {
        sqlx::query(
            "INSERT INTO key_signatures (target_user, target_key, signer_user, signer_key, signature) VALUES ($1, 'ed25519:T', $2, 'ed25519:S', 'sig')",
        )
        .bind(target)
        .bind(signer)
        .execute(pool)
        .await
        .unwrap();
    }

    // Backups, account data, a filter.
    let (s, r) = me
        .post(
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "abc" } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let version = r["version"].as_str().unwrap().to_owned();
    let (s, r) = me
        .put(
            &format!("/_matrix/client/v3/room_keys/keys/{}/SESSION1?version={version}", encode(&own_room)),
            json!({ "first_message_index": 0, "forwarded_count": 0, "is_verified": true, "session_data": { "ciphertext": "backup" } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    for (who, kind, content) in [
        (&me, "m.secret_storage.default_key", json!({ "key": "k" })),
        (
            &bob,
            "m.direct",
            json!({ uid.clone(): [bobs_room.clone()] }),
        ),
    ] {
        let (s, r) = who
            .put(
                &format!(
                    "/_matrix/client/v3/user/{}/account_data/{kind}",
                    encode(&who.user_id)
                ),
                content,
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
    let (s, r) = me
        .post(
            &format!("/_matrix/client/v3/user/{}/filter", encode(&uid)),
            json!({ "room": { "timeline": { "limit": 10 } } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // To-device messages both ways, receipts, typing.
    let (s, r) = me
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/td1",
            json!({ "messages": { &bob.user_id: { &bob.device_id: { "n": 1 } } } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = bob
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/td2",
            json!({ "messages": { &uid: { "*": { "n": 2 } } } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    for (who, event) in [(&me, &messages[0]), (&bob, &messages[0])] {
        let (s, r) = who
            .post(
                &format!(
                    "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                    encode(&own_room),
                    encode(event)
                ),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
    let (s, r) = me
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                encode(&bobs_room),
                encode(&uid)
            ),
            json!({ "typing": true, "timeout": 30000 }),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // A user-interactive auth session: deleting a device asks for a password.
    let (s, r) = me
        .delete(
            &format!("/_matrix/client/v3/devices/{}", encode(&second.device_id)),
            json!({}),
        )
        .await;
    assert_eq!(s, 401, "{r}");
    // Notifications are recorded just after their events commit.
    server.push_caught_up().await;

    Person {
        client: me,
        second_device: second,
        bob,
        own_room,
        bobs_room,
        messages,
        media,
    }
}

/// The file an upload is stored in.
pub fn media_file(server: &TestServer, mxc: &str) -> std::path::PathBuf {
    let id = mxc.rsplit('/').next().unwrap();
    server.config().media_dir().join(&id[..2]).join(id)
}

/// `Value` helper: the array at `v`, or empty.
pub fn arr(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}
