//! Request extractors that answer in the Matrix error shape: the access-token
//! check (producing a [`Auth`]) and JSON bodies ([`Body`]).

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::service::session::authenticate;
pub use crate::service::session::Auth;
use crate::service::Context;
use cloister_proto::canonical::check_numbers;

/// The access token from `Authorization: Bearer` or the deprecated
/// `access_token` query parameter.
pub fn access_token(parts: &Parts) -> Option<String> {
    if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        return header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(|t| t.trim().to_owned());
    }
    let query = parts.uri.query()?;
    url_query_value(query, "access_token")
}

fn url_query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The outcome of a request's token check, left in the request's
/// extensions by the rate limiter (which must know who is asking before it
/// picks a bucket), so that [`Auth`] does not look the token up again.
/// `None`: a token was sent and is not valid.
#[derive(Clone)]
pub struct CheckedToken(pub Option<Auth>);

impl FromRequestParts<Context> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Context) -> Result<Self, ApiError> {
        if let Some(CheckedToken(checked)) = parts.extensions.get::<CheckedToken>() {
            return checked.clone().ok_or_else(ApiError::unknown_token);
        }
        let token = access_token(parts).ok_or_else(ApiError::missing_token)?;
        authenticate(state, &token)
            .await?
            .ok_or_else(ApiError::unknown_token)
    }
}

/// A JSON request body, size-limited by `limits.max_request_body`. An empty
/// body reads as `{}`, since clients send none for bodiless POSTs.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Context> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Context) -> Result<Self, ApiError> {
        let limit = state.config.limits.max_request_body;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::too_large(format!("request body exceeds {limit} bytes")))?;
        parse_json(&bytes).map(Body)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::not_json(format!("request body is not valid JSON: {e}")))?
    };
    check_numbers(&value).map_err(|e| ApiError::bad_json(e.to_string()))?;
    if contains_nul(&value) {
        return Err(ApiError::invalid_param("strings may not contain U+0000"));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_json(format!("invalid request body: {e}")))
}

/// PostgreSQL text cannot hold U+0000 and Matrix identifiers may not contain
/// it, so it is refused at the edge rather than deep in a query.
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_is_refused_anywhere_in_json() {
        assert_eq!(
            parse_json::<Value>(br#"{"a": ["x\u0000"]}"#)
                .unwrap_err()
                .errcode,
            "M_INVALID_PARAM"
        );
        assert_eq!(
            parse_json::<Value>(br#"{"k\u0000": 1}"#)
                .unwrap_err()
                .errcode,
            "M_INVALID_PARAM"
        );
        assert!(parse_json::<Value>(br#"{"a": "x\u0001"}"#).is_ok());
    }

    #[test]
    fn json_errors_are_distinguished() {
        assert_eq!(parse_json::<Value>(b"{").unwrap_err().errcode, "M_NOT_JSON");
        assert_eq!(
            parse_json::<Value>(b"\xff\xfe").unwrap_err().errcode,
            "M_NOT_JSON"
        );
        assert_eq!(
            parse_json::<Value>(b"{\"a\": 1.5}").unwrap_err().errcode,
            "M_BAD_JSON"
        );
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Needs {
            n: u32,
        }
        assert_eq!(
            parse_json::<Needs>(b"{\"n\": \"x\"}").unwrap_err().errcode,
            "M_BAD_JSON"
        );
        assert!(parse_json::<Value>(b"  ").unwrap().is_object());
    }

    #[test]
    fn query_token_is_decoded() {
        assert_eq!(
            url_query_value("a=1&access_token=ab%2Bc", "access_token").as_deref(),
            Some("ab+c")
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
