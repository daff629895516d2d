//! Signing in to the console and out again.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::Json;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Signed;
use crate::api::auth::ClientIp;
use crate::api::EmptyResponse;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::service::console_session::{self, Staff};
use crate::service::staff::Role;
use crate::service::Context;

/// `__Host-`: the browser accepts it only with `Secure`, `Path=/` and no
/// `Domain`, so no other host (a sibling subdomain, say) can plant or
/// shadow it.
pub const COOKIE: &str = "__Host-cloister_console";

/// A password, or a login token from single sign-on.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, untagged)]
pub(in crate::api) enum SignInBody {
    Password { user: String, password: String },
    Token { login_token: String },
}

#[derive(Serialize)]
pub(in crate::api) struct SessionResponse {
    user_id: String,
    roles: Vec<Role>,
    /// Sent back as `X-CSRF-Token` with every change.
    csrf_token: String,
    idle_timeout_ms: u64,
    expires_ts: i64,
}

fn describe(state: &Context, staff: &Staff) -> SessionResponse {
    SessionResponse {
        user_id: staff.user_id.clone(),
        roles: staff.roles.clone(),
        csrf_token: staff.csrf_token.to_string(),
        idle_timeout_ms: state.config.console.idle_timeout_secs * 1000,
        expires_ts: staff.expires_ts,
    }
}

/// No other site may sign a browser in to an account of its choosing
/// (login CSRF). A form on another site can post a body that reads as JSON
/// (`enctype="text/plain"`), but not with a JSON content type — that needs
/// a CORS preflight, which the console never grants — and browsers mark its
/// request `Sec-Fetch-Site: cross-site`.
fn refuse_cross_site(headers: &HeaderMap) -> ApiResult<()> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::new(
            crate::error::ErrCode::NotJson,
            "Signing in needs Content-Type: application/json",
        ));
    }
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none");
    if matches!(site, "cross-site" | "same-site") {
        return Err(ApiError::forbidden(
            "The console accepts sign-ins from its own pages only",
        ));
    }
    Ok(())
}

fn set_cookie(value: &str, max_age_secs: u64) -> ApiResult<HeaderMap> {
    let cookie = format!(
        "{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}"
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?,
    );
    Ok(headers)
}

/// `POST /_cloister/console/api/session`: `{"user", "password"}`, or
/// `{"login_token"}` after single sign-on. Sets the session cookie and
/// answers with who is signed in and the CSRF token.
pub(in crate::api) async fn sign_in(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    request_headers: HeaderMap,
    Body(body): Body<SignInBody>,
) -> ApiResult<(HeaderMap, Json<SessionResponse>)> {
    refuse_cross_site(&request_headers)?;
    let signed_in = match body {
        SignInBody::Password { user, password } => {
            if user.is_empty() || user.len() > 255 {
                return Err(ApiError::invalid_param("user must be 1 to 255 bytes"));
            }
            console_session::sign_in(&state, &ip, &user, Zeroizing::new(password)).await?
        }
        SignInBody::Token { login_token } => {
            console_session::sign_in_with_token(&state, &ip, &login_token).await?
        }
    };
    let headers = set_cookie(
        &signed_in.cookie,
        state.config.console.session_lifetime_secs,
    )?;
    Ok((headers, Json(describe(&state, &signed_in.staff))))
}

/// `GET /_cloister/console/api/session`: the signed-in staff member (after
/// a page reload, say).
pub(in crate::api) async fn current(
    State(state): State<Context>,
    Signed(staff): Signed,
) -> Json<SessionResponse> {
    Json(describe(&state, &staff))
}

/// `DELETE /_cloister/console/api/session`: signs out and clears the cookie.
pub(in crate::api) async fn sign_out(
    State(state): State<Context>,
    Signed(staff): Signed,
) -> ApiResult<(HeaderMap, Json<EmptyResponse>)> {
    console_session::sign_out(&state, &staff).await?;
    Ok((set_cookie("", 0)?, Json(EmptyResponse {})))
}
