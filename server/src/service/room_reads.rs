//! Reading a room's state and members, as far as history visibility lets
//! the reader (see `service::visibility`): members read the current state,
//! former members the state at their departure.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::visibility;
use crate::service::Context;
use crate::store::events::{self, StoredEvent};
use crate::store::rooms;

/// The room state `reader` may see.
pub async fn state_for_reader(
    ctx: &Context,
    reader: &str,
    room_id: &str,
) -> ApiResult<Vec<StoredEvent>> {
    let mut conn = ctx.store.read().await?;
    let to = visibility::require(&mut conn, room_id, reader)
        .await?
        .require_state()?;
    Ok(events::state_until(&mut conn, room_id, to).await?)
}

/// One state event as `reader` may see it; 404 when there is none.
pub async fn state_event_for_reader(
    ctx: &Context,
    reader: &str,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> ApiResult<StoredEvent> {
    let mut conn = ctx.store.read().await?;
    let to = visibility::require(&mut conn, room_id, reader)
        .await?
        .require_state()?;
    // Members read the indexed current state; former members, the state at
    // their departure.
    let event = if to == i64::MAX {
        events::state_event(&mut conn, room_id, event_type, state_key).await?
    } else {
        events::state_until(&mut conn, room_id, to)
            .await?
            .into_iter()
            .find(|e| e.event_type == event_type && e.state_key.as_deref() == Some(state_key))
    };
    event.ok_or_else(|| ApiError::not_found("No such state event"))
}

/// The `m.room.member` events of the state `reader` may see.
pub async fn members_for_reader(
    ctx: &Context,
    reader: &str,
    room_id: &str,
) -> ApiResult<Vec<StoredEvent>> {
    let mut members = state_for_reader(ctx, reader, room_id).await?;
    members.retain(|e| e.event_type == "m.room.member");
    Ok(members)
}

/// A joined member and the profile their membership event carries. The
/// fields are whatever the event holds, which need not be strings.
pub struct JoinedMember {
    pub user_id: String,
    pub displayname: Option<Value>,
    pub avatar_url: Option<Value>,
}

/// The joined members of a room; only those joined themselves may ask.
pub async fn joined_members(
    ctx: &Context,
    reader: &str,
    room_id: &str,
) -> ApiResult<Vec<JoinedMember>> {
    let mut conn = ctx.store.read().await?;
    if rooms::membership(&mut conn, room_id, reader)
        .await?
        .map(|m| m.membership)
        .as_deref()
        != Some("join")
    {
        return Err(ApiError::forbidden("You are not joined to this room"));
    }
    let mut joined = Vec::new();
    for user_id in rooms::joined_members(&mut conn, room_id).await? {
        let content = events::state_event(&mut conn, room_id, "m.room.member", &user_id)
            .await?
            .map(|e| e.content)
            .unwrap_or(Value::Null);
        joined.push(JoinedMember {
            displayname: content.get("displayname").cloned(),
            avatar_url: content.get("avatar_url").cloned(),
            user_id,
        });
    }
    Ok(joined)
}

/// The rooms `user_id` is joined to.
pub async fn joined_rooms(ctx: &Context, user_id: &str) -> ApiResult<Vec<String>> {
    Ok(rooms::joined_rooms(&mut *ctx.store.read().await?, user_id).await?)
}
