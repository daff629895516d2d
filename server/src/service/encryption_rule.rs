//! The encryption-only rule: every room message reaches the server as Megolm
//! ciphertext, and nothing a client sends can carry plaintext around it or
//! switch the room's encryption off.
//!
//! Plaintext has three ways around a rule that only looks at message
//! events: message types sent as room state (state is never encrypted),
//! extra fields beside the ciphertext, and changes to `m.room.encryption`
//! itself (sent as a message, with a state key, through `initial_state`, or
//! emptied by a redaction). Each is closed here, in one place that both
//! event sending and room creation call.

use serde_json::{Map, Value};

use crate::config::Encryption;
use crate::error::{ApiError, ApiResult};
use crate::service::{plaintext_events, Context};
use crate::store::events::{NewEvent, StoredEvent};

pub const MEGOLM: &str = "m.megolm.v1.aes-sha2";

pub const ENCRYPTION_EVENT: &str = "m.room.encryption";

/// Message-event types of the Client-Server spec. As state they would be
/// stored and served in plaintext, so they are refused as state in every
/// room; a type outside these and the prefixes below is treated as state
/// or custom data, which the spec leaves to the room.
const MESSAGE_TYPES: &[&str] = &[
    "m.room.message",
    "m.room.encrypted",
    "m.room.redaction",
    "m.room.message.feedback",
    "m.sticker",
    "m.reaction",
];
const MESSAGE_TYPE_PREFIXES: &[&str] = &["m.call.", "m.key.verification.", "m.poll."];

/// The fields Megolm output has. Anything else beside the ciphertext would
/// be readable by the server, so the list is closed.
const ENCRYPTED_FIELDS: &[&str] = &[
    "algorithm",
    "sender_key",
    "device_id",
    "session_id",
    "ciphertext",
    "m.relates_to",
];

pub fn is_message_type(event_type: &str) -> bool {
    MESSAGE_TYPES.contains(&event_type)
        || MESSAGE_TYPE_PREFIXES
            .iter()
            .any(|prefix| event_type.starts_with(prefix))
}

/// Checks one event a room member sends (membership events excepted).
pub fn check(state: &Context, event: &NewEvent<'_>) -> ApiResult<()> {
    check_shape(event.event_type, event.state_key)?;
    if state
        .config
        .encryption
        .plaintext_rooms
        .contains(event.room_id)
    {
        return Ok(());
    }
    if event.state_key.is_none() {
        if let Some(verdict) =
            plaintext_events::check(&state.config.encryption, event.event_type, event.content)
        {
            return verdict;
        }
    }
    check_encrypted(
        &state.config.encryption,
        event.event_type,
        event.state_key,
        event.content,
    )
}

/// Checks a `createRoom` `initial_state` item as if the creator sent it
/// into the new room, which is never one of the configured plaintext rooms.
pub fn check_initial_state(
    creator: &str,
    event_type: &str,
    state_key: &str,
    content: &Value,
) -> ApiResult<()> {
    check_shape(event_type, Some(state_key))?;
    // State is never a reaction, so the reaction settings do not matter.
    check_encrypted(&Encryption::default(), event_type, Some(state_key), content)?;
    if state_key.starts_with('@') && state_key != creator {
        return Err(ApiError::forbidden(
            "State keys naming another user are reserved for that user",
        ));
    }
    Ok(())
}

/// Redacting `m.room.encryption` would leave it `{}`, which clients read as
/// an unencrypted room; no power level may do that.
pub fn check_redaction_target(target: &StoredEvent) -> ApiResult<()> {
    if target.event_type == ENCRYPTION_EVENT {
        return Err(ApiError::forbidden(
            "m.room.encryption cannot be redacted: rooms on this server stay end-to-end encrypted",
        ));
    }
    Ok(())
}

/// What holds in every room, plaintext ones included: message types are
/// not state, and `m.room.encryption` is only ever the room's one state
/// event (clients read it at state key "" and nowhere else).
fn check_shape(event_type: &str, state_key: Option<&str>) -> ApiResult<()> {
    match state_key {
        Some(_) if is_message_type(event_type) => Err(ApiError::forbidden(format!(
            "{event_type} is a message event type and cannot be sent as room state"
        ))),
        Some(key) if event_type == ENCRYPTION_EVENT && !key.is_empty() => Err(ApiError::forbidden(
            "m.room.encryption must have an empty state_key",
        )),
        None if event_type == ENCRYPTION_EVENT => Err(ApiError::forbidden(
            "m.room.encryption must be sent as a state event",
        )),
        _ => Ok(()),
    }
}

