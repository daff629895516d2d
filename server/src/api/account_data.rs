//! Client-defined account data, global and per room. Clients keep secret
//! storage and cross-signing keys (encrypted) here, so it must round-trip
//! exactly and reach every device through `/sync`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::extract::{Auth, Body};
use crate::service::Context;
use crate::store::account_data;

/// Types the server maintains itself; each has its own API.
const SERVER_MANAGED: &[&str] = &["m.fully_read", "m.push_rules"];

/// Stores one entry at a new stream position and wakes the owner's syncs.
/// `room_id` is "" for global data.
pub async fn store(
    state: &Context,
    user_id: &str,
    room_id: &str,
    data_type: &str,
    content: &Value,
) -> ApiResult<()> {
    let mut tx = state.store.write().await?;
    let pos = tx.next_pos().await?;
    account_data::put(tx.conn(), user_id, room_id, data_type, content, pos).await?;
    tx.commit().await?;
    state.notifier.notify([user_id]);
    Ok(())
}

fn check_owner(auth: &Auth, user_id: &str) -> ApiResult<()> {
    if auth.user_id != user_id {
        return Err(ApiError::forbidden(
            "You may only access your own account data",
        ));
    }
    Ok(())
}

fn check_type(data_type: &str) -> ApiResult<()> {
    if data_type.is_empty() || data_type.len() > 255 {
        return Err(ApiError::invalid_param(
            "account data type must be 1-255 bytes",
        ));
    }
    Ok(())
}

fn check_room(room_id: &str) -> ApiResult<()> {
    if !crate::ids::is_valid_room_id(room_id) {
        return Err(ApiError::invalid_param("not a valid room id"));
    }
    Ok(())
}

fn check_writable(data_type: &str, content: &Value) -> ApiResult<()> {
    check_type(data_type)?;
    if SERVER_MANAGED.contains(&data_type) {
        return Err(ApiError::new(
            ErrCode::BadJson,
            format!("Cannot set {data_type} through this API"),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED));
    }
    if !content.is_object() {
        return Err(ApiError::bad_json("Content must be a JSON object"));
    }
    Ok(())
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
pub(super) async fn get_global(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, data_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check_owner(&auth, &user_id)?;
    check_type(&data_type)?;
    if data_type == "m.push_rules" {
        return Ok(Json(
            crate::service::pushrules::load(&state, &user_id).await?,
        ));
    }
    account_data::get(&mut *state.store.read().await?, &user_id, "", &data_type)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Account data not found"))
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
pub(super) async fn put_global(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, data_type)): Path<(String, String)>,
    Body(content): Body<Value>,
) -> ApiResult<Json<Value>> {
    check_owner(&auth, &user_id)?;
    check_writable(&data_type, &content)?;
    store(&state, &user_id, "", &data_type, &content).await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub(super) async fn get_room(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    check_owner(&auth, &user_id)?;
    check_room(&room_id)?;
    check_type(&data_type)?;
    account_data::get(
        &mut *state.store.read().await?,
        &user_id,
        &room_id,
        &data_type,
    )
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::not_found("Room account data not found"))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub(super) async fn put_room(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
    Body(content): Body<Value>,
) -> ApiResult<Json<Value>> {
    check_owner(&auth, &user_id)?;
    check_room(&room_id)?;
    check_writable(&data_type, &content)?;
    store(&state, &user_id, &room_id, &data_type, &content).await?;
    Ok(Json(json!({})))
}
