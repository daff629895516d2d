//! Send-to-device messaging; delivery happens in `/sync`.

use axum::extract::{Path, State};
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::to_device;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/_matrix/client/v3/sendToDevice/{event_type}/{txn_id}",
        put(send_to_device),
    )
}

#[derive(Deserialize)]
struct SendBody {
    messages: Map<String, Value>,
}

/// `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
async fn send_to_device(
    State(state): State<AppState>,
    auth: Auth,
    Path((event_type, txn_id)): Path<(String, String)>,
    Body(body): Body<SendBody>,
) -> ApiResult<Json<Value>> {
    to_device::send(&state, &auth, &event_type, &txn_id, &body.messages).await?;
    Ok(Json(json!({})))
}