fn check_encrypted(
    config: &Encryption,
    event_type: &str,
    state_key: Option<&str>,
    content: &Value,
) -> ApiResult<()> {
    if event_type == ENCRYPTION_EVENT {
        if content.get("algorithm").and_then(Value::as_str) != Some(MEGOLM) {
            return Err(ApiError::forbidden(format!(
                "This server keeps rooms end-to-end encrypted: m.room.encryption must keep algorithm {MEGOLM}"
            )));
        }
        return Ok(());
    }
    if state_key.is_some() || event_type == "m.room.redaction" {
        return Ok(());
    }
    if event_type != "m.room.encrypted" {
        return Err(ApiError::forbidden(format!(
            "This room is end-to-end encrypted: the server accepts only m.room.encrypted message events, not {event_type}"
        )));
    }
    check_ciphertext_shape(config, content)
}

/// An `m.room.encrypted` event must look like Megolm output and carry
/// nothing readable beside it but the bare relation (which the spec keeps
/// in the clear so servers can aggregate threads and edits).
pub(crate) fn check_ciphertext_shape(config: &Encryption, content: &Value) -> ApiResult<()> {
    let Some(map) = content.as_object() else {
        return Err(ApiError::bad_json("event content must be an object"));
    };
    if let Some(field) = map.keys().find(|k| !ENCRYPTED_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::forbidden(format!(
            "Encrypted events may not carry `{field}` beside the ciphertext"
        )));
    }
    if map.get("algorithm").and_then(Value::as_str) != Some(MEGOLM) {
        return Err(ApiError::forbidden(format!(
            "Room messages must be encrypted with {MEGOLM}"
        )));
    }
    if !map.get("ciphertext").is_some_and(Value::is_string)
        || !map.get("session_id").is_some_and(Value::is_string)
    {
        return Err(ApiError::bad_json(
            "m.room.encrypted needs string `ciphertext` and `session_id`",
        ));
    }
    for field in ["sender_key", "device_id"] {
        if map.get(field).is_some_and(|v| !v.is_string()) {
            return Err(ApiError::bad_json(format!("`{field}` must be a string")));
        }
    }
    match map.get("m.relates_to") {
        None => Ok(()),
        // An encrypted reaction keeps its annotation in the clear, key
        // included, so the server can count it (when the operator allows).
        Some(Value::Object(relation))
            if relation.get("rel_type").and_then(Value::as_str) == Some("m.annotation") =>
        {
            plaintext_events::check_annotation(config, relation)
        }
        Some(Value::Object(relation)) => check_relation(relation),
        Some(_) => Err(ApiError::bad_json("`m.relates_to` must be an object")),
    }
}

