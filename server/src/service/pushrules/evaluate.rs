//! The push-rule evaluator: which of a user's rules an event matches first,
//! and what its actions ask for (spec: "Push Rules", "Conditions",
//! "Actions"). Pure functions over JSON, so the server's notification
//! counts and pushes follow the same rules the spec defines for clients.
//!
//! The server sees encrypted events as `m.room.encrypted` with ciphertext:
//! rules that read a body (`content` rules, `contains_display_name`,
//! `.m.rule.roomnotif`) cannot match them, which is why the spec's
//! `.m.rule.encrypted*` underrides exist. Clients refine this after
//! decrypting; the server's answer is the one the spec asks of it.

use serde_json::Value;

use super::rules::fill_placeholder;

const ORDER: [&str; 5] = ["override", "content", "room", "sender", "underride"];

/// What the evaluator knows about the event and the user it evaluates for.
pub struct PushContext<'a> {
    /// The event in client format (`type`, `content`, `sender`, `room_id`,
    /// `state_key`…), which is what dotted keys address.
    pub event: &'a Value,
    pub user_id: &'a str,
    pub display_name: Option<&'a str>,
    pub member_count: u64,
    /// The sender's power level and the room's `m.room.power_levels`
    /// content, for `sender_notification_permission`.
    pub sender_power: i64,
    pub power_levels: &'a Value,
}

/// The outcome of a matching rule whose actions notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub rule_id: String,
    pub highlight: bool,
    pub sound: Option<String>,
    /// The rule's actions, as `/notifications` reports them.
    pub actions: Vec<Value>,
}

/// The first enabled rule of `global` (a rule set's `global` object) that
/// matches, if its actions notify. `None`: no rule matched, or the first one
/// that did says not to notify (a muted room, the master rule, notices…).
pub fn evaluate(global: &Value, cx: &PushContext<'_>) -> Option<Notify> {
    for kind in ORDER {
        for rule in global
            .get(kind)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if rule.get("enabled").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if !rule_matches(kind, rule, cx) {
                continue;
            }
            let actions = rule
                .get("actions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            return notify(rule, actions);
        }
    }
    None
}

fn notify(rule: &Value, actions: Vec<Value>) -> Option<Notify> {
    // `coalesce` is the legacy spelling of a notification; `dont_notify`
    // is the legacy spelling of no actions.
    let notifies = actions.iter().any(|a| a == "notify" || a == "coalesce");
    if !notifies {
        return None;
    }
    let mut out = Notify {
        rule_id: rule["rule_id"].as_str().unwrap_or_default().to_owned(),
        highlight: false,
        sound: None,
        actions: Vec::new(),
    };
    for action in &actions {
        match action.get("set_tweak").and_then(Value::as_str) {
            // A highlight tweak without a value means true (spec).
            Some("highlight") => {
                out.highlight = action.get("value").and_then(Value::as_bool).unwrap_or(true)
            }
            Some("sound") => out.sound = action["value"].as_str().map(str::to_owned),
            _ => {}
        }
    }
    out.actions = actions;
    Some(out)
}

fn rule_matches(kind: &str, rule: &Value, cx: &PushContext<'_>) -> bool {
    let rule_id = rule["rule_id"].as_str().unwrap_or_default();
    // Only server-default rules (ids starting with `.`, which clients
    // cannot create) hold the spec's placeholders for the user's ids.
    let default_rule = rule_id.starts_with('.');
    match kind {
        "room" => cx.event["room_id"].as_str() == Some(rule_id),
        "sender" => cx.event["sender"].as_str() == Some(rule_id),
        "content" => match (rule["pattern"].as_str(), lookup(cx.event, "content.body")) {
            (Some(pattern), Some(Value::String(body))) => {
                word_match(filled(pattern, default_rule, cx), body)
            }
            _ => false,
        },
        _ => rule
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .all(|c| condition(c, cx, default_rule)),
    }
}

fn filled<'a>(text: &'a str, default_rule: bool, cx: &PushContext<'a>) -> &'a str {
    if default_rule {
        fill_placeholder(text, cx.user_id)
    } else {
        text
    }
}

fn condition(c: &Value, cx: &PushContext<'_>, default_rule: bool) -> bool {
    let key = c["key"].as_str();
    let value_is = |v: &Value| match c["value"].as_str() {
        Some(want) => v.as_str() == Some(filled(want, default_rule, cx)),
        None => scalar_eq(v, &c["value"]),
    };
    match c["kind"].as_str() {
        Some("event_match") => {
            let (Some(key), Some(pattern)) = (key, c["pattern"].as_str()) else {
                return false;
            };
            let pattern = filled(pattern, default_rule, cx);
            // Only strings match; the body is matched by words (spec).
            match lookup(cx.event, key) {
                Some(Value::String(s)) if key == "content.body" => word_match(pattern, s),
                Some(Value::String(s)) => glob(pattern, s),
                _ => false,
            }
        }
        Some("event_property_is") => key.and_then(|k| lookup(cx.event, k)).is_some_and(value_is),
        Some("event_property_contains") => key
            .and_then(|k| lookup(cx.event, k))
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(value_is)),
        Some("contains_display_name") => {
            match (cx.display_name, lookup(cx.event, "content.body")) {
                (Some(name), Some(Value::String(body))) if !name.is_empty() => {
                    word_match(&glob_escape(name), body)
                }
                _ => false,
            }
        }
        Some("room_member_count") => c["is"]
            .as_str()
            .is_some_and(|is| member_count_matches(is, cx.member_count)),
        Some("sender_notification_permission") => key.is_some_and(|k| {
            let needed = cx
                .power_levels
                .get("notifications")
                .and_then(|n| n.get(k))
                .and_then(Value::as_i64)
                .unwrap_or(50);
            cx.sender_power >= needed
        }),
        // Unknown conditions never match (spec), so a rule with one is inert.
        _ => false,
    }
}

