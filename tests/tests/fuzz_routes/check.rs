//! What an answer must look like, and reporting helpers.

use serde_json::Value;

/// The machine-facing OAuth 2.0 endpoints answer in RFC 6749's error
/// shape (`error` a code, `error_description` a sentence), which OAuth
/// libraries parse, not in Matrix's.
const OAUTH_SHAPED: &[&str] = &[
    "/_cloister/oauth2/register",
    "/_cloister/oauth2/token",
    "/_cloister/oauth2/revoke",
    "/_cloister/oauth2/device",
];

/// Why an answer to `route` (its path template) breaks the contract, if
/// it does.
pub(crate) fn violation(
    route: Option<&str>,
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Option<String> {
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
    if route.is_some_and(|r| OAUTH_SHAPED.contains(&r)) {
        let described = map.get("error_description").is_none_or(Value::is_string);
        return (!(map.get("error").is_some_and(Value::is_string) && described))
            .then(|| format!("{status} answer lacks RFC 6749's string error/error_description"));
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
pub(crate) fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
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

pub(crate) fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
    format!("{text:?}")
}
