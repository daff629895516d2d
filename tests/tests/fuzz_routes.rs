//! A bounded, deterministic fuzz of every route, on SQLite and PostgreSQL.
//!
//! About 2,000 requests, deterministic (seeded `StdRng`), over every route
//! and method the server registers (`server/src/api/*.rs`), plus unknown
//! paths. First four per route: every path parameter NUL (`%00`, which
//! PostgreSQL cannot store), invalid UTF-8 and overlong in turn, then real
//! ids with every body string carrying a NUL. Then random ones: path
//! parameters are real ids some of the time and garbage (any bytes,
//! percent-encoded, dot segments, overlong) otherwise; methods are usually
//! the route's own and sometimes any other; bodies are empty, random bytes,
//! random JSON, or plausible JSON built from the route's own field names;
//! the access token is a valid one, none, a bad one, or a query parameter.
//!
//! Every answer must be below 500, and every non-2xx answer must be a JSON
//! object with string `errcode` and `error` (the one exception the spec
//! makes: a user-interactive-auth challenge, 401 with `flows` and `session`).
//!
//! The valid token belongs to a third user, Carol, so that whatever the
//! fuzzer legitimately does with it (logging Carol out, creating rooms,
//! claiming one-time keys) leaves Alice's and Bob's state alone. That state
//! is set up first and must be exactly intact afterwards: the encrypted
//! room's history in order and its state, keys/query results, media bytes,
//! account data, profiles, backup, tokens and password logins.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use cloister_tests::{both_backends, encode, Backend, Client, TestServer};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{json, Map, Value};

const SEED: u64 = 0xC101_57E5;
/// Random requests, after the systematic ones (4 per route).
const REQUESTS: usize = 1_600;

/// `CLOISTER_FUZZ_SEED` / `CLOISTER_FUZZ_REQUESTS` override the defaults
/// for exploratory runs; the test as committed is the default, fixed one.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const R: &str = "/_matrix/client/v3";

/// One route: its method, its path template with `{param}` placeholders,
/// the JSON fields its body knows and the query parameters it reads.
struct Route {
    method: &'static str,
    path: &'static str,
    fields: &'static [&'static str],
    query: &'static [&'static str],
}

const fn route(
    method: &'static str,
    path: &'static str,
    fields: &'static [&'static str],
    query: &'static [&'static str],
) -> Route {
    Route {
        method,
        path,
        fields,
        query,
    }
}

const NONE: &[&str] = &[];
const CREATE_ROOM: &[&str] = &[
    "visibility",
    "room_alias_name",
    "name",
    "topic",
    "invite",
    "invite_3pid",
    "room_version",
    "creation_content",
    "initial_state",
    "preset",
    "is_direct",
    "power_level_content_override",
];
const MEGOLM: &[&str] = &[
    "algorithm",
    "ciphertext",
    "session_id",
    "sender_key",
    "device_id",
    "body",
    "msgtype",
    "membership",
    "users",
    "topic",
    "name",
    "join_rule",
    "history_visibility",
];
const TARGET: &[&str] = &["user_id", "reason"];
const BACKUP_KEY: &[&str] = &[
    "first_message_index",
    "forwarded_count",
    "is_verified",
    "session_data",
];
const VERSION: &[&str] = &["algorithm", "auth_data", "version"];
const PUSH_RULE: &[&str] = &["actions", "conditions", "pattern", "enabled"];

