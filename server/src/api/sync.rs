//! `/sync`.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::session::Auth;
use crate::service::sync::SyncResponse;
use crate::service::sync::{self, filter::SyncFilter, tokens::SyncToken, SyncRequest};
use crate::service::Context;

#[derive(Deserialize)]
pub(super) struct SyncQuery {
    since: Option<String>,
    timeout: Option<u64>,
    #[serde(default)]
    full_state: bool,
    filter: Option<String>,
}

/// `GET /_matrix/client/v3/sync`
pub(super) async fn sync_handler(
    State(state): State<Context>,
    auth: Auth,
    Query(q): Query<SyncQuery>,
) -> ApiResult<Json<SyncResponse>> {
    let since = match q.since.as_deref() {
        Some(token) => Some(
            SyncToken::parse(token)
                .ok_or_else(|| ApiError::invalid_param("invalid since token"))?,
        ),
        None => None,
    };
    let filter = match q.filter.as_deref() {
        // Clients send the first filter inline and later ones by id.
        Some(inline) if inline.trim_start().starts_with('{') => {
            let value: Value = serde_json::from_str(inline)
                .map_err(|_| ApiError::not_json("filter is not valid JSON"))?;
            SyncFilter::parse(&value)?
        }
        Some(id) => SyncFilter::stored(&state, &auth.user_id, id).await?,
        None => SyncFilter::default(),
    };
    let timeout = Duration::from_millis(
        q.timeout
            .unwrap_or(0)
            .min(state.config.limits.max_sync_timeout_ms),
    );
    let request = SyncRequest {
        since,
        timeout,
        full_state: q.full_state,
        filter,
    };
    Ok(Json(sync::sync(&state, &auth, &request).await?))
}
