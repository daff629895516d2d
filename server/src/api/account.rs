//! Account management: whoami, password change, deactivation.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use cloister_audit::Action;

use crate::service::Context;
use crate::service::{audit, devices, uia};
use crate::store::{self, users};

/// `GET /_matrix/client/v3/account/whoami`
pub(super) async fn whoami(auth: Auth) -> Json<Value> {
    Json(json!({ "user_id": auth.user_id, "device_id": auth.device_id, "is_guest": false }))
}

#[derive(Deserialize)]
pub(super) struct PasswordBody {
    auth: Option<Value>,
    new_password: String,
    logout_devices: Option<bool>,
}

/// `POST /_matrix/client/v3/account/password`
pub(super) async fn change_password(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<PasswordBody>,
) -> ApiResult<Json<Value>> {
    uia::check(
        &state,
        &[&[uia::PASSWORD]],
        body.auth.as_ref(),
        Some(&auth.user_id),
    )
    .await?;
    let password = Zeroizing::new(body.new_password);
    super::auth::validate_password(&password)?;
    let hash = state.passwords.hash(password).await?;
    let mut tx = state.store.write().await?;
    users::set_password_hash(tx.conn(), &auth.user_id, &hash).await?;
    let entry = audit::by_user(&state, &auth.user_id, Action::PasswordChanged);
    audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    if body.logout_devices.unwrap_or(true) {
        let others: Vec<String> =
            store::devices::list(&mut *state.store.read().await?, &auth.user_id)
                .await?
                .into_iter()
                .map(|d| d.device_id)
                .filter(|d| *d != auth.device_id)
                .collect();
        devices::delete_devices(&state, &auth.user_id, &others).await?;
    }
    tracing::info!("password changed");
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
pub(super) struct DeactivateBody {
    auth: Option<Value>,
}

/// `POST /_matrix/client/v3/account/deactivate`
///
/// Leaves every room, deletes every device with its keys, and locks the
/// account. Erasing what the user sent is the compliance layer's job.
pub(super) async fn deactivate(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<DeactivateBody>,
) -> ApiResult<Json<Value>> {
    uia::check(
        &state,
        &[&[uia::PASSWORD]],
        body.auth.as_ref(),
        Some(&auth.user_id),
    )
    .await?;
    let entry = audit::by_user(&state, &auth.user_id, Action::AccountDeactivated);
    crate::service::devices::deactivate_user(&state, &auth.user_id, entry).await?;
    Ok(Json(json!({ "id_server_unbind_result": "no-support" })))
}
