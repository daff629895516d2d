//! Bounds on a request, so one body cannot make the server read every room
//! and every state event many times over.

use cloister_proto::sliding_sync::{Request, RoomConfig};

use crate::error::{ApiError, ApiResult};

pub const MAX_LISTS: usize = 100;
pub const MAX_RANGES: usize = 100;
pub const MAX_SUBSCRIPTIONS: usize = 100;
pub const MAX_REQUIRED_STATE: usize = 100;
pub const MAX_TIMELINE_LIMIT: u64 = 100;
pub const MAX_TO_DEVICE_LIMIT: u64 = 100;
const MAX_NAME_LEN: usize = 255;

pub fn validate(req: &Request) -> ApiResult<()> {
    let too_long = |s: &str| s.len() > MAX_NAME_LEN;
    if req.conn_id.as_deref().is_some_and(too_long) || req.txn_id.as_deref().is_some_and(too_long) {
        return Err(ApiError::invalid_param("conn_id or txn_id is too long"));
    }
    if req.lists.len() > MAX_LISTS {
        return Err(ApiError::invalid_param("too many lists"));
    }
    for (name, list) in &req.lists {
        if too_long(name) {
            return Err(ApiError::invalid_param("list name is too long"));
        }
        if list.ranges.len() > MAX_RANGES {
            return Err(ApiError::invalid_param("too many ranges"));
        }
        if list.ranges.iter().any(|(start, end)| start > end) {
            return Err(ApiError::invalid_param("a range starts after its end"));
        }
        check_room(&list.required_state, list.timeline_limit)?;
    }
    if req.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(ApiError::invalid_param("too many room subscriptions"));
    }
    for (
        room_id,
        RoomConfig {
            required_state,
            timeline_limit,
        },
    ) in &req.room_subscriptions
    {
        if !room_id.starts_with('!') || too_long(room_id) {
            return Err(ApiError::invalid_param("room_subscriptions: not a room id"));
        }
        check_room(required_state, *timeline_limit)?;
    }
    if let Some(to_device) = &req.extensions.to_device {
        if to_device
            .since
            .as_deref()
            .is_some_and(|s| s.parse::<i64>().is_err())
        {
            return Err(ApiError::invalid_param("to_device: invalid since"));
        }
    }
    Ok(())
}

fn check_room(required_state: &[(String, String)], timeline_limit: Option<u64>) -> ApiResult<()> {
    if required_state.len() > MAX_REQUIRED_STATE {
        return Err(ApiError::invalid_param("too many required_state entries"));
    }
    if required_state
        .iter()
        .any(|(t, k)| t.len() > MAX_NAME_LEN || k.len() > MAX_NAME_LEN)
    {
        return Err(ApiError::invalid_param("required_state entry is too long"));
    }
    if timeline_limit.is_some_and(|l| l > MAX_TIMELINE_LIMIT) {
        return Err(ApiError::invalid_param(format!(
            "timeline_limit is at most {MAX_TIMELINE_LIMIT}"
        )));
    }
    Ok(())
}
