//! The HTTP side: JSON requests to the homeserver with the access token,
//! Matrix error bodies (parsed as [`cloister_proto::MatrixError`]) turned
//! into [`ClientError::Server`], and `429` answers retried after the delay
//! the server asks for when it is short.

use std::time::Duration;

use cloister_proto::{ErrCode, MatrixError};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use thiserror::Error;

use crate::crypto::{AttachmentError, CryptoError};
use crate::store::StoreError;

/// How long an ordinary request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_RATE_LIMIT_RETRIES: u32 = 5;
/// Longest delay a `429` is waited out inside a call; a server asking for
/// more gets its error handed to the caller, with `retry_after_ms`, to
/// schedule the retry itself.
const MAX_RATE_LIMIT_WAIT_MS: u64 = 30_000;
/// The wait when a `429` names no delay.
const DEFAULT_RATE_LIMIT_WAIT_MS: u64 = 1_000;

/// Everything that can go wrong in the client. Messages carry no secrets.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The homeserver answered with an error: its HTTP status and the
    /// fields of its Matrix error body ([`cloister_proto::MatrixError`]).
    /// [`ClientError::code`] gives the `errcode` as an [`ErrCode`].
    #[error("the homeserver refused {method} {path}: HTTP {status} {errcode}: {error}")]
    Server {
        /// The request's HTTP method.
        method: String,
        /// The request's path, without its query string.
        path: String,
        /// The HTTP status of the answer.
        status: u16,
        /// The Matrix `errcode` (`M_FORBIDDEN`…); empty when the body was
        /// not a Matrix error.
        errcode: String,
        /// The server's human-readable `error` text (may be empty).
        error: String,
        /// `retry_after_ms` of an `M_LIMIT_EXCEEDED`: how long the server
        /// asks the client to wait before trying again.
        retry_after_ms: Option<u64>,
        /// `soft_logout` of an `M_UNKNOWN_TOKEN` (false when absent): true
        /// means the server would let the device sign in again keeping its
        /// keys. This SDK cannot resume a device yet, so either way the app
        /// logs out and in again.
        soft_logout: bool,
    },
    /// The homeserver could not be reached, or the connection failed.
    #[error("network error on {path}: {reason}")]
    Network {
        /// The request's path, without its query string.
        path: String,
        /// What failed (connection refused, timeout, TLS…).
        reason: String,
    },
    /// The homeserver's answer was not what the API promises.
    #[error("unexpected answer to {path}: {reason}")]
    InvalidResponse {
        /// The request's path, without its query string.
        path: String,
        /// What was wrong with the answer.
        reason: String,
    },
    /// The crypto core failed (encrypting, decrypting, a bad signature…).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An attachment could not be encrypted or decrypted (or failed its
    /// hash check).
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    /// The store already holds a session (log out first, or restore it).
    #[error("the store already holds a session for {0}")]
    AlreadyLoggedIn(String),
    /// The call cannot be made with these arguments (not an encrypted room,
    /// not an `mxc://` URI, an event in none of the account's rooms…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The event has expired under its room's retention policy: this client
    /// no longer shows it.
    #[error("event {event_id} in {room_id} has expired under the room's retention policy")]
    Expired {
        /// The event's room.
        room_id: String,
        /// The expired event.
        event_id: String,
    },
}

impl ClientError {
    /// The Matrix `errcode`, when the server sent one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Server { errcode, .. } => Some(errcode),
            _ => None,
        }
    }

    /// The server's `errcode` as an [`ErrCode`]; `None` for other errors
    /// and for codes `cloister-proto` does not know. Match on it rather
    /// than on the HTTP status: `M_UNKNOWN_TOKEN` (the session was revoked
    /// or expired: sign in again) and `M_FORBIDDEN` both come with 401/403.
    pub fn code(&self) -> Option<ErrCode> {
        self.errcode().and_then(ErrCode::parse)
    }

    /// How long the server asked to wait before retrying
    /// (`M_LIMIT_EXCEEDED`), in milliseconds.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            ClientError::Server { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }

    /// The error of a refused request, from its HTTP status and body. A
    /// body that is not a Matrix error leaves `errcode` and `error` empty.
    pub(crate) fn from_response(method: &Method, path: &str, status: u16, body: &[u8]) -> Self {
        let parsed = serde_json::from_slice::<MatrixError>(body).ok();
        let MatrixError {
            errcode,
            error,
            retry_after_ms,
            soft_logout,
        } = parsed.unwrap_or(MatrixError {
            errcode: String::new(),
            error: String::new(),
            retry_after_ms: None,
            soft_logout: None,
        });
        ClientError::Server {
            method: method.to_string(),
            path: strip_query(path),
            status,
            errcode,
            error,
            retry_after_ms,
            soft_logout: soft_logout.unwrap_or(false),
        }
    }
}

pub(crate) type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A homeserver connection: base URL, token and HTTP client.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base_url: String,
    access_token: Option<String>,
}

