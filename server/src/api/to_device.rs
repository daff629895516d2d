//! Send-to-device messaging; delivery happens in `/sync`.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::to_device;
use crate::service::Context;

#[derive(Deserialize)]
pub(super) struct SendBody {
    messages: Map<String, Value>,
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
pub(super) async fn send_to_device(
    State(state): State<Context>,
    auth: Auth,
    Path((event_type, txn_id)): Path<(String, String)>,
    Body(body): Body<SendBody>,
) -> ApiResult<Json<Value>> {
    to_device::send(&state, &auth, &event_type, &txn_id, &body.messages).await?;
    Ok(Json(json!({})))
}
