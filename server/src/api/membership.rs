//! Joining, leaving, inviting, kicking, banning and forgetting rooms.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::extract::{Auth, Body};
use crate::service::rooms as room_service;
use crate::service::Context;
use crate::store::rooms;

#[derive(Deserialize)]
pub(super) struct Reason {
    reason: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Target {
    user_id: String,
    reason: Option<String>,
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}` and `POST /_matrix/client/v3/rooms/{roomId}/join`
pub(super) async fn join(
    State(state): State<Context>,
    auth: Auth,
    Path(room): Path<String>,
    Body(body): Body<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let room_id = room_service::resolve(&mut *state.store.read().await?, &room).await?;
    let reason = body.get("reason").and_then(Value::as_str);
    room_service::change_membership(
        &state,
        &room_id,
        &auth.user_id,
        &auth.user_id,
        "join",
        reason,
        None,
    )
    .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
pub(super) async fn invite(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<Value>> {
    room_service::change_membership(
        &state,
        &room_id,
        &auth.user_id,
        &body.user_id,
        "invite",
        body.reason.as_deref(),
        None,
    )
    .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
pub(super) async fn leave(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Reason>,
) -> ApiResult<Json<Value>> {
    room_service::change_membership(
        &state,
        &room_id,
        &auth.user_id,
        &auth.user_id,
        "leave",
        body.reason.as_deref(),
        None,
    )
    .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
pub(super) async fn kick(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<Value>> {
    room_service::change_membership(
        &state,
        &room_id,
        &auth.user_id,
        &body.user_id,
        "leave",
        body.reason.as_deref(),
        None,
    )
    .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
pub(super) async fn ban(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<Value>> {
    room_service::change_membership(
        &state,
        &room_id,
        &auth.user_id,
        &body.user_id,
        "ban",
        body.reason.as_deref(),
        None,
    )
    .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
pub(super) async fn unban(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Target>,
) -> ApiResult<Json<Value>> {
    let mut conn = state.store.read().await?;
    if rooms::membership(&mut conn, &room_id, &body.user_id)
        .await?
        .map(|m| m.membership)
        .as_deref()
        != Some("ban")
    {
        return Err(ApiError::forbidden("That user is not banned"));
    }
    drop(conn);
    room_service::change_membership(
        &state,
        &room_id,
        &auth.user_id,
        &body.user_id,
        "leave",
        body.reason.as_deref(),
        None,
    )
    .await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
pub(super) async fn forget(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut tx = state.store.write().await?;
    match rooms::membership(tx.conn(), &room_id, &auth.user_id)
        .await?
        .map(|m| m.membership)
    {
        None => return Err(ApiError::not_found("You have never been in this room")),
        Some(m) if m == "join" || m == "invite" => {
            return Err(ApiError::new(
                ErrCode::Unknown,
                "Leave the room before forgetting it",
            ));
        }
        Some(_) => rooms::forget(tx.conn(), &room_id, &auth.user_id).await?,
    }
    tx.commit().await?;
    Ok(Json(json!({})))
}
