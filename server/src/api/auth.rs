//! Registration, login and logout.

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::config::Registration;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::extract::{Auth, Body};
use crate::ids;
use crate::service::session::hash_token;
use cloister_audit::Action;

use crate::service::Context;
use crate::service::{audit, devices, erasure, uia};
use crate::store::users;

/// The `ClientIp` of a request, for per-address login limits.
pub struct ClientIp(pub String);

impl axum::extract::FromRequestParts<Context> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &Context) -> Result<Self, ApiError> {
        Ok(ClientIp(super::client_ip(
            parts,
            &state.config.trusted_proxies,
        )))
    }
}

fn check_login_rate(state: &Context, key: &str) -> ApiResult<()> {
    if state.config.rate_limit.enabled {
        state
            .login_limiter
            .check(key)
            .map_err(ApiError::limit_exceeded)?;
    }
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct RegisterQuery {
    kind: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RegisterBody {
    auth: Option<Value>,
    username: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    #[serde(default)]
    inhibit_login: bool,
}

/// `POST /_matrix/client/v3/register`
pub(super) async fn register(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Query(query): Query<RegisterQuery>,
    Body(body): Body<RegisterBody>,
) -> ApiResult<Json<Value>> {
    if query.kind.as_deref().is_some_and(|k| k != "user") {
        return Err(ApiError::forbidden("Guest access is not enabled")
            .with_code(ErrCode::GuestAccessForbidden));
    }
    let flows: &[&[&str]] = match state.config.registration {
        Registration::Closed => {
            return Err(ApiError::forbidden(
                "Registration is disabled on this server",
            ))
        }
        Registration::Open => &[&[uia::DUMMY]],
        Registration::Token => &[&[uia::REGISTRATION_TOKEN]],
    };
    let localpart = match &body.username {
        Some(name) => name.to_lowercase(),
        None => ids::random_string(12).to_lowercase(),
    };
    let user_id = validate_new_user_id(&state, &localpart)?;
    if users::get(&mut *state.store.read().await?, &user_id)
        .await?
        .is_some()
        || erasure::is_erased(&state, &user_id).await?
    {
        return Err(ApiError::new(ErrCode::UserInUse, "That user id is taken"));
    }
    let password = body
        .password
        .map(Zeroizing::new)
        .ok_or_else(|| ApiError::missing_param("password is required"))?;
    validate_password(&password)?;
    if body.auth.is_some() {
        check_login_rate(&state, &format!("register:{ip}"))?;
    }
    uia::check(&state, flows, body.auth.as_ref(), None).await?;

    let hash = state.passwords.hash(password).await?;
    let mut tx = state.store.write().await?;
    let created = users::create(
        tx.conn(),
        &user_id,
        Some(&hash),
        false,
        &localpart,
        state.now_ms(),
    )
    .await?;
    if created {
        audit::record(
            &mut tx,
            audit::by_user(&state, &user_id, Action::AccountCreated),
        )
        .await?;
        tx.commit().await?;
    } else {
        return Err(ApiError::new(ErrCode::UserInUse, "That user id is taken"));
    }
    tracing::info!("registered a new user");
    if body.inhibit_login {
        return Ok(Json(
            json!({ "user_id": user_id, "home_server": state.server_name() }),
        ));
    }
    let session = devices::open_session(
        &state,
        &user_id,
        body.device_id.as_deref(),
        body.initial_device_display_name.as_deref(),
    )
    .await?;
    Ok(Json(session.to_json(&state)))
}

pub fn validate_new_user_id(state: &Context, localpart: &str) -> ApiResult<String> {
    if !ids::is_valid_localpart(localpart) {
        return Err(ApiError::new(
            ErrCode::InvalidUsername,
            "User names may contain only a-z, 0-9 and . _ = - / +",
        ));
    }
    if ids::is_reserved_localpart(localpart) {
        return Err(ApiError::new(
            ErrCode::Exclusive,
            "That user name is reserved by the server",
        ));
    }
    let user_id = state.user_id(localpart);
    if user_id.len() > 255 {
        return Err(ApiError::new(
            ErrCode::InvalidUsername,
            "User id is too long",
        ));
    }
    Ok(user_id)
}

pub fn validate_password(password: &str) -> ApiResult<()> {
    if password.is_empty() || password.len() > 1024 {
        return Err(ApiError::new(
            ErrCode::WeakPassword,
            "Password must be 1 to 1024 bytes",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub(super) struct AvailableQuery {
    // Optional so that a closed server answers 403 before looking at it.
    username: Option<String>,
}

/// `GET /_matrix/client/v3/register/available`
///
/// Unauthenticated, so it says which accounts exist: only while anyone may
/// register (as Synapse does), and at the pace of login attempts.
pub(super) async fn available(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Query(q): Query<AvailableQuery>,
) -> ApiResult<Json<Value>> {
    if state.config.registration == Registration::Closed {
        return Err(ApiError::forbidden(
            "Registration is disabled on this server",
        ));
    }
    check_login_rate(&state, &format!("available:{ip}"))?;
    let username = q
        .username
        .ok_or_else(|| ApiError::missing_param("username is required"))?;
    let user_id = validate_new_user_id(&state, &username.to_lowercase())?;
    if users::get(&mut *state.store.read().await?, &user_id)
        .await?
        .is_some()
        || erasure::is_erased(&state, &user_id).await?
    {
        return Err(ApiError::new(ErrCode::UserInUse, "That user id is taken"));
    }
    Ok(Json(json!({ "available": true })))
}

#[derive(Deserialize)]
pub(super) struct ValidityQuery {
    token: String,
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
pub(super) async fn token_validity(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Query(q): Query<ValidityQuery>,
) -> ApiResult<Json<Value>> {
    check_login_rate(&state, &format!("token:{ip}"))?;
    let valid = users::registration_token_valid(
        &mut *state.store.read().await?,
        &hash_token(&q.token),
        state.now_ms(),
    )
    .await?;
    Ok(Json(json!({ "valid": valid })))
}

/// `GET /_matrix/client/v3/login`
pub(super) async fn login_flows() -> Json<Value> {
    Json(json!({ "flows": [{ "type": "m.login.password" }] }))
}

#[derive(Deserialize)]
pub(super) struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    user: Option<String>,
    password: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
}

/// `POST /_matrix/client/v3/login`
pub(super) async fn login(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Body(body): Body<LoginBody>,
) -> ApiResult<Json<Value>> {
    if body.kind != "m.login.password" {
        return Err(ApiError::new(ErrCode::Unknown, "Unsupported login type"));
    }
    let name = match &body.identifier {
        Some(identifier) => {
            if identifier.get("type").and_then(Value::as_str) != Some("m.id.user") {
                return Err(ApiError::new(
                    ErrCode::Unknown,
                    "Only m.id.user identifiers are supported",
                ));
            }
            identifier
                .get("user")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        None => body.user.clone(),
    }
    .ok_or_else(|| ApiError::missing_param("identifier.user is required"))?;
    let user_id = if name.starts_with('@') {
        name.to_lowercase()
    } else {
        state.user_id(&name.to_lowercase())
    };
    check_login_rate(&state, &format!("login:{ip}"))?;
    check_login_rate(&state, &format!("login:{user_id}"))?;
    let password = Zeroizing::new(body.password.unwrap_or_default());
    let user = users::get(&mut *state.store.read().await?, &user_id).await?;
    let stored = user
        .as_ref()
        .filter(|u| !u.deactivated)
        .and_then(|u| u.password_hash.clone());
    if !state.passwords.check(password, stored).await? {
        tracing::info!("failed login attempt");
        audit::record_alone(
            &state,
            audit::by_user(&state, &user_id, Action::LoginFailed),
        )
        .await?;
        return Err(ApiError::forbidden("Invalid username or password"));
    }
    let session = devices::open_session(
        &state,
        &user_id,
        body.device_id.as_deref(),
        body.initial_device_display_name.as_deref(),
    )
    .await?;
    tracing::info!("user logged in");
    Ok(Json(session.to_json(&state)))
}

/// `POST /_matrix/client/v3/logout`
pub(super) async fn logout(State(state): State<Context>, auth: Auth) -> ApiResult<Json<Value>> {
    devices::delete_devices(&state, &auth.user_id, std::slice::from_ref(&auth.device_id)).await?;
    Ok(Json(json!({})))
}

/// `POST /_matrix/client/v3/logout/all`
pub(super) async fn logout_all(State(state): State<Context>, auth: Auth) -> ApiResult<Json<Value>> {
    let all: Vec<String> =
        crate::store::devices::list(&mut *state.store.read().await?, &auth.user_id)
            .await?
            .into_iter()
            .map(|d| d.device_id)
            .collect();
    devices::delete_devices(&state, &auth.user_id, &all).await?;
    Ok(Json(json!({})))
}