/// Only strings, integers, booleans and null take part (spec: "value").
fn scalar_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, Value::Null) => a == b,
        (Value::Number(x), Value::Number(y)) => x.as_i64().is_some() && x.as_i64() == y.as_i64(),
        _ => false,
    }
}

/// `key` is dotted, with `\.` for a literal dot and `\\` for a backslash.
fn lookup<'v>(event: &'v Value, key: &str) -> Option<&'v Value> {
    let mut value = event;
    // Every rule of every member is looked up for every event: the usual
    // key, without escapes, is walked without building its parts.
    if !key.contains('\\') {
        for part in key.split('.') {
            value = value.as_object()?.get(part)?;
        }
        return Some(value);
    }
    for part in split_key(key) {
        value = value.as_object()?.get(&part)?;
    }
    Some(value)
}

fn split_key(key: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = key.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some(next @ ('.' | '\\')) => parts.last_mut().unwrap().push(next),
                Some(other) => {
                    let last = parts.last_mut().unwrap();
                    last.push('\\');
                    last.push(other);
                }
                None => parts.last_mut().unwrap().push('\\'),
            },
            '.' => parts.push(String::new()),
            other => parts.last_mut().unwrap().push(other),
        }
    }
    parts
}

fn member_count_matches(is: &str, count: u64) -> bool {
    let (op, number) = match is.find(|c: char| c.is_ascii_digit()) {
        Some(i) => is.split_at(i),
        None => return false,
    };
    let Ok(n) = number.parse::<u64>() else {
        return false;
    };
    match op {
        "" | "==" => count == n,
        "<" => count < n,
        ">" => count > n,
        "<=" => count <= n,
        ">=" => count >= n,
        _ => false,
    }
}

fn glob_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c {
            '*' | '?' | '[' | ']' | '\\' => vec!['\\', c],
            _ => vec![c],
        })
        .collect()
}

/// A case-insensitive glob over the whole value: `*` any run, `?` one
/// character, `\` escapes.
pub fn glob(pattern: &str, value: &str) -> bool {
    // Most patterns are plain ASCII words (`m.room.member`, `invite`), for
    // which the lowercased comparison needs no copies.
    if pattern.is_ascii() && value.is_ascii() && !pattern.contains(['*', '?', '\\']) {
        return pattern.eq_ignore_ascii_case(value);
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let v: Vec<char> = value.to_lowercase().chars().collect();
    glob_at(&p, &v)
}

fn glob_at(p: &[char], v: &[char]) -> bool {
    // Iterative with one backtrack point: linear-ish, no recursion depth a
    // hostile pattern could exhaust.
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, vi));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                vi += 1;
                continue;
            }
            Some('\\') if p.get(pi + 1) == Some(&v[vi]) => {
                pi += 2;
                vi += 1;
                continue;
            }
            Some(c) if *c != '\\' && *c == v[vi] => {
                pi += 1;
                vi += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, sv)) => {
                pi = sp + 1;
                vi = sv + 1;
                star = Some((sp, sv + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The pattern matches a run of whole words of `body`: it starts and ends
/// at word boundaries (spec: "content.body … word boundaries").
fn word_match(pattern: &str, body: &str) -> bool {
    /// Only plaintext rooms have bodies the server can read; past this many
    /// characters a mention is not looked for, which bounds the work a long
    /// body and a pattern full of `*` can cause.
    const MAX_BODY_CHARS: usize = 2000;
    let chars: Vec<char> = body.chars().take(MAX_BODY_CHARS).collect();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let boundary =
        |i: usize| i == 0 || i == chars.len() || !is_word(chars[i - 1]) || !is_word(chars[i]);
    // Without `*` a match has one length, so each start has one end.
    let fixed_len = (!pattern.contains('*')).then(|| {
        let unescaped = pattern.chars().filter(|c| *c != '\\').count();
        unescaped + pattern.matches("\\\\").count()
    });
    (0..chars.len()).filter(|&i| boundary(i)).any(|i| {
        let ends: Vec<usize> = match fixed_len {
            Some(n) if i + n <= chars.len() => vec![i + n],
            Some(_) => vec![],
            None => (i + 1..=chars.len()).collect(),
        };
        ends.into_iter()
            .filter(|&j| boundary(j))
            .any(|j| glob(pattern, &chars[i..j].iter().collect::<String>()))
    })
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
