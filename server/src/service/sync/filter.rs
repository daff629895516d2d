//! The parts of a Matrix filter that `/sync` honours: `room.timeline.limit`,
//! `room.state.lazy_load_members` and `room.include_leave`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFilter {
    pub timeline_limit: i64,
    pub lazy_load_members: bool,
    pub include_leave: bool,
}

impl Default for SyncFilter {
    fn default() -> Self {
        SyncFilter {
            timeline_limit: 10,
            lazy_load_members: false,
            include_leave: false,
        }
    }
}

impl SyncFilter {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_supported_fields() {
        let f = SyncFilter::from_json(
            &json!({"room": {"timeline": {"limit": 20}, "state": {"lazy_load_members": true}, "include_leave": true}}),
        );
        assert_eq!(
            f,
            SyncFilter {
                timeline_limit: 20,
                lazy_load_members: true,
                include_leave: true
            }
        );
        assert_eq!(SyncFilter::from_json(&json!({})), SyncFilter::default());
        assert_eq!(
            SyncFilter::from_json(&json!({"room": {"timeline": {"limit": 0}}})).timeline_limit,
            1
        );
    }
}
