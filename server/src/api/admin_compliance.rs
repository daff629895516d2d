//! The admin API for retention, purges and legal holds, under
//! `/_cloister/admin/v1/…`, and the same for the console's DPO pages. Like
//! every admin endpoint, each call is audited first (extracting the
//! [`Caller`]), then refused unless the caller may make it.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::admin::{internal, Caller};
use crate::config::Retention;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::service::holds::{self, By, Hold, NewHold, Scope};
use crate::service::retention::{self, PolicyView};
use crate::service::{purge, Context};

fn by(state: &Context, caller: &impl Caller) -> By {
    By {
        name: caller.user_id().to_owned(),
        actor: state.audit.actor(caller.user_id()),
    }
}

/// `GET /_cloister/admin/v1/retention`: the server's retention settings.
pub(super) async fn server_retention<C: Caller>(
    State(state): State<Context>,
    _: C,
) -> ApiResult<Json<Retention>> {
    Ok(Json(state.config.retention.clone()))
}

/// `GET /_cloister/admin/v1/rooms/{roomId}/retention`: what the room asks
/// for and what applies.
pub(super) async fn room_retention<C: Caller>(
    State(state): State<Context>,
    _: C,
    Path(room_id): Path<String>,
) -> ApiResult<Json<PolicyView>> {
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
pub(super) async fn set_room_retention<C: Caller>(
    State(state): State<Context>,
    caller: C,
    Path(room_id): Path<String>,
    Body(content): Body<Value>,
) -> ApiResult<Json<SetRetentionResponse>> {
    let actor = state.audit.actor(caller.user_id());
    let event = retention::set_room_policy(&state, actor, &room_id, &content).await?;
    let policy = retention::policy_from_content(&state, Some(&event.content));
    Ok(Json(SetRetentionResponse {
        event_id: event.event_id,
        policy: policy.view(),
    }))
}

/// `POST /_cloister/admin/v1/purge`: runs the retention purge now and
/// answers with its summary (also in the audit log).
pub(super) async fn run_purge<C: Caller>(
    State(state): State<Context>,
    _: C,
) -> ApiResult<Json<purge::Summary>> {
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
pub(super) async fn list_holds<C: Caller>(
    State(state): State<Context>,
    _: C,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<HoldsResponse>> {
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
pub(super) async fn set_hold<C: Caller>(
    State(state): State<Context>,
    caller: C,
    Body(body): Body<SetHoldBody>,
) -> ApiResult<Json<Hold>> {
    let scope = Scope::parse(&body.scope)
        .ok_or_else(|| ApiError::invalid_param("scope must be \"user\" or \"room\""))?;
    let new = NewHold {
        scope,
        target: &body.target,
        case_id: &body.case_id,
        reason: &body.reason,
    };
    let hold = holds::set(&state, by(&state, &caller), new).await?;
    Ok(Json(hold))
}

/// `POST /_cloister/admin/v1/holds/{holdId}/release`
pub(super) async fn release_hold<C: Caller>(
    State(state): State<Context>,
    caller: C,
    Path(hold_id): Path<String>,
) -> ApiResult<Json<Hold>> {
    let hold = holds::release(&state, by(&state, &caller), &hold_id).await?;
    Ok(Json(hold))
}
