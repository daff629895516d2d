//! Login sessions and device lifecycle. Deleting a device removes its
//! tokens, keys and queued to-device messages, and tells everyone who shares
//! a room with its owner that the device list changed.

use serde_json::Value;

use cloister_audit::{Action, NewEntry};

use crate::error::{ApiError, ApiResult};
use crate::service::session::hash_token;
use crate::service::Context;
use crate::service::{audit, uia};
use crate::store::{devices, keys, rooms, users, WriteTx};

pub use crate::store::devices::Device;

/// A signed-in device and the access token that stands for it.
pub struct Session {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
}

fn validate_device_id(device_id: &str) -> ApiResult<()> {
    if device_id.is_empty()
        || device_id.len() > 255
        || !device_id.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return Err(ApiError::invalid_param(
            "device_id must be 1-255 printable ASCII characters",
        ));
    }
    Ok(())
}

/// Issues a new access token for `device_id` (created when new). Logging in
/// again on an existing device revokes that device's older tokens.
pub async fn open_session(
    state: &Context,
    user_id: &str,
    device_id: Option<&str>,
    display_name: Option<&str>,
) -> ApiResult<Session> {
    let mut tx = state.store.write().await?;
    let new = NewSession {
        user_id,
        device_id,
        display_name,
        expires_ts: None,
    };
    let session = open_session_in(state, &mut tx, new).await?;
    tx.commit().await?;
    Ok(session)
}

/// A session to open: see [`open_session_in`].
pub struct NewSession<'a> {
    pub user_id: &'a str,
    /// None: a new device with a generated id.
    pub device_id: Option<&'a str>,
    pub display_name: Option<&'a str>,
    /// When the access token stops working; None: when the device goes.
    pub expires_ts: Option<i64>,
}

/// [`open_session`] inside the caller's transaction, for sign-ins that
/// record more with it (the OAuth token endpoint).
pub async fn open_session_in(
    state: &Context,
    tx: &mut WriteTx,
    new: NewSession<'_>,
) -> ApiResult<Session> {
    let device_id = match new.device_id {
        Some(id) => {
            validate_device_id(id)?;
            id.to_owned()
        }
        None => crate::ids::new_device_id(),
    };
    if new.display_name.is_some_and(|n| n.len() > 1024) {
        return Err(ApiError::invalid_param("device display name is too long"));
    }
    let user_id = new.user_id;
    let access_token = format!("clt_{}", crate::ids::random_string(40));
    let now = state.now_ms();
    let created = devices::ensure(tx, user_id, &device_id, new.display_name, now).await?;
    users::delete_tokens_for_device(tx, user_id, &device_id).await?;
    let hash = hash_token(&access_token);
    users::insert_token(tx, &hash, user_id, &device_id, now, new.expires_ts).await?;
    if created {
        audit::record(tx, audit::by_user(state, user_id, Action::DeviceAdded)).await?;
    }
    audit::record(tx, audit::by_user(state, user_id, Action::Login)).await?;
    Ok(Session {
        user_id: user_id.to_owned(),
        device_id,
        access_token,
    })
}

/// Deletes devices at their owner's request.
pub async fn delete_devices(
    state: &Context,
    user_id: &str,
    device_ids: &[String],
) -> ApiResult<()> {
    delete_devices_by(state, user_id, device_ids, state.audit.actor(user_id)).await
}

/// Deletes devices, recording `actor` (the owner, or the system for the
/// inactive-device purge) as who did it.
pub async fn delete_devices_by(
    state: &Context,
    user_id: &str,
    device_ids: &[String],
    actor: cloister_audit::Actor,
) -> ApiResult<()> {
    if device_ids.is_empty() {
        return Ok(());
    }
    let mut tx = state.store.write().await?;
    let mut deleted = 0;
    for device_id in device_ids {
        deleted += devices::delete(&mut tx, user_id, device_id).await? as u64;
    }
    let any = deleted > 0;
    if any {
        keys::record_device_list_change(&mut tx, user_id).await?;
        let entry = audit::by_actor(state, actor, Action::DeviceDeleted)
            .target(state.audit.target(user_id))
            .details(audit::count(deleted));
        audit::record(&mut tx, entry).await?;
    }
    let interested = rooms::users_sharing_rooms(tx.conn(), user_id).await?;
    tx.commit().await?;
    if any {
        state.notifier.notify(interested.iter().map(String::as_str));
    }
    Ok(())
}