/// Only what threads, replies and edits need: ids and flags, no text.
fn check_relation(relation: &Map<String, Value>) -> ApiResult<()> {
    for (key, value) in relation {
        let well_typed = match key.as_str() {
            "rel_type" | "event_id" => value.is_string(),
            "is_falling_back" => value.is_boolean(),
            "m.in_reply_to" => match value {
                Value::Object(reply) => {
                    if let Some(field) = reply.keys().find(|k| *k != "event_id") {
                        return Err(ApiError::forbidden(format!(
                            "Encrypted events may not carry `m.relates_to.m.in_reply_to.{field}`"
                        )));
                    }
                    reply.get("event_id").is_some_and(Value::is_string)
                }
                _ => false,
            },
            _ => {
                return Err(ApiError::forbidden(format!(
                    "Encrypted events may not carry `m.relates_to.{key}`"
                )))
            }
        };
        if !well_typed {
            return Err(ApiError::bad_json(format!(
                "`m.relates_to.{key}` has the wrong type"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(result: ApiResult<()>) -> &'static str {
        result.map_or_else(|e| e.errcode.as_str(), |()| "ok")
    }

    #[test]
    fn ciphertext_shape() {
        let good =
            json!({"algorithm": MEGOLM, "ciphertext": "AwgA", "session_id": "s", "device_id": "D"});
        assert!(check_ciphertext_shape(&Encryption::default(), &good).is_ok());
        let mut smuggled = good.clone();
        smuggled["body"] = json!("hello");
        assert_eq!(
            check_ciphertext_shape(&Encryption::default(), &smuggled)
                .unwrap_err()
                .errcode,
            "M_FORBIDDEN"
        );
        let olm = json!({"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}, "session_id": "s"});
        assert!(check_ciphertext_shape(&Encryption::default(), &olm).is_err());
    }

    #[test]
    fn only_megolm_fields_and_bare_relations_pass() {
        let with = |field: &str, value: Value| {
            let mut c = json!({"algorithm": MEGOLM, "ciphertext": "AwgA", "session_id": "s",
                               "sender_key": "k", "device_id": "D"});
            c[field] = value;
            code(check_ciphertext_shape(&Encryption::default(), &c))
        };
        let thread = json!({"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true,
                            "m.in_reply_to": {"event_id": "$prev"}});
        assert_eq!(with("m.relates_to", thread), "ok");
        assert_eq!(
            with(
                "m.relates_to",
                json!({"rel_type": "m.replace", "event_id": "$e"})
            ),
            "ok"
        );
        assert_eq!(with("m.new_content", json!({"body": "x"})), "M_FORBIDDEN");
        assert_eq!(with("org.example.note", json!("x")), "M_FORBIDDEN");
        // An encrypted reaction's key is in the clear unless the operator
        // refuses plaintext reactions.
        let annotation = json!({"rel_type": "m.annotation", "event_id": "$e", "key": "yes"});
        assert_eq!(with("m.relates_to", annotation.clone()), "ok");
        let refusing = Encryption {
            plaintext_reactions: false,
            ..Encryption::default()
        };
        let mut c = json!({"algorithm": MEGOLM, "ciphertext": "AwgA", "session_id": "s"});
        c["m.relates_to"] = annotation;
        assert_eq!(code(check_ciphertext_shape(&refusing, &c)), "M_FORBIDDEN");
        let reply_text = json!({"m.in_reply_to": {"event_id": "$e", "body": "quoted"}});
        assert_eq!(with("m.relates_to", reply_text), "M_FORBIDDEN");
        assert_eq!(with("m.relates_to", json!("text")), "M_BAD_JSON");
        assert_eq!(with("sender_key", json!({"body": "x"})), "M_BAD_JSON");
        assert_eq!(
            with("m.relates_to", json!({"event_id": {"body": "x"}})),
            "M_BAD_JSON"
        );
    }

    #[test]
    fn message_types_are_never_state() {
        for t in [
            "m.room.message",
            "m.room.encrypted",
            "m.call.invite",
            "m.reaction",
        ] {
            assert_eq!(code(check_shape(t, Some(""))), "M_FORBIDDEN", "{t}");
            assert_eq!(code(check_shape(t, None)), "ok", "{t}");
        }
        assert_eq!(code(check_shape("m.room.topic", Some(""))), "ok");
        assert_eq!(code(check_shape("org.example.x", Some("k"))), "ok");
        assert_eq!(code(check_shape(ENCRYPTION_EVENT, Some(""))), "ok");
        assert_eq!(
            code(check_shape(ENCRYPTION_EVENT, Some("x"))),
            "M_FORBIDDEN"
        );
        assert_eq!(code(check_shape(ENCRYPTION_EVENT, None)), "M_FORBIDDEN");
    }

    #[test]
    fn initial_state_follows_the_same_rules() {
        let megolm = json!({"algorithm": MEGOLM});
        let ok = |t, k, c: &Value| code(check_initial_state("@a:x", t, k, c));
        assert_eq!(ok(ENCRYPTION_EVENT, "", &megolm), "ok");
        assert_eq!(
            ok(ENCRYPTION_EVENT, "", &json!({"algorithm": "none"})),
            "M_FORBIDDEN"
        );
        assert_eq!(
            ok("m.room.message", "", &json!({"body": "hi"})),
            "M_FORBIDDEN"
        );
        assert_eq!(ok("org.example.x", "@b:x", &json!({})), "M_FORBIDDEN");
        assert_eq!(ok("org.example.x", "@a:x", &json!({})), "ok");
    }
}
