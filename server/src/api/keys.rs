//! End-to-end encryption keys: device, one-time and fallback keys, their
//! claims and change feed, and cross-signing.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::cross_signing;
use crate::service::keys;
use crate::service::Context;
use cloister_proto::keys::{
    KeysClaimRequest, KeysClaimResponse, KeysQueryRequest, KeysQueryResponse, KeysUploadRequest,
    KeysUploadResponse, SignaturesUploadResponse, SigningKeysUploadRequest,
};
use cloister_proto::sync::DeviceLists;

/// `POST /_matrix/client/v3/keys/upload`
pub(super) async fn upload(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<KeysUploadRequest>,
) -> ApiResult<Json<KeysUploadResponse>> {
    Ok(Json(keys::upload(&state, &auth, body).await?))
}

/// `POST /_matrix/client/v3/keys/query`
pub(super) async fn query(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<KeysQueryRequest>,
) -> ApiResult<Json<KeysQueryResponse>> {
    Ok(Json(keys::query(&state, &auth, &body).await?))
}

/// `POST /_matrix/client/v3/keys/claim`
pub(super) async fn claim(
    State(state): State<Context>,
    _auth: Auth,
    Body(body): Body<KeysClaimRequest>,
) -> ApiResult<Json<KeysClaimResponse>> {
    Ok(Json(keys::claim(&state, &body).await?))
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
) -> ApiResult<Json<DeviceLists>> {
    Ok(Json(
        keys::changes(&state, &auth.user_id, &q.from, &q.to).await?,
    ))
}

/// `POST /_matrix/client/v3/keys/device_signing/upload`
pub(super) async fn device_signing_upload(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<SigningKeysUploadRequest>,
) -> ApiResult<Json<Value>> {
    cross_signing::upload_signing_keys(&state, &auth, body).await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/keys/signatures/upload`
pub(super) async fn signatures_upload(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Json<SignaturesUploadResponse>> {
    Ok(Json(
        cross_signing::upload_signatures(&state, &auth, &body).await?,
    ))
}
