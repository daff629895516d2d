//! Joining, leaving, inviting, kicking, banning and forgetting rooms.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::extract::{Auth, Body};
use crate::service::rooms as room_service;
use crate::state::AppState;
use crate::store::rooms;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/v3/join/{room_id_or_alias}", post(join))
        .route("/_matrix/client/v3/rooms/{room_id}/join", post(join))
        .route("/_matrix/client/v3/rooms/{room_id}/invite", post(invite))
        .route("/_matrix/client/v3/rooms/{room_id}/leave", post(leave))
        .route("/_matrix/client/v3/rooms/{room_id}/forget", post(forget))
        .route("/_matrix/client/v3/rooms/{room_id}/kick", post(kick))
        .route("/_matrix/client/v3/rooms/{room_id}/ban", post(ban))
        .route("/_matrix/client/v3/rooms/{room_id}/unban", post(unban))
}

#[derive(Deserialize)]
struct Reason {
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Target {
    user_id: String,
    reason: Option<String>,
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}` and `POST /_matrix/client/v3/rooms/{roomId}/join`
async fn join(
    State(state): State<AppState>,
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
async fn invite(
    State(state): State<AppState>,
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
async fn leave(
    State(state): State<AppState>,
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
async fn kick(
    State(state): State<AppState>,
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
async fn ban(
    State(state): State<AppState>,
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
async fn unban(
    State(state): State<AppState>,
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
async fn forget(
    State(state): State<AppState>,
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
