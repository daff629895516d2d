//! Relations and threads: the children of an event, and a room's threads.
//!
//! Response fields are in alphabetical order, as serde_json orders map
//! keys, so responses are the same byte for byte as when built as maps.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::Auth;
use crate::service::event_reads::for_reader;
use crate::service::relations::{self, RelationsRequest};
use crate::service::Context;
use cloister_proto::event::ClientEvent;

/// Most events or threads one page may hold.
const MAX_LIMIT: i64 = 100;
const DEFAULT_LIMIT: i64 = 10;

#[derive(Deserialize)]
pub(super) struct RelationsQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<i64>,
    dir: Option<String>,
    recurse: Option<bool>,
    /// The name before spec v1.10 (MSC3981), which clients still send.
    #[serde(rename = "org.matrix.msc3981.recurse")]
    recurse_unstable: Option<bool>,
}

#[derive(Serialize)]
pub(super) struct RelationsResponse {
    chunk: Vec<ClientEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_batch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_batch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recursion_depth: Option<u32>,
}

fn limit(limit: Option<i64>) -> ApiResult<i64> {
    match limit {
        Some(l) if l < 0 => Err(ApiError::invalid_param("limit must not be negative")),
        Some(l) => Ok(l.clamp(1, MAX_LIMIT)),
        None => Ok(DEFAULT_LIMIT),
    }
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
pub(super) async fn all(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult<Json<RelationsResponse>> {
    children(&state, &auth, &room_id, &event_id, None, None, q).await
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
pub(super) async fn by_rel_type(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id, rel_type)): Path<(String, String, String)>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult<Json<RelationsResponse>> {
    children(&state, &auth, &room_id, &event_id, Some(&rel_type), None, q).await
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
pub(super) async fn by_rel_and_event_type(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id, rel_type, event_type)): Path<(String, String, String, String)>,
    Query(q): Query<RelationsQuery>,
) -> ApiResult<Json<RelationsResponse>> {
    let (rel, ty) = (Some(rel_type.as_str()), Some(event_type.as_str()));
    children(&state, &auth, &room_id, &event_id, rel, ty, q).await
}

async fn children(
    state: &Context,
    auth: &Auth,
    room_id: &str,
    event_id: &str,
    rel_type: Option<&str>,
    event_type: Option<&str>,
    q: RelationsQuery,
) -> ApiResult<Json<RelationsResponse>> {
    let backwards = match q.dir.as_deref() {
        None | Some("b") => true,
        Some("f") => false,
        _ => return Err(ApiError::invalid_param("dir must be b or f")),
    };
    let request = RelationsRequest {
        rel_type,
        event_type,
        from: q.from.as_deref(),
        to: q.to.as_deref(),
        backwards,
        limit: limit(q.limit)?,
        recurse: q.recurse.or(q.recurse_unstable).unwrap_or(false),
    };
    let page = relations::children(state, auth, room_id, event_id, &request).await?;
    let mut chunk = for_reader(&page.chunk, auth, state.now_ms());
    page.bundles.attach(&mut chunk);
    Ok(Json(RelationsResponse {
        chunk,
        next_batch: page.next_batch,
        prev_batch: page.prev_batch,
        recursion_depth: page.recursion_depth,
    }))
}

#[derive(Deserialize)]
pub(super) struct ThreadsQuery {
    include: Option<String>,
    from: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub(super) struct ThreadsResponse {
    chunk: Vec<ClientEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_batch: Option<String>,
}

/// `GET /_matrix/client/v1/rooms/{roomId}/threads`
pub(super) async fn threads(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<ThreadsQuery>,
) -> ApiResult<Json<ThreadsResponse>> {
    let participated = match q.include.as_deref() {
        None | Some("all") => false,
        Some("participated") => true,
        _ => {
            return Err(ApiError::invalid_param(
                "include must be all or participated",
            ))
        }
    };
    let limit = limit(q.limit)?;
    let page = relations::threads(
        &state,
        &auth,
        &room_id,
        participated,
        q.from.as_deref(),
        limit,
    )
    .await?;
    let mut chunk = for_reader(&page.chunk, &auth, state.now_ms());
    page.bundles.attach(&mut chunk);
    Ok(Json(ThreadsResponse {
        chunk,
        next_batch: page.next_batch,
    }))
}
