//! Room creation, room state, member lists and aliases.
//!
//! Response fields are in alphabetical order, as serde_json orders map
//! keys, so responses are the same byte for byte as when built as maps.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use super::EmptyResponse;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::rooms::{self as room_service, CreateRoom};
use crate::service::{aliases, room_events, room_reads, Context};
use cloister_proto::event::ClientEvent;

#[derive(Serialize)]
pub(super) struct CreateRoomResponse {
    room_id: String,
}

/// `POST /_matrix/client/v3/createRoom`
pub(super) async fn create_room(
    State(state): State<Context>,
    auth: Auth,
    Body(req): Body<CreateRoom>,
) -> ApiResult<Json<CreateRoomResponse>> {
    let room_id = room_service::create_room(&state, &auth.user_id, req).await?;
    Ok(Json(CreateRoomResponse { room_id }))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
pub(super) async fn all_state(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Vec<ClientEvent>>> {
    let current = room_reads::state_for_reader(&state, &auth.user_id, &room_id).await?;
    let now = state.now_ms();
    Ok(Json(
        current.iter().map(|e| e.to_client(None, now)).collect(),
    ))
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
    let event = room_reads::state_event_for_reader(
        &state,
        &auth.user_id,
        &room_id,
        &event_type,
        &state_key,
    )
    .await?;
    Ok(Json(event.content))
}

pub(super) async fn put_state_empty_key(
    state: State<Context>,
    auth: Auth,
    Path((room_id, event_type)): Path<(String, String)>,
    body: Body<Value>,
) -> ApiResult<Json<SendEventResponse>> {
    put_state(
        state,
        auth,
        Path((room_id, event_type, String::new())),
        body,
    )
    .await
}

/// The response of sending an event, setting state and redacting: the
/// new event's id.
#[derive(Serialize)]
pub(super) struct SendEventResponse {
    pub(super) event_id: String,
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub(super) async fn put_state(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_type, state_key)): Path<(String, String, String)>,
    Body(content): Body<Value>,
) -> ApiResult<Json<SendEventResponse>> {
    let event_id =
        room_events::set_state(&state, &auth, &room_id, &event_type, &state_key, &content).await?;
    Ok(Json(SendEventResponse { event_id }))
}

#[derive(Serialize)]
pub(super) struct MembersResponse {
    chunk: Vec<ClientEvent>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
pub(super) async fn members(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<MembersResponse>> {
    let members = room_reads::members_for_reader(&state, &auth.user_id, &room_id).await?;
    let now = state.now_ms();
    Ok(Json(MembersResponse {
        chunk: members.iter().map(|e| e.to_client(None, now)).collect(),
    }))
}

#[derive(Serialize)]
pub(super) struct JoinedMembersResponse {
    joined: BTreeMap<String, RoomMember>,
}

/// Absent fields are `null`, not omitted, as before.
#[derive(Serialize)]
pub(super) struct RoomMember {
    avatar_url: Option<Value>,
    display_name: Option<Value>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
pub(super) async fn joined_members(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<JoinedMembersResponse>> {
    let members = room_reads::joined_members(&state, &auth.user_id, &room_id).await?;
    let joined = members
        .into_iter()
        .map(|m| {
            let member = RoomMember {
                avatar_url: m.avatar_url,
                display_name: m.displayname,
            };
            (m.user_id, member)
        })
        .collect();
    Ok(Json(JoinedMembersResponse { joined }))
}

#[derive(Serialize)]
pub(super) struct JoinedRoomsResponse {
    joined_rooms: Vec<String>,
}

/// `GET /_matrix/client/v3/joined_rooms`
pub(super) async fn joined_rooms(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<JoinedRoomsResponse>> {
    let joined_rooms = room_reads::joined_rooms(&state, &auth.user_id).await?;
    Ok(Json(JoinedRoomsResponse { joined_rooms }))
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
pub(super) async fn put_alias(
    State(state): State<Context>,
    auth: Auth,
    Path(alias): Path<String>,
    Body(body): Body<Value>,
) -> ApiResult<Json<EmptyResponse>> {
    // A foreign or malformed alias is refused before the body is read.
    aliases::check_local(&state, &alias)?;
    let room_id = body
        .get("room_id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_json("room_id is required"))?;
    aliases::put(&state, &auth.user_id, &alias, room_id).await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Serialize)]
pub(super) struct RoomAliasResponse {
    room_id: String,
    servers: Vec<String>,
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
pub(super) async fn get_alias(
    State(state): State<Context>,
    Path(alias): Path<String>,
) -> ApiResult<Json<RoomAliasResponse>> {
    let room_id = aliases::room_for(&state, &alias).await?;
    Ok(Json(RoomAliasResponse {
        room_id,
        servers: vec![state.server_name().to_owned()],
    }))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
pub(super) async fn delete_alias(
    State(state): State<Context>,
    auth: Auth,
    Path(alias): Path<String>,
) -> ApiResult<Json<EmptyResponse>> {
    aliases::delete(&state, &auth, &alias).await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Serialize)]
pub(super) struct RoomAliasesResponse {
    aliases: Vec<String>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
pub(super) async fn room_aliases(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<RoomAliasesResponse>> {
    let aliases = aliases::for_reader(&state, &auth.user_id, &room_id).await?;
    Ok(Json(RoomAliasesResponse { aliases }))
}
