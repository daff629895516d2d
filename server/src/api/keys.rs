//! End-to-end encryption keys: device, one-time and fallback keys, their
//! claims and change feed, and cross-signing.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::cross_signing::{self, SigningKeysUpload};
use crate::service::keys::{self, UploadRequest};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/keys/upload", post(upload))
        .route("/_matrix/client/v3/keys/query", post(query))
        .route("/_matrix/client/v3/keys/claim", post(claim))
        .route("/_matrix/client/v3/keys/changes", get(changes))
        .route(
            "/_matrix/client/v3/keys/device_signing/upload",
            post(device_signing_upload),
        )
        .route(
            "/_matrix/client/v3/keys/signatures/upload",
            post(signatures_upload),
        )
}

/// `POST /_matrix/client/v3/keys/upload`
async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    Body(body): Body<UploadRequest>,
) -> ApiResult<Json<Value>> {
    let counts = keys::upload(&state, &auth, body).await?;
    Ok(Json(json!({ "one_time_key_counts": counts })))
}

#[derive(Deserialize)]
struct QueryBody {
    #[serde(default)]
    device_keys: BTreeMap<String, Vec<String>>,
}

/// `POST /_matrix/client/v3/keys/query`
async fn query(
    State(state): State<AppState>,
    auth: Auth,
    Body(body): Body<QueryBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(keys::query(&state, &auth, &body.device_keys).await?))
}

#[derive(Deserialize)]
struct ClaimBody {
    #[serde(default)]
    one_time_keys: BTreeMap<String, BTreeMap<String, String>>,
}

/// `POST /_matrix/client/v3/keys/claim`
async fn claim(
    State(state): State<AppState>,
    _auth: Auth,
    Body(body): Body<ClaimBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(keys::claim(&state, &body.one_time_keys).await?))
}

#[derive(Deserialize)]
struct ChangesQuery {
    from: String,
    to: String,
}

/// `GET /_matrix/client/v3/keys/changes`
async fn changes(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<ChangesQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        keys::changes(&state, &auth.user_id, &q.from, &q.to).await?,
    ))
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`
async fn device_signing_upload(
    State(state): State<AppState>,
    auth: Auth,
    Body(body): Body<SigningKeysUpload>,
) -> ApiResult<Json<Value>> {
    cross_signing::upload_signing_keys(&state, &auth, body).await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
async fn signatures_upload(
    State(state): State<AppState>,
    auth: Auth,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        cross_signing::upload_signatures(&state, &auth, &body).await?,
    ))
}
