//! Joining, leaving, inviting, kicking, banning and forgetting rooms: each
//! an `m.room.member` event authorized by `service::events`, except
//! forgetting, which only the forgetter sees.

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::rooms::change_membership;
use crate::service::{aliases, restricted_join, Context};
use crate::store::rooms;

/// Joins `user_id` to a room named by id or alias; returns the room id.
pub async fn join(
    ctx: &Context,
    user_id: &str,
    room_id_or_alias: &str,
    reason: Option<&str>,
) -> ApiResult<String> {
    let room_id = aliases::resolve(ctx, room_id_or_alias).await?;
    let fields = restricted_join::join_fields(ctx, &room_id, user_id).await?;
    change_membership(
        ctx,
        &room_id,
        user_id,
        user_id,
        "join",
        reason,
        fields.as_ref(),
    )
    .await?;
    Ok(room_id)
}

/// What one member does to another, or to themselves: sets `target`'s
/// membership to `membership` (`invite`, `leave` — leaving or kicking —, or
/// `ban`), authorized by `service::events` like any member event.
pub async fn set(
    ctx: &Context,
    sender: &str,
    room_id: &str,
    target: &str,
    membership: &str,
    reason: Option<&str>,
) -> ApiResult<()> {
    change_membership(ctx, room_id, sender, target, membership, reason, None).await?;
    Ok(())
}

/// Lifts a ban. A leave on someone not banned would be a kick, which the
/// caller did not ask for.
pub async fn unban(
    ctx: &Context,
    sender: &str,
    room_id: &str,
    target: &str,
    reason: Option<&str>,
) -> ApiResult<()> {
    let current = rooms::membership(&mut *ctx.store.read().await?, room_id, target).await?;
    if current.map(|m| m.membership).as_deref() != Some("ban") {
        return Err(ApiError::forbidden("That user is not banned"));
    }
    change_membership(ctx, room_id, sender, target, "leave", reason, None).await?;
    Ok(())
}

/// Forgets a room the user has left: its history stops being theirs to read.
pub async fn forget(ctx: &Context, user_id: &str, room_id: &str) -> ApiResult<()> {
    let mut tx = ctx.store.write().await?;
    match rooms::membership(tx.conn(), room_id, user_id)
        .await?
        .map(|m| m.membership)
    {
        None => return Err(ApiError::not_found("You have never been in this room")),
        Some(m) if m == "join" || m == "invite" => {
            return Err(ApiError::new(
                ErrCode::Unknown,
                "Leave the room before forgetting it",
            ));
        }
        Some(_) => rooms::forget(&mut tx, room_id, user_id).await?,
    }
    tx.commit().await?;
    Ok(())
}
