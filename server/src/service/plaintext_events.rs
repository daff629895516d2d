//! The few unencrypted events an encrypted room accepts, each with exactly
//! the fields the spec gives it: reactions (so the server can count them;
//! an operator can refuse them) and the in-room key-verification messages,
//! which the spec sends in the clear because they carry only public
//! material (public keys, commitments, MACs) and must reach a device that
//! cannot decrypt yet.

use serde_json::{Map, Value};

use crate::config::Encryption;
use crate::error::{ApiError, ApiResult};

/// The `msgtype` of the `m.room.message` that opens a verification in a room.
const VERIFICATION_REQUEST: &str = "m.key.verification.request";

/// What one field may hold.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Strings,
    Object,
}

/// The fields of each verification event (besides `m.relates_to`, which
/// every one after the request carries as an `m.reference`), and whether
/// each is required.
fn verification_fields(event_type: &str) -> Option<&'static [(&'static str, Kind, bool)]> {
    use Kind::*;
    Some(match event_type {
        "m.key.verification.ready" => &[("from_device", Str, true), ("methods", Strings, true)],
        "m.key.verification.start" => &[
            ("from_device", Str, true),
            ("method", Str, true),
            ("key_agreement_protocols", Strings, false),
            ("hashes", Strings, false),
            ("message_authentication_codes", Strings, false),
            ("short_authentication_string", Strings, false),
            ("secret", Str, false),
        ],
        "m.key.verification.accept" => &[
            ("method", Str, false),
            ("key_agreement_protocol", Str, true),
            ("hash", Str, true),
            ("message_authentication_code", Str, true),
            ("short_authentication_string", Strings, true),
            ("commitment", Str, true),
        ],
        "m.key.verification.key" => &[("key", Str, true)],
        "m.key.verification.mac" => &[("mac", Object, true), ("keys", Str, true)],
        "m.key.verification.done" => &[],
        "m.key.verification.cancel" => &[("code", Str, true), ("reason", Str, true)],
        _ => return None,
    })
}

/// The request is an `m.room.message` whose `body` is the fallback text for
/// clients that cannot verify.
const REQUEST_FIELDS: &[(&str, Kind, bool)] = &[
    ("msgtype", Kind::Str, true),
    ("body", Kind::Str, true),
    ("from_device", Kind::Str, true),
    ("methods", Kind::Strings, true),
    ("to", Kind::Str, true),
];

/// `Some(result)` when `event_type`/`content` is one of the plaintext
/// events this module knows (accepted or refused with the reason); `None`
/// for anything else, which the encryption-only rule then refuses.
pub fn check(config: &Encryption, event_type: &str, content: &Value) -> Option<ApiResult<()>> {
    let map = content.as_object()?;
    if event_type == "m.reaction" {
        return Some(check_reaction(config, map));
    }
    if event_type == "m.room.message" {
        if map.get("msgtype").and_then(Value::as_str) != Some(VERIFICATION_REQUEST) {
            return None;
        }
        return Some(exact_fields(event_type, map, REQUEST_FIELDS, false));
    }
    let fields = verification_fields(event_type)?;
    Some(exact_fields(event_type, map, fields, true))
}

/// An unencrypted reaction: `{"m.relates_to": {"rel_type": "m.annotation",
/// "event_id", "key"}}` and nothing else.
fn check_reaction(config: &Encryption, map: &Map<String, Value>) -> ApiResult<()> {
    if !config.plaintext_reactions {
        return Err(ApiError::forbidden(
            "This server does not accept unencrypted reactions",
        ));
    }
    if let Some(field) = map.keys().find(|k| *k != "m.relates_to") {
        return Err(ApiError::forbidden(format!(
            "An unencrypted m.reaction may carry only m.relates_to, not `{field}`"
        )));
    }
    let relation = map
        .get("m.relates_to")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::bad_json("m.reaction needs an m.relates_to object"))?;
    check_annotation(config, relation)
}

/// An annotation relation: its event, its key, nothing else. Shared with
/// encrypted reactions, whose relation the spec keeps in the clear.
pub fn check_annotation(config: &Encryption, relation: &Map<String, Value>) -> ApiResult<()> {
    if !config.plaintext_reactions {
        return Err(ApiError::forbidden(
            "This server does not accept reaction keys in the clear (`m.relates_to.key`)",
        ));
    }
    if let Some(field) = relation
        .keys()
        .find(|k| !matches!(k.as_str(), "rel_type" | "event_id" | "key"))
    {
        return Err(ApiError::forbidden(format!(
            "A reaction's m.relates_to may not carry `{field}`"
        )));
    }
    if relation.get("rel_type").and_then(Value::as_str) != Some("m.annotation") {
        return Err(ApiError::bad_json(
            "a reaction's rel_type must be m.annotation",
        ));
    }
    if !relation
        .get("event_id")
        .and_then(Value::as_str)
        .is_some_and(crate::ids::is_valid_event_id)
    {
        return Err(ApiError::bad_json(
            "a reaction needs the event_id it reacts to",
        ));
    }
    let key = relation
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ApiError::bad_json("a reaction needs a non-empty string key"))?;
    if key.len() > config.max_reaction_key_bytes {
        return Err(ApiError::invalid_param(format!(
            "a reaction key may be at most {} bytes",
            config.max_reaction_key_bytes
        )));
    }
    Ok(())
}

