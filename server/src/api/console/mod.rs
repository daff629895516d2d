//! The web console, `/_cloister/console/`: its pages (static files embedded
//! in the binary) and the JSON API they call, for staff signed in with a
//! cookie. Every call that needs a role is audited like the admin API's,
//! and every change must carry the session's CSRF token. The security
//! headers all console answers carry are set in [`headers`].

pub mod assets;
pub mod dpo;
pub mod operator;
pub mod session;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;

use crate::error::{ApiError, ApiResult};
use crate::service::console_session::{self, Staff};
use crate::service::staff::Role;
use crate::service::Context;

pub use session::COOKIE;

/// Where the console lives; the security headers apply to everything below.
pub use crate::service::console_session::CONSOLE_PATH as PREFIX;

/// The session cookie's value, if the request carries one.
fn cookie(parts: &Parts) -> Option<String> {
    super::cookie(&parts.headers, COOKIE)
}

/// A signed-in staff member. For any method that can change something, the
/// request's `X-CSRF-Token` has been checked against the session's.
pub struct Signed(pub Staff);

impl FromRequestParts<Context> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Context) -> ApiResult<Self> {
        let Some(cookie) = cookie(parts) else {
            return Err(ApiError::missing_token());
        };
        let staff = console_session::authenticate(state, &cookie).await?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let presented = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok());
            staff.check_csrf(presented)?;
        }
        Ok(Signed(staff))
    }
}

/// Admits a signed-in staff member who holds `role`, recording the call
/// (route only) in the audit log whether or not it is allowed.
async fn admit_role(parts: &mut Parts, state: &Context, role: Role) -> ApiResult<Staff> {
    let Signed(staff) = Signed::from_request_parts(parts, state).await?;
    let route = MatchedPath::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::internal())?;
    let allowed = staff.has(role);
    super::admin::record_call(state, &staff.user_id, &route, allowed).await?;
    if allowed {
        Ok(staff)
    } else {
        Err(ApiError::forbidden(match role {
            Role::Operator => "This needs the console's operator role",
            Role::Dpo => "This needs the console's data-protection officer role",
        }))
    }
}

/// A staff member with the operator role.
pub struct Operator(pub Staff);

impl FromRequestParts<Context> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Context) -> ApiResult<Self> {
        admit_role(parts, state, Role::Operator).await.map(Operator)
    }
}

/// A staff member with the data-protection officer role.
pub struct Dpo(pub Staff);

impl FromRequestParts<Context> for Dpo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Context) -> ApiResult<Self> {
        admit_role(parts, state, Role::Dpo).await.map(Dpo)
    }
}

/// The policy the console's pages run under: scripts, styles and the
/// verifier's WebAssembly only from the server itself, nothing inline, no
/// framing, and requests only back to the server.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
frame-ancestors 'none'; base-uri 'none'";

/// Sets the console's security headers on `response`. The Matrix API's
/// any-origin CORS grant is taken off: the console is same-origin only.
pub fn headers(response: &mut Response) {
    let h = response.headers_mut();
    h.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
}
