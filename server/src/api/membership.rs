//! Joining, leaving, inviting, kicking, banning and forgetting rooms.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::EmptyResponse;
use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::{membership, Context};

#[derive(Deserialize)]
pub(super) struct Reason {
    reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Target {
    user_id: String,
    reason: Option<String>,
}

#[derive(Serialize)]
pub(super) struct JoinRoomResponse {
    room_id: String,
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}` and `POST /_matrix/client/v3/rooms/{roomId}/join`
pub(super) async fn join(
    State(state): State<Context>,
    auth: Auth,
    Path(room): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Json<JoinRoomResponse>> {
    let reason = body.get("reason").and_then(Value::as_str);
    let room_id = membership::join(&state, &auth.user_id, &room, reason).await?;
    Ok(Json(JoinRoomResponse { room_id }))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub(super) async fn invite(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<EmptyResponse>> {
    let reason = body.reason.as_deref();
    membership::set(
        &state,
        &auth.user_id,
        &room_id,
        &body.user_id,
        "invite",
        reason,
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
pub(super) async fn leave(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Reason>,
) -> ApiResult<Json<EmptyResponse>> {
    let (user, reason) = (&auth.user_id, body.reason.as_deref());
    membership::set(&state, user, &room_id, user, "leave", reason).await?;
    Ok(Json(EmptyResponse {}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
pub(super) async fn kick(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<EmptyResponse>> {
    let reason = body.reason.as_deref();
    membership::set(
        &state,
        &auth.user_id,
        &room_id,
        &body.user_id,
        "leave",
        reason,
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
pub(super) async fn ban(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<EmptyResponse>> {
    let reason = body.reason.as_deref();
    membership::set(
        &state,
        &auth.user_id,
        &room_id,
        &body.user_id,
        "ban",
        reason,
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
pub(super) async fn unban(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<EmptyResponse>> {
    let reason = body.reason.as_deref();
    membership::unban(&state, &auth.user_id, &room_id, &body.user_id, reason).await?;
    Ok(Json(EmptyResponse {}))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
pub(super) async fn forget(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<EmptyResponse>> {
    membership::forget(&state, &auth.user_id, &room_id).await?;
    Ok(Json(EmptyResponse {}))
}
