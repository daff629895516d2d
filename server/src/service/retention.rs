//! Retention policies: how long a room's messages live, and the moment they
//! stop being served.
//!
//! A room's policy is its `m.room.retention` state event (MSC1763), bounded
//! by the server's allowed range; rooms without one follow the server
//! default. Only message (non-state) events expire: state events are the
//! room itself. An expired event is never served again — /sync, /messages,
//! /event and /context all apply [`cutoff`] — even before the purge job
//! deletes it. Legal holds keep data from the purge, not from this rule:
//! members stop seeing expired messages whether or not a hold preserves them.

use serde::Serialize;
use serde_json::{json, Value};
use sqlx::AnyConnection;

use crate::config::Lifetime;
use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::events::{self, StoredEvent};

pub const RETENTION_EVENT: &str = "m.room.retention";

/// A room's policy as its members asked for it, and as the server applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    pub requested_max_lifetime: Option<i64>,
    pub requested_min_lifetime: Option<i64>,
    /// The lifetime in force: the request (or the server default) clamped
    /// to the allowed range.
    pub max_lifetime: Lifetime,
}

/// How a policy is shown to administrators (admin API and CLI).
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    pub requested: RequestedLifetimes,
    /// Milliseconds; `null` for no limit.
    pub max_lifetime: Option<i64>,
    pub max_lifetime_text: String,
}

/// What the room's `m.room.retention` asks for; `null` when it does not.
#[derive(Debug, Clone, Serialize)]
pub struct RequestedLifetimes {
    pub max_lifetime: Option<i64>,
    pub min_lifetime: Option<i64>,
}

impl RoomPolicy {
    pub fn view(&self) -> PolicyView {
        PolicyView {
            requested: RequestedLifetimes {
                max_lifetime: self.requested_max_lifetime,
                min_lifetime: self.requested_min_lifetime,
            },
            max_lifetime: self.max_lifetime.as_millis(),
            max_lifetime_text: self.max_lifetime.to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!(self.view())
    }
}

/// The integer fields of an `m.room.retention` content; `None` when absent.
fn lifetimes(content: &Value) -> (Option<i64>, Option<i64>) {
    let field = |name| {
        content
            .get(name)
            .and_then(Value::as_i64)
            .filter(|v| *v >= 0)
    };
    (field("max_lifetime"), field("min_lifetime"))
}

/// Refuses an `m.room.retention` content the server could not apply.
pub fn validate_content(content: &Value) -> ApiResult<()> {
    let Some(map) = content.as_object() else {
        return Err(ApiError::bad_json(
            "m.room.retention content must be an object",
        ));
    };
    for name in ["max_lifetime", "min_lifetime"] {
        match map.get(name) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_i64().is_some_and(|n| n >= 0) => {}
            Some(_) => {
                return Err(ApiError::bad_json(format!(
                    "{name} must be a non-negative integer (milliseconds)"
                )))
            }
        }
    }
    let (max, min) = lifetimes(content);
    if let (Some(max), Some(min)) = (max, min) {
        if min > max {
            return Err(ApiError::bad_json(
                "min_lifetime cannot exceed max_lifetime",
            ));
        }
    }
    Ok(())
}

pub fn policy_from_content(state: &Context, content: Option<&Value>) -> RoomPolicy {
    let (max, min) = content.map(lifetimes).unwrap_or((None, None));
    RoomPolicy {
        requested_max_lifetime: max,
        requested_min_lifetime: min,
        max_lifetime: state.config.retention.room_lifetime(max),
    }
}

pub async fn room_policy(
    state: &Context,
    c: &mut AnyConnection,
    room_id: &str,
) -> Result<RoomPolicy, sqlx::Error> {
    let event = events::state_event(c, room_id, RETENTION_EVENT, "").await?;
    Ok(policy_from_content(
        state,
        event.as_ref().map(|e| &e.content),
    ))
}

/// The policy of a room that must exist.
pub async fn policy_of_room(state: &Context, room_id: &str) -> ApiResult<RoomPolicy> {
    let mut conn = state.store.read().await?;
    if !crate::store::rooms::exists(&mut conn, room_id).await? {
        return Err(ApiError::not_found("Unknown room"));
    }
    Ok(room_policy(state, &mut conn, room_id).await?)
}

/// Message events of `room_id` sent before the returned timestamp have
/// expired at `now`; `i64::MIN` when the room keeps messages forever.
pub async fn cutoff(
    state: &Context,
    c: &mut AnyConnection,
    room_id: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    Ok(room_policy(state, c, room_id)
        .await?
        .max_lifetime
        .cutoff(now))
}

/// [`cutoff`] for a room whose `m.room.retention` content (if any) the
/// caller has already read.
pub fn cutoff_from_content(state: &Context, content: Option<&Value>, now: i64) -> i64 {
    policy_from_content(state, content).max_lifetime.cutoff(now)
}

/// Whether `event` has expired under a room cutoff.
pub fn is_expired(event: &StoredEvent, cutoff: i64) -> bool {
    event.state_key.is_none() && event.origin_server_ts < cutoff
}

/// Every room with an `m.room.retention` of its own, and its policy.
pub async fn rooms_with_policies(state: &Context) -> ApiResult<Vec<(String, RoomPolicy)>> {
    let rooms =
        crate::store::rooms::rooms_with_state(&mut *state.store.read().await?, RETENTION_EVENT)
            .await?;
    let mut out = Vec::with_capacity(rooms.len());
    for room_id in rooms {
        let policy = policy_of_room(state, &room_id).await?;
        out.push((room_id, policy));
    }
    Ok(out)
}

/// Sets a room's policy on an administrator's authority: an
/// `m.room.retention` state event from the server, so members see the
/// policy too. `content` is `{max_lifetime?, min_lifetime?}`; `{}` returns
/// the room to the server default. Audited with the change.
pub async fn set_room_policy(
    state: &Context,
    actor: cloister_audit::Actor,
    room_id: &str,
    content: &Value,
) -> ApiResult<StoredEvent> {
    validate_content(content)?;
    // Pseudonymous like users: a room id can point at the people in it.
    let target = state.audit.target(room_id);
    let mut tx = state.store.write().await?;
    let (event, audience) = crate::service::events::send_as_server_in(
        state,
        &mut tx,
        room_id,
        RETENTION_EVENT,
        "",
        content,
    )
    .await?;
    let entry =
        crate::service::audit::by_actor(state, actor, cloister_audit::Action::PolicyChanged)
            .target(target);
    crate::service::audit::record(&mut tx, entry).await?;
    tx.commit().await?;
    state.notifier.notify(audience.iter().map(String::as_str));
    tracing::info!("room retention policy set by an administrator");
    Ok(event)
}

/// Whether an upload has expired: its own lifetime has passed, or it was
/// attached to events and every one of them has expired or is gone.
pub async fn media_expired(
    state: &Context,
    c: &mut AnyConnection,
    media: &crate::store::media::Media,
    now: i64,
) -> Result<bool, sqlx::Error> {
    if media.created_ts < state.config.retention.media_lifetime.cutoff(now) {
        return Ok(true);
    }
    let links = crate::store::media::attached_to(&mut *c, &media.media_id).await?;
    if links.is_empty() {
        return Ok(false);
    }
    for (room_id, sent_ts) in links.into_iter().flatten() {
        if sent_ts >= cutoff(state, &mut *c, &room_id, now).await? {
            return Ok(false);
        }
    }
    Ok(true)
}
