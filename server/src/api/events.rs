//! Sending, redacting and reading room events.

use axum::extract::{Path, Query, RawQuery, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::events as event_service;
use crate::service::retention;
use crate::service::sync::tokens;
use crate::service::visibility::{self, Access};
use crate::service::Context;
use crate::store::events::{self, NewEvent, StoredEvent, Viewer};

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
) -> ApiResult<Json<Value>> {
    let attachments = attachments(&state, query.as_deref())?;
    if !content.is_object() {
        return Err(ApiError::bad_json("event content must be a JSON object"));
    }
    super::rooms::check_type_and_key(&event_type, "")?;
    if event_type == "m.room.redaction" {
        return Err(ApiError::invalid_param(
            "use the /redact endpoint to redact events",
        ));
    }
    let event = NewEvent {
        room_id: &room_id,
        sender: &auth.user_id,
        sender_device: Some(&auth.device_id),
        txn_id: Some(&txn_id),
        event_type: &event_type,
        state_key: None,
        content: &content,
        redacts: None,
    };
    let event_id =
        event_service::send_idempotent(&state, event, &auth.device_id, &txn_id, &attachments)
            .await?;
    Ok(Json(json!({ "event_id": event_id })))
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
) -> ApiResult<Json<Value>> {
    let mut content = json!({ "redacts": event_id });
    if let Some(reason) = body.reason {
        content["reason"] = json!(reason);
    }
    let event = NewEvent {
        room_id: &room_id,
        sender: &auth.user_id,
        sender_device: Some(&auth.device_id),
        txn_id: Some(&txn_id),
        event_type: "m.room.redaction",
        state_key: None,
        content: &content,
        redacts: Some(&event_id),
    };
    let event_id =
        event_service::send_idempotent(&state, event, &auth.device_id, &txn_id, &[]).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

#[derive(Deserialize)]
pub(super) struct MessagesQuery {
    from: Option<String>,
    to: Option<String>,
    dir: Option<String>,
    limit: Option<i64>,
    filter: Option<String>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub(super) async fn messages(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> ApiResult<Json<Value>> {
    let backwards = match q.dir.as_deref() {
        Some("b") => true,
        Some("f") => false,
        _ => return Err(ApiError::invalid_param("dir must be b or f")),
    };
    if q.limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid_param("limit must not be negative"));
    }
    let limit = q.limit.unwrap_or(10).clamp(1, 1000);
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
    let mut conn = state.store.read().await?;
    let access = visibility::require(&mut conn, &room_id, &auth.user_id).await?;
    let parse = |t: &str| {
        tokens::parse_gap(t).ok_or_else(|| ApiError::invalid_param("invalid pagination token"))
    };
    // A token names the gap before stream position `gap`.
    let from_gap = match &q.from {
        Some(t) => parse(t)?,
        None if backwards => crate::store::current_pos(&mut conn).await? + 1,
        None => 0,
    };
    let to_gap = q.to.as_deref().map(parse).transpose()?;
    let cutoff = retention::cutoff(&state, &mut conn, &room_id, state.now_ms()).await?;
    let (low, high) = if backwards {
        (to_gap.unwrap_or(0), from_gap - 1)
    } else {
        (from_gap, to_gap.map_or(i64::MAX, |g| g - 1))
    };
    let chunk = events::range(
        &mut conn,
        &room_id,
        low,
        high,
        limit,
        backwards,
        cutoff,
        &access.events,
    )
    .await?;
    let end = match chunk.last() {
        Some(last) if chunk.len() as i64 == limit => {
            Some(tokens::gap(if backwards { last.pos } else { last.pos + 1 }))
        }
        _ => None,
    };
    let now = state.now_ms();
    let viewer = Viewer {
        user_id: &auth.user_id,
        device_id: &auth.device_id,
    };
    let mut body = json!({
        "start": q.from.unwrap_or_else(|| tokens::gap(from_gap)),
        "chunk": chunk.iter().map(|e| e.to_client(Some(viewer), now)).collect::<Vec<_>>(),
    });
    if let Some(end) = end {
        body["end"] = json!(end);
    }
    if lazy_members {
        body["state"] =
            Value::Array(member_events_for(&mut conn, &room_id, &chunk, &access, now).await?);
    }
    Ok(Json(body))
}

/// The membership events of the senders in `chunk`, for lazy loading, as
/// of the state the reader may see (none for someone never joined).
pub async fn member_events_for(
    c: &mut sqlx::AnyConnection,
    room_id: &str,
    chunk: &[StoredEvent],
    access: &Access,
    now: i64,
) -> ApiResult<Vec<Value>> {
    let mut senders: Vec<&str> = chunk.iter().map(|e| e.sender.as_str()).collect();
    senders.sort_unstable();
    senders.dedup();
    let mut out = Vec::new();
    match access.state_at {
        None => {}
        Some(i64::MAX) => {
            for sender in senders {
                if let Some(e) =
                    events::state_event(&mut *c, room_id, "m.room.member", sender).await?
                {
                    out.push(e.to_client(None, now));
                }
            }
        }
        Some(at) => {
            for e in events::state_at(&mut *c, room_id, at).await? {
                let key = e.state_key.as_deref().unwrap_or_default();
                if e.event_type == "m.room.member" && senders.contains(&key) {
                    out.push(e.to_client(None, now));
                }
            }
        }
    }
    Ok(out)
}

async fn visible_event(
    state: &Context,
    auth: &Auth,
    room_id: &str,
    event_id: &str,
) -> ApiResult<(StoredEvent, Access)> {
    let mut conn = state.store.read().await?;
    let access = visibility::require(&mut conn, room_id, &auth.user_id).await?;
    let event = events::get(&mut conn, event_id)
        .await?
        .filter(|e| e.room_id == room_id && access.events.allows(e))
        .ok_or_else(|| ApiError::not_found("Event not found"))?;
    retention::require_unexpired(state, &mut conn, &event).await?;
    Ok((event, access))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
pub(super) async fn event(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (event, _) = visible_event(&state, &auth, &room_id, &event_id).await?;
    let viewer = Viewer {
        user_id: &auth.user_id,
        device_id: &auth.device_id,
    };
    Ok(Json(event.to_client(Some(viewer), state.now_ms())))
}

#[derive(Deserialize)]
pub(super) struct ContextQuery {
    limit: Option<i64>,
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
pub(super) async fn context(
    State(state): State<Context>,
    auth: Auth,
    Path((room_id, event_id)): Path<(String, String)>,
    Query(q): Query<ContextQuery>,
) -> ApiResult<Json<Value>> {
    let (event, access) = visible_event(&state, &auth, &room_id, &event_id).await?;
    if q.limit.is_some_and(|l| l < 0) {
        return Err(ApiError::invalid_param("limit must not be negative"));
    }
    let limit = q.limit.unwrap_or(10).clamp(0, 100);
    let mut conn = state.store.read().await?;
    let cutoff = retention::cutoff(&state, &mut conn, &room_id, state.now_ms()).await?;
    let before = events::range(
        &mut conn,
        &room_id,
        0,
        event.pos - 1,
        limit / 2,
        true,
        cutoff,
        &access.events,
    )
    .await?;
    let after = events::range(
        &mut conn,
        &room_id,
        event.pos + 1,
        i64::MAX,
        limit - limit / 2,
        false,
        cutoff,
        &access.events,
    )
    .await?;
    let now = state.now_ms();
    let viewer = Viewer {
        user_id: &auth.user_id,
        device_id: &auth.device_id,
    };
    let state_events = match access.state_at {
        Some(at) => events::state_until(&mut conn, &room_id, at).await?,
        None => Vec::new(),
    };
    let render = |list: &[StoredEvent]| {
        list.iter()
            .map(|e| e.to_client(Some(viewer), now))
            .collect::<Vec<_>>()
    };
    Ok(Json(json!({
        "event": event.to_client(Some(viewer), now),
        "events_before": render(&before),
        "events_after": render(&after),
        "start": tokens::gap(before.last().map_or(event.pos, |e| e.pos)),
        "end": tokens::gap(after.last().map_or(event.pos + 1, |e| e.pos + 1)),
        "state": render(&state_events),
    })))
}
