//! The push rule set as data: the spec's server-default rules (from
//! `pushrules_default.json`) and the edits clients make to a set. Pure
//! functions over JSON, so every ordering rule is unit-tested here.
//!
//! Within a kind, array order is priority order. User rules rank above the
//! server-default rules of their kind, except `.m.rule.master`, which ranks
//! above everything.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult, ErrCode};

const KINDS: [&str; 5] = ["override", "content", "room", "sender", "underride"];
const MASTER: &str = ".m.rule.master";
/// Placeholders in the JSON file, worded as in the spec's rule definitions.
const MATRIX_ID: &str = "[the user's Matrix ID]";
const LOCALPART: &str = "[the local part of the user's Matrix ID]";

/// The spec's server-default rule set for `user_id`, as `{"global": {...}}`.
pub fn default_ruleset(user_id: &str) -> Value {
    json!({ "global": default_global(user_id) })
}

pub(super) fn default_global(user_id: &str) -> Value {
    let mut rules = default_template().clone();
    substitute(&mut rules, user_id, localpart(user_id));
    rules
}

/// The server-default `global` rules with the spec's placeholders still in
/// place, parsed once. The evaluator reads it as it is for every user who
/// never edited their rules ([`fill_placeholder`] at match time), so it
/// builds no copy per member and event batch.
pub(super) fn default_template() -> &'static Value {
    static PARSED: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| {
        serde_json::from_str(include_str!("pushrules_default.json"))
            .expect("pushrules_default.json is valid JSON")
    })
}

/// `text` from a server-default rule, with the user's id or localpart in
/// place of the spec's placeholder for it.
pub(super) fn fill_placeholder<'a>(text: &'a str, user_id: &'a str) -> &'a str {
    match text {
        MATRIX_ID => user_id,
        LOCALPART => localpart(user_id),
        _ => text,
    }
}

fn localpart(user_id: &str) -> &str {
    crate::ids::parse_user_id(user_id).map_or(user_id, |(local, _)| local)
}

fn substitute(value: &mut Value, user_id: &str, localpart: &str) {
    match value {
        Value::String(s) if s == MATRIX_ID => *s = user_id.to_owned(),
        Value::String(s) if s == LOCALPART => *s = localpart.to_owned(),
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| substitute(v, user_id, localpart)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|v| substitute(v, user_id, localpart)),
        _ => {}
    }
}

/// The user's stored rule set completed with the current server defaults:
/// a default rule added in a later release appears, and default rules keep
/// the user's `enabled` and `actions` but take the current definition.
pub(super) fn with_defaults(stored: Option<Value>, user_id: &str) -> Value {
    let mut global = match stored.and_then(|mut s| s.get_mut("global").map(Value::take)) {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let defaults = default_global(user_id);
    for kind in KINDS {
        let rules = kind_rules(&mut global, kind);
        for default in defaults[kind].as_array().into_iter().flatten() {
            let id = &default["rule_id"];
            match rules.iter_mut().find(|r| &r["rule_id"] == id) {
                Some(rule) => {
                    for key in ["conditions", "pattern", "default"] {
                        if let Some(v) = default.get(key) {
                            rule[key] = v.clone();
                        }
                    }
                }
                None if id == MASTER => rules.insert(0, default.clone()),
                None => rules.push(default.clone()),
            }
        }
    }
    json!({ "global": global })
}

/// The rules of `kind`, created empty if missing or malformed.
pub(super) fn kind_rules<'a>(global: &'a mut Map<String, Value>, kind: &str) -> &'a mut Vec<Value> {
    let entry = global.entry(kind).or_insert_with(|| json!([]));
    if !entry.is_array() {
        *entry = json!([]);
    }
    entry.as_array_mut().expect("made an array above")
}

fn position(rules: &[Value], rule_id: &str) -> Option<usize> {
    rules.iter().position(|r| r["rule_id"] == rule_id)
}

pub(super) fn is_server_default(rule_id: &str) -> bool {
    rule_id.starts_with('.')
}

pub(super) fn rule_not_found() -> ApiError {
    ApiError::not_found("The push rule was not found")
}

