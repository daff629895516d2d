//! The HTTP side: JSON requests to the homeserver with the access token,
//! Matrix error bodies turned into [`ClientError::Server`], and `429`
//! answers retried after the delay the server asks for.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use thiserror::Error;

use crate::crypto::{AttachmentError, CryptoError};
use crate::store::StoreError;

/// How long an ordinary request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_RATE_LIMIT_RETRIES: u32 = 5;

/// Everything that can go wrong in the client. Messages carry no secrets.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The homeserver answered with an error.
    #[error("the homeserver refused {method} {path}: HTTP {status} {errcode}: {error}")]
    Server {
        method: String,
        path: String,
        status: u16,
        errcode: String,
        error: String,
    },
    /// The homeserver could not be reached, or the connection failed.
    #[error("network error on {path}: {reason}")]
    Network { path: String, reason: String },
    /// The homeserver's answer was not what the API promises.
    #[error("unexpected answer to {path}: {reason}")]
    InvalidResponse { path: String, reason: String },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    /// The store already holds a session (log out first, or restore it).
    #[error("the store already holds a session for {0}")]
    AlreadyLoggedIn(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The event has expired under its room's retention policy: this client
    /// no longer shows it.
    #[error("event {event_id} in {room_id} has expired under the room's retention policy")]
    Expired { room_id: String, event_id: String },
}

impl ClientError {
    /// The Matrix `errcode`, when the server sent one.
    pub fn errcode(&self) -> Option<&str> {
        match self {
            ClientError::Server { errcode, .. } => Some(errcode),
            _ => None,
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
    pub fn new(base_url: &str, access_token: Option<String>) -> Result<Self> {
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

    pub fn with_token(&self, token: String) -> Self {
        Self {
            access_token: Some(token),
            ..self.clone()
        }
    }

    pub fn base_url(&self) -> &str {
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
    pub async fn json(
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

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(Method::GET, path, None, REQUEST_TIMEOUT).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(Method::POST, path, Some(body), REQUEST_TIMEOUT)
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(Method::PUT, path, Some(body), REQUEST_TIMEOUT)
            .await
    }

    /// Upload raw bytes (`POST`), returning the JSON answer.
    pub async fn upload(&self, path: &str, content_type: &str, bytes: Vec<u8>) -> Result<Value> {
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
    pub async fn download(&self, path: &str) -> Result<Vec<u8>> {
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

    /// Send, retrying `429 M_LIMIT_EXCEEDED` after the server's delay; turn
    /// other error statuses into [`ClientError::Server`].
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
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < MAX_RATE_LIMIT_RETRIES {
                attempt += 1;
                let delay = body
                    .get("retry_after_ms")
                    .and_then(Value::as_u64)
                    .unwrap_or(1000)
                    .min(30_000);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                continue;
            }
            let text = |field: &str| {
                body.get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            return Err(ClientError::Server {
                method: method.to_string(),
                path: strip_query(path),
                status: status.as_u16(),
                errcode: text("errcode"),
                error: text("error"),
            });
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
