//! Discovery: spec versions, `.well-known`, capabilities and the health check.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use crate::service::rooms::{ROOM_VERSION, ROOM_VERSIONS};
use crate::service::session::Auth;
use crate::service::Context;

/// `GET /_matrix/client/versions`
pub(super) async fn versions() -> Json<Value> {
    let versions: Vec<String> = (1..=11).map(|minor| format!("v1.{minor}")).collect();
    Json(json!({
        "versions": versions,
        // Simplified sliding sync (MSC4186), under the name clients look for.
        "unstable_features": { "org.matrix.simplified_msc3575": true },
    }))
}

/// `GET /.well-known/matrix/client`
pub(super) async fn well_known(State(state): State<Context>) -> Json<Value> {
    Json(json!({ "m.homeserver": { "base_url": state.config.public_baseurl() } }))
}

/// `GET /_matrix/client/v3/capabilities`
pub(super) async fn capabilities(_auth: Auth) -> Json<Value> {
    Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": {
                "default": ROOM_VERSION,
                "available": ROOM_VERSIONS.iter().map(|v| (v.to_string(), json!("stable"))).collect::<serde_json::Map<_, _>>(),
            },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false }
        }
    }))
}

/// `GET /health`: for load balancers and monitoring; no authentication, no
/// rate limit.
pub(super) async fn health() -> &'static str {
    "OK"
}
