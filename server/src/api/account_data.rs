//! Client-defined account data, global and per room (`service::account_data`
//! holds the rules).

use axum::extract::{Path, State};
use axum::Json;
use serde_json::Value;

use super::EmptyResponse;
use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::account_data::{self, Scope};
use crate::service::Context;

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
pub(super) async fn get_global(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, data_type)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let content =
        account_data::get(&state, &auth.user_id, &user_id, Scope::Global, &data_type).await?;
    Ok(Json(content))
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
pub(super) async fn put_global(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, data_type)): Path<(String, String)>,
    Body(content): Body<Value>,
) -> ApiResult<Json<EmptyResponse>> {
    let scope = Scope::Global;
    account_data::put(&state, &auth.user_id, &user_id, scope, &data_type, &content).await?;
    Ok(Json(EmptyResponse {}))
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub(super) async fn get_room(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let scope = Scope::Room(&room_id);
    let content = account_data::get(&state, &auth.user_id, &user_id, scope, &data_type).await?;
    Ok(Json(content))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
pub(super) async fn put_room(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, room_id, data_type)): Path<(String, String, String)>,
    Body(content): Body<Value>,
) -> ApiResult<Json<EmptyResponse>> {
    let scope = Scope::Room(&room_id);
    account_data::put(&state, &auth.user_id, &user_id, scope, &data_type, &content).await?;
    Ok(Json(EmptyResponse {}))
}
