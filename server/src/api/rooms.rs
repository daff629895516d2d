//! Room creation, room state, member lists and aliases.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::extract::{Auth, Body};
use crate::ids;
use crate::service::events as event_service;
use crate::service::rooms::{self as room_service, CreateRoom};
use crate::service::visibility;
use crate::service::Context;
use crate::store::events::{self, NewEvent};
use crate::store::rooms;

/// `POST /_matrix/client/v3/createRoom`
pub(super) async fn create_room(
    State(state): State<Context>,
    auth: Auth,
    Body(req): Body<CreateRoom>,
) -> ApiResult<Json<Value>> {
    let room_id = room_service::create_room(&state, &auth.user_id, req).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
pub(super) async fn all_state(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut conn = state.store.read().await?;
    let to = visibility::require(&mut conn, &room_id, &auth.user_id)
        .await?
        .require_state()?;
    let current = events::state_until(&mut conn, &room_id, to).await?;
    let now = state.now_ms();
    Ok(Json(Value::Array(
        current.iter().map(|e| e.to_client(None, now)).collect(),
    )))
}

pub(super) async fn get_state_empty_key(
    state: State<Context>,
    auth: Auth,
    Path((room_id, event_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    get_state(state, auth, Path((room_id, event_type, String::new()))).await
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub(super) async fn get_state(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_type, state_key)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let mut conn = state.store.read().await?;
    let to = visibility::require(&mut conn, &room_id, &auth.user_id)
        .await?
        .require_state()?;
    // Members read the indexed current state; former members, the state at
    // their departure.
    let event = if to == i64::MAX {
        events::state_event(&mut conn, &room_id, &event_type, &state_key).await?
    } else {
        events::state_until(&mut conn, &room_id, to)
            .await?
            .into_iter()
            .find(|e| {
                e.event_type == event_type && e.state_key.as_deref() == Some(state_key.as_str())
            })
    };
    event
        .map(|e| Json(e.content))
        .ok_or_else(|| ApiError::not_found("No such state event"))
}

pub(super) async fn put_state_empty_key(
    state: State<Context>,
    auth: Auth,
    Path((room_id, event_type)): Path<(String, String)>,
    body: Body<Value>,
) -> ApiResult<Json<Value>> {
    put_state(
        state,
        auth,
        Path((room_id, event_type, String::new())),
        body,
    )
    .await
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub(super) async fn put_state(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_type, state_key)): Path<(String, String, String)>,
    Body(content): Body<Value>,
) -> ApiResult<Json<Value>> {
    if !content.is_object() {
        return Err(ApiError::bad_json("event content must be a JSON object"));
    }
    check_type_and_key(&event_type, &state_key)?;
    let event = NewEvent {
        room_id: &room_id,
        sender: &auth.user_id,
        sender_device: Some(&auth.device_id),
        txn_id: None,
        event_type: &event_type,
        state_key: Some(&state_key),
        content: &content,
        redacts: None,
    };
    let stored = event_service::send(&state, event).await?;
    Ok(Json(json!({ "event_id": stored.event_id })))
}

pub fn check_type_and_key(event_type: &str, state_key: &str) -> ApiResult<()> {
    if event_type.is_empty() || event_type.len() > 255 || state_key.len() > 255 {
        return Err(ApiError::invalid_param(
            "event type and state key must be at most 255 bytes",
        ));
    }
    Ok(())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
pub(super) async fn members(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut conn = state.store.read().await?;
    let to = visibility::require(&mut conn, &room_id, &auth.user_id)
        .await?
        .require_state()?;
    let current = events::state_until(&mut conn, &room_id, to).await?;
    let now = state.now_ms();
    let chunk: Vec<Value> = current
        .iter()
        .filter(|e| e.event_type == "m.room.member")
        .map(|e| e.to_client(None, now))
        .collect();
    Ok(Json(json!({ "chunk": chunk })))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
pub(super) async fn joined_members(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut conn = state.store.read().await?;
    if rooms::membership(&mut conn, &room_id, &auth.user_id)
        .await?
        .map(|m| m.membership)
        .as_deref()
        != Some("join")
    {
        return Err(ApiError::forbidden("You are not joined to this room"));
    }
    let mut joined = serde_json::Map::new();
    for user in rooms::joined_members(&mut conn, &room_id).await? {
        let content = events::state_event(&mut conn, &room_id, "m.room.member", &user)
            .await?
            .map(|e| e.content)
            .unwrap_or(Value::Null);
        joined.insert(user, json!({ "display_name": content.get("displayname"), "avatar_url": content.get("avatar_url") }));
    }
    Ok(Json(json!({ "joined": joined })))
}

/// `GET /_matrix/client/v3/joined_rooms`
pub(super) async fn joined_rooms(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    let rooms = rooms::joined_rooms(&mut *state.store.read().await?, &auth.user_id).await?;
    Ok(Json(json!({ "joined_rooms": rooms })))
}

fn check_local_alias(state: &Context, alias: &str) -> ApiResult<()> {
    match ids::parse_room_alias(alias) {
        Some((_, server)) if server == state.server_name() => Ok(()),
        Some(_) => Err(ApiError::not_found(
            "Room alias is on another server; federation is not supported",
        )),
        None => Err(ApiError::invalid_param("Invalid room alias")),
    }
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub(super) async fn put_alias(
    State(state): State<Context>,
    auth: Auth,
    Path(alias): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    check_local_alias(&state, &alias)?;
    let room_id = body
        .get("room_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_json("room_id is required"))?;
    let mut tx = state.store.write().await?;
    if rooms::membership(tx.conn(), room_id, &auth.user_id)
        .await?
        .map(|m| m.membership)
        .as_deref()
        != Some("join")
    {
        return Err(ApiError::forbidden(
            "You must be joined to the room to give it an alias",
        ));
    }
    if !rooms::put_alias(tx.conn(), &alias, room_id, &auth.user_id).await? {
        return Err(ApiError::new(ErrCode::Unknown, "Room alias already exists")
            .with_status(axum::http::StatusCode::CONFLICT));
    }
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub(super) async fn get_alias(
    State(state): State<Context>,
    Path(alias): Path<String>,
) -> ApiResult<Json<Value>> {
    check_local_alias(&state, &alias)?;
    let (room_id, _) = rooms::get_alias(&mut *state.store.read().await?, &alias)
        .await?
        .ok_or_else(|| ApiError::not_found("Room alias not found"))?;
    Ok(Json(
        json!({ "room_id": room_id, "servers": [state.server_name()] }),
    ))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
pub(super) async fn delete_alias(
    State(state): State<Context>,
    auth: Auth,
    Path(alias): Path<String>,
) -> ApiResult<Json<Value>> {
    check_local_alias(&state, &alias)?;
    let mut tx = state.store.write().await?;
    let (room_id, creator) = rooms::get_alias(tx.conn(), &alias)
        .await?
        .ok_or_else(|| ApiError::not_found("Room alias not found"))?;
    if creator != auth.user_id && !auth.is_admin {
        let pl = event_service::auth_state(tx.conn(), &room_id)
            .await?
            .power_levels;
        if event_service::user_level(&pl, &auth.user_id)
            < event_service::event_level(&pl, "m.room.canonical_alias", true)
        {
            return Err(ApiError::forbidden(
                "Only the alias creator or a room moderator may delete it",
            ));
        }
    }
    rooms::delete_alias(tx.conn(), &alias).await?;
    tx.commit().await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
pub(super) async fn room_aliases(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut conn = state.store.read().await?;
    visibility::require(&mut conn, &room_id, &auth.user_id)
        .await?
        .require_state()?;
    Ok(Json(
        json!({ "aliases": rooms::aliases_for_room(&mut conn, &room_id).await? }),
    ))
}
