//! What a client sends into a room: message events, state events and
//! redactions, checked for shape here and authorized by `service::events`.

use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::service::events as event_service;
use crate::service::session::Auth;
use crate::service::Context;
use crate::store::events::NewEvent;

fn check_type_and_key(event_type: &str, state_key: &str) -> ApiResult<()> {
    if event_type.is_empty() || event_type.len() > 255 || state_key.len() > 255 {
        return Err(ApiError::invalid_param(
            "event type and state key must be at most 255 bytes",
        ));
    }
    Ok(())
}

fn check_content(content: &Value) -> ApiResult<()> {
    if !content.is_object() {
        return Err(ApiError::bad_json("event content must be a JSON object"));
    }
    Ok(())
}

/// Sends a message event once per (device, `txn_id`); returns its id.
/// `attachments` are the sender's uploads the event carries, which expire
/// with it.
pub async fn send_message(
    ctx: &Context,
    auth: &Auth,
    room_id: &str,
    event_type: &str,
    txn_id: &str,
    content: &Value,
    attachments: &[String],
) -> ApiResult<String> {
    check_content(content)?;
    check_type_and_key(event_type, "")?;
    if event_type == "m.room.redaction" {
        return Err(ApiError::invalid_param(
            "use the /redact endpoint to redact events",
        ));
    }
    let event = NewEvent {
        room_id,
        sender: &auth.user_id,
        sender_device: Some(&auth.device_id),
        txn_id: Some(txn_id),
        event_type,
        state_key: None,
        content,
        redacts: None,
    };
    event_service::send_idempotent(ctx, event, &auth.device_id, txn_id, attachments).await
}

/// Sets one piece of room state; returns the new event's id.
pub async fn set_state(
    ctx: &Context,
    auth: &Auth,
    room_id: &str,
    event_type: &str,
    state_key: &str,
    content: &Value,
) -> ApiResult<String> {
    check_content(content)?;
    check_type_and_key(event_type, state_key)?;
    let event = NewEvent {
        room_id,
        sender: &auth.user_id,
        sender_device: Some(&auth.device_id),
        txn_id: None,
        event_type,
        state_key: Some(state_key),
        content,
        redacts: None,
    };
    Ok(event_service::send(ctx, event).await?.event_id)
}

/// Redacts `event_id` once per (device, `txn_id`); returns the redaction's id.
pub async fn redact(
    ctx: &Context,
    auth: &Auth,
    room_id: &str,
    event_id: &str,
    txn_id: &str,
    reason: Option<&str>,
) -> ApiResult<String> {
    let mut content = json!({ "redacts": event_id });
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let event = NewEvent {
        room_id,
        sender: &auth.user_id,
        sender_device: Some(&auth.device_id),
        txn_id: Some(txn_id),
        event_type: "m.room.redaction",
        state_key: None,
        content: &content,
        redacts: Some(event_id),
    };
    event_service::send_idempotent(ctx, event, &auth.device_id, txn_id, &[]).await
}
