//! Room aliases (`#name:server`): only this server's, since there is no
//! federation to ask about others.

use axum::http::StatusCode;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::ids;
use crate::service::events as event_service;
use crate::service::session::Auth;
use crate::service::visibility;
use crate::service::Context;
use crate::store::rooms;

/// Refuses an alias that is malformed or names another server.
pub fn check_local(ctx: &Context, alias: &str) -> ApiResult<()> {
    match ids::parse_room_alias(alias) {
        Some((_, server)) if server == ctx.server_name() => Ok(()),
        Some(_) => Err(ApiError::not_found(
            "Room alias is on another server; federation is not supported",
        )),
        None => Err(ApiError::invalid_param("Invalid room alias")),
    }
}

/// Points `alias` at `room_id`; only a joined member may, and an alias
/// once given is not moved.
pub async fn put(ctx: &Context, user_id: &str, alias: &str, room_id: &str) -> ApiResult<()> {
    check_local(ctx, alias)?;
    let mut tx = ctx.store.write().await?;
    if rooms::membership(tx.conn(), room_id, user_id)
        .await?
        .map(|m| m.membership)
        .as_deref()
        != Some("join")
    {
        return Err(ApiError::forbidden(
            "You must be joined to the room to give it an alias",
        ));
    }
    if !rooms::put_alias(&mut tx, alias, room_id, user_id).await? {
        return Err(ApiError::new(ErrCode::Unknown, "Room alias already exists")
            .with_status(StatusCode::CONFLICT));
    }
    tx.commit().await?;
    Ok(())
}

/// The room `alias` names.
pub async fn room_for(ctx: &Context, alias: &str) -> ApiResult<String> {
    check_local(ctx, alias)?;
    let (room_id, _) = rooms::get_alias(&mut *ctx.store.read().await?, alias)
        .await?
        .ok_or_else(|| ApiError::not_found("Room alias not found"))?;
    Ok(room_id)
}

/// Removes `alias`: its creator, a server admin, or whoever may set the
/// room's canonical alias may.
pub async fn delete(ctx: &Context, auth: &Auth, alias: &str) -> ApiResult<()> {
    check_local(ctx, alias)?;
    let mut tx = ctx.store.write().await?;
    let (room_id, creator) = rooms::get_alias(tx.conn(), alias)
        .await?
        .ok_or_else(|| ApiError::not_found("Room alias not found"))?;
    if creator != auth.user_id && !auth.is_admin {
        let pl = event_service::auth_state(tx.conn(), &room_id)
            .await?
            .power_levels;
        if event_service::user_level(&pl, &auth.user_id)
            < event_service::event_level(&pl, "m.room.canonical_alias", true)
        {
            return Err(ApiError::forbidden(
                "Only the alias creator or a room moderator may delete it",
            ));
        }
    }
    rooms::delete_alias(&mut tx, alias).await?;
    tx.commit().await?;
    Ok(())
}

/// The aliases of a room whose state `reader` may see.
pub async fn for_reader(ctx: &Context, reader: &str, room_id: &str) -> ApiResult<Vec<String>> {
    let mut conn = ctx.store.read().await?;
    visibility::require(&mut conn, room_id, reader)
        .await?
        .require_state()?;
    Ok(rooms::aliases_for_room(&mut conn, room_id).await?)
}

/// Resolves `#alias:server` to a room id; room ids pass through.
pub async fn resolve(ctx: &Context, room_id_or_alias: &str) -> ApiResult<String> {
    if room_id_or_alias.starts_with('#') {
        return rooms::get_alias(&mut *ctx.store.read().await?, room_id_or_alias)
            .await?
            .map(|(room, _)| room)
            .ok_or_else(|| ApiError::not_found("Unknown room alias"));
    }
    if !ids::is_valid_room_id(room_id_or_alias) {
        return Err(ApiError::invalid_param("Not a room id or alias"));
    }
    Ok(room_id_or_alias.to_owned())
}
