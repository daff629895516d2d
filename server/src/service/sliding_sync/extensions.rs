//! The extensions: to-device messages, end-to-end encryption state,
//! account data, receipts and typing notices.

use std::collections::BTreeMap;

use cloister_proto::sliding_sync::{
    AccountData, E2ee, EphemeralRooms, ExtensionsRequest, ToDeviceRequest, ToDeviceResponse, Toggle,
};
use cloister_proto::sync::{DeviceLists, ToDeviceEvents};
use cloister_proto::to_device::ToDeviceEvent;
use serde_json::{json, Value};
use sqlx::AnyConnection;

use super::validate::MAX_TO_DEVICE_LIMIT;
use crate::error::ApiResult;
use crate::service::session::Auth;
use crate::service::sync::{device_lists, rooms as sync_rooms};
use crate::store::device_news::DeviceNews;
use crate::store::rooms::SyncRoom;
use crate::store::{ephemeral, Autocommit};

/// The to-device `since` a request acknowledges, 0 for none. Everything
/// up to it was delivered, and is deleted before the response is read, as
/// `/v3/sync`'s token does: each message is delivered until a later
/// request proves it arrived.
pub(super) fn acknowledged(ext: &ToDeviceRequest) -> i64 {
    ext.since
        .as_deref()
        .and_then(|s| s.parse::<i64>().ok())
        .filter(|since| *since > 0)
        .unwrap_or(0)
}

/// The pending messages the device's news found after the acknowledged
/// `since`, at most `limit` of them.
pub(super) fn to_device(
    pending: Vec<(i64, ToDeviceEvent)>,
    limit: i64,
    to: i64,
) -> ToDeviceResponse {
    let next = match pending.last() {
        Some((pos, _)) if pending.len() as i64 == limit => *pos,
        Some(_) => to,
        // Nothing to acknowledge: everything up to the `since` was deleted
        // and nothing after it is pending, so the next request need not
        // delete. Deleting is a write, even when it finds nothing, and on
        // SQLite every write queues for the one write lock with the sends.
        None => 0,
    };
    ToDeviceResponse {
        next_batch: next.to_string(),
        events: ToDeviceEvents {
            events: pending.into_iter().map(|(_, e)| e).collect(),
        },
    }
}

/// At most this many to-device messages in one response.
pub(super) fn to_device_limit(ext: &ToDeviceRequest) -> i64 {
    ext.limit
        .unwrap_or(MAX_TO_DEVICE_LIMIT)
        .clamp(1, MAX_TO_DEVICE_LIMIT) as i64
}

/// Device-list changes since the connection's position (none for a fresh
/// one: the client queries every key then), key counts, fallback key types.
/// `news` was read over the connection's window, `rooms` with it.
pub(super) async fn e2ee(
    c: &mut AnyConnection,
    who: &Auth,
    rooms: &[SyncRoom],
    news: &mut DeviceNews,
    from: Option<i64>,
) -> ApiResult<E2ee> {
    let device_lists = match from {
        Some(from) => {
            let mine: Vec<&SyncRoom> = rooms.iter().collect();
            let changed = std::mem::take(&mut news.device_list_changes);
            device_lists::changes(c, &who.user_id, changed, &mine, from, news.to).await?
        }
        None => DeviceLists::default(),
    };
    Ok(E2ee {
        device_lists,
        device_one_time_keys_count: crate::service::keys::wire_counts(std::mem::take(
            &mut news.one_time_key_counts,
        )),
        device_unused_fallback_key_types: std::mem::take(&mut news.unused_fallback_types),
    })
}

/// Account data written since the connection's position (`changes`, as
/// the device's news read it); all of it, with the default push rules
/// when none were written, for a fresh one.
pub(super) fn account_data(
    user_id: &str,
    changes: &[(String, String, Value)],
    from: Option<i64>,
) -> AccountData {
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
    let rooms = sync_rooms::room_account_data(changes)
        .into_iter()
        .filter_map(|(room, list)| match list {
            Value::Array(list) => Some((room, list)),
            _ => None,
        })
        .collect();
    AccountData { global, rooms }
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
