//! The extensions: to-device messages, end-to-end encryption state,
//! account data, receipts and typing notices.

use std::collections::BTreeMap;

use cloister_proto::sliding_sync::{
    AccountData, E2ee, EphemeralRooms, ExtensionsRequest, ToDeviceRequest, ToDeviceResponse, Toggle,
};
use cloister_proto::sync::{DeviceLists, ToDeviceEvents};
use serde_json::{json, Value};

use super::validate::MAX_TO_DEVICE_LIMIT;
use crate::error::ApiResult;
use crate::service::session::Auth;
use crate::service::sync::{device_lists, rooms as sync_rooms};
use crate::service::Context;
use crate::store::rooms::SyncRoom;
use crate::store::{account_data, ephemeral, keys, to_device, Autocommit};

/// To-device messages after the client's `since`, which acknowledges (and
/// deletes) everything up to it, as `/v3/sync`'s token does: each message
/// is delivered until a later request proves it arrived.
pub(super) async fn to_device(
    state: &Context,
    c: &mut Autocommit,
    who: &Auth,
    req: &ExtensionsRequest,
    to: i64,
) -> ApiResult<Option<ToDeviceResponse>> {
    let Some(ext) = req.to_device.as_ref().filter(|t| t.enabled == Some(true)) else {
        return Ok(None);
    };
    let since = ext
        .since
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0);
    if since > 0 {
        to_device::delete_acknowledged(&mut *c, &who.user_id, &who.device_id, since).await?;
    }
    let limit = to_device_limit(ext);
    let cutoff = state
        .config
        .retention
        .to_device_lifetime
        .cutoff(state.now_ms());
    let pending =
        to_device::pending(c, &who.user_id, &who.device_id, (since, to), limit, cutoff).await?;
    let next = match pending.last() {
        Some((pos, _)) if pending.len() as i64 == limit => *pos,
        _ => to.max(since),
    };
    Ok(Some(ToDeviceResponse {
        next_batch: next.to_string(),
        events: ToDeviceEvents {
            events: pending.into_iter().map(|(_, e)| e).collect(),
        },
    }))
}

/// At most this many to-device messages in one response.
pub(super) fn to_device_limit(ext: &ToDeviceRequest) -> i64 {
    ext.limit
        .unwrap_or(MAX_TO_DEVICE_LIMIT)
        .clamp(1, MAX_TO_DEVICE_LIMIT) as i64
}

/// Device-list changes since the connection's position (none for a fresh
/// one: the client queries every key then), key counts, fallback key types.
pub(super) async fn e2ee(
    c: &mut Autocommit,
    who: &Auth,
    rooms: &[SyncRoom],
    from: Option<i64>,
    to: i64,
) -> ApiResult<E2ee> {
    let device_lists = match from {
        Some(from) => {
            let mine: Vec<_> = rooms
                .iter()
                .map(|r| (r.room_id.clone(), r.membership.clone()))
                .collect();
            let changed = keys::device_list_changes_between(c, from, to).await?;
            device_lists::changes(c, &who.user_id, changed, &mine, from, to).await?
        }
        None => DeviceLists::default(),
    };
    let (counts, fallback) = keys::device_key_state(c, &who.user_id, &who.device_id).await?;
    Ok(E2ee {
        device_lists,
        device_one_time_keys_count: crate::service::keys::wire_counts(counts),
        device_unused_fallback_key_types: fallback,
    })
}

/// Account data written since the connection's position; all of it, with
/// the default push rules when none were written, for a fresh one.
pub(super) async fn account_data(
    c: &mut Autocommit,
    user_id: &str,
    from: Option<i64>,
    to: i64,
) -> ApiResult<AccountData> {
    let changes = account_data::changed_since(c, user_id, from.unwrap_or(-1), to).await?;
    let mut global: Vec<Value> = changes
        .iter()
        .filter(|(room, _, _)| room.is_empty())
        .map(|(_, t, content)| json!({ "type": t, "content": content }))
        .collect();
    if from.is_none()
        && !changes
            .iter()
            .any(|(r, t, _)| r.is_empty() && t == "m.push_rules")
    {
        global.push(json!({ "type": "m.push_rules", "content": crate::service::pushrules::default_ruleset(user_id) }));
    }
    let rooms = sync_rooms::room_account_data(&changes)
        .into_iter()
        .filter_map(|(room, list)| match list {
            Value::Array(list) => Some((room, list)),
            _ => None,
        })
        .collect();
    Ok(AccountData { global, rooms })
}

/// Receipts and typing of the rooms in view: all of them for a room sent
/// whole (`initial`), the changes since the connection's position otherwise.
/// `rooms`: (room, initial, has_ephemeral).
pub(super) async fn ephemeral(
    c: &mut Autocommit,
    user_id: &str,
    req: &ExtensionsRequest,
    rooms: &[(String, bool, bool)],
    from: Option<i64>,
    (to, now): (i64, i64),
) -> ApiResult<(Option<EphemeralRooms>, Option<EphemeralRooms>)> {
    let (want_receipts, want_typing) = (Toggle::on(&req.receipts), Toggle::on(&req.typing));
    let mut receipts = BTreeMap::new();
    let mut typing = BTreeMap::new();
    for (room_id, initial, has_ephemeral) in rooms {
        let from = match from {
            Some(from) if !initial => {
                if !has_ephemeral {
                    continue;
                }
                from
            }
            _ => -1,
        };
        if want_receipts {
            if let Some(content) = ephemeral::receipts(c, room_id, user_id, from, to).await? {
                receipts.insert(
                    room_id.clone(),
                    json!({ "type": "m.receipt", "content": content }),
                );
            }
        }
        if want_typing {
            if let Some(user_ids) = ephemeral::typing(c, room_id, from, to, now).await? {
                typing.insert(
                    room_id.clone(),
                    json!({ "type": "m.typing", "content": { "user_ids": user_ids } }),
                );
            }
        }
    }
    Ok((
        want_receipts.then_some(EphemeralRooms { rooms: receipts }),
        want_typing.then_some(EphemeralRooms { rooms: typing }),
    ))
}
