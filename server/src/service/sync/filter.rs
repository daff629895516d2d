//! The parts of a Matrix filter that `/sync` honours: `room.timeline.limit`,
//! `room.state.lazy_load_members`, `room.timeline.unread_thread_notifications`
//! and `room.include_leave`; and the check
//! that a filter has the spec's shape before it is stored or used.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde::Deserialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::account_data;

// The spec's filter schema (`POST /user/{userId}/filter`), typed so that a
// field of the wrong type is refused rather than silently read as absent.
// Unknown fields pass: later spec versions and MSCs add some.

#[derive(Deserialize)]
struct Filter {
    #[serde(rename = "event_fields")]
    _event_fields: Option<Vec<String>>,
    #[serde(rename = "event_format")]
    _event_format: Option<EventFormat>,
    presence: Option<RoomEventFilter>,
    account_data: Option<RoomEventFilter>,
    room: Option<RoomFilter>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum EventFormat {
    Client,
    Federation,
}

#[derive(Deserialize)]
struct RoomFilter {
    account_data: Option<RoomEventFilter>,
    ephemeral: Option<RoomEventFilter>,
    state: Option<RoomEventFilter>,
    timeline: Option<RoomEventFilter>,
    #[serde(rename = "include_leave")]
    _include_leave: Option<bool>,
    #[serde(rename = "rooms")]
    _rooms: Option<Vec<String>>,
    #[serde(rename = "not_rooms")]
    _not_rooms: Option<Vec<String>>,
}

/// `RoomEventFilter`, `StateFilter` and (a subset of its fields) `EventFilter`.
#[derive(Deserialize)]
struct RoomEventFilter {
    limit: Option<i64>,
    #[serde(rename = "types")]
    _types: Option<Vec<String>>,
    #[serde(rename = "not_types")]
    _not_types: Option<Vec<String>>,
    #[serde(rename = "senders")]
    _senders: Option<Vec<String>>,
    #[serde(rename = "not_senders")]
    _not_senders: Option<Vec<String>>,
    #[serde(rename = "rooms")]
    _rooms: Option<Vec<String>>,
    #[serde(rename = "not_rooms")]
    _not_rooms: Option<Vec<String>>,
    #[serde(rename = "contains_url")]
    _contains_url: Option<bool>,
    #[serde(rename = "lazy_load_members")]
    _lazy_load_members: Option<bool>,
    #[serde(rename = "include_redundant_members")]
    _include_redundant_members: Option<bool>,
    #[serde(rename = "unread_thread_notifications")]
    _unread_thread_notifications: Option<bool>,
}

/// Refuses a filter that is not the spec's shape: a wrongly typed field is
/// `M_BAD_JSON`, a negative `limit` `M_INVALID_PARAM` (0 is accepted and
/// read as the smallest page).
pub fn validate(filter: &Value) -> ApiResult<()> {
    let filter = Filter::deserialize(filter)
        .map_err(|e| ApiError::bad_json(format!("invalid filter: {e}")))?;
    let room = filter.room.as_ref();
    let sections = [
        ("presence", filter.presence.as_ref()),
        ("account_data", filter.account_data.as_ref()),
        (
            "room.account_data",
            room.and_then(|r| r.account_data.as_ref()),
        ),
        ("room.ephemeral", room.and_then(|r| r.ephemeral.as_ref())),
        ("room.state", room.and_then(|r| r.state.as_ref())),
        ("room.timeline", room.and_then(|r| r.timeline.as_ref())),
    ];
    for (name, section) in sections {
        if section.and_then(|s| s.limit).is_some_and(|l| l < 0) {
            return Err(ApiError::invalid_param(format!(
                "{name}.limit must not be negative"
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFilter {
    pub timeline_limit: i64,
    pub lazy_load_members: bool,
    pub include_leave: bool,
    /// Counts per thread (`unread_thread_notifications`).
    pub unread_thread_notifications: bool,
}

impl Default for SyncFilter {
    fn default() -> Self {
        SyncFilter {
            timeline_limit: 10,
            lazy_load_members: false,
            include_leave: false,
            unread_thread_notifications: false,
        }
    }
}

impl SyncFilter {
    /// A filter a client sends: checked first (see [`validate`]).
    pub fn parse(filter: &Value) -> ApiResult<SyncFilter> {
        validate(filter)?;
        Ok(Self::from_json(filter))
    }

    /// The filter `user_id` stored under `filter_id`. A stored filter
    /// never changes (an upload always gets a new id), so the node keeps
    /// what it read ([`StoredFilters`]): Element names its filter on every
    /// `/sync`, and each read was a pooled connection of its own.
    pub async fn stored(ctx: &Context, user_id: &str, filter_id: &str) -> ApiResult<SyncFilter> {
        if let Some(kept) = ctx.sync_filters.get(user_id, filter_id) {
            return Ok(kept);
        }
        let stored = account_data::get_filter(&mut *ctx.store.read().await?, user_id, filter_id)
            .await?
            .ok_or_else(|| ApiError::invalid_param("unknown filter id"))?;
        let filter = Self::from_json(&stored);
        ctx.sync_filters.put(user_id, filter_id, filter.clone());
        Ok(filter)
    }

    /// Reads a filter without checking it: for filters stored before
    /// uploads were checked, which clients still name by id.
    pub fn from_json(filter: &Value) -> SyncFilter {
        let room = filter.get("room");
        let get =
            |section: &str, key: &str| room.and_then(|r| r.get(section)).and_then(|s| s.get(key));
        SyncFilter {
            timeline_limit: get("timeline", "limit")
                .and_then(Value::as_i64)
                .unwrap_or(10)
                .clamp(1, 1000),
            lazy_load_members: get("state", "lazy_load_members")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            include_leave: room
                .and_then(|r| r.get("include_leave"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            unread_thread_notifications: get("timeline", "unread_thread_notifications")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }
}

/// Sync filters read from the store, per user and filter id: only the few
/// settings `/sync` reads, never the filter's text.
#[derive(Default)]
pub struct StoredFilters {
    kept: Mutex<HashMap<(String, String), SyncFilter>>,
}

/// Beyond this many, the copies start again (each is a few dozen bytes).
const MAX_KEPT_FILTERS: usize = 16_384;

impl StoredFilters {
    fn get(&self, user_id: &str, filter_id: &str) -> Option<SyncFilter> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.get(&(user_id.to_owned(), filter_id.to_owned()))
            .cloned()
    }

    fn put(&self, user_id: &str, filter_id: &str, filter: SyncFilter) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= MAX_KEPT_FILTERS {
            kept.clear();
        }
        kept.insert((user_id.to_owned(), filter_id.to_owned()), filter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kept_filters_are_per_user_and_bounded() {
        let filters = StoredFilters::default();
        let long = SyncFilter {
            timeline_limit: 50,
            ..SyncFilter::default()
        };
        filters.put("@a:x", "f", long.clone());
        assert_eq!(filters.get("@a:x", "f"), Some(long));
        assert_eq!(filters.get("@b:x", "f"), None, "another user's id");
        for i in 0..MAX_KEPT_FILTERS {
            filters.put("@b:x", &i.to_string(), SyncFilter::default());
        }
        assert_eq!(filters.get("@a:x", "f"), None, "started again when full");
        assert!(filters.kept.lock().unwrap().len() <= MAX_KEPT_FILTERS);
    }

    #[test]
    fn reads_the_supported_fields() {
        let f = SyncFilter::from_json(
            &json!({"room": {"timeline": {"limit": 20, "unread_thread_notifications": true},
                    "state": {"lazy_load_members": true}, "include_leave": true}}),
        );
        assert_eq!(
            f,
            SyncFilter {
                timeline_limit: 20,
                lazy_load_members: true,
                include_leave: true,
                unread_thread_notifications: true,
            }
        );
        assert_eq!(SyncFilter::from_json(&json!({})), SyncFilter::default());
        assert_eq!(
            SyncFilter::from_json(&json!({"room": {"timeline": {"limit": 0}}})).timeline_limit,
            1
        );
    }

    #[test]
    fn wrong_types_and_negative_limits_are_refused() {
        let code = |f: Value| SyncFilter::parse(&f).map_or_else(|e| e.errcode.as_str(), |_| "ok");
        assert_eq!(code(json!({})), "ok");
        assert_eq!(
            code(
                json!({"room": {"timeline": {"limit": 0}, "state": {"lazy_load_members": true}},
                        "event_fields": ["type"], "event_format": "client", "org.example": 1})
            ),
            "ok"
        );
        assert_eq!(
            code(json!({"room": {"timeline": {"limit": -1}}})),
            "M_INVALID_PARAM"
        );
        assert_eq!(code(json!({"presence": {"limit": -5}})), "M_INVALID_PARAM");
        assert_eq!(
            code(json!({"room": {"timeline": {"limit": "5"}}})),
            "M_BAD_JSON"
        );
        assert_eq!(
            code(json!({"room": {"timeline": {"limit": 1.5}}})),
            "M_BAD_JSON"
        );
        assert_eq!(
            code(json!({"room": {"state": {"lazy_load_members": "yes"}}})),
            "M_BAD_JSON"
        );
        assert_eq!(code(json!({"room": {"include_leave": 1}})), "M_BAD_JSON");
        assert_eq!(code(json!({"event_fields": "type"})), "M_BAD_JSON");
        assert_eq!(code(json!({"event_fields": [1]})), "M_BAD_JSON");
        assert_eq!(code(json!({"event_format": "mine"})), "M_BAD_JSON");
        assert_eq!(code(json!({"room": {"rooms": "!a:x"}})), "M_BAD_JSON");
        assert_eq!(code(json!({"room": []})), "M_BAD_JSON");
        assert_eq!(code(json!([])), "M_BAD_JSON");
    }
}
