//! Pushers and notifications over HTTP; the rules are `service::push`.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::push::{self, pushers};
use crate::service::Context;

/// `GET /_matrix/client/v3/pushers`
pub(super) async fn get_pushers(
    State(state): State<Context>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    Ok(Json(pushers::list(&state, &auth).await?))
}

/// `POST /_matrix/client/v3/pushers/set`
pub(super) async fn set_pusher(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<Value>,
) -> ApiResult<Json<Value>> {
    pushers::set(&state, &auth, &body).await?;
    Ok(Json(serde_json::json!({})))
}

#[derive(Deserialize)]
pub(super) struct NotificationsQuery {
    from: Option<String>,
    limit: Option<String>,
    only: Option<String>,
}

/// `GET /_matrix/client/v3/notifications`
pub(super) async fn notifications(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<NotificationsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = match q.limit.as_deref() {
        None => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| ApiError::invalid_param("limit must be an integer"))?,
        ),
    };
    Ok(Json(
        push::list(&state, &auth, q.from.as_deref(), limit, q.only.as_deref()).await?,
    ))
}