fn exact_fields(
    event_type: &str,
    map: &Map<String, Value>,
    fields: &[(&str, Kind, bool)],
    referenced: bool,
) -> ApiResult<()> {
    for (name, value) in map {
        if referenced && name == "m.relates_to" {
            check_reference(value)?;
            continue;
        }
        let Some((_, kind, _)) = fields.iter().find(|(n, _, _)| n == name) else {
            return Err(ApiError::forbidden(format!(
                "{event_type} may not carry `{name}` in the clear"
            )));
        };
        let ok = match kind {
            Kind::Str => value.is_string(),
            Kind::Strings => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Kind::Object => value.is_object(),
        };
        if !ok {
            return Err(ApiError::bad_json(format!(
                "`{name}` of {event_type} has the wrong type"
            )));
        }
    }
    if let Some((name, _, _)) = fields
        .iter()
        .find(|(name, _, required)| *required && !map.contains_key(*name))
    {
        return Err(ApiError::bad_json(format!("{event_type} needs `{name}`")));
    }
    if referenced && !map.contains_key("m.relates_to") {
        return Err(ApiError::bad_json(format!(
            "{event_type} needs an m.relates_to referencing the request"
        )));
    }
    Ok(())
}

fn check_reference(value: &Value) -> ApiResult<()> {
    let relation = value
        .as_object()
        .ok_or_else(|| ApiError::bad_json("`m.relates_to` must be an object"))?;
    if let Some(field) = relation
        .keys()
        .find(|k| !matches!(k.as_str(), "rel_type" | "event_id"))
    {
        return Err(ApiError::forbidden(format!(
            "a verification's m.relates_to may not carry `{field}`"
        )));
    }
    let is_reference = relation.get("rel_type").and_then(Value::as_str) == Some("m.reference");
    let has_event = relation
        .get("event_id")
        .and_then(Value::as_str)
        .is_some_and(crate::ids::is_valid_event_id);
    if is_reference && has_event {
        Ok(())
    } else {
        Err(ApiError::bad_json(
            "a verification's m.relates_to must be an m.reference to the request's event_id",
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn code(result: Option<ApiResult<()>>) -> &'static str {
        match result {
            None => "not ours",
            Some(Ok(())) => "ok",
            Some(Err(e)) => e.errcode.as_str(),
        }
    }

    #[test]
    fn reactions() {
        let c = Encryption::default();
        let r = |content: Value| code(check(&c, "m.reaction", &content));
        let good =
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "👍"}});
        assert_eq!(r(good.clone()), "ok");
        let mut extra = good.clone();
        extra["body"] = json!("👍");
        assert_eq!(r(extra), "M_FORBIDDEN");
        let mut long = good.clone();
        long["m.relates_to"]["key"] = json!("x".repeat(65));
        assert_eq!(r(long), "M_INVALID_PARAM");
        let mut reference = good.clone();
        reference["m.relates_to"]["rel_type"] = json!("m.reference");
        assert_eq!(r(reference), "M_BAD_JSON");
        let refusing = Encryption {
            plaintext_reactions: false,
            ..Encryption::default()
        };
        assert_eq!(code(check(&refusing, "m.reaction", &good)), "M_FORBIDDEN");
    }

    #[test]
    fn verification() {
        let c = Encryption::default();
        let v = |t: &str, content: Value| code(check(&c, t, &content));
        let request = json!({"msgtype": "m.key.verification.request", "body": "Alice wants to verify",
            "from_device": "D", "methods": ["m.sas.v1"], "to": "@b:x"});
        assert_eq!(v("m.room.message", request.clone()), "ok");
        let mut chatty = request.clone();
        chatty["formatted_body"] = json!("<b>secret</b>");
        assert_eq!(v("m.room.message", chatty), "M_FORBIDDEN");
        assert_eq!(
            v("m.room.message", json!({"msgtype": "m.text", "body": "hi"})),
            "not ours"
        );
        let rel = json!({"rel_type": "m.reference", "event_id": "$req"});
        assert_eq!(
            v(
                "m.key.verification.ready",
                json!({"from_device": "D", "methods": ["m.sas.v1"], "m.relates_to": rel})
            ),
            "ok"
        );
        assert_eq!(
            v("m.key.verification.done", json!({"m.relates_to": rel})),
            "ok"
        );
        assert_eq!(
            v(
                "m.key.verification.key",
                json!({"key": "abc", "m.relates_to": rel, "note": "x"})
            ),
            "M_FORBIDDEN"
        );
        assert_eq!(
            v("m.key.verification.key", json!({"key": "abc"})),
            "M_BAD_JSON"
        );
        assert_eq!(
            v(
                "m.key.verification.mac",
                json!({"mac": "x", "keys": "k", "m.relates_to": rel})
            ),
            "M_BAD_JSON"
        );
        assert_eq!(v("m.key.verification.unknown", json!({})), "not ours");
    }
}
