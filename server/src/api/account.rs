//! Account management: whoami, password change, deactivation.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::EmptyResponse;
use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::accounts;
use crate::service::Context;

#[derive(Serialize)]
pub(super) struct WhoamiResponse {
    user_id: String,
    device_id: String,
    is_guest: bool,
}

/// `GET /_matrix/client/v3/account/whoami`
pub(super) async fn whoami(auth: Auth) -> Json<WhoamiResponse> {
    Json(WhoamiResponse {
        user_id: auth.user_id,
        device_id: auth.device_id,
        is_guest: false,
    })
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
) -> ApiResult<Json<EmptyResponse>> {
    accounts::change_password(
        &state,
        &auth.user_id,
        &auth.device_id,
        body.auth.as_ref(),
        Zeroizing::new(body.new_password),
        !body.logout_devices.unwrap_or(true),
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Deserialize)]
pub(super) struct DeactivateBody {
    auth: Option<Value>,
}

#[derive(Serialize)]
pub(super) struct DeactivateResponse {
    /// No identity server is ever bound, so there is nothing to unbind.
    id_server_unbind_result: &'static str,
}

/// `POST /_matrix/client/v3/account/deactivate`
///
/// Leaves every room, deletes every device with its keys, and locks the
/// account.
pub(super) async fn deactivate(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<DeactivateBody>,
) -> ApiResult<Json<DeactivateResponse>> {
    accounts::deactivate(&state, &auth.user_id, body.auth.as_ref()).await?;
    Ok(Json(DeactivateResponse {
        id_server_unbind_result: "no-support",
    }))
}
