//! Sending, redacting and reading room events.
//!
//! Response fields are in alphabetical order, as serde_json orders map
//! keys, so responses are the same byte for byte as when built as maps.

use axum::extract::{Path, Query, RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::rooms::SendEventResponse;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::event_reads::{self, for_reader, one_for_reader, PageRequest};
use crate::service::{room_events, Context};
use cloister_proto::event::ClientEvent;

/// Most uploads one event may declare it carries.
const MAX_ATTACHMENTS: usize = 32;

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
///
/// `?attach_media=mxc://…` (repeatable, as in MSC3911) declares the uploads
/// the event carries: the server cannot read encrypted events, and needs the
/// link to delete the files with the event when retention expires it.
pub(super) async fn send(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_type, txn_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    Body(content): Body<Value>,
) -> ApiResult<Json<SendEventResponse>> {
    let attachments = attachments(&state, query.as_deref())?;
    let event_id = room_events::send_message(
        &state,
        &auth,
        &room_id,
        &event_type,
        &txn_id,
        &content,
        &attachments,
    )
    .await?;
    Ok(Json(SendEventResponse { event_id }))
}

/// The media ids named by `attach_media` parameters; each must be an
/// `mxc://` URI of this server.
fn attachments(state: &Context, query: Option<&str>) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name != "attach_media" {
            continue;
        }
        let media_id = value
            .strip_prefix("mxc://")
            .and_then(|rest| rest.split_once('/'))
            .filter(|(server, _)| *server == state.server_name())
            .map(|(_, id)| id.to_owned())
            .ok_or_else(|| {
                ApiError::invalid_param("attach_media must be an mxc:// URI of this server")
            })?;
        out.push(media_id);
    }
    if out.len() > MAX_ATTACHMENTS {
        return Err(ApiError::invalid_param(format!(
            "at most {MAX_ATTACHMENTS} attach_media per event"
        )));
    }
    Ok(out)
}

#[derive(Deserialize)]
pub(super) struct RedactBody {
    reason: Option<String>,
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
pub(super) async fn redact(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id, txn_id)): Path<(String, String, String)>,
    Body(body): Body<RedactBody>,
) -> ApiResult<Json<SendEventResponse>> {
    let event_id = room_events::redact(
        &state,
        &auth,
        &room_id,
        &event_id,
        &txn_id,
        body.reason.as_deref(),
    )
    .await?;
    Ok(Json(SendEventResponse { event_id }))
}

#[derive(Deserialize)]
pub(super) struct MessagesQuery {
    from: Option<String>,
    to: Option<String>,
    dir: Option<String>,
    limit: Option<i64>,
    filter: Option<String>,
}

#[derive(Serialize)]
pub(super) struct MessagesResponse {
    chunk: Vec<ClientEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    end: Option<String>,
    start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Vec<ClientEvent>>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub(super) async fn messages(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Json<MessagesResponse>> {
    let backwards = match q.dir.as_deref() {
        Some("b") => true,
        Some("f") => false,
        _ => return Err(ApiError::invalid_param("dir must be b or f")),
    };
    if q.limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid_param("limit must not be negative"));
    }
    let lazy_members = match &q.filter {
        Some(f) => {
            let filter: Value =
                serde_json::from_str(f).map_err(|_| ApiError::not_json("filter is not JSON"))?;
            filter
                .get("lazy_load_members")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        }
        None => false,
    };
    let request = PageRequest {
        from: q.from.as_deref(),
        to: q.to.as_deref(),
        backwards,
        limit: q.limit.unwrap_or(10).clamp(1, 1000),
        lazy_members,
    };
    let page = event_reads::page(&state, &auth, &room_id, &request).await?;
    let now = state.now_ms();
    let mut chunk = for_reader(&page.chunk, &auth, now);
    page.bundles.attach(&mut chunk);
    Ok(Json(MessagesResponse {
        chunk,
        end: page.end,
        start: page.start,
        state: page
            .members
            .map(|members| members.iter().map(|e| e.to_client(None, now)).collect()),
    }))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
pub(super) async fn event(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
) -> ApiResult<Json<ClientEvent>> {
    let (event, bundles) =
        event_reads::event_for_reader(&state, &auth, &room_id, &event_id).await?;
    let mut event = one_for_reader(&event, &auth, state.now_ms());
    bundles.attach_one(&mut event);
    Ok(Json(event))
}

#[derive(Deserialize)]
pub(super) struct ContextQuery {
    limit: Option<i64>,
}

#[derive(Serialize)]
pub(super) struct ContextResponse {
    end: String,
    event: ClientEvent,
    events_after: Vec<ClientEvent>,
    events_before: Vec<ClientEvent>,
    start: String,
    state: Vec<ClientEvent>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
pub(super) async fn context(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
    Query(q): Query<ContextQuery>,
) -> ApiResult<Json<ContextResponse>> {
    let context = event_reads::context(&state, &auth, &room_id, &event_id, q.limit).await?;
    let now = state.now_ms();
    let bundled = |events: &[_]| {
        let mut out = for_reader(events, &auth, now);
        context.bundles.attach(&mut out);
        out
    };
    let mut event = one_for_reader(&context.event, &auth, now);
    context.bundles.attach_one(&mut event);
    Ok(Json(ContextResponse {
        end: context.end,
        event,
        events_after: bundled(&context.after),
        events_before: bundled(&context.before),
        start: context.start,
        state: for_reader(&context.state, &auth, now),
    }))
}
