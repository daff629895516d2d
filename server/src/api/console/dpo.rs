//! The data-protection officer's part of the console API, beyond the
//! compliance handlers it shares with the admin API (`admin_compliance`,
//! `admin_subjects`, the audit key and export): the retention overview, the
//! erasure preview and confirmed erasure, and browsing the audit log.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use cloister_audit::{Action, AuditEntry};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Dpo;
use crate::api::admin::Caller;
use crate::config::Retention;
use crate::error::{ApiError, ApiResult};
use crate::extract::Body;
use crate::service::retention::{self, PolicyView};
use crate::service::{audit, erasure, Context};

impl Caller for Dpo {
    fn user_id(&self) -> &str {
        &self.0.user_id
    }

    /// The console hands a DPO sealed exports only: an unsealed one would
    /// sit in the browser's downloads in the clear.
    const PLAIN_EXPORTS: bool = false;
}

fn local_user(state: &Context, user_id: &str) -> ApiResult<()> {
    if state.is_local_user(user_id) {
        Ok(())
    } else {
        Err(ApiError::not_found("Unknown user"))
    }
}

#[derive(Serialize)]
pub(in crate::api) struct LastPurge {
    ts: u64,
    /// The counts its `purge_run` audit entry carries.
    counts: BTreeMap<String, u64>,
}

#[derive(Serialize)]
pub(in crate::api) struct RoomRetention {
    room_id: String,
    policy: PolicyView,
}

#[derive(Serialize)]
pub(in crate::api) struct RetentionOverview {
    server: Retention,
    last_purge: Option<LastPurge>,
    /// When the next scheduled purge is due, if a purge ran before.
    next_purge_ts: Option<u64>,
    rooms: Vec<RoomRetention>,
}

/// `GET /_cloister/console/api/retention`: the server's settings, the last
/// purge (from the audit log) and when the next is due, and every room
/// with a policy of its own.
pub(in crate::api) async fn retention_overview(
    State(state): State<Context>,
    _: Dpo,
) -> ApiResult<Json<RetentionOverview>> {
    let filter = audit::Browse {
        action: Some(Action::PurgeRun),
        limit: 1,
        ..audit::Browse::default()
    };
    let (found, _) = audit::browse(&state, &filter).await?;
    let last_purge = found.into_iter().next().map(|e| LastPurge {
        ts: e.ts,
        counts: e.details.iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    });
    let interval = state
        .config
        .retention
        .purge_interval
        .as_millis()
        .unwrap_or(0);
    let next_purge_ts = last_purge
        .as_ref()
        .map(|p| p.ts.saturating_add(interval.max(0) as u64));
    let rooms = retention::rooms_with_policies(&state)
        .await?
        .into_iter()
        .map(|(room_id, policy)| RoomRetention {
            room_id,
            policy: policy.view(),
        })
        .collect();
    Ok(Json(RetentionOverview {
        server: state.config.retention.clone(),
        last_purge,
        next_purge_ts,
        rooms,
    }))
}

/// `GET /_cloister/console/api/users/{userId}/erasure`: what erasing the
/// person would delete, and which legal holds would keep part of it.
pub(in crate::api) async fn erasure_preview(
    State(state): State<Context>,
    _: Dpo,
    Path(user_id): Path<String>,
) -> ApiResult<Json<erasure::Preview>> {
    local_user(&state, &user_id)?;
    Ok(Json(erasure::preview(&state, &user_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::api) struct EraseBody {
    /// The user id typed again: an erasure cannot be undone.
    confirm: String,
}

/// `POST /_cloister/console/api/users/{userId}/erase`: `{"confirm":
/// userId}`; answers with the receipt.
pub(in crate::api) async fn erase(
    State(state): State<Context>,
    Dpo(staff): Dpo,
    Path(user_id): Path<String>,
    Body(body): Body<EraseBody>,
) -> ApiResult<Json<Value>> {
    local_user(&state, &user_id)?;
    if body.confirm != user_id {
        return Err(ApiError::invalid_param(
            "confirm must repeat the user id of the person to erase",
        ));
    }
    let actor = state.audit.actor(&staff.user_id);
    Ok(Json(erasure::erase_user(&state, &user_id, actor).await?))
}

#[derive(Deserialize)]
pub(in crate::api) struct EntriesQuery {
    action: Option<String>,
    since: Option<u64>,
    until: Option<u64>,
    before: Option<u64>,
    limit: Option<usize>,
}

#[derive(Serialize)]
pub(in crate::api) struct EntriesResponse {
    entries: Vec<AuditEntry>,
    /// Pass as `before` for older entries; absent at the log's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_before: Option<u64>,
    /// Every action name, for the filter.
    actions: Vec<String>,
}

/// Every action the log can hold, in the format's order.
static ACTIONS: [Action; 14] = [
    Action::Login,
    Action::LoginFailed,
    Action::AccountCreated,
    Action::PasswordChanged,
    Action::AccountDeactivated,
    Action::DeviceAdded,
    Action::DeviceDeleted,
    Action::PolicyChanged,
    Action::HoldSet,
    Action::HoldReleased,
    Action::Export,
    Action::Erasure,
    Action::PurgeRun,
    Action::AdminCall,
];

/// An action's name as the log spells it (`hold_set`).
fn action_name(action: Action) -> String {
    match serde_json::to_value(action) {
        Ok(Value::String(name)) => name,
        _ => String::new(),
    }
}

/// `GET /_cloister/console/api/audit/entries?action=&since=&until=&before=&limit=`:
/// a page of the log, newest first. Entries name people by pseudonym only.
pub(in crate::api) async fn audit_entries(
    State(state): State<Context>,
    _: Dpo,
    Query(query): Query<EntriesQuery>,
) -> ApiResult<Json<EntriesResponse>> {
    let action = match query.action.as_deref().filter(|a| !a.is_empty()) {
        None => None,
        Some(name) => Some(
            *ACTIONS
                .iter()
                .find(|a| action_name(**a) == name)
                .ok_or_else(|| ApiError::invalid_param("Unknown action"))?,
        ),
    };
    let filter = audit::Browse {
        action,
        since_ts: query.since,
        until_ts: query.until,
        before: query.before,
        limit: query.limit.unwrap_or(100).clamp(1, 500),
    };
    let (entries, next_before) = audit::browse(&state, &filter).await?;
    Ok(Json(EntriesResponse {
        entries,
        next_before,
        actions: ACTIONS.iter().map(|a| action_name(*a)).collect(),
    }))
}
