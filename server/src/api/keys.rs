//! End-to-end encryption keys: device, one-time and fallback keys, their
//! claims and change feed, and cross-signing.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::cross_signing::{self, SigningKeysUpload};
use crate::service::keys::{self, UploadRequest};
use crate::service::Context;

/// `POST /_matrix/client/v3/keys/upload`
pub(super) async fn upload(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<UploadRequest>,
) -> ApiResult<Json<Value>> {
    let counts = keys::upload(&state, &auth, body).await?;
    Ok(Json(json!({ "one_time_key_counts": counts })))
}

#[derive(Deserialize)]
pub(super) struct QueryBody {
    #[serde(default)]
    device_keys: BTreeMap<String, Vec<String>>,
}

/// `POST /_matrix/client/v3/keys/query`
pub(super) async fn query(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<QueryBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(keys::query(&state, &auth, &body.device_keys).await?))
}

#[derive(Deserialize)]
pub(super) struct ClaimBody {
    #[serde(default)]
    one_time_keys: BTreeMap<String, BTreeMap<String, String>>,
}

/// `POST /_matrix/client/v3/keys/claim`
pub(super) async fn claim(
    State(state): State<Context>,
    _auth: Auth,
    Body(body): Body<ClaimBody>,
) -> ApiResult<Json<Value>> {
    Ok(Json(keys::claim(&state, &body.one_time_keys).await?))
}

#[derive(Deserialize)]
pub(super) struct ChangesQuery {
    from: String,
    to: String,
}

/// `GET /_matrix/client/v3/keys/changes`
pub(super) async fn changes(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<ChangesQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        keys::changes(&state, &auth.user_id, &q.from, &q.to).await?,
    ))
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`
pub(super) async fn device_signing_upload(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<SigningKeysUpload>,
) -> ApiResult<Json<Value>> {
    cross_signing::upload_signing_keys(&state, &auth, body).await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
pub(super) async fn signatures_upload(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        cross_signing::upload_signatures(&state, &auth, &body).await?,
    ))
}