impl Http {
    pub(super) fn new(base_url: &str, access_token: Option<String>) -> Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("cloister-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Network {
                path: String::new(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            access_token,
        })
    }

    pub(super) fn with_token(&self, token: String) -> Self {
        Self {
            access_token: Some(token),
            ..self.clone()
        }
    }

    pub(super) fn base_url(&self) -> &str {
        &self.base_url
    }

    fn builder(&self, method: &Method, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut builder = self
            .client
            .request(method.clone(), format!("{}{path}", self.base_url))
            .timeout(timeout);
        if let Some(token) = &self.access_token {
            builder = builder.bearer_auth(token);
        }
        builder
    }

    /// Send a JSON request (`body` for POST/PUT) and return the JSON answer.
    pub(super) async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value> {
        let response = self
            .send(
                || {
                    let builder = self.builder(&method, path, timeout);
                    match body {
                        Some(body) => builder.json(body),
                        None => builder,
                    }
                },
                &method,
                path,
            )
            .await?;
        let bytes = response.bytes().await.map_err(|e| network(path, e))?;
        if bytes.is_empty() {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::InvalidResponse {
            path: strip_query(path),
            reason: format!("not JSON: {e}"),
        })
    }

    pub(super) async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, None, REQUEST_TIMEOUT).await
    }

    pub(super) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(Method::POST, path, Some(body), REQUEST_TIMEOUT)
            .await
    }

    pub(super) async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(Method::PUT, path, Some(body), REQUEST_TIMEOUT)
            .await
    }

    /// Upload raw bytes (`POST`), returning the JSON answer.
    pub(super) async fn upload(
        &self,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Value> {
        let method = Method::POST;
        let response = self
            .send(
                || {
                    self.builder(&method, path, REQUEST_TIMEOUT)
                        .header(reqwest::header::CONTENT_TYPE, content_type)
                        .body(bytes.clone())
                },
                &method,
                path,
            )
            .await?;
        response
            .json()
            .await
            .map_err(|e| ClientError::InvalidResponse {
                path: strip_query(path),
                reason: e.to_string(),
            })
    }

    /// Download raw bytes (`GET`).
    pub(super) async fn download(&self, path: &str) -> Result<Vec<u8>> {
        let method = Method::GET;
        let response = self
            .send(
                || self.builder(&method, path, REQUEST_TIMEOUT),
                &method,
                path,
            )
            .await?;
        let bytes = response.bytes().await.map_err(|e| network(path, e))?;
        Ok(bytes.to_vec())
    }

    /// Send, retrying a `429` after the server's delay when that is at most
    /// 30 s (up to 5 times); turn other error statuses, and longer rate
    /// limits, into [`ClientError::Server`].
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        method: &Method,
        path: &str,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0;
        loop {
            let response = build().send().await.map_err(|e| network(path, e))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body = response.bytes().await.unwrap_or_default();
            let error = ClientError::from_response(method, path, status.as_u16(), &body);
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < MAX_RATE_LIMIT_RETRIES {
                let delay = error.retry_after_ms().unwrap_or(DEFAULT_RATE_LIMIT_WAIT_MS);
                if delay <= MAX_RATE_LIMIT_WAIT_MS {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    continue;
                }
            }
            return Err(error);
        }
    }
}

/// Paths in errors without their query string (which may hold a token).
fn strip_query(path: &str) -> String {
    path.split('?').next().unwrap_or(path).to_owned()
}

fn network(path: &str, error: reqwest::Error) -> ClientError {
    // reqwest's message can include the URL, whose query may carry a sync
    // token; report the kind of failure without it.
    ClientError::Network {
        path: strip_query(path),
        reason: error_chain(&error.without_url()),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Percent-encode one path segment.
pub(crate) fn encode(segment: &str) -> String {
    crate::crypto::percent_encode(segment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_parsed_with_their_extras() {
        let error = ClientError::from_response(
            &Method::GET,
            "/_matrix/client/v3/sync?since=secret",
            429,
            br#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2500}"#,
        );
        assert_eq!(error.code(), Some(ErrCode::LimitExceeded));
        assert_eq!(error.errcode(), Some("M_LIMIT_EXCEEDED"));
        assert_eq!(error.retry_after_ms(), Some(2500));
        let text = error.to_string();
        assert!(text.contains("HTTP 429 M_LIMIT_EXCEEDED"), "{text}");
        assert!(
            !text.contains("secret"),
            "the query is not reported: {text}"
        );

        let error = ClientError::from_response(
            &Method::POST,
            "/_matrix/client/v3/keys/query",
            401,
            br#"{"errcode":"M_UNKNOWN_TOKEN","error":"Unrecognised access token","soft_logout":true}"#,
        );
        assert_eq!(error.code(), Some(ErrCode::UnknownToken));
        assert!(matches!(
            error,
            ClientError::Server {
                status: 401,
                soft_logout: true,
                retry_after_ms: None,
                ..
            }
        ));
    }

    #[test]
    fn other_bodies_leave_the_code_empty() {
        for body in [
            &b""[..],
            b"<html>bad gateway</html>",
            br#"{"error":"no code"}"#,
        ] {
            let error = ClientError::from_response(&Method::GET, "/x", 502, body);
            assert_eq!(error.errcode(), Some(""));
            assert_eq!(error.code(), None);
            assert!(matches!(
                error,
                ClientError::Server {
                    status: 502,
                    soft_logout: false,
                    retry_after_ms: None,
                    ..
                }
            ));
        }
        let unknown =
            ClientError::from_response(&Method::GET, "/x", 400, br#"{"errcode":"ORG_X"}"#);
        assert_eq!((unknown.errcode(), unknown.code()), (Some("ORG_X"), None));
        assert_eq!(ClientError::InvalidArgument("x".into()).code(), None);
    }
}