pub fn check_kind(kind: &str) -> ApiResult<()> {
    if !KINDS.contains(&kind) {
        return Err(ApiError::invalid_param(format!(
            "unknown push rule kind {kind:?}"
        )));
    }
    Ok(())
}

pub fn find_rule<'a>(
    global: &'a mut Map<String, Value>,
    kind: &str,
    rule_id: &str,
) -> ApiResult<&'a mut Value> {
    let rules = kind_rules(global, kind);
    let i = position(rules, rule_id).ok_or_else(rule_not_found)?;
    Ok(&mut rules[i])
}

/// Adds or replaces a user rule. An update keeps the rule's place and
/// enabled state unless `before`/`after` move it; a new rule without them
/// becomes the most important user rule of its kind.
pub fn upsert_rule(
    global: &mut Map<String, Value>,
    kind: &str,
    mut rule: Value,
    before: Option<&str>,
    after: Option<&str>,
) -> ApiResult<()> {
    let rule_id = rule["rule_id"].as_str().unwrap_or_default().to_owned();
    let rules = kind_rules(global, kind);
    let existing = position(rules, &rule_id);
    if let Some(i) = existing {
        rule["enabled"] = rules[i]["enabled"].clone();
    }
    // `before` wins when both are given, as the spec says.
    let anchor = before.map(|a| (a, 0)).or(after.map(|a| (a, 1)));
    let Some((anchor_id, offset)) = anchor else {
        match existing {
            Some(i) => rules[i] = rule,
            None => {
                let top = rules.iter().take_while(|r| r["rule_id"] == MASTER).count();
                rules.insert(top, rule);
            }
        }
        return Ok(());
    };
    if is_server_default(anchor_id) || anchor_id == rule_id || position(rules, anchor_id).is_none()
    {
        return Err(ApiError::new(
            ErrCode::Unknown,
            format!("before/after rule not found among user rules of this kind: {anchor_id}"),
        ));
    }
    if let Some(i) = existing {
        rules.remove(i);
    }
    let j = position(rules, anchor_id).expect("checked above");
    rules.insert(j + offset, rule);
    Ok(())
}

pub fn delete(global: &mut Map<String, Value>, kind: &str, rule_id: &str) -> ApiResult<()> {
    let rules = kind_rules(global, kind);
    let i = position(rules, rule_id).ok_or_else(rule_not_found)?;
    if is_server_default(rule_id) {
        return Err(ApiError::invalid_param(
            "Server-default push rules cannot be deleted; disable them instead",
        ));
    }
    rules.remove(i);
    Ok(())
}

#[derive(Deserialize)]
pub struct RuleBody {
    pub(super) actions: Vec<Value>,
    pub(super) conditions: Option<Vec<Value>>,
    pub(super) pattern: Option<String>,
}

pub fn check_actions(actions: &[Value]) -> ApiResult<()> {
    for action in actions {
        let ok = match action {
            // `dont_notify` and `coalesce` are historical but still sent.
            Value::String(s) => matches!(s.as_str(), "notify" | "dont_notify" | "coalesce"),
            Value::Object(map) => map.get("set_tweak").is_some_and(Value::is_string),
            _ => false,
        };
        if !ok {
            return Err(ApiError::invalid_param(format!(
                "unrecognised push rule action {action}"
            )));
        }
    }
    Ok(())
}

