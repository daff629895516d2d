//! The OAuth 2.0 API (see `service::oauth`): discovery, client registration,
//! the token and revocation endpoints (machine-facing, answering in the
//! OAuth error shape of RFC 6749 rather than Matrix's), and the pages the
//! person sees (`pages`).

mod i18n;
pub mod pages;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cloister_proto::oauth::{ClientMetadata, OAuthError};

use crate::error::ApiError;
use crate::service::oauth::{self, clients, tokens, OAuthFailure};
use crate::service::Context;

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = OAuthError {
            error: self.error.to_owned(),
            error_description: Some(self.description),
        };
        (status, Json(body)).into_response()
    }
}

/// The OAuth API answers 404 (in the Matrix shape, as any unknown path)
/// when the operator switched it off.
fn check_enabled(state: &Context) -> Result<(), ApiError> {
    if oauth::enabled(state) {
        Ok(())
    } else {
        Err(ApiError::unrecognized(
            "The OAuth 2.0 API is switched off on this server; use /login",
        ))
    }
}

/// `GET /_matrix/client/v1/auth_metadata` (also at the unstable
/// `/_matrix/client/unstable/org.matrix.msc2965/auth_metadata`)
pub(super) async fn auth_metadata(State(state): State<Context>) -> Response {
    if let Err(e) = check_enabled(&state) {
        return e.into_response();
    }
    Json(oauth::metadata(&state)).into_response()
}

/// `GET /_matrix/client/unstable/org.matrix.msc2965/auth_issuer`: the older
/// discovery, for clients that have not moved on to `auth_metadata`.
pub(super) async fn auth_issuer(State(state): State<Context>) -> Response {
    if let Err(e) = check_enabled(&state) {
        return e.into_response();
    }
    Json(serde_json::json!({ "issuer": oauth::metadata(&state).issuer })).into_response()
}

/// `POST /_cloister/oauth2/register` (RFC 7591, MSC2966)
pub(super) async fn register(State(state): State<Context>, body: Bytes) -> Response {
    if let Err(e) = check_enabled(&state) {
        return e.into_response();
    }
    let metadata: ClientMetadata = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return OAuthFailure::new(
                "invalid_client_metadata",
                format!("not a registration: {e}"),
            )
            .into_response()
        }
    };
    match clients::register(&state, metadata).await {
        Ok(registered) => (StatusCode::CREATED, Json(registered)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Why a form endpoint answers before its service is asked.
enum Refusal {
    Off(ApiError),
    Bad(OAuthFailure),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Off(e) => e.into_response(),
            Refusal::Bad(e) => e.into_response(),
        }
    }
}

/// The form body of the token and revocation endpoints, if the API is on
/// and the body is a form.
fn accept<T: serde::de::DeserializeOwned>(
    state: &Context,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Refusal> {
    check_enabled(state).map_err(Refusal::Off)?;
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        let why = "send the parameters as application/x-www-form-urlencoded";
        return Err(Refusal::Bad(OAuthFailure::invalid_request(why)));
    }
    serde_urlencoded::from_bytes(body).map_err(|e| {
        Refusal::Bad(OAuthFailure::invalid_request(format!(
            "malformed form: {e}"
        )))
    })
}

/// `POST /_cloister/oauth2/token` (RFC 6749 section 3.2)
pub(super) async fn token(
    State(state): State<Context>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: tokens::TokenRequest = match accept(&state, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    match tokens::token(&state, request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct DeviceRequest {
    client_id: Option<String>,
    scope: Option<String>,
}

/// `POST /_cloister/oauth2/device` (RFC 8628 section 3.1)
pub(super) async fn device_authorization(
    State(state): State<Context>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: DeviceRequest = match accept(&state, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(client_id) = request.client_id else {
        return OAuthFailure::invalid_request("client_id is required").into_response();
    };
    let scope = request.scope.unwrap_or_default();
    match oauth::device::start(&state, &client_id, &scope).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(serde::Deserialize)]
struct RevokeRequest {
    token: Option<String>,
    client_id: Option<String>,
}

/// `POST /_cloister/oauth2/revoke` (RFC 7009)
pub(super) async fn revoke(
    State(state): State<Context>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: RevokeRequest = match accept(&state, &headers, &body) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let (Some(token), Some(client_id)) = (request.token, request.client_id) else {
        return OAuthFailure::invalid_request("token and client_id are required").into_response();
    };
    match tokens::revoke(&state, &token, &client_id).await {
        Ok(()) => Json(serde_json::json!({})).into_response(),
        Err(e) => e.into_response(),
    }
}
