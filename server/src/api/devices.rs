//! The caller's devices.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::Context;
use crate::service::{devices as device_service, uia};
use crate::store::devices;

fn render(d: &devices::Device) -> Value {
    json!({ "device_id": d.device_id, "display_name": d.display_name, "last_seen_ts": d.last_seen_ts })
}

/// `GET /_matrix/client/v3/devices`
pub(super) async fn list(State(state): State<Context>, auth: Auth) -> ApiResult<Json<Value>> {
    let all = devices::list(&mut *state.store.read().await?, &auth.user_id).await?;
    Ok(Json(
        json!({ "devices": all.iter().map(render).collect::<Vec<_>>() }),
    ))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
pub(super) async fn get_one(
    State(state): State<Context>,
    auth: Auth,
    Path(device_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let device = devices::get(&mut *state.store.read().await?, &auth.user_id, &device_id)
        .await?
        .ok_or_else(|| ApiError::not_found("No such device"))?;
    Ok(Json(render(&device)))
}

#[derive(Deserialize)]
pub(super) struct UpdateBody {
    display_name: Option<String>,
}

/// `PUT /_matrix/client/v3/devices/{deviceId}`
pub(super) async fn update(
    State(state): State<Context>,
    auth: Auth,
    Path(device_id): Path<String>,
    Body(body): Body<UpdateBody>,
) -> ApiResult<Json<Value>> {
    if body.display_name.as_ref().is_some_and(|n| n.len() > 1024) {
        return Err(ApiError::invalid_param("display_name is too long"));
    }
    if !devices::set_display_name(
        &mut *state.store.read().await?,
        &auth.user_id,
        &device_id,
        body.display_name.as_deref(),
    )
    .await?
    {
        return Err(ApiError::not_found("No such device"));
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(super) struct DeleteBody {
    auth: Option<Value>,
}

/// `DELETE /_matrix/client/v3/devices/{deviceId}`
pub(super) async fn delete_one(
    State(state): State<Context>,
    auth: Auth,
    Path(device_id): Path<String>,
    Body(body): Body<DeleteBody>,
) -> ApiResult<Json<Value>> {
    if devices::get(&mut *state.store.read().await?, &auth.user_id, &device_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("No such device"));
    }
    uia::check(
        &state,
        &[&[uia::PASSWORD]],
        body.auth.as_ref(),
        Some(&auth.user_id),
    )
    .await?;
    device_service::delete_devices(&state, &auth.user_id, &[device_id]).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(super) struct DeleteManyBody {
    auth: Option<Value>,
    devices: Vec<String>,
}

/// `POST /_matrix/client/v3/delete_devices`
pub(super) async fn delete_many(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<DeleteManyBody>,
) -> ApiResult<Json<Value>> {
    if body.devices.len() > 1000 {
        return Err(ApiError::invalid_param("at most 1000 devices per request"));
    }
    uia::check(
        &state,
        &[&[uia::PASSWORD]],
        body.auth.as_ref(),
        Some(&auth.user_id),
    )
    .await?;
    device_service::delete_devices(&state, &auth.user_id, &body.devices).await?;
    Ok(Json(json!({})))
}
