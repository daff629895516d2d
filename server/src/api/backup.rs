//! Server-side key backup: `/room_keys/version` and `/room_keys/keys`.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::backup;
use crate::service::Context;
use crate::store::backup::{KeyBackupData, Scope};

#[derive(Deserialize)]
pub(super) struct VersionBody {
    algorithm: String,
    auth_data: Value,
    version: Option<String>,
}

/// `POST /_matrix/client/v3/room_keys/version`
pub(super) async fn create_version(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<VersionBody>,
) -> ApiResult<Json<Value>> {
    let version =
        backup::create_version(&state, &auth.user_id, &body.algorithm, &body.auth_data).await?;
    Ok(Json(json!({ "version": version })))
}

/// `GET /_matrix/client/v3/room_keys/version`
pub(super) async fn current_version(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        backup::get_version(&state, &auth.user_id, None).await?,
    ))
}

/// `GET /_matrix/client/v3/room_keys/version/{version}`
pub(super) async fn get_version(
    State(state): State<Context>,
    auth: Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        backup::get_version(&state, &auth.user_id, Some(&version)).await?,
    ))
}

/// `PUT /_matrix/client/v3/room_keys/version/{version}`
pub(super) async fn update_version(
    State(state): State<Context>,
    auth: Auth,
    Path(version): Path<String>,
    Body(body): Body<VersionBody>,
) -> ApiResult<Json<Value>> {
    backup::update_version(
        &state,
        &auth.user_id,
        &version,
        &body.algorithm,
        &body.auth_data,
        body.version.as_deref(),
    )
    .await?;
    Ok(Json(json!({})))
}

/// `DELETE /_matrix/client/v3/room_keys/version/{version}`
pub(super) async fn delete_version(
    State(state): State<Context>,
    auth: Auth,
    Path(version): Path<String>,
) -> ApiResult<Json<Value>> {
    backup::delete_version(&state, &auth.user_id, &version).await?;
    Ok(Json(json!({})))
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
) -> ApiResult<Json<Value>> {
    let uploads = body
        .rooms
        .into_iter()
        .flat_map(|(room_id, room)| flatten_room(room_id, room))
        .collect();
    Ok(Json(
        backup::upload_keys(&state, &auth.user_id, &q.required()?, uploads).await?,
    ))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}`
pub(super) async fn put_room(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<VersionQuery>,
    Body(body): Body<RoomKeys>,
) -> ApiResult<Json<Value>> {
    let uploads = flatten_room(room_id, body);
    Ok(Json(
        backup::upload_keys(&state, &auth.user_id, &q.required()?, uploads).await?,
    ))
}

/// `PUT /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub(super) async fn put_session(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
    Body(key): Body<KeyBackupData>,
) -> ApiResult<Json<Value>> {
    let uploads = vec![(room_id, session_id, key)];
    Ok(Json(
        backup::upload_keys(&state, &auth.user_id, &q.required()?, uploads).await?,
    ))
}

/// `GET /_matrix/client/v3/room_keys/keys`
pub(super) async fn get_all(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let rooms = backup::get_keys(&state, &auth.user_id, &q.required()?, Scope::All).await?;
    Ok(Json(json!({ "rooms": rooms })))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}`
pub(super) async fn get_room(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let mut rooms =
        backup::get_keys(&state, &auth.user_id, &q.required()?, Scope::Room(&room_id)).await?;
    Ok(Json(
        rooms
            .remove(&room_id)
            .unwrap_or_else(|| json!({ "sessions": {} })),
    ))
}

/// `GET /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub(super) async fn get_session(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let scope = Scope::Session(&room_id, &session_id);
    let mut rooms = backup::get_keys(&state, &auth.user_id, &q.required()?, scope).await?;
    rooms
        .get_mut(&room_id)
        .and_then(|room| room["sessions"].get_mut(&session_id))
        .map(|key| Json(key.take()))
        .ok_or_else(|| ApiError::not_found("No backed-up key for that session"))
}

/// `DELETE /_matrix/client/v3/room_keys/keys`
pub(super) async fn delete_all(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        backup::delete_keys(&state, &auth.user_id, &q.required()?, Scope::All).await?,
    ))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}`
pub(super) async fn delete_room(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let scope = Scope::Room(&room_id);
    Ok(Json(
        backup::delete_keys(&state, &auth.user_id, &q.required()?, scope).await?,
    ))
}

/// `DELETE /_matrix/client/v3/room_keys/keys/{roomId}/{sessionId}`
pub(super) async fn delete_session(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, session_id)): Path<(String, String)>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let scope = Scope::Session(&room_id, &session_id);
    Ok(Json(
        backup::delete_keys(&state, &auth.user_id, &q.required()?, scope).await?,
    ))
}