/// Leaves every room, deletes every device and locks the account; `entry`
/// (by the user, or by the operator) is recorded with the lock.
pub async fn deactivate_user(state: &Context, user_id: &str, entry: NewEntry) -> ApiResult<()> {
    let memberships = rooms::rooms_for_user(&mut *state.store.read().await?, user_id).await?;
    for (room_id, m) in memberships {
        if m.membership == "join" || m.membership == "invite" {
            crate::service::rooms::change_membership(
                state, &room_id, user_id, user_id, "leave", None, None,
            )
            .await?;
        }
    }
    delete_all_except(state, user_id, None).await?;
    let mut tx = state.store.write().await?;
    users::set_deactivated(&mut tx, user_id).await?;
    // Kept only so colleagues can find the person, which they no longer can.
    crate::store::directory::delete_attributes(&mut tx, user_id).await?;
    // The person at the identity provider is no longer anyone here.
    crate::store::sso::unlink_all(&mut tx, user_id).await?;
    crate::store::console::delete_sessions_of(&mut tx, user_id).await?;
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    tracing::info!("account deactivated");
    Ok(())
}

/// Deletes every device of `user_id` but `keep`, audited as the owner's doing.
pub async fn delete_all_except(
    state: &Context,
    user_id: &str,
    keep: Option<&str>,
) -> ApiResult<()> {
    let doomed: Vec<String> = devices::list(&mut *state.store.read().await?, user_id)
        .await?
        .into_iter()
        .map(|d| d.device_id)
        .filter(|d| Some(d.as_str()) != keep)
        .collect();
    delete_devices(state, user_id, &doomed).await
}

/// The devices of `user_id`, by id.
pub async fn list(state: &Context, user_id: &str) -> ApiResult<Vec<Device>> {
    Ok(devices::list(&mut *state.store.read().await?, user_id).await?)
}

fn no_such_device() -> ApiError {
    ApiError::not_found("No such device")
}

/// One device of `user_id`.
pub async fn get(state: &Context, user_id: &str, device_id: &str) -> ApiResult<Device> {
    devices::get(&mut *state.store.read().await?, user_id, device_id)
        .await?
        .ok_or_else(no_such_device)
}

/// Renames a device of `user_id`; None clears the name.
pub async fn set_display_name(
    state: &Context,
    user_id: &str,
    device_id: &str,
    display_name: Option<&str>,
) -> ApiResult<()> {
    if display_name.is_some_and(|n| n.len() > 1024) {
        return Err(ApiError::invalid_param("display_name is too long"));
    }
    if !devices::set_display_name(
        &mut state.store.autocommit().await?,
        user_id,
        device_id,
        display_name,
    )
    .await?
    {
        return Err(no_such_device());
    }
    Ok(())
}

/// Deletes one device once its owner has confirmed with the password. An
/// unknown device is refused before the challenge, so no password is asked
/// for in vain.
pub async fn delete_one(
    state: &Context,
    user_id: &str,
    device_id: &str,
    uia: Option<&Value>,
) -> ApiResult<()> {
    if devices::get(&mut *state.store.read().await?, user_id, device_id)
        .await?
        .is_none()
    {
        return Err(no_such_device());
    }
    uia::check(state, &[&[uia::PASSWORD]], uia, Some(user_id)).await?;
    delete_devices(state, user_id, &[device_id.to_owned()]).await
}

/// The most devices one request may delete; they go in one transaction.
const MAX_DELETE_MANY: usize = 1000;

/// Deletes several devices once their owner has confirmed with the
/// password; unknown ids are skipped.
pub async fn delete_many(
    state: &Context,
    user_id: &str,
    device_ids: &[String],
    uia: Option<&Value>,
) -> ApiResult<()> {
    if device_ids.len() > MAX_DELETE_MANY {
        return Err(ApiError::invalid_param("at most 1000 devices per request"));
    }
    uia::check(state, &[&[uia::PASSWORD]], uia, Some(user_id)).await?;
    delete_devices(state, user_id, device_ids).await
}
