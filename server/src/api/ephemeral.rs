//! Typing notifications, read receipts and the fully-read marker.
//!
//! Markers only move forward: a receipt or marker for an event older than
//! the one it already points at is accepted and ignored, so a client that
//! catches up out of order cannot bring back unread counts.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::Context;
use crate::store::ephemeral::{self, PRIVATE_READ};
use crate::store::{account_data, rooms, Conn, WriteTx};

const READ: &str = "m.read";
const FULLY_READ: &str = "m.fully_read";
const DEFAULT_TYPING_MS: i64 = 30_000;
const MAX_TYPING_MS: i64 = 120_000;

async fn require_joined(c: &mut Conn, room_id: &str, user_id: &str) -> ApiResult<()> {
    match rooms::membership(c, room_id, user_id).await? {
        Some(m) if m.membership == "join" => Ok(()),
        _ => Err(ApiError::forbidden("You are not joined to this room")),
    }
}

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
) -> ApiResult<Json<Value>> {
    if user_id != auth.user_id {
        return Err(ApiError::forbidden(
            "You may only set your own typing state",
        ));
    }
    // A stop is an already-expired row, so /sync still sees the change.
    let expires_ts = if body.typing {
        let timeout = body
            .timeout
            .unwrap_or(DEFAULT_TYPING_MS)
            .clamp(0, MAX_TYPING_MS);
        state.now_ms() + timeout
    } else {
        0
    };
    let mut tx = state.store.write().await?;
    require_joined(tx.conn(), &room_id, &auth.user_id).await?;
    let pos = tx.next_pos().await?;
    ephemeral::set_typing(
        tx.conn(),
        &room_id,
        &auth.user_id,
        expires_ts,
        pos,
        state.now_ms(),
    )
    .await?;
    let members = rooms::joined_members(tx.conn(), &room_id).await?;
    tx.commit().await?;
    state.notifier.notify(members.iter().map(String::as_str));
    Ok(Json(json!({})))
}

/// Validates `thread_id`: "main" or an event id, and never on the
/// fully-read marker, which is not threaded. Unthreaded is stored as "".
fn thread_of(receipt_type: &str, thread_id: Option<String>) -> ApiResult<String> {
    match thread_id {
        None => Ok(String::new()),
        Some(_) if receipt_type == FULLY_READ => {
            Err(ApiError::invalid_param("m.fully_read cannot be threaded"))
        }
        Some(t) if t == "main" || crate::ids::is_valid_event_id(&t) => Ok(t),
        Some(_) => Err(ApiError::invalid_param(
            "thread_id must be \"main\" or an event id",
        )),
    }
}

/// Moves one marker of `user_id` to `event_id` inside `tx`. Returns the
/// users to wake: nobody when the marker did not move, only the owner for
/// private markers, every joined member for public receipts.
async fn set_marker(
    tx: &mut WriteTx,
    now: i64,
    room_id: &str,
    user_id: &str,
    kind: &str,
    thread_id: &str,
    event_id: &str,
) -> ApiResult<Vec<String>> {
    let event_pos = match ephemeral::event_room_and_pos(tx.conn(), event_id).await? {
        Some((room, pos)) if room == room_id => pos,
        _ => return Err(ApiError::not_found("Event not found in this room")),
    };
    if kind == FULLY_READ {
        let current = account_data::get(tx.conn(), user_id, room_id, FULLY_READ).await?;
        let current_pos = match current.as_ref().and_then(|c| c["event_id"].as_str()) {
            Some(id) => ephemeral::event_room_and_pos(tx.conn(), id)
                .await?
                .map(|(_, p)| p),
            None => None,
        };
        if current_pos.is_some_and(|p| p >= event_pos) {
            return Ok(vec![]);
        }
        let pos = tx.next_pos().await?;
        let content = json!({ "event_id": event_id });
        account_data::put(tx.conn(), user_id, room_id, FULLY_READ, &content, pos).await?;
        return Ok(vec![user_id.to_owned()]);
    }
    let current =
        ephemeral::receipt_event_pos(tx.conn(), room_id, user_id, kind, thread_id).await?;
    if current.is_some_and(|p| p >= event_pos) {
        return Ok(vec![]);
    }
    let pos = tx.next_pos().await?;
    ephemeral::put_receipt(
        tx.conn(),
        room_id,
        user_id,
        kind,
        thread_id,
        event_id,
        now,
        pos,
    )
    .await?;
    if kind == PRIVATE_READ {
        Ok(vec![user_id.to_owned()])
    } else {
        Ok(rooms::joined_members(tx.conn(), room_id).await?)
    }
}

fn check_event_id(event_id: &str) -> ApiResult<()> {
    if !crate::ids::is_valid_event_id(event_id) {
        return Err(ApiError::invalid_param("not a valid event id"));
    }
    Ok(())
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
) -> ApiResult<Json<Value>> {
    if ![READ, PRIVATE_READ, FULLY_READ].contains(&receipt_type.as_str()) {
        return Err(ApiError::invalid_param(
            "receipt type must be m.read, m.read.private or m.fully_read",
        ));
    }
    let thread_id = thread_of(&receipt_type, body.thread_id)?;
    check_event_id(&event_id)?;
    let mut tx = state.store.write().await?;
    require_joined(tx.conn(), &room_id, &auth.user_id).await?;
    let wake = set_marker(
        &mut tx,
        state.now_ms(),
        &room_id,
        &auth.user_id,
        &receipt_type,
        &thread_id,
        &event_id,
    )
    .await?;
    tx.commit().await?;
    state.notifier.notify(wake.iter().map(String::as_str));
    Ok(Json(json!({})))
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
) -> ApiResult<Json<Value>> {
    let markers: Vec<(&str, String)> = [
        (FULLY_READ, body.fully_read),
        (READ, body.read),
        (PRIVATE_READ, body.read_private),
    ]
    .into_iter()
    .filter_map(|(kind, id)| id.map(|id| (kind, id)))
    .collect();
    for (_, event_id) in &markers {
        check_event_id(event_id)?;
    }
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    require_joined(tx.conn(), &room_id, &auth.user_id).await?;
    let mut wake = Vec::new();
    for (kind, event_id) in &markers {
        wake.extend(set_marker(&mut tx, now, &room_id, &auth.user_id, kind, "", event_id).await?);
    }
    tx.commit().await?;
    wake.sort();
    wake.dedup();
    state.notifier.notify(wake.iter().map(String::as_str));
    Ok(Json(json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids() {
        assert_eq!(thread_of(READ, None).unwrap(), "");
        assert_eq!(thread_of(READ, Some("main".into())).unwrap(), "main");
        assert_eq!(thread_of(PRIVATE_READ, Some("$ev".into())).unwrap(), "$ev");
        assert!(thread_of(READ, Some("other".into())).is_err());
        assert!(thread_of(FULLY_READ, Some("main".into())).is_err());
        assert_eq!(thread_of(FULLY_READ, None).unwrap(), "");
    }
}
