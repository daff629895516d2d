//! Simplified sliding sync (MSC4186).

use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use cloister_proto::sliding_sync::{Request, Response};
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::Body;
use crate::service::session::Auth;
use crate::service::sliding_sync::{self, SlidingSyncRequest};
use crate::service::Context;

#[derive(Deserialize)]
pub(super) struct SlidingSyncQuery {
    pos: Option<String>,
    timeout: Option<u64>,
}

/// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`
pub(super) async fn sync(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<SlidingSyncQuery>,
    Body(body): Body<Request>,
) -> ApiResult<Json<Response>> {
    let timeout = Duration::from_millis(
        q.timeout
            .unwrap_or(0)
            .min(state.config.limits.max_sync_timeout_ms),
    );
    let request = SlidingSyncRequest {
        pos: q.pos,
        timeout,
        body,
    };
    Ok(Json(sliding_sync::sync(&state, &auth, &request).await?))
}