/// Validates a client's rule and gives it the shape its kind has.
pub fn build_rule(kind: &str, rule_id: &str, body: RuleBody) -> ApiResult<Value> {
    if rule_id.is_empty() || rule_id.len() > 255 {
        return Err(ApiError::invalid_param("rule_id must be 1-255 bytes"));
    }
    if is_server_default(rule_id) {
        return Err(ApiError::invalid_param(
            "rule_ids starting with '.' are reserved for server-default rules",
        ));
    }
    if rule_id.contains(['/', '\\']) {
        return Err(ApiError::invalid_param(
            "rule_id may not contain slashes or backslashes",
        ));
    }
    check_actions(&body.actions)?;
    let mut rule = json!({
        "rule_id": rule_id,
        "default": false,
        "enabled": true,
        "actions": body.actions,
    });
    match kind {
        "override" | "underride" => {
            let conditions = body.conditions.unwrap_or_default();
            if !conditions
                .iter()
                .all(|c| c.get("kind").is_some_and(Value::is_string))
            {
                return Err(ApiError::invalid_param(
                    "every condition must be an object with a string kind",
                ));
            }
            rule["conditions"] = json!(conditions);
        }
        "content" => {
            let pattern = body
                .pattern
                .ok_or_else(|| ApiError::missing_param("content rules need a pattern"))?;
            rule["pattern"] = json!(pattern);
        }
        "room" if !crate::ids::is_valid_room_id(rule_id) => {
            return Err(ApiError::invalid_param("room rules are named by a room id"));
        }
        "sender" if crate::ids::parse_user_id(rule_id).is_none() => {
            return Err(ApiError::invalid_param(
                "sender rules are named by a user id",
            ));
        }
        _ => {}
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "@alice:example.org";

    fn ids(global: &Map<String, Value>, kind: &str) -> Vec<String> {
        global[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["rule_id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn global_of(set: Value) -> Map<String, Value> {
        match set {
            Value::Object(mut m) => match m.remove("global") {
                Some(Value::Object(g)) => g,
                _ => panic!("no global"),
            },
            _ => panic!("not an object"),
        }
    }

    fn user_rule(kind: &str, id: &str) -> Value {
        let body = RuleBody {
            actions: vec![json!("notify")],
            conditions: Some(vec![]),
            pattern: Some("cake".into()),
        };
        build_rule(kind, id, body).unwrap()
    }

    #[test]
    fn defaults_follow_the_spec() {
        let global = global_of(default_ruleset(USER));
        let expected = [
            (
                "override",
                &[
                    ".m.rule.master",
                    ".m.rule.suppress_notices",
                    ".m.rule.invite_for_me",
                    ".m.rule.member_event",
                    ".m.rule.is_user_mention",
                    ".m.rule.contains_display_name",
                    ".m.rule.is_room_mention",
                    ".m.rule.roomnotif",
                    ".m.rule.tombstone",
                    ".m.rule.reaction",
                    ".m.rule.room.server_acl",
                    ".m.rule.suppress_edits",
                ][..],
            ),
            ("content", &[".m.rule.contains_user_name"][..]),
            ("room", &[][..]),
            ("sender", &[][..]),
            (
                "underride",
                &[
                    ".m.rule.call",
                    ".m.rule.encrypted_room_one_to_one",
                    ".m.rule.room_one_to_one",
                    ".m.rule.message",
                    ".m.rule.encrypted",
                ][..],
            ),
        ];
        for (kind, want) in expected {
            assert_eq!(ids(&global, kind), want, "{kind}");
        }
        let text = Value::Object(global.clone()).to_string();
        assert!(!text.contains("[the "), "placeholder left: {text}");
        assert_eq!(global["override"][0]["enabled"], json!(false));
        assert_eq!(
            global["override"][2]["conditions"][2]["pattern"],
            json!(USER)
        );
        assert_eq!(global["override"][4]["conditions"][0]["value"], json!(USER));
        assert_eq!(global["content"][0]["pattern"], json!("alice"));
        assert!(global
            .values()
            .flat_map(|rules| rules.as_array().unwrap())
            .all(|r| r["default"] == json!(true)));
    }

    #[test]
    fn new_rules_rank_above_defaults_and_below_master() {
        let mut global = global_of(default_ruleset(USER));
        upsert_rule(
            &mut global,
            "override",
            user_rule("override", "a"),
            None,
            None,
        )
        .unwrap();
        upsert_rule(
            &mut global,
            "override",
            user_rule("override", "b"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            ids(&global, "override")[..4],
            [MASTER, "b", "a", ".m.rule.suppress_notices"]
        );
        upsert_rule(
            &mut global,
            "content",
            user_rule("content", "c"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(ids(&global, "content"), ["c", ".m.rule.contains_user_name"]);
    }

    #[test]
    fn before_and_after_order_rules() {
        let mut global = global_of(default_ruleset(USER));
        for id in ["c", "b", "a"] {
            upsert_rule(
                &mut global,
                "underride",
                user_rule("underride", id),
                None,
                None,
            )
            .unwrap();
        }
        assert_eq!(ids(&global, "underride")[..3], ["a", "b", "c"]);
        upsert_rule(
            &mut global,
            "underride",
            user_rule("underride", "n"),
            Some("b"),
            None,
        )
        .unwrap();
        assert_eq!(ids(&global, "underride")[..4], ["a", "n", "b", "c"]);
        // An existing rule moves; `before` wins over `after`.
        upsert_rule(
            &mut global,
            "underride",
            user_rule("underride", "a"),
            Some("c"),
            Some("n"),
        )
        .unwrap();
        assert_eq!(ids(&global, "underride")[..4], ["n", "b", "a", "c"]);
        upsert_rule(
            &mut global,
            "underride",
            user_rule("underride", "n"),
            None,
            Some("c"),
        )
        .unwrap();
        assert_eq!(
            ids(&global, "underride")[..5],
            ["b", "a", "c", "n", ".m.rule.call"]
        );
        for bad in ["missing", ".m.rule.call", "n"] {
            let err = upsert_rule(
                &mut global,
                "underride",
                user_rule("underride", "n"),
                Some(bad),
                None,
            )
            .unwrap_err();
            assert_eq!(err.errcode, "M_UNKNOWN", "{bad}");
        }
    }

    #[test]
    fn updates_keep_place_and_enabled_state() {
        let mut global = global_of(default_ruleset(USER));
        for id in ["b", "a"] {
            upsert_rule(
                &mut global,
                "override",
                user_rule("override", id),
                None,
                None,
            )
            .unwrap();
        }
        find_rule(&mut global, "override", "b").unwrap()["enabled"] = json!(false);
        upsert_rule(
            &mut global,
            "override",
            user_rule("override", "b"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(ids(&global, "override")[..3], [MASTER, "a", "b"]);
        assert_eq!(global["override"][2]["enabled"], json!(false));
    }

    #[test]
    fn defaults_cannot_be_created_or_deleted() {
        let body = || RuleBody {
            actions: vec![],
            conditions: None,
            pattern: None,
        };
        assert!(build_rule("override", ".m.rule.master", body()).is_err());
        assert!(build_rule("override", "a/b", body()).is_err());
        assert!(build_rule("content", "nopattern", body()).is_err());
        assert!(build_rule("room", "notaroom", body()).is_err());
        assert!(build_rule("room", "!r:example.org", body()).is_ok());
        let mut bad = body();
        bad.actions = vec![json!("explode")];
        assert!(build_rule("override", "x", bad).is_err());
        let mut global = global_of(default_ruleset(USER));
        assert_eq!(
            delete(&mut global, "override", ".m.rule.master")
                .unwrap_err()
                .errcode,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            delete(&mut global, "override", "nope").unwrap_err().errcode,
            "M_NOT_FOUND"
        );
    }

    #[test]
    fn stored_sets_gain_new_defaults_and_keep_choices() {
        let mut old = default_ruleset(USER);
        let overrides = old["global"]["override"].as_array_mut().unwrap();
        overrides.retain(|r| r["rule_id"] != ".m.rule.suppress_edits" && r["rule_id"] != MASTER);
        overrides[0]["enabled"] = json!(false);
        overrides[0]["conditions"] = json!([]);
        let global = global_of(with_defaults(Some(old), USER));
        assert_eq!(
            ids(&global, "override"),
            ids(&global_of(default_ruleset(USER)), "override")
        );
        assert_eq!(global["override"][1]["enabled"], json!(false));
        assert_eq!(
            global["override"][1]["conditions"][0]["pattern"],
            json!("m.notice")
        );
        assert_eq!(
            global_of(with_defaults(None, USER)),
            global_of(default_ruleset(USER))
        );
    }
}
