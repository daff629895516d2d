//! Server-side key backup: `/room_keys/version` and `/room_keys/keys`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EmptyResponse;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::backup::{self, KeyBackupData, KeysState, RoomKeyBackup, Scope, VersionInfo};
use crate::service::Context;

#[derive(Deserialize)]
pub(super) struct VersionBody {
    algorithm: String,
    auth_data: Value,
    version: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CreateVersionResponse {
    version: String,
}

/// `POST /_matrix/client/v3/room_keys/version`
pub(super) async fn create_version(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<VersionBody>,
) -> ApiResult<Json<CreateVersionResponse>> {
    let version =
        backup::create_version(&state, &auth.user_id, &body.algorithm, &body.auth_data).await?;
    Ok(Json(CreateVersionResponse { version }))
}

/// Numbers travel as strings (`version`, `etag`), as the spec has them.
#[derive(Serialize)]
pub(super) struct VersionResponse {
    algorithm: String,
    auth_data: Value,
    version: String,
    count: i64,
    etag: String,
}

impl From<VersionInfo> for VersionResponse {
    fn from(info: VersionInfo) -> Self {
        VersionResponse {
            algorithm: info.version.algorithm,
            auth_data: info.version.auth_data,
            version: info.version.version.to_string(),
            count: info.count,
            etag: info.version.etag.to_string(),
        }
    }
}

/// `GET /_matrix/client/v3/room_keys/version`
pub(super) async fn current_version(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<VersionResponse>> {
    let info = backup::get_version(&state, &auth.user_id, None).await?;
    Ok(Json(info.into()))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
pub(super) async fn get_version(
    State(state): State<Context>,
    auth: Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<VersionResponse>> {
    let info = backup::get_version(&state, &auth.user_id, Some(&version)).await?;
    Ok(Json(info.into()))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
pub(super) async fn update_version(
    State(state): State<Context>,
    auth: Auth,
    Path(version): Path<String>,
    Body(body): Body<VersionBody>,
) -> ApiResult<Json<EmptyResponse>> {
    backup::update_version(
        &state,
        &auth.user_id,
        &version,
        &body.algorithm,
        &body.auth_data,
        body.version.as_deref(),
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
pub(super) async fn delete_version(
    State(state): State<Context>,
    auth: Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<EmptyResponse>> {
    backup::delete_version(&state, &auth.user_id, &version).await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Deserialize)]
pub(super) struct VersionQuery {
    version: Option<String>,
}

impl VersionQuery {
    fn required(self) -> ApiResult<String> {
        self.version
            .ok_or_else(|| ApiError::missing_param("the version query parameter is required"))
    }
}

#[derive(Deserialize)]
pub(super) struct RoomKeys {
    sessions: BTreeMap<String, KeyBackupData>,
}

#[derive(Deserialize)]
pub(super) struct AllKeys {
    rooms: BTreeMap<String, RoomKeys>,
}

/// The spec's `RoomKeysUpdateResponse`.
#[derive(Serialize)]
pub(super) struct RoomKeysUpdateResponse {
    count: i64,
    etag: String,
}

impl From<KeysState> for RoomKeysUpdateResponse {
    fn from(state: KeysState) -> Self {
        RoomKeysUpdateResponse {
            count: state.count,
            etag: state.etag.to_string(),
        }
    }
}

#[derive(Serialize)]
pub(super) struct RoomKeysResponse {
    rooms: BTreeMap<String, RoomKeyBackup>,
}

fn flatten_room(room_id: String, room: RoomKeys) -> Vec<(String, String, KeyBackupData)> {
    room.sessions
        .into_iter()
        .map(|(session_id, key)| (room_id.clone(), session_id, key))
        .collect()
}

/// `PUT /_matrix/client/v3/room_keys/keys`
pub(super) async fn put_all(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<VersionQuery>,
    Body(body): Body<AllKeys>,
) -> ApiResult<Json<RoomKeysUpdateResponse>> {
    let uploads = body
        .rooms
        .into_iter()
        .flat_map(|(room_id, room)| flatten_room(room_id, room))
        .collect();
    let keys = backup::upload_keys(&state, &auth.user_id, &q.required()?, uploads).await?;
    Ok(Json(keys.into()))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
pub(super) async fn put_room(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<VersionQuery>,
    Body(body): Body<RoomKeys>,
) -> ApiResult<Json<RoomKeysUpdateResponse>> {
    let uploads = flatten_room(room_id, body);
    let keys = backup::upload_keys(&state, &auth.user_id, &q.required()?, uploads).await?;
    Ok(Json(keys.into()))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub(super) async fn put_session(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
    Body(key): Body<KeyBackupData>,
) -> ApiResult<Json<RoomKeysUpdateResponse>> {
    let uploads = vec![(room_id, session_id, key)];
    let keys = backup::upload_keys(&state, &auth.user_id, &q.required()?, uploads).await?;
    Ok(Json(keys.into()))
}

/// `GET /_matrix/client/v3/room_keys/keys`
pub(super) async fn get_all(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<RoomKeysResponse>> {
    let rooms = backup::get_keys(&state, &auth.user_id, &q.required()?, Scope::All).await?;
    Ok(Json(RoomKeysResponse { rooms }))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`
pub(super) async fn get_room(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<RoomKeyBackup>> {
    let mut rooms =
        backup::get_keys(&state, &auth.user_id, &q.required()?, Scope::Room(&room_id)).await?;
    Ok(Json(rooms.remove(&room_id).unwrap_or_default()))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub(super) async fn get_session(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<KeyBackupData>> {
    let scope = Scope::Session(&room_id, &session_id);
    let mut rooms = backup::get_keys(&state, &auth.user_id, &q.required()?, scope).await?;
    rooms
        .get_mut(&room_id)
        .and_then(|room| room.sessions.remove(&session_id))
        .map(Json)
        .ok_or_else(|| ApiError::not_found("No backed-up key for that session"))
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
pub(super) async fn delete_all(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<RoomKeysUpdateResponse>> {
    let keys = backup::delete_keys(&state, &auth.user_id, &q.required()?, Scope::All).await?;
    Ok(Json(keys.into()))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
pub(super) async fn delete_room(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<RoomKeysUpdateResponse>> {
    let scope = Scope::Room(&room_id);
    let keys = backup::delete_keys(&state, &auth.user_id, &q.required()?, scope).await?;
    Ok(Json(keys.into()))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub(super) async fn delete_session(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<RoomKeysUpdateResponse>> {
    let scope = Scope::Session(&room_id, &session_id);
    let keys = backup::delete_keys(&state, &auth.user_id, &q.required()?, scope).await?;
    Ok(Json(keys.into()))
}
