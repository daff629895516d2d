//! What of an event's content survives redaction, by room version (spec:
//! "Redactions" and each room version's redaction algorithm). Versions up
//! to 10 share the rules of version 9 for the keys below; version 11 also
//! keeps all of `m.room.create`, power levels' `invite`, a redaction's
//! `redacts` and a membership's `third_party_invite.signed`.

use serde_json::{json, Map, Value};

/// The content of an event of `event_type` once redacted in a room of
/// `room_version`. Unknown (future) versions get version 11's rules.
pub fn redact_content(room_version: &str, event_type: &str, content: &Value) -> Value {
    let v11 = room_version.parse::<u32>().map_or(true, |v| v >= 11);
    let Value::Object(map) = content else {
        return json!({});
    };
    let keep: &[&str] = match event_type {
        "m.room.create" if v11 => return content.clone(),
        "m.room.create" => &["creator"],
        "m.room.member" => &["membership", "join_authorised_via_users_server"],
        "m.room.join_rules" => &["join_rule", "allow"],
        "m.room.power_levels" if v11 => &[
            "ban",
            "events",
            "events_default",
            "invite",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        ],
        "m.room.power_levels" => &[
            "ban",
            "events",
            "events_default",
            "kick",
            "redact",
            "state_default",
            "users",
            "users_default",
        ],
        "m.room.history_visibility" => &["history_visibility"],
        "m.room.redaction" if v11 => &["redacts"],
        _ => &[],
    };
    let mut out = Map::new();
    for key in keep {
        if let Some(v) = map.get(*key) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    if v11 && event_type == "m.room.member" {
        if let Some(signed) = map.get("third_party_invite").and_then(|t| t.get("signed")) {
            out.insert(
                "third_party_invite".into(),
                json!({ "signed": signed.clone() }),
            );
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v10(event_type: &str, content: Value) -> Value {
        redact_content("10", event_type, &content)
    }

    #[test]
    fn redaction_keeps_only_protocol_keys() {
        let c = json!({"membership": "join", "displayname": "Alice", "avatar_url": "mxc://x/y"});
        assert_eq!(v10("m.room.member", c), json!({"membership": "join"}));
        let c =
            json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA", "session_id": "s"});
        assert_eq!(v10("m.room.encrypted", c), json!({}));
    }

    #[test]
    fn version_10() {
        let create = json!({"creator": "@a:x", "room_version": "10", "m.federate": false});
        assert_eq!(v10("m.room.create", create), json!({"creator": "@a:x"}));
        let power = json!({"ban": 50, "invite": 0, "kick": 50, "users": {"@a:x": 100},
                           "notifications": {"room": 50}});
        assert_eq!(
            v10("m.room.power_levels", power),
            json!({"ban": 50, "kick": 50, "users": {"@a:x": 100}})
        );
        let member = json!({"membership": "invite", "join_authorised_via_users_server": "@a:x",
                            "third_party_invite": {"signed": {}, "display_name": "d"}});
        assert_eq!(
            v10("m.room.member", member),
            json!({"membership": "invite", "join_authorised_via_users_server": "@a:x"})
        );
        let rules = json!({"join_rule": "restricted", "allow": [], "x": 1});
        assert_eq!(
            v10("m.room.join_rules", rules),
            json!({"join_rule": "restricted", "allow": []})
        );
        let redaction = json!({"redacts": "$e", "reason": "r"});
        assert_eq!(v10("m.room.redaction", redaction), json!({}));
        assert_eq!(
            v10("m.room.aliases", json!({"aliases": ["#a:x"]})),
            json!({})
        );
        let encryption = json!({"algorithm": "m.megolm.v1.aes-sha2"});
        assert_eq!(v10("m.room.encryption", encryption), json!({}));
    }

    #[test]
    fn version_11_keeps_more() {
        let create = json!({"creator": "@a:x", "room_version": "11", "m.federate": false});
        assert_eq!(redact_content("11", "m.room.create", &create), create);
        let power = json!({"ban": 50, "invite": 0, "notifications": {"room": 50}});
        assert_eq!(
            redact_content("11", "m.room.power_levels", &power),
            json!({"ban": 50, "invite": 0})
        );
        let redaction = json!({"redacts": "$e", "reason": "r"});
        assert_eq!(
            redact_content("11", "m.room.redaction", &redaction),
            json!({"redacts": "$e"})
        );
        let member = json!({"membership": "invite", "third_party_invite": {"signed": {"a": 1}, "display_name": "d"}});
        assert_eq!(
            redact_content("12", "m.room.member", &member),
            json!({"membership": "invite", "third_party_invite": {"signed": {"a": 1}}})
        );
    }
}
