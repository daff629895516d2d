//! The one error type handlers return: it renders as the Matrix error shape
//! `{"errcode": ..., "error": ...}`, with the HTTP status the spec gives its
//! code (`cloister_proto::ErrCode::status`) unless a site says otherwise.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use cloister_proto::ErrCode;
use serde_json::{json, Map, Value};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub errcode: ErrCode,
    pub message: Cow<'static, str>,
    /// Extra top-level fields (`retry_after_ms`, or a user-interactive auth body).
    pub extra: Map<String, Value>,
    /// A first user-interactive auth challenge: the body is `extra` alone,
    /// since the spec gives a challenge that is not a failure no errcode.
    pub bare: bool,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with the status the spec pairs with `errcode`.
    pub fn new(errcode: ErrCode, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status: StatusCode::from_u16(errcode.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            errcode,
            message: message.into(),
            extra: Map::new(),
            bare: false,
        }
    }

    /// Where the spec pairs the code with another status than its usual one.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    pub fn with_code(mut self, errcode: ErrCode) -> Self {
        self.errcode = errcode;
        self
    }

    pub fn forbidden(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::Forbidden, msg)
    }
    pub fn not_found(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::NotFound, msg)
    }
    pub fn bad_json(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::BadJson, msg)
    }
    pub fn not_json(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::NotJson, msg)
    }
    pub fn invalid_param(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::InvalidParam, msg)
    }
    pub fn missing_param(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::MissingParam, msg)
    }
    pub fn too_large(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::TooLarge, msg)
    }
    pub fn missing_token() -> Self {
        Self::new(ErrCode::MissingToken, "Missing access token")
    }
    pub fn unknown_token() -> Self {
        Self::new(ErrCode::UnknownToken, "Unrecognised access token")
            .with("soft_logout", Value::Bool(false))
    }
    /// A token its identity provider logged out: the client signs in again
    /// on the same device and keeps its encryption keys.
    pub fn soft_logged_out() -> Self {
        Self::new(
            ErrCode::UnknownToken,
            "Signed out by the identity provider; sign in again",
        )
        .with("soft_logout", Value::Bool(true))
    }
    pub fn unrecognized(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrCode::Unrecognized, msg)
    }
    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self::new(ErrCode::LimitExceeded, "Too many requests")
            .with("retry_after_ms", json!(retry_after_ms))
    }
    pub fn internal() -> Self {
        Self::new(ErrCode::Unknown, "Internal server error")
            .with_status(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Since Matrix 1.10 (MSC4041) a 429 also says when to retry in the
        // standard header, which HTTP libraries honour on their own; it
        // counts whole seconds, so it rounds up.
        let retry_after = (self.status == StatusCode::TOO_MANY_REQUESTS)
            .then(|| self.extra.get("retry_after_ms").and_then(Value::as_u64))
            .flatten()
            .map(|ms| axum::http::HeaderValue::from(ms.div_ceil(1000)));
        let mut body = self.extra;
        if !self.bare {
            body.insert("errcode".into(), json!(self.errcode));
            body.insert("error".into(), Value::String(self.message.into_owned()));
        }
        let mut response = (self.status, axum::Json(Value::Object(body))).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds);
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        // Backstop for input PostgreSQL cannot store (22021: a NUL byte in
        // text); the request edges refuse it first.
        if let sqlx::Error::Database(db) = &err {
            if db.code().as_deref() == Some("22021") {
                return ApiError::invalid_param(
                    "request contains characters that cannot be stored",
                );
            }
        }
        // Database errors never carry request secrets, but may name rows; the
        // client gets a generic answer and the log gets the detail.
        tracing::error!(error = %err, "database error");
        ApiError::internal()
    }
}

/// A write refused because the writer's queue was past its bound: the
/// client retries after about the bound, which sends nothing twice (a send
/// carries its transaction id).
impl From<crate::store::WriteError> for ApiError {
    fn from(err: crate::store::WriteError) -> Self {
        match err {
            crate::store::WriteError::Busy(busy) => ApiError {
                message: "The server is busy writing earlier messages; try again shortly".into(),
                ..ApiError::limit_exceeded(
                    u64::try_from(busy.retry_after.as_millis()).unwrap_or(u64::MAX),
                )
            },
            crate::store::WriteError::Db(err) => err.into(),
        }
    }
}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> Self {
        tracing::error!(error = %err, "I/O error");
        ApiError::internal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_carries_retry_after_in_the_body_and_in_whole_seconds_in_the_header() {
        let response = ApiError::limit_exceeded(1_200).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "2");
        let response = ApiError::forbidden("no").into_response();
        assert!(response.headers().get("retry-after").is_none());
    }
}
