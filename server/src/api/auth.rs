//! Registration, login and logout.

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::EmptyResponse;
use crate::config::PasswordLoginMode;
use crate::error::{ApiError, ApiResult, ErrCode};
use crate::extract::{Auth, Body};
use crate::service::accounts::{self, NewAccount, PasswordLogin};
use crate::service::devices::{self, Session};
use crate::service::{sso, Context};

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

/// The spec's `m.homeserver` discovery information, sent with a new session
/// so clients need not fetch `.well-known` separately.
#[derive(Serialize)]
pub(super) struct DiscoveryInformation {
    #[serde(rename = "m.homeserver")]
    homeserver: HomeserverInformation,
}

#[derive(Serialize)]
pub(super) struct HomeserverInformation {
    base_url: String,
}

impl DiscoveryInformation {
    fn new(state: &Context) -> Self {
        DiscoveryInformation {
            homeserver: HomeserverInformation {
                base_url: state.config.public_baseurl(),
            },
        }
    }
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

/// Without `inhibit_login` the new session's fields are present too.
#[derive(Serialize)]
pub(super) struct RegisterResponse {
    user_id: String,
    home_server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    well_known: Option<DiscoveryInformation>,
}

/// `POST /_matrix/client/v3/register`
pub(super) async fn register(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Query(query): Query<RegisterQuery>,
    Body(body): Body<RegisterBody>,
) -> ApiResult<Json<RegisterResponse>> {
    let new = NewAccount {
        guest: query.kind.as_deref().is_some_and(|k| k != "user"),
        username: body.username.as_deref(),
        password: body.password.map(Zeroizing::new),
        uia: body.auth.as_ref(),
        device_id: body.device_id.as_deref(),
        device_display_name: body.initial_device_display_name.as_deref(),
        inhibit_login: body.inhibit_login,
    };
    let registered = accounts::register(&state, &ip, new).await?;
    let home_server = state.server_name().to_owned();
    Ok(Json(match registered.session {
        None => RegisterResponse {
            user_id: registered.user_id,
            home_server,
            device_id: None,
            access_token: None,
            well_known: None,
        },
        Some(session) => RegisterResponse {
            user_id: session.user_id,
            home_server,
            device_id: Some(session.device_id),
            access_token: Some(session.access_token),
            well_known: Some(DiscoveryInformation::new(&state)),
        },
    }))
}

#[derive(Deserialize)]
pub(super) struct AvailableQuery {
    // Optional so that a closed server answers 403 before looking at it.
    username: Option<String>,
}

#[derive(Serialize)]
pub(super) struct AvailableResponse {
    available: bool,
}

/// `GET /_matrix/client/v3/register/available`
pub(super) async fn available(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Query(q): Query<AvailableQuery>,
) -> ApiResult<Json<AvailableResponse>> {
    accounts::check_available(&state, &ip, q.username.as_deref()).await?;
    Ok(Json(AvailableResponse { available: true }))
}

#[derive(Deserialize)]
pub(super) struct ValidityQuery {
    token: String,
}

#[derive(Serialize)]
pub(super) struct TokenValidityResponse {
    valid: bool,
}

/// `GET /_matrix/client/v1/register/m.login.registration_token/validity`
pub(super) async fn token_validity(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Query(q): Query<ValidityQuery>,
) -> ApiResult<Json<TokenValidityResponse>> {
    let valid = accounts::registration_token_valid(&state, &ip, &q.token).await?;
    Ok(Json(TokenValidityResponse { valid }))
}

#[derive(Serialize)]
pub(super) struct LoginFlow {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    identity_providers: Vec<IdentityProvider>,
}

#[derive(Serialize)]
pub(super) struct IdentityProvider {
    id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    icon: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    brand: Option<String>,
}

#[derive(Serialize)]
pub(super) struct LoginFlowsResponse {
    flows: Vec<LoginFlow>,
}

/// `GET /_matrix/client/v3/login`
pub(super) async fn login_flows(State(state): State<Context>) -> Json<LoginFlowsResponse> {
    let mut flows = Vec::new();
    if state.config.sso.password_login != PasswordLoginMode::Off {
        flows.push(LoginFlow {
            kind: "m.login.password",
            identity_providers: Vec::new(),
        });
    }
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let providers: Vec<IdentityProvider> = sso::providers(&state)
        .into_iter()
        .map(|p| IdentityProvider {
            id: p.id.to_owned(),
            name: p.name.to_owned(),
            icon: some(p.icon),
            brand: some(p.brand),
        })
        .collect();
    if !providers.is_empty() {
        flows.push(LoginFlow {
            kind: "m.login.sso",
            identity_providers: providers,
        });
        flows.push(LoginFlow {
            kind: "m.login.token",
            identity_providers: Vec::new(),
        });
    }
    Json(LoginFlowsResponse { flows })
}

#[derive(Deserialize)]
pub(super) struct LoginBody {
    #[serde(rename = "type")]
    kind: String,
    identifier: Option<Value>,
    user: Option<String>,
    password: Option<String>,
    /// `m.login.token`
    token: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
}

#[derive(Serialize)]
pub(super) struct LoginResponse {
    user_id: String,
    device_id: String,
    access_token: String,
    home_server: String,
    well_known: DiscoveryInformation,
}

impl LoginResponse {
    fn new(state: &Context, session: Session) -> Self {
        LoginResponse {
            user_id: session.user_id,
            device_id: session.device_id,
            access_token: session.access_token,
            home_server: state.server_name().to_owned(),
            well_known: DiscoveryInformation::new(state),
        }
    }
}

/// `POST /_matrix/client/v3/login`
pub(super) async fn login(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    Body(body): Body<LoginBody>,
) -> ApiResult<Json<LoginResponse>> {
    if body.kind == "m.login.token" {
        let token = body
            .token
            .as_deref()
            .ok_or_else(|| ApiError::missing_param("token is required"))?;
        let session = sso::login_with_token(
            &state,
            &ip,
            token,
            body.device_id.as_deref(),
            body.initial_device_display_name.as_deref(),
        )
        .await?;
        return Ok(Json(LoginResponse::new(&state, session)));
    }
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
    let login = PasswordLogin {
        user: &name,
        password: Zeroizing::new(body.password.unwrap_or_default()),
        device_id: body.device_id.as_deref(),
        device_display_name: body.initial_device_display_name.as_deref(),
    };
    let session = accounts::login_with_password(&state, &ip, login).await?;
    Ok(Json(LoginResponse::new(&state, session)))
}

/// `POST /_matrix/client/v3/logout`
pub(super) async fn logout(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<EmptyResponse>> {
    devices::delete_devices(&state, &auth.user_id, std::slice::from_ref(&auth.device_id)).await?;
    Ok(Json(EmptyResponse {}))
}

/// `POST /_matrix/client/v3/logout/all`
pub(super) async fn logout_all(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<EmptyResponse>> {
    devices::delete_all_except(&state, &auth.user_id, None).await?;
    Ok(Json(EmptyResponse {}))
}
