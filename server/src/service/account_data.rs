//! Client-defined account data, global and per room. Clients keep secret
//! storage and cross-signing keys (encrypted) here, so it must round-trip
//! exactly and reach every device through `/sync`.

use axum::http::StatusCode;
use serde_json::Value;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::Context;
use crate::store::account_data;

/// Types the server maintains itself; each has its own API.
const SERVER_MANAGED: &[&str] = &["m.fully_read", "m.push_rules"];

/// Where an entry lives: global, or in one room.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    Global,
    Room(&'a str),
}

/// The store keeps global data under the room id "".
fn room_key<'a>(scope: Scope<'a>) -> &'a str {
    match scope {
        Scope::Global => "",
        Scope::Room(room_id) => room_id,
    }
}

/// Stores one entry at a new stream position and wakes the owner's syncs.
pub async fn store(
    state: &Context,
    user_id: &str,
    scope: Scope<'_>,
    data_type: &str,
    content: &Value,
) -> ApiResult<()> {
    let mut tx = state.store.write().await?;
    let pos = tx.next_pos().await?;
    account_data::put(&mut tx, user_id, room_key(scope), data_type, content, pos).await?;
    tx.commit().await?;
    state.notifier.notify([user_id]);
    Ok(())
}

fn check_owner(requester: &str, user_id: &str) -> ApiResult<()> {
    if requester != user_id {
        return Err(ApiError::forbidden(
            "You may only access your own account data",
        ));
    }
    Ok(())
}

fn check_type(data_type: &str) -> ApiResult<()> {
    if data_type.is_empty() || data_type.len() > 255 {
        return Err(ApiError::invalid_param(
            "account data type must be 1-255 bytes",
        ));
    }
    Ok(())
}

fn check_scope(scope: Scope<'_>) -> ApiResult<()> {
    match scope {
        Scope::Room(room_id) if !crate::ids::is_valid_room_id(room_id) => {
            Err(ApiError::invalid_param("not a valid room id"))
        }
        _ => Ok(()),
    }
}

fn check_writable(data_type: &str, content: &Value) -> ApiResult<()> {
    check_type(data_type)?;
    if SERVER_MANAGED.contains(&data_type) {
        return Err(ApiError::new(
            ErrCode::BadJson,
            format!("Cannot set {data_type} through this API"),
        )
        .with_status(StatusCode::METHOD_NOT_ALLOWED));
    }
    if !content.is_object() {
        return Err(ApiError::bad_json("Content must be a JSON object"));
    }
    Ok(())
}

/// One entry of `user_id`, read by `requester` (who must be that user).
/// Global `m.push_rules` is the server's own ruleset with the user's changes.
pub async fn get(
    state: &Context,
    requester: &str,
    user_id: &str,
    scope: Scope<'_>,
    data_type: &str,
) -> ApiResult<Value> {
    check_owner(requester, user_id)?;
    check_scope(scope)?;
    check_type(data_type)?;
    if matches!(scope, Scope::Global) && data_type == "m.push_rules" {
        return crate::service::pushrules::load(state, user_id).await;
    }
    account_data::get(
        &mut *state.store.read().await?,
        user_id,
        room_key(scope),
        data_type,
    )
    .await?
    .ok_or_else(|| match scope {
        Scope::Global => ApiError::not_found("Account data not found"),
        Scope::Room(_) => ApiError::not_found("Room account data not found"),
    })
}

/// Sets one entry of `user_id` at `requester`'s request (who must be that
/// user). Server-managed types are refused: they have their own APIs.
pub async fn put(
    state: &Context,
    requester: &str,
    user_id: &str,
    scope: Scope<'_>,
    data_type: &str,
    content: &Value,
) -> ApiResult<()> {
    check_owner(requester, user_id)?;
    check_scope(scope)?;
    check_writable(data_type, content)?;
    store(state, user_id, scope, data_type, content).await
}
