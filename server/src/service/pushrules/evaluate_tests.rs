use serde_json::{json, Value};

use super::*;
use crate::service::pushrules::rules::{default_global, default_template};

const ME: &str = "@me:x";

fn encrypted(room: &str) -> Value {
    json!({ "type": "m.room.encrypted", "room_id": room, "sender": "@you:x",
            "content": { "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "…" } })
}

fn cx<'a>(event: &'a Value, members: u64, pl: &'a Value) -> PushContext<'a> {
    PushContext {
        event,
        user_id: ME,
        display_name: Some("Me Myself"),
        member_count: members,
        sender_power: 0,
        power_levels: pl,
    }
}

fn eval(global: &Value, event: &Value, members: u64) -> Option<Notify> {
    evaluate(global, &cx(event, members, &Value::Null))
}

#[test]
fn encrypted_rooms_use_the_encrypted_underrides() {
    let rules = default_global(ME);
    let one_to_one = eval(&rules, &encrypted("!r:x"), 2).unwrap();
    assert_eq!(one_to_one.rule_id, ".m.rule.encrypted_room_one_to_one");
    assert_eq!(one_to_one.sound.as_deref(), Some("default"));
    assert!(!one_to_one.highlight);
    let group = eval(&rules, &encrypted("!r:x"), 5).unwrap();
    assert_eq!(group.rule_id, ".m.rule.encrypted");
    assert_eq!(group.sound, None);
}

#[test]
fn the_master_rule_silences_everything() {
    let mut rules = default_global(ME);
    rules["override"][0]["enabled"] = json!(true);
    assert_eq!(rules["override"][0]["rule_id"], ".m.rule.master");
    assert_eq!(eval(&rules, &encrypted("!r:x"), 2), None);
}

#[test]
fn a_room_rule_without_notify_mutes_the_room_only() {
    let mut rules = default_global(ME);
    rules["room"] = json!([{ "rule_id": "!muted:x", "default": false, "enabled": true, "actions": ["dont_notify"] }]);
    assert_eq!(eval(&rules, &encrypted("!muted:x"), 3), None);
    assert!(eval(&rules, &encrypted("!other:x"), 3).is_some());
    // Element's "mute" is an override on room_id with no actions.
    let mut rules = default_global(ME);
    rules["override"].as_array_mut().unwrap().insert(
        1,
        json!({
        "rule_id": "!muted:x", "default": false, "enabled": true, "actions": [],
        "conditions": [{ "kind": "event_match", "key": "room_id", "pattern": "!muted:x" }] }),
    );
    assert_eq!(eval(&rules, &encrypted("!muted:x"), 3), None);
    assert!(eval(&rules, &encrypted("!other:x"), 3).is_some());
}

#[test]
fn disabled_rules_are_skipped() {
    let mut rules = default_global(ME);
    for rule in rules["underride"].as_array_mut().unwrap() {
        rule["enabled"] = json!(false);
    }
    assert_eq!(eval(&rules, &encrypted("!r:x"), 2), None);
}

#[test]
fn mentions_highlight_and_notices_do_not_notify() {
    let rules = default_global(ME);
    let mention = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x",
        "content": { "body": "hi", "m.mentions": { "user_ids": [ME] } } });
    let n = eval(&rules, &mention, 5).unwrap();
    assert_eq!(n.rule_id, ".m.rule.is_user_mention");
    assert!(n.highlight);
    let notice = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x",
        "content": { "msgtype": "m.notice", "body": "bot" } });
    assert_eq!(eval(&rules, &notice, 5), None);
    let by_name = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x",
        "content": { "body": "ask me myself, please" } });
    assert_eq!(
        eval(&rules, &by_name, 5).unwrap().rule_id,
        ".m.rule.contains_display_name"
    );
    let by_localpart = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x",
        "content": { "body": "ping ME!" } });
    assert_eq!(
        eval(&rules, &by_localpart, 5).unwrap().rule_id,
        ".m.rule.contains_user_name"
    );
    let inside_word = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x",
        "content": { "body": "memory" } });
    assert_eq!(
        eval(&rules, &inside_word, 5).unwrap().rule_id,
        ".m.rule.message"
    );
}

#[test]
fn room_mentions_need_the_senders_permission() {
    let rules = default_global(ME);
    let event = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x",
        "content": { "body": "@room hello", "m.mentions": { "room": true } } });
    let pl = json!({ "notifications": { "room": 50 } });
    let mut c = cx(&event, 5, &pl);
    assert_eq!(evaluate(&rules, &c).unwrap().rule_id, ".m.rule.message");
    c.sender_power = 50;
    assert_eq!(
        evaluate(&rules, &c).unwrap().rule_id,
        ".m.rule.is_room_mention"
    );
}

