//! The caller's devices.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::EmptyResponse;
use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::devices;
use crate::service::Context;

/// The spec's `Device`. Absent values are sent as `null`, as before.
#[derive(Serialize)]
pub(super) struct DeviceResponse {
    device_id: String,
    display_name: Option<String>,
    last_seen_ts: Option<i64>,
}

impl From<devices::Device> for DeviceResponse {
    fn from(d: devices::Device) -> Self {
        DeviceResponse {
            device_id: d.device_id,
            display_name: d.display_name,
            last_seen_ts: d.last_seen_ts,
        }
    }
}

#[derive(Serialize)]
pub(super) struct DevicesResponse {
    devices: Vec<DeviceResponse>,
}

/// `GET /_matrix/client/v3/devices`
pub(super) async fn list(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<DevicesResponse>> {
    let all = devices::list(&state, &auth.user_id).await?;
    Ok(Json(DevicesResponse {
        devices: all.into_iter().map(DeviceResponse::from).collect(),
    }))
}

/// `GET /_matrix/client/v3/devices/{deviceId}`
pub(super) async fn get_one(
    State(state): State<Context>,
    auth: Auth,
    Path(device_id): Path<String>,
) -> ApiResult<Json<DeviceResponse>> {
    let device = devices::get(&state, &auth.user_id, &device_id).await?;
    Ok(Json(device.into()))
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
) -> ApiResult<Json<EmptyResponse>> {
    devices::set_display_name(
        &state,
        &auth.user_id,
        &device_id,
        body.display_name.as_deref(),
    )
    .await?;
    Ok(Json(EmptyResponse {}))
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
) -> ApiResult<Json<EmptyResponse>> {
    devices::delete_one(&state, &auth.user_id, &device_id, body.auth.as_ref()).await?;
    Ok(Json(EmptyResponse {}))
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
) -> ApiResult<Json<EmptyResponse>> {
    devices::delete_many(&state, &auth.user_id, &body.devices, body.auth.as_ref()).await?;
    Ok(Json(EmptyResponse {}))
}
