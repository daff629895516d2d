//! The operator's part of the console API: accounts, their devices,
//! registration tokens and server health. Every handler takes [`Operator`],
//! so each call is audited and refused without the role; the changes go
//! through the same services as the CLI.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Operator;
use crate::api::EmptyResponse;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::service::staff::{self, AccountDetail, AccountSummary, By, TokenInfo};
use crate::service::{accounts, health, Context};

fn local_user(state: &Context, user_id: &str) -> ApiResult<()> {
    if state.is_local_user(user_id) {
        Ok(())
    } else {
        Err(ApiError::not_found("Unknown user"))
    }
}

#[derive(Deserialize)]
pub(in crate::api) struct UsersQuery {
    #[serde(default)]
    q: String,
    /// The last user id of the previous page.
    from: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub(in crate::api) struct UsersResponse {
    users: Vec<AccountSummary>,
    /// Pass as `from` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /_cloister/console/api/users?q=&from=&limit=`
pub(in crate::api) async fn users(
    State(state): State<Context>,
    _: Operator,
    Query(query): Query<UsersQuery>,
) -> ApiResult<Json<UsersResponse>> {
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let users = staff::search_accounts(&state, &query.q, query.from.as_deref(), limit).await?;
    let next = (users.len() as i64 == limit)
        .then(|| users.last().map(|u| u.user_id.clone()))
        .flatten();
    Ok(Json(UsersResponse { users, next }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct CreateUserBody {
    localpart: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Serialize)]
pub(in crate::api) struct CreatedUser {
    user_id: String,
}

/// `POST /_cloister/console/api/users`: `{"localpart", "password", "admin"}`
pub(in crate::api) async fn create_user(
    State(state): State<Context>,
    Operator(staff): Operator,
    Body(body): Body<CreateUserBody>,
) -> ApiResult<Json<CreatedUser>> {
    let user_id = staff::create_account(
        &state,
        By::Staff(&staff.user_id),
        &body.localpart,
        Zeroizing::new(body.password),
        body.admin,
    )
    .await?;
    Ok(Json(CreatedUser { user_id }))
}

/// `GET /_cloister/console/api/users/{userId}`: the account and its devices.
pub(in crate::api) async fn user(
    State(state): State<Context>,
    _: Operator,
    Path(user_id): Path<String>,
) -> ApiResult<Json<AccountDetail>> {
    local_user(&state, &user_id)?;
    Ok(Json(staff::account(&state, &user_id).await?))
}

/// `POST /_cloister/console/api/users/{userId}/deactivate`
pub(in crate::api) async fn deactivate(
    State(state): State<Context>,
    Operator(staff): Operator,
    Path(user_id): Path<String>,
) -> ApiResult<Json<EmptyResponse>> {
    local_user(&state, &user_id)?;
    accounts::deactivate_by_admin(&state, &staff.user_id, &user_id).await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct PasswordBody {
    password: String,
}

/// `POST /_cloister/console/api/users/{userId}/password`: sets a new
/// password and signs the account out everywhere.
pub(in crate::api) async fn reset_password(
    State(state): State<Context>,
    Operator(staff): Operator,
    Path(user_id): Path<String>,
    Body(body): Body<PasswordBody>,
) -> ApiResult<Json<EmptyResponse>> {
    local_user(&state, &user_id)?;
    staff::reset_password(
        &state,
        By::Staff(&staff.user_id),
        &user_id,
        Zeroizing::new(body.password),
    )
    .await?;
    Ok(Json(EmptyResponse {}))
}

/// `DELETE /_cloister/console/api/users/{userId}/devices/{deviceId}`
pub(in crate::api) async fn delete_device(
    State(state): State<Context>,
    Operator(staff): Operator,
    Path((user_id, device_id)): Path<(String, String)>,
) -> ApiResult<Json<EmptyResponse>> {
    local_user(&state, &user_id)?;
    staff::delete_device(&state, By::Staff(&staff.user_id), &user_id, &device_id).await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Serialize)]
pub(in crate::api) struct TokensResponse {
    tokens: Vec<TokenInfo>,
}

/// `GET /_cloister/console/api/registration_tokens`
pub(in crate::api) async fn tokens(
    State(state): State<Context>,
    _: Operator,
) -> ApiResult<Json<TokensResponse>> {
    let tokens = staff::registration_tokens(&state).await?;
    Ok(Json(TokensResponse { tokens }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct NewTokenBody {
    uses_allowed: Option<i64>,
    expiry_hours: Option<i64>,
}

#[derive(Serialize)]
pub(in crate::api) struct NewTokenResponse {
    /// The token itself, shown this once.
    token: String,
    #[serde(flatten)]
    info: TokenInfo,
}

/// `POST /_cloister/console/api/registration_tokens`
pub(in crate::api) async fn create_token(
    State(state): State<Context>,
    Operator(staff): Operator,
    Body(body): Body<NewTokenBody>,
) -> ApiResult<Json<NewTokenResponse>> {
    let new = staff::create_registration_token(
        &state,
        By::Staff(&staff.user_id),
        body.uses_allowed,
        body.expiry_hours,
    )
    .await?;
    Ok(Json(NewTokenResponse {
        token: new.token.to_string(),
        info: new.info,
    }))
}

/// `DELETE /_cloister/console/api/registration_tokens/{id}`
pub(in crate::api) async fn delete_token(
    State(state): State<Context>,
    Operator(staff): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<EmptyResponse>> {
    staff::delete_registration_token(&state, By::Staff(&staff.user_id), &id).await?;
    Ok(Json(EmptyResponse {}))
}

/// `GET /_cloister/console/api/health`: the server at a glance.
pub(in crate::api) async fn health(
    State(state): State<Context>,
    _: Operator,
) -> ApiResult<Json<health::Health>> {
    Ok(Json(health::health(&state).await?))
}
