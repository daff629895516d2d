//! Discovery: spec versions, `.well-known`, capabilities and the health check.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::extract::Auth;
use crate::state::AppState;

pub const ROOM_VERSION: &str = "10";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/_matrix/client/versions", get(versions))
        .route("/.well-known/matrix/client", get(well_known))
        .route("/_matrix/client/v3/capabilities", get(capabilities))
        .route("/health", get(|| async { "OK" }))
}

/// `GET /_matrix/client/versions`
async fn versions() -> Json<Value> {
    let versions: Vec<String> = (1..=11).map(|minor| format!("v1.{minor}")).collect();
    Json(json!({ "versions": versions, "unstable_features": {} }))
}

/// `GET /.well-known/matrix/client`
async fn well_known(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "m.homeserver": { "base_url": state.config.public_baseurl() } }))
}

/// `GET /_matrix/client/v3/capabilities`
async fn capabilities(_auth: Auth) -> Json<Value> {
    Json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.room_versions": { "default": ROOM_VERSION, "available": { ROOM_VERSION: "stable" } },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false }
        }
    }))
}