#[test]
fn invites_for_me_notify_other_membership_does_not() {
    let rules = default_global(ME);
    let invite = json!({ "type": "m.room.member", "room_id": "!r:x", "sender": "@you:x",
        "state_key": ME, "content": { "membership": "invite" } });
    assert_eq!(
        eval(&rules, &invite, 2).unwrap().rule_id,
        ".m.rule.invite_for_me"
    );
    let join = json!({ "type": "m.room.member", "room_id": "!r:x", "sender": "@you:x",
        "state_key": "@you:x", "content": { "membership": "join" } });
    assert_eq!(eval(&rules, &join, 2), None);
}

#[test]
fn sender_rules_and_escaped_keys() {
    let mut rules = default_global(ME);
    rules["sender"] = json!([{ "rule_id": "@you:x", "enabled": true, "actions": [] }]);
    assert_eq!(eval(&rules, &encrypted("!r:x"), 2), None);
    let event = json!({ "a.b": { "c": 1 }, "a": { "b": { "c": 2 } } });
    assert_eq!(lookup(&event, "a\\.b.c"), Some(&json!(1)));
    assert_eq!(lookup(&event, "a.b.c"), Some(&json!(2)));
}

#[test]
fn globs_and_member_counts() {
    assert!(glob("m.room.*", "m.room.message"));
    assert!(glob("M.ROOM.MESSAGE", "m.room.message"));
    assert!(!glob("m.room", "m.room.message"));
    assert!(glob("a?c", "abc"));
    assert!(glob("a\\*c", "a*c"));
    assert!(!glob("a\\*c", "abc"));
    assert!(glob(&"*".repeat(50), &"a".repeat(5000)));
    assert!(!glob(&format!("{}b", "*a".repeat(30)), &"a".repeat(3000)));
    assert!(member_count_matches("2", 2));
    assert!(member_count_matches("==2", 2));
    assert!(member_count_matches("<3", 2));
    assert!(member_count_matches(">=2", 2));
    assert!(!member_count_matches(">2", 2));
    assert!(!member_count_matches("~2", 2));
    assert!(!member_count_matches("", 2));
}

#[test]
fn values_compare_by_type() {
    assert!(scalar_eq(&json!(true), &json!(true)));
    assert!(!scalar_eq(&json!("true"), &json!(true)));
    assert!(scalar_eq(&json!(3), &json!(3)));
    assert!(!scalar_eq(&json!([1]), &json!([1])));
}

#[test]
fn the_shared_defaults_answer_as_the_users_own_copy() {
    let shared = default_template();
    assert!(shared.to_string().contains("[the user's Matrix ID]"));
    let own = default_global(ME);
    let msg = |content: Value| json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x", "content": content });
    let invite = |to: &str| {
        json!({ "type": "m.room.member", "room_id": "!r:x", "sender": "@you:x",
                "state_key": to, "content": { "membership": "invite" } })
    };
    let events = [
        msg(json!({ "body": "hi", "m.mentions": { "user_ids": [ME] } })),
        msg(json!({ "body": "hi", "m.mentions": { "user_ids": ["@other:x"] } })),
        msg(json!({ "body": "ping ME!" })),
        msg(json!({ "body": "memory" })),
        msg(json!({ "msgtype": "m.notice", "body": "bot" })),
        invite(ME),
        invite("@other:x"),
        encrypted("!r:x"),
    ];
    let mut rule_ids = Vec::new();
    for event in &events {
        for members in [2, 5] {
            let from_shared = eval(shared, event, members);
            assert_eq!(from_shared, eval(&own, event, members), "{event}");
            rule_ids.push(from_shared.map(|n| n.rule_id));
        }
    }
    // The placeholders did their work: mentions, name and invite matched.
    for id in [
        ".m.rule.is_user_mention",
        ".m.rule.contains_user_name",
        ".m.rule.invite_for_me",
    ] {
        assert!(
            rule_ids.contains(&Some(id.to_owned())),
            "{id} never matched"
        );
    }
}

#[test]
fn a_users_own_rule_takes_placeholder_text_literally() {
    let mut rules = default_template().clone();
    rules["content"] = json!([{ "rule_id": "mine", "enabled": true,
        "pattern": "[the local part of the user's Matrix ID]",
        "actions": ["notify", { "set_tweak": "highlight" }] }]);
    let event = json!({ "type": "m.room.message", "room_id": "!r:x", "sender": "@you:x",
        "content": { "body": "is me there" } });
    assert_eq!(eval(&rules, &event, 5).unwrap().rule_id, ".m.rule.message");
}

#[test]
fn non_ascii_globs_compare_lowercased() {
    assert!(glob("ÄBC", "äbc"));
    assert!(!glob("ÄBC", "abc"));
    assert!(glob("straSSe*", "STRASSE 1"));
}
