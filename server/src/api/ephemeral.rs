//! Typing notifications, read receipts and the fully-read marker.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;

use super::EmptyResponse;
use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::ephemeral::{self, Marker};
use crate::service::Context;

#[derive(Deserialize)]
pub(super) struct TypingBody {
    typing: bool,
    timeout: Option<i64>,
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
pub(super) async fn typing(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, user_id)): Path<(String, String)>,
    Body(body): Body<TypingBody>,
) -> ApiResult<Json<EmptyResponse>> {
    ephemeral::set_typing(
        &state,
        &auth.user_id,
        &room_id,
        &user_id,
        body.typing,
        body.timeout,
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Deserialize)]
pub(super) struct ReceiptBody {
    thread_id: Option<String>,
}

/// `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
pub(super) async fn receipt(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, receipt_type, event_id)): Path<(String, String, String)>,
    Body(body): Body<ReceiptBody>,
) -> ApiResult<Json<EmptyResponse>> {
    let marker = Marker::parse(&receipt_type)?;
    ephemeral::receipt(
        &state,
        &auth.user_id,
        &room_id,
        marker,
        body.thread_id,
        &event_id,
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Deserialize)]
pub(super) struct MarkersBody {
    #[serde(rename = "m.fully_read")]
    fully_read: Option<String>,
    #[serde(rename = "m.read")]
    read: Option<String>,
    #[serde(rename = "m.read.private")]
    read_private: Option<String>,
}

/// `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
pub(super) async fn read_markers(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<MarkersBody>,
) -> ApiResult<Json<EmptyResponse>> {
    let markers: Vec<(Marker, String)> = [
        (Marker::FullyRead, body.fully_read),
        (Marker::Read, body.read),
        (Marker::ReadPrivate, body.read_private),
    ]
    .into_iter()
    .filter_map(|(marker, id)| id.map(|id| (marker, id)))
    .collect();
    ephemeral::read_markers(&state, &auth.user_id, &room_id, &markers).await?;
    Ok(Json(EmptyResponse {}))
}
