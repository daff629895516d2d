//! Random and systematic requests.

use cloister_tests::encode;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::route::{NONE, R};
use crate::routes::ROUTES;
use crate::state::Ids;

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
        // `{*name}` is a catch-all: the value may hold slashes.
        out.push_str(&value(rest[start + 1..end].trim_start_matches('*')));
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
        "rel_type" => words(&[
            "m.thread",
            "m.annotation",
            "m.replace",
            "x".repeat(300).as_str(),
        ]),
        "hold_id" => words(&["hold-1", "", "%2E%2E"]),
        // The fuzzed server has no providers: every id is unknown.
        "idp_id" => words(&["keycloak", "", "%2E%2E"]),
        "auth_type" => words(&["m.login.sso", "m.login.password", "x"]),
        // The console's files and registration-token handles.
        "path" => words(&["app.js", "i18n/en.json", "verify.mjs", "../Cargo.toml", "x"]),
        "id" => words(&["0123456789ab", "", "x"]),
        // OAuth authorization requests: none exists, so every one is gone.
        "grant_id" => words(&["0123456789abcdef0123456789abcdef", "", "%2E%2E"]),
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
pub(crate) fn systematic(rng: &mut StdRng, ids: &Ids) -> Vec<Request> {
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

pub(crate) enum Token {
    Valid,
    Missing,
    Bad,
    QueryValid,
    QueryBad,
}

pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: Vec<u8>,
    pub(crate) token: Token,
    /// Index into `ROUTES`, when the request targets a known route.
    pub(crate) route: Option<usize>,
}

pub(crate) fn generate(rng: &mut StdRng, ids: &Ids) -> Request {
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
