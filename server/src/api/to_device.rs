//! Send-to-device messaging; delivery happens in `/sync`.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::to_device;
use crate::service::Context;
use cloister_proto::to_device::SendToDeviceRequest;

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
pub(super) async fn send_to_device(
    State(state): State<Context>,
    auth: Auth,
    Path((event_type, txn_id)): Path<(String, String)>,
    Body(body): Body<SendToDeviceRequest>,
) -> ApiResult<Json<Value>> {
    to_device::send(&state, &auth, &event_type, &txn_id, &body.messages).await?;
    Ok(Json(json!({})))
}
