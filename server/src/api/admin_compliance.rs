//! The admin API for retention, purges and legal holds, under
//! `/_cloister/admin/v1/…`. Like every admin endpoint, each call goes
//! through [`admit`]: audited first, then refused unless the caller is a
//! server admin.

use axum::extract::{MatchedPath, Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::admin::{admit, internal};
use crate::config::Retention;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::holds::{self, By, Hold, NewHold, Scope};
use crate::service::retention::{self, PolicyView};
use crate::service::{purge, Context};

fn by(state: &Context, auth: &Auth) -> By {
    By {
        name: auth.user_id.clone(),
        actor: state.audit.actor(&auth.user_id),
    }
}

/// `GET /_cloister/admin/v1/retention`: the server's retention settings.
pub(super) async fn server_retention(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
) -> ApiResult<Json<Retention>> {
    admit(&state, &auth, &route).await?;
    Ok(Json(state.config.retention.clone()))
}

/// `GET /_cloister/admin/v1/rooms/{roomId}/retention`: what the room asks
/// for and what applies.
pub(super) async fn room_retention(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Path(room_id): Path<String>,
) -> ApiResult<Json<PolicyView>> {
    admit(&state, &auth, &route).await?;
    let policy = retention::policy_of_room(&state, &room_id).await?;
    Ok(Json(policy.view()))
}

#[derive(Serialize)]
pub(super) struct SetRetentionResponse {
    /// The `m.room.retention` event the server sent.
    event_id: String,
    policy: PolicyView,
}

/// `PUT /_cloister/admin/v1/rooms/{roomId}/retention`: sets the room's
/// `m.room.retention` (`{"max_lifetime": ms, "min_lifetime": ms}`; `{}`
/// returns the room to the server default).
pub(super) async fn set_room_retention(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Path(room_id): Path<String>,
    Body(content): Body<Value>,
) -> ApiResult<Json<SetRetentionResponse>> {
    admit(&state, &auth, &route).await?;
    let actor = state.audit.actor(&auth.user_id);
    let event = retention::set_room_policy(&state, actor, &room_id, &content).await?;
    let policy = retention::policy_from_content(&state, Some(&event.content));
    Ok(Json(SetRetentionResponse {
        event_id: event.event_id,
        policy: policy.view(),
    }))
}

/// `POST /_cloister/admin/v1/purge`: runs the retention purge now and
/// answers with its summary (also in the audit log).
pub(super) async fn run_purge(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
) -> ApiResult<Json<purge::Summary>> {
    admit(&state, &auth, &route).await?;
    let summary = purge::run(&state).await.map_err(internal)?;
    Ok(Json(summary))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    include_released: bool,
}

#[derive(Serialize)]
pub(super) struct HoldsResponse {
    holds: Vec<Hold>,
}

/// `GET /_cloister/admin/v1/holds[?include_released=true]`
pub(super) async fn list_holds(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<HoldsResponse>> {
    admit(&state, &auth, &route).await?;
    let holds = holds::list(&state, q.include_released).await?;
    Ok(Json(HoldsResponse { holds }))
}

#[derive(Deserialize)]
pub(super) struct SetHoldBody {
    scope: String,
    target: String,
    case_id: String,
    reason: String,
}

/// `POST /_cloister/admin/v1/holds`: `{"scope": "user"|"room", "target",
/// "case_id", "reason"}`.
pub(super) async fn set_hold(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Body(body): Body<SetHoldBody>,
) -> ApiResult<Json<Hold>> {
    admit(&state, &auth, &route).await?;
    let scope = Scope::parse(&body.scope)
        .ok_or_else(|| ApiError::invalid_param("scope must be \"user\" or \"room\""))?;
    let new = NewHold {
        scope,
        target: &body.target,
        case_id: &body.case_id,
        reason: &body.reason,
    };
    let hold = holds::set(&state, by(&state, &auth), new).await?;
    Ok(Json(hold))
}

/// `POST /_cloister/admin/v1/holds/{holdId}/release`
pub(super) async fn release_hold(
    State(state): State<Context>,
    auth: Auth,
    route: MatchedPath,
    Path(hold_id): Path<String>,
) -> ApiResult<Json<Hold>> {
    admit(&state, &auth, &route).await?;
    let hold = holds::release(&state, by(&state, &auth), &hold_id).await?;
    Ok(Json(hold))
}
