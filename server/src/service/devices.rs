//! Login sessions and device lifecycle. Deleting a device removes its
//! tokens, keys and queued to-device messages, and tells everyone who shares
//! a room with its owner that the device list changed.

use serde_json::{json, Value};

use cloister_audit::{Action, NewEntry};

use crate::error::{ApiError, ApiResult};
use crate::service::audit;
use crate::service::session::hash_token;
use crate::service::Context;
use crate::store::{devices, keys, rooms, users};

pub struct Session {
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
}

impl Session {
    pub fn to_json(&self, state: &Context) -> Value {
        json!({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "access_token": self.access_token,
            "home_server": state.server_name(),
            "well_known": { "m.homeserver": { "base_url": state.config.public_baseurl() } },
        })
    }
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
    let device_id = match device_id {
        Some(id) => {
            validate_device_id(id)?;
            id.to_owned()
        }
        None => crate::ids::new_device_id(),
    };
    if display_name.is_some_and(|n| n.len() > 1024) {
        return Err(ApiError::invalid_param("device display name is too long"));
    }
    let access_token = format!("clt_{}", crate::ids::random_string(40));
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    let created = devices::ensure(tx.conn(), user_id, &device_id, display_name, now).await?;
    users::delete_tokens_for_device(tx.conn(), user_id, &device_id).await?;
    users::insert_token(
        tx.conn(),
        &hash_token(&access_token),
        user_id,
        &device_id,
        now,
    )
    .await?;
    if created {
        audit::record(&mut tx, audit::by_user(state, user_id, Action::DeviceAdded)).await?;
    }
    audit::record(&mut tx, audit::by_user(state, user_id, Action::Login)).await?;
    tx.commit().await?;
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
        deleted += devices::delete(tx.conn(), user_id, device_id).await? as u64;
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
    let all: Vec<String> = devices::list(&mut *state.store.read().await?, user_id)
        .await?
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    delete_devices(state, user_id, &all).await?;
    let mut tx = state.store.write().await?;
    users::set_deactivated(tx.conn(), user_id).await?;
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    tracing::info!("account deactivated");
    Ok(())
}