/// Every route in `server/src/api/*.rs`, one entry per method.
const ROUTES: &[Route] = &[
    // discovery.rs
    route("GET", "/_matrix/client/versions", NONE, NONE),
    route("GET", "/.well-known/matrix/client", NONE, NONE),
    route("GET", "/_matrix/client/v3/capabilities", NONE, NONE),
    route("GET", "/health", NONE, NONE),
    // auth.rs
    route(
        "POST",
        "/_matrix/client/v3/register",
        &[
            "auth",
            "username",
            "password",
            "device_id",
            "initial_device_display_name",
            "inhibit_login",
        ],
        &["kind"],
    ),
    route(
        "GET",
        "/_matrix/client/v3/register/available",
        NONE,
        &["username"],
    ),
    route(
        "GET",
        "/_matrix/client/v1/register/m.login.registration_token/validity",
        NONE,
        &["token"],
    ),
    route("GET", "/_matrix/client/v3/login", NONE, NONE),
    route(
        "POST",
        "/_matrix/client/v3/login",
        &[
            "type",
            "identifier",
            "user",
            "password",
            "device_id",
            "initial_device_display_name",
        ],
        NONE,
    ),
    route("POST", "/_matrix/client/v3/logout", NONE, NONE),
    route("POST", "/_matrix/client/v3/logout/all", NONE, NONE),
    // account.rs
    route("GET", "/_matrix/client/v3/account/whoami", NONE, NONE),
    route(
        "POST",
        "/_matrix/client/v3/account/password",
        &["auth", "new_password", "logout_devices"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/account/deactivate",
        &["auth"],
        NONE,
    ),
    // devices.rs
    route("GET", "/_matrix/client/v3/devices", NONE, NONE),
    route("GET", "/_matrix/client/v3/devices/{device_id}", NONE, NONE),
    route(
        "PUT",
        "/_matrix/client/v3/devices/{device_id}",
        &["display_name"],
        NONE,
    ),
    route(
        "DELETE",
        "/_matrix/client/v3/devices/{device_id}",
        &["auth"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/delete_devices",
        &["devices", "auth"],
        NONE,
    ),
    // rooms.rs
    route("POST", "/_matrix/client/v3/createRoom", CREATE_ROOM, NONE),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/state",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/state/{event_type}",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/rooms/{room_id}/state/{event_type}",
        MEGOLM,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/",
        MEGOLM,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}",
        MEGOLM,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/members",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/joined_members",
        NONE,
        NONE,
    ),
    route("GET", "/_matrix/client/v3/joined_rooms", NONE, NONE),
    route(
        "PUT",
        "/_matrix/client/v3/directory/room/{alias}",
        &["room_id"],
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/directory/room/{alias}",
        NONE,
        NONE,
    ),
    route(
        "DELETE",
        "/_matrix/client/v3/directory/room/{alias}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/aliases",
        NONE,
        NONE,
    ),
    // membership.rs
    route(
        "POST",
        "/_matrix/client/v3/join/{room_id_or_alias}",
        &["reason"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/join",
        &["reason"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/invite",
        TARGET,
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/leave",
        &["reason"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/forget",
        NONE,
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/kick",
        TARGET,
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/ban",
        TARGET,
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/unban",
        TARGET,
        NONE,
    ),
    // events.rs
    route(
        "PUT",
        "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}",
        MEGOLM,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/rooms/{room_id}/redact/{event_id}/{txn_id}",
        &["reason"],
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/messages",
        NONE,
        &["from", "to", "dir", "limit", "filter"],
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/event/{event_id}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/rooms/{room_id}/context/{event_id}",
        NONE,
        &["limit"],
    ),
    // sync.rs
    route(
        "GET",
        "/_matrix/client/v3/sync",
        NONE,
        &["since", "timeout", "full_state", "filter"],
    ),
    // keys.rs
    route(
        "POST",
        "/_matrix/client/v3/keys/upload",
        &["device_keys", "one_time_keys", "fallback_keys"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/keys/query",
        &["device_keys", "timeout"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/keys/claim",
        &["one_time_keys", "timeout"],
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/keys/changes",
        NONE,
        &["from", "to"],
    ),
    route(
        "POST",
        "/_matrix/client/v3/keys/device_signing/upload",
        &["master_key", "self_signing_key", "user_signing_key", "auth"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/keys/signatures/upload",
        &["@alice:localhost", "@bob:localhost", "@carol:localhost"],
        NONE,
    ),
    // to_device.rs
    route(
        "PUT",
        "/_matrix/client/v3/sendToDevice/{event_type}/{txn_id}",
        &["messages"],
        NONE,
    ),
    // backup.rs
    route("GET", "/_matrix/client/v3/room_keys/version", NONE, NONE),
    route(
        "POST",
        "/_matrix/client/v3/room_keys/version",
        VERSION,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/room_keys/version/{version}",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/room_keys/version/{version}",
        VERSION,
        NONE,
    ),
    route(
        "DELETE",
        "/_matrix/client/v3/room_keys/version/{version}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/room_keys/keys",
        NONE,
        &["version"],
    ),
    route(
        "PUT",
        "/_matrix/client/v3/room_keys/keys",
        &["rooms"],
        &["version"],
    ),
    route(
        "DELETE",
        "/_matrix/client/v3/room_keys/keys",
        NONE,
        &["version"],
    ),
    route(
        "GET",
        "/_matrix/client/v3/room_keys/keys/{room_id}",
        NONE,
        &["version"],
    ),
    route(
        "PUT",
        "/_matrix/client/v3/room_keys/keys/{room_id}",
        &["sessions"],
        &["version"],
    ),
    route(
        "DELETE",
        "/_matrix/client/v3/room_keys/keys/{room_id}",
        NONE,
        &["version"],
    ),
    route(
        "GET",
        "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}",
        NONE,
        &["version"],
    ),
    route(
        "PUT",
        "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}",
        BACKUP_KEY,
        &["version"],
    ),
    route(
        "DELETE",
        "/_matrix/client/v3/room_keys/keys/{room_id}/{session_id}",
        NONE,
        &["version"],
    ),
    // media.rs
    route("POST", "/_matrix/media/v3/upload", NONE, &["filename"]),
    route("GET", "/_matrix/client/v1/media/config", NONE, NONE),
    route("GET", "/_matrix/media/v3/config", NONE, NONE),
    route(
        "GET",
        "/_matrix/client/v1/media/download/{server_name}/{media_id}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}",
        NONE,
        &["width", "height", "method"],
    ),
    route(
        "GET",
        "/_matrix/media/v3/download/{server_name}/{media_id}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/media/v3/thumbnail/{server_name}/{media_id}",
        NONE,
        &["width", "height"],
    ),
    // profile.rs
    route("GET", "/_matrix/client/v3/profile/{user_id}", NONE, NONE),
    route(
        "GET",
        "/_matrix/client/v3/profile/{user_id}/displayname",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/profile/{user_id}/displayname",
        &["displayname"],
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/profile/{user_id}/avatar_url",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/profile/{user_id}/avatar_url",
        &["avatar_url"],
        NONE,
    ),
    // account_data.rs
    route(
        "GET",
        "/_matrix/client/v3/user/{user_id}/account_data/{type}",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/user/{user_id}/account_data/{type}",
        &["secret", "m.direct", "event_id", "n"],
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{type}",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{type}",
        &["tags", "event_id", "n"],
        NONE,
    ),
    // pushrules.rs
    route("GET", "/_matrix/client/v3/pushrules/", NONE, NONE),
    route("GET", "/_matrix/client/v3/pushrules", NONE, NONE),
    route("GET", "/_matrix/client/v3/pushrules/global/", NONE, NONE),
    route("GET", "/_matrix/client/v3/pushrules/global", NONE, NONE),
    route(
        "GET",
        "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}",
        PUSH_RULE,
        &["before", "after"],
    ),
    route(
        "DELETE",
        "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}",
        NONE,
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/enabled",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/enabled",
        &["enabled"],
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/actions",
        NONE,
        NONE,
    ),
    route(
        "PUT",
        "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}/actions",
        &["actions"],
        NONE,
    ),
    // filters.rs
    route(
        "POST",
        "/_matrix/client/v3/user/{user_id}/filter",
        &[
            "room",
            "presence",
            "account_data",
            "event_fields",
            "event_format",
            "lazy_load_members",
        ],
        NONE,
    ),
    route(
        "GET",
        "/_matrix/client/v3/user/{user_id}/filter/{filter_id}",
        NONE,
        NONE,
    ),
    // ephemeral.rs
    route(
        "PUT",
        "/_matrix/client/v3/rooms/{room_id}/typing/{user_id}",
        &["typing", "timeout"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/receipt/{receipt_type}/{event_id}",
        &["thread_id"],
        NONE,
    ),
    route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/read_markers",
        &["m.fully_read", "m.read", "m.read.private"],
        NONE,
    ),
];

// ----- the known state -------------------------------------------------------

/// Real values for path parameters, query values and JSON strings.
struct Ids {
    rooms: Vec<String>,
    aliases: Vec<String>,
    events: Vec<String>,
    users: Vec<String>,
    devices: Vec<String>,
    media: Vec<String>,
    filters: Vec<String>,
}

struct World {
    server: TestServer,
    alice: Client,
    bob: Client,
    carol: Client,
    room: String,
    media: String,
    media_bytes: Vec<u8>,
    ids: Ids,
}

const ALICE_PW: &str = "alice-password";
const BOB_PW: &str = "bob-password";
const CAROL_PW: &str = "carol-password";

async fn setup(backend: Backend) -> World {
    let server = TestServer::start_with(backend, |c| {
        // Any `timeout` the fuzzer picks returns quickly.
        c.limits.max_sync_timeout_ms = 50;
    })
    .await;
    let url = server.url();
    let alice = Client::register_device(&url, "alice", ALICE_PW, "ALICE1").await;
    let bob = Client::register_device(&url, "bob", BOB_PW, "BOB1").await;
    let carol = Client::register_device(&url, "carol", CAROL_PW, "CAROL1").await;
    for c in [&alice, &bob, &carol] {
        c.upload_keys(&c.device_keys(), 10).await;
    }
    // Alice also has cross-signing keys and a backup.
    let master = ed25519_dalek::SigningKey::from_bytes(&[41; 32]);
    let ssk = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
    let cs = |usage: &str, key: &ed25519_dalek::SigningKey| {
        let p = cloister_tests::keys::b64(key.verifying_key().as_bytes());
        json!({ "user_id": alice.user_id, "usage": [usage], "keys": { format!("ed25519:{p}"): p } })
    };
    let master_json = cs("master", &master);
    let master_id = format!(
        "ed25519:{}",
        cloister_tests::keys::b64(master.verifying_key().as_bytes())
    );
    let ssk_json = cloister_tests::keys::sign_json(
        &cs("self_signing", &ssk),
        &alice.user_id,
        &master_id,
        &master,
    );
    let (s, r) = alice
        .post(
            &format!("{R}/keys/device_signing/upload"),
            json!({ "master_key": master_json, "self_signing_key": ssk_json }),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, r) = alice
        .post(
            &format!("{R}/room_keys/version"),
            json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "pk" } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // The encrypted room shared by Alice and Bob, with a few events.
    let room = alice
        .create_room(
            json!({ "invite": [bob.user_id], "name": "fuzz target", "room_alias_name": "target" }),
        )
        .await;
    bob.join(&room).await;
    let mut events = Vec::new();
    for i in 0..4 {
        events.push(alice.send_encrypted(&room, &format!("a{i}")).await);
        events.push(bob.send_encrypted(&room, &format!("b{i}")).await);
    }
    let (s, r) = alice
        .put(
            &format!("{R}/room_keys/keys?version=1"),
            json!({ "rooms": { &room: { "sessions": { "S1": { "first_message_index": 0, "forwarded_count": 0, "is_verified": true, "session_data": { "c": "x" } } } } } }),
        )
        .await;
    assert_eq!(s, 200, "{r}");

    // Account data, global and per room, and profiles.
    for c in [&alice, &bob] {
        let uid = encode(&c.user_id);
        for path in [
            format!("{R}/user/{uid}/account_data/org.example.secret"),
            format!(
                "{R}/user/{uid}/rooms/{}/account_data/org.example.secret",
                encode(&room)
            ),
        ] {
            let (s, r) = c
                .put(&path, json!({ "owner": c.user_id, "ciphertext": "opaque" }))
                .await;
            assert_eq!(s, 200, "{r}");
        }
        let (s, r) = c
            .put(
                &format!("{R}/profile/{uid}/displayname"),
                json!({ "displayname": c.user_id.to_uppercase() }),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }

    // Carol, whose valid token the fuzzer uses, has a room of her own.
    let carol_room = carol
        .create_room(json!({ "name": "carol's", "room_alias_name": "carols" }))
        .await;
    events.push(carol.send_encrypted(&carol_room, "c0").await);
    let filter = carol
        .post(
            &format!("{R}/user/{}/filter", encode(&carol.user_id)),
            json!({ "room": { "timeline": { "limit": 5 } } }),
        )
        .await
        .1["filter_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let media_bytes: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let media = alice
        .upload_media(
            media_bytes.clone(),
            "application/octet-stream",
            "secret.bin",
        )
        .await;
    let ids = Ids {
        rooms: vec![room.clone(), carol_room],
        aliases: vec!["#target:localhost".into(), "#carols:localhost".into()],
        events,
        users: vec![
            alice.user_id.clone(),
            bob.user_id.clone(),
            carol.user_id.clone(),
        ],
        devices: vec!["ALICE1".into(), "BOB1".into(), "CAROL1".into()],
        media: vec![media.trim_start_matches("mxc://localhost/").to_owned()],
        filters: vec![filter],
    };
    World {
        server,
        alice,
        bob,
        carol,
        room,
        media,
        media_bytes,
        ids,
    }
}

/// What must survive the fuzzing exactly.
async fn snapshot(w: &World) -> Value {
    let mut out = Map::new();
    let history = w.alice.messages(&w.room, 1000).await;
    out.insert(
        "messages".into(),
        Value::Array(
            history["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event_id"].clone())
                .collect(),
        ),
    );
    for c in [&w.alice, &w.bob] {
        let uid = encode(&c.user_id);
        let room = encode(&w.room);
        let mut mine = Map::new();
        for (name, path) in [
            ("state", format!("{R}/rooms/{room}/state")),
            (
                "data",
                format!("{R}/user/{uid}/account_data/org.example.secret"),
            ),
            (
                "room_data",
                format!("{R}/user/{uid}/rooms/{room}/account_data/org.example.secret"),
            ),
            ("profile", format!("{R}/profile/{uid}")),
            ("devices", format!("{R}/devices")),
            ("joined", format!("{R}/joined_rooms")),
            ("pushrules", format!("{R}/pushrules/")),
            ("whoami", format!("{R}/account/whoami")),
            ("backup", format!("{R}/room_keys/version")),
            ("backup_keys", format!("{R}/room_keys/keys?version=1")),
            ("aliases", format!("{R}/rooms/{room}/aliases")),
        ] {
            let (s, mut body) = c.get(&path).await;
            assert!(s == 200 || s == 404, "{} {path}: {s} {body}", c.user_id);
            if let Value::Array(items) = &mut body {
                // State events: what they are, not how old they are.
                for item in items.iter_mut() {
                    if let Some(unsigned) = item.get_mut("unsigned").and_then(Value::as_object_mut)
                    {
                        unsigned.remove("age");
                    }
                }
                items.sort_by_key(|v| v.to_string());
            }
            mine.insert(name.into(), json!([s, body]));
        }
        let keys = c
            .expect_ok(
                Method::POST,
                &format!("{R}/keys/query"),
                json!({ "device_keys": { &w.alice.user_id: [], &w.bob.user_id: [] } }),
            )
            .await;
        mine.insert("keys".into(), keys);
        out.insert(c.user_id.clone(), Value::Object(mine));
    }
    Value::Object(out)
}

// ----- random requests ---------------------------------------------------------

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

const WORDS: &[&str] = &[
    "m.login.password",
    "m.login.dummy",
    "m.id.user",
    "m.megolm.v1.aes-sha2",
    "m.olm.v1.curve25519-aes-sha2",
    "m.megolm_backup.v1.curve25519-aes-sha2",
    "signed_curve25519",
    "public_chat",
    "private_chat",
    "trusted_private_chat",
    "public",
    "private",
    "join",
    "leave",
    "invite",
    "ban",
    "knock",
    "m.text",
    "notify",
    "dont_notify",
    "main",
    "b",
    "f",
    "10",
    "user",
    "guest",
    "override",
    "content",
    "12",
    "*",
    "",
];

fn garbage(rng: &mut StdRng) -> String {
    match rng.gen_range(0..10) {
        0 => String::new(),
        1 => "..".into(),
        2 => "../../../../etc/passwd".into(),
        3 => "x".repeat(rng.gen_range(256..1200)),
        4 => {
            let bytes: Vec<u8> = (0..rng.gen_range(1..12)).map(|_| rng.gen()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        5 => [
            "%00", "%FF", "%2F", "%25", "\u{0}", "\u{feff}", "é", "🦀", "\r\n",
        ]
        .choose(rng)
        .unwrap()
        .to_string(),
        6 => format!("!{}:localhost", rng.gen::<u32>()),
        7 => format!("@{}:localhost", rng.gen::<u16>()),
        8 => format!("${}", rng.gen::<u64>()),
        _ => {
            let n = rng.gen_range(1..20);
            (0..n)
                .map(|_| rng.gen_range(0x20u8..0x7f) as char)
                .collect()
        }
    }
}

/// A path segment: garbage bytes (percent-encoded, so invalid UTF-8 and
/// `%2F` reach the server), raw dot segments, or a real value.
fn segment(rng: &mut StdRng, real: &[String]) -> String {
    if !real.is_empty() && rng.gen_bool(0.6) {
        return encode(real.choose(rng).unwrap());
    }
    match rng.gen_range(0..6) {
        0 => "..".into(),
        1 => "%FF%FE".into(),
        2 => "%2E%2E%2F%2E%2E".into(),
        _ => encode(&garbage(rng)),
    }
}

fn strings(rng: &mut StdRng, ids: &Ids) -> String {
    let pools: [&Vec<String>; 6] = [
        &ids.rooms,
        &ids.events,
        &ids.users,
        &ids.devices,
        &ids.media,
        &ids.aliases,
    ];
    match rng.gen_range(0..4) {
        0 => {
            let pool = pools.choose(rng).unwrap();
            pool.choose(rng).cloned().unwrap_or_default()
        }
        1 => WORDS.choose(rng).unwrap().to_string(),
        _ => garbage(rng),
    }
}

fn number(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..8) {
        0 => json!(rng.gen_range(-3..100)),
        1 => json!((1i64 << 53) - 1),
        2 => json!(1i64 << 53),
        3 => json!(i64::MIN),
        4 => json!(u64::MAX),
        5 => json!(rng.gen::<f64>() * 1e6),
        6 => json!(-1),
        _ => json!(rng.gen::<i32>()),
    }
}

fn random_json(rng: &mut StdRng, ids: &Ids, depth: u32) -> Value {
    let top = if depth == 0 { 5 } else { 8 };
    match rng.gen_range(0..top) {
        0 => Value::Null,
        1 => json!(rng.gen_bool(0.5)),
        2 => number(rng),
        3 | 4 => json!(strings(rng, ids)),
        5 | 6 => {
            let n = rng.gen_range(0..4);
            let mut map = Map::new();
            for _ in 0..n {
                let key = if rng.gen_bool(0.5) {
                    WORDS.choose(rng).unwrap().to_string()
                } else {
                    strings(rng, ids)
                };
                map.insert(key, random_json(rng, ids, depth - 1));
            }
            Value::Object(map)
        }
        _ => Value::Array(
            (0..rng.gen_range(0..4))
                .map(|_| random_json(rng, ids, depth - 1))
                .collect(),
        ),
    }
}

/// An object with some of the route's own fields, typed plausibly.
fn plausible(rng: &mut StdRng, ids: &Ids, fields: &[&str]) -> Value {
    let mut map = Map::new();
    for field in fields {
        if !rng.gen_bool(0.6) {
            continue;
        }
        let value = match *field {
            "auth" => json!({
                "type": (*["m.login.password", "m.login.dummy", "m.login.registration_token", "x"].choose(rng).unwrap()),
                "session": if rng.gen_bool(0.5) { json!(garbage(rng)) } else { Value::Null },
                "identifier": { "type": "m.id.user", "user": ids.users.choose(rng).unwrap() },
                "password": garbage(rng),
            }),
            "invite" | "devices" | "actions" | "conditions" | "usage" | "algorithms" => {
                Value::Array(
                    (0..rng.gen_range(0..3))
                        .map(|_| {
                            if rng.gen_bool(0.5) {
                                json!(strings(rng, ids))
                            } else {
                                random_json(rng, ids, 2)
                            }
                        })
                        .collect(),
                )
            }
            "typing" | "is_direct" | "inhibit_login" | "logout_devices" | "is_verified"
            | "enabled" | "lazy_load_members" => json!(rng.gen_bool(0.5)),
            "timeout" | "first_message_index" | "forwarded_count" => number(rng),
            "algorithm" => json!(*[
                "m.megolm.v1.aes-sha2",
                "m.megolm_backup.v1.curve25519-aes-sha2",
                "x"
            ]
            .choose(rng)
            .unwrap()),
            "ciphertext" | "session_id" | "sender_key" | "device_id" => json!(garbage(rng)),
            "messages" | "one_time_keys" | "device_keys" | "fallback_keys" | "rooms"
            | "sessions" => {
                let mut inner = Map::new();
                for _ in 0..rng.gen_range(0..3) {
                    let key = strings(rng, ids);
                    let mut deeper = Map::new();
                    for _ in 0..rng.gen_range(0..3) {
                        deeper.insert(strings(rng, ids), random_json(rng, ids, 2));
                    }
                    inner.insert(key, Value::Object(deeper));
                }
                Value::Object(inner)
            }
            "type" => json!(*["m.login.password", "m.login.token", ""]
                .choose(rng)
                .unwrap()),
            "identifier" => json!({ "type": "m.id.user", "user": strings(rng, ids) }),
            _ => {
                if rng.gen_bool(0.5) {
                    json!(strings(rng, ids))
                } else {
                    random_json(rng, ids, 2)
                }
            }
        };
        map.insert((*field).to_owned(), value);
    }
    Value::Object(map)
}

fn query_value(rng: &mut StdRng, ids: &Ids, key: &str) -> String {
    let value = match key {
        "since" | "from" | "to" => match rng.gen_range(0..5) {
            0 => format!("s{}_{}", rng.gen_range(0..400), rng.gen_range(0..400)),
            1 => format!("t{}", rng.gen_range(0..400)),
            2 => format!("s{}_0", rng.gen::<u64>()),
            _ => garbage(rng),
        },
        "timeout" | "limit" | "width" | "height" => match rng.gen_range(0..3) {
            0 => rng.gen_range(0..2000).to_string(),
            1 => u64::MAX.to_string(),
            _ => garbage(rng),
        },
        "dir" => ["b", "f", "x", ""].choose(rng).unwrap().to_string(),
        "full_state" => ["true", "false", "1", "x"].choose(rng).unwrap().to_string(),
        "filter" => match rng.gen_range(0..3) {
            0 => ids.filters[0].clone(),
            1 => random_json(rng, ids, 3).to_string(),
            _ => garbage(rng),
        },
        "version" => ["1", "2", "0", "abc", "99999999999999999999", "-1"]
            .choose(rng)
            .unwrap()
            .to_string(),
        _ => strings(rng, ids),
    };
    encode(&value)
}

/// `template` with each `{param}` replaced by `value(param)`.
fn fill(template: &str, mut value: impl FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        out.push_str(&value(&rest[start + 1..end]));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Real values for a path parameter.
fn real_values(ids: &Ids, param: &str) -> Vec<String> {
    let words = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match param {
        "room_id" => ids.rooms.clone(),
        "room_id_or_alias" => [ids.rooms.clone(), ids.aliases.clone()].concat(),
        "alias" => [
            ids.aliases.clone(),
            words(&["#x:elsewhere", "#new:localhost"]),
        ]
        .concat(),
        "event_id" => ids.events.clone(),
        "user_id" => ids.users.clone(),
        "device_id" => ids.devices.clone(),
        "media_id" => ids.media.clone(),
        "server_name" => words(&["localhost", "elsewhere", "127.0.0.1"]),
        "file_name" => words(&["x.bin", "..", "a b.png"]),
        "filter_id" => ids.filters.clone(),
        "version" => words(&["1", "2", "0", "abc"]),
        "session_id" => words(&["S1", "S2"]),
        "event_type" => words(&[
            "m.room.encrypted",
            "m.room.message",
            "m.room.member",
            "m.room.power_levels",
            "m.room.encryption",
            "m.room.create",
            "m.room.redaction",
            "m.room.topic",
            "m.room.join_rules",
            "org.example.x",
        ]),
        "state_key" => [ids.users.clone(), words(&["", "a/b/c", "x"])].concat(),
        "txn_id" => words(&["t1", "t2", "t3"]),
        "type" => words(&[
            "org.example.secret",
            "m.push_rules",
            "m.fully_read",
            "m.direct",
            "m.tag",
        ]),
        "kind" => words(&[
            "override",
            "underride",
            "sender",
            "room",
            "content",
            "global",
        ]),
        "rule_id" => words(&[
            ".m.rule.master",
            ".m.rule.contains_display_name",
            ".m.rule.message",
            "custom",
        ]),
        "receipt_type" => words(&["m.read", "m.read.private", "m.fully_read"]),
        other => panic!("unknown path parameter {other}"),
    }
}

fn fill_path(rng: &mut StdRng, ids: &Ids, template: &str) -> String {
    fill(template, |param| segment(rng, &real_values(ids, param)))
}

/// Every string (and object key) in `value` with a NUL appended.
fn with_nul(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(format!("{s}\u{0}")),
        Value::Array(items) => Value::Array(items.into_iter().map(with_nul).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (format!("{k}\u{0}"), with_nul(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Four requests per route, with a valid token and the route's own method:
/// every path parameter NUL, invalid UTF-8 and overlong in turn, then real
/// ids with a body whose every string carries a NUL.
fn systematic(rng: &mut StdRng, ids: &Ids) -> Vec<Request> {
    let overlong = "x".repeat(300);
    let mut out = Vec::new();
    for (index, route) in ROUTES.iter().enumerate() {
        let plain = plausible(rng, ids, route.fields);
        for nasty in ["a%00b", "%FF%FE", overlong.as_str()] {
            out.push(Request {
                method: route.method.to_owned(),
                path: fill(route.path, |_| nasty.to_owned()),
                content_type: Some("application/json"),
                body: plain.to_string().into_bytes(),
                token: Token::Valid,
                route: Some(index),
            });
        }
        out.push(Request {
            method: route.method.to_owned(),
            path: fill(route.path, |param| encode(&real_values(ids, param)[0])),
            content_type: Some("application/json"),
            body: with_nul(plausible(rng, ids, route.fields))
                .to_string()
                .into_bytes(),
            token: Token::Valid,
            route: Some(index),
        });
    }
    out
}

enum Token {
    Valid,
    Missing,
    Bad,
    QueryValid,
    QueryBad,
}

struct Request {
    method: String,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    token: Token,
    /// Index into `ROUTES`, when the request targets a known route.
    route: Option<usize>,
}

fn generate(rng: &mut StdRng, ids: &Ids) -> Request {
    let (method, mut path, fields, query, route) = if rng.gen_bool(0.04) {
        // An unknown path, sometimes under a real prefix.
        let prefix = [
            "",
            R,
            "/_matrix/client/v1",
            "/_matrix/media/v3",
            "/_matrix/client/v3/rooms",
        ]
        .choose(rng)
        .unwrap();
        let path = format!("{prefix}/{}", encode(&garbage(rng)));
        (
            METHODS.choose(rng).unwrap().to_string(),
            path,
            NONE,
            NONE,
            None,
        )
    } else {
        let index = rng.gen_range(0..ROUTES.len());
        let route = &ROUTES[index];
        let method = if rng.gen_bool(0.8) {
            route.method.to_owned()
        } else {
            METHODS.choose(rng).unwrap().to_string()
        };
        (
            method,
            fill_path(rng, ids, route.path),
            route.fields,
            route.query,
            Some(index),
        )
    };
    let mut params = Vec::new();
    for key in query {
        if rng.gen_bool(0.6) {
            params.push(format!("{key}={}", query_value(rng, ids, key)));
        }
    }
    if rng.gen_bool(0.1) {
        params.push(format!(
            "{}={}",
            encode(&garbage(rng)),
            encode(&garbage(rng))
        ));
    }
    let token = match rng.gen_range(0..20) {
        0..=11 => Token::Valid,
        12..=14 => Token::Missing,
        15..=17 => Token::Bad,
        18 => Token::QueryValid,
        _ => Token::QueryBad,
    };
    if !params.is_empty() {
        path.push('?');
        path.push_str(&params.join("&"));
    }
    let (content_type, body) = match rng.gen_range(0..10) {
        0 => (None, Vec::new()),
        1 => {
            let bytes: Vec<u8> = (0..rng.gen_range(1..300)).map(|_| rng.gen()).collect();
            (
                *[
                    Some("application/json"),
                    Some("application/octet-stream"),
                    None,
                ]
                .choose(rng)
                .unwrap(),
                bytes,
            )
        }
        2 | 3 => (
            Some("application/json"),
            random_json(rng, ids, 3).to_string().into_bytes(),
        ),
        4 => {
            // Plausible JSON, cut short or with a trailing extra.
            let mut text = plausible(rng, ids, fields).to_string().into_bytes();
            if rng.gen_bool(0.5) && !text.is_empty() {
                // Bytes, not characters: a cut may split a UTF-8 sequence.
                text.truncate(rng.gen_range(0..text.len()));
            } else {
                text.extend_from_slice(["}", ",", " x", "]"].choose(rng).unwrap().as_bytes());
            }
            (Some("application/json"), text)
        }
        _ => (
            Some("application/json"),
            plausible(rng, ids, fields).to_string().into_bytes(),
        ),
    };
    Request {
        method,
        path,
        content_type,
        body,
        token,
        route,
    }
}

/// Why an answer breaks the contract, if it does.
fn violation(status: u16, content_type: Option<&str>, body: &[u8]) -> Option<String> {
    if status >= 500 {
        return Some(format!("server error {status}"));
    }
    if (200..300).contains(&status) {
        return None;
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Some(format!("{status} answer is not a JSON object"));
    };
    if !content_type.is_some_and(|t| t.starts_with("application/json")) {
        return Some(format!("{status} answer has content type {content_type:?}"));
    }
    let is_challenge = status == 401
        && map.get("flows").is_some_and(Value::is_array)
        && map.get("session").is_some_and(Value::is_string);
    let has_shape = map.get("errcode").is_some_and(Value::is_string)
        && map.get("error").is_some_and(Value::is_string);
    if has_shape || (is_challenge && !map.contains_key("errcode")) {
        None
    } else {
        Some(format!("{status} answer lacks string errcode/error"))
    }
}

/// The JSON paths where `a` and `b` differ, with both values.
fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for key in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                );
                diff(va, vb, format!("{path}/{key}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff(va, vb, format!("{path}/{i}"), out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} → {b}")),
        _ => {}
    }
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    format!("{text:?}")
}

async fn fuzz(backend: Backend) {
    let w = setup(backend).await;
    let before = snapshot(&w).await;
    let url = w.server.url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let seed = env_or("CLOISTER_FUZZ_SEED", SEED);
    let requests = env_or("CLOISTER_FUZZ_REQUESTS", REQUESTS);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut carol_token = w.carol.access_token.clone();
    let mut violations = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut routes_hit = std::collections::BTreeSet::<usize>::new();
    let started = Instant::now();

    let mut plan = systematic(&mut rng, &w.ids);
    plan.extend((0..requests).map(|_| generate(&mut rng, &w.ids)));
    let total = plan.len();
    for (n, req) in plan.into_iter().enumerate() {
        let mut path = req.path.clone();
        let method = Method::from_bytes(req.method.as_bytes()).unwrap();
        let mut builder = http.request(method.clone(), format!("{url}{path}"));
        match req.token {
            Token::Valid => builder = builder.bearer_auth(&carol_token),
            Token::Missing => {}
            Token::Bad => builder = builder.bearer_auth("clt_not_a_real_token"),
            Token::QueryValid | Token::QueryBad => {
                let token = match req.token {
                    Token::QueryValid => carol_token.clone(),
                    _ => "bad".to_owned(),
                };
                let sep = if path.contains('?') { '&' } else { '?' };
                path = format!("{path}{sep}access_token={}", encode(&token));
                builder = http.request(method.clone(), format!("{url}{path}"));
            }
        }
        if let Some(content_type) = req.content_type {
            builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body.clone());
        }
        let response = builder
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n} {method} {path}: no answer: {e}"));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        *statuses.entry(status).or_default() += 1;
        if let Some(index) = req.route.filter(|i| ROUTES[*i].method == req.method) {
            routes_hit.insert(index);
        }
        if let Some(why) = violation(status, content_type.as_deref(), &body) {
            let mut report = String::new();
            let _ = write!(
                report,
                "#{n} {method} {path}\n    content-type {:?}, body {}\n    → {why}: {}",
                req.content_type,
                preview(&req.body),
                preview(&body)
            );
            violations.push((req.route, report));
        }
        // Carol's token may be logged out legitimately; keep fuzzing with a fresh one.
        if matches!(req.token, Token::Valid | Token::QueryValid)
            && (200..300).contains(&status)
            && req.method == "POST"
            && req.route.is_some_and(|i| {
                ROUTES[i].path.ends_with("/logout") || ROUTES[i].path.ends_with("/logout/all")
            })
        {
            let carol = Client::login(&url, "carol", CAROL_PW, None).await;
            carol_token = carol.access_token;
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{backend}: {total} requests (seed {seed}) in {elapsed:?}; statuses {statuses:?}; {} of {} route/method pairs hit",
        routes_hit.len(),
        ROUTES.len()
    );
    assert!(
        routes_hit.len() >= ROUTES.len() * 9 / 10,
        "only {} of {} routes were exercised",
        routes_hit.len(),
        ROUTES.len()
    );

    let by_route: std::collections::BTreeSet<&str> = violations
        .iter()
        .map(|(route, _)| route.map_or("<unknown path>", |i| ROUTES[i].path))
        .collect();
    let report = format!(
        "{} of {total} answers (seed {seed}) on {backend} broke the contract, on {} routes:\n  {}\n\nThe first 40:\n{}",
        violations.len(),
        by_route.len(),
        by_route.into_iter().collect::<Vec<_>>().join("\n  "),
        violations
            .iter()
            .take(40)
            .map(|(_, report)| report.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if !violations.is_empty() {
        // Reported now; the state checks below still run first.
        eprintln!("{report}");
    }

    // The server still answers, and the known state is exactly intact.
    let (s, versions) = Client::anonymous(&url)
        .get("/_matrix/client/versions")
        .await;
    assert_eq!(s, 200, "{versions}");
    let after = snapshot(&w).await;
    let mut differences = Vec::new();
    diff(&before, &after, String::new(), &mut differences);
    assert!(
        differences.is_empty(),
        "the known state changed during fuzzing:\n{}",
        differences.join("\n")
    );
    for c in [&w.alice, &w.bob] {
        let (s, bytes) = c.download_media(&w.media).await;
        assert_eq!(s, 200);
        assert!(bytes == w.media_bytes, "media bytes changed");
    }
    for (name, pw) in [("alice", ALICE_PW), ("bob", BOB_PW), ("carol", CAROL_PW)] {
        let c = Client::login(&url, name, pw, None).await;
        assert_eq!(c.whoami().await["user_id"], format!("@{name}:localhost"));
    }
    w.server.stop().await;
    assert!(violations.is_empty(), "{report}");
}

both_backends!(fuzz_routes, fuzz);
