//! Send-to-device messaging. Each message is queued for one target device
//! at its own stream position, so `/sync` can hand them out in order and
//! delete them only once the device acknowledges them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::session::Auth;
use crate::service::Context;
use crate::store::{devices, to_device, txn_ids};

/// Messages per request, after `*` expands to every device of a user.
pub const MAX_MESSAGES_PER_REQUEST: usize = 10_000;
const TXN_KIND: &str = "to_device";

/// One message as asked for: `device_id` may be `*`.
struct Outgoing<'a> {
    user_id: &'a str,
    device_id: &'a str,
    content: String,
}

/// User id → device id (or `*`) → content, as `SendToDeviceRequest` has
/// it: a user mapped to anything but an object was refused as bad JSON.
pub type Messages = BTreeMap<String, BTreeMap<String, Value>>;

fn prepare(messages: &Messages, max_event_size: usize) -> ApiResult<Vec<Outgoing<'_>>> {
    let mut out = Vec::new();
    for (user_id, per_device) in messages {
        for (device_id, content) in per_device {
            if !content.is_object() {
                return Err(ApiError::bad_json("message content must be an object"));
            }
            if out.len() >= MAX_MESSAGES_PER_REQUEST {
                return Err(ApiError::too_large(format!(
                    "at most {MAX_MESSAGES_PER_REQUEST} messages per request"
                )));
            }
            let content = serde_json::to_string(content).map_err(|_| ApiError::internal())?;
            if content.len() > max_event_size {
                return Err(ApiError::too_large(format!(
                    "message content exceeds {max_event_size} bytes"
                )));
            }
            out.push(Outgoing {
                user_id,
                device_id,
                content,
            });
        }
    }
    Ok(out)
}

/// `PUT /sendToDevice/{eventType}/{txnId}`. A repeated transaction id from
/// the same device is acknowledged without sending anything again.
pub async fn send(
    state: &Context,
    auth: &Auth,
    event_type: &str,
    txn_id: &str,
    messages: &Messages,
) -> ApiResult<()> {
    if event_type.is_empty() || event_type.len() > 255 {
        return Err(ApiError::invalid_param("event type must be 1 to 255 bytes"));
    }
    if txn_id.is_empty() || txn_id.len() > 255 {
        return Err(ApiError::invalid_param(
            "transaction id must be 1 to 255 bytes",
        ));
    }
    let outgoing = prepare(messages, state.config.limits.max_event_size)?;

    let now = state.now_ms();
    let mut tx = state.store.write_grouped_or_busy().await?;
    let first_time = txn_ids::claim(
        &mut tx,
        &auth.user_id,
        &auth.device_id,
        TXN_KIND,
        txn_id,
        "{}",
        now,
    )
    .await?;
    if !first_time {
        return Ok(());
    }
    let mut known_devices: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut targets = BTreeSet::new();
    let mut sent = 0usize;
    for msg in &outgoing {
        // Without federation a remote user cannot be reached; the spec has
        // unknown users and devices dropped silently.
        if !state.is_local_user(msg.user_id) {
            continue;
        }
        if !known_devices.contains_key(msg.user_id) {
            let list = devices::list(tx.conn(), msg.user_id).await?;
            known_devices.insert(msg.user_id, list.into_iter().map(|d| d.device_id).collect());
        }
        let all = &known_devices[msg.user_id];
        let chosen: Vec<&String> = if msg.device_id == "*" {
            all.iter().collect()
        } else {
            all.iter().filter(|d| *d == msg.device_id).collect()
        };
        for device_id in chosen {
            sent += 1;
            if sent > MAX_MESSAGES_PER_REQUEST {
                return Err(ApiError::too_large(format!(
                    "at most {MAX_MESSAGES_PER_REQUEST} messages per request"
                )));
            }
            let pos = tx.next_pos().await?;
            let queued = to_device::Queued {
                user_id: msg.user_id,
                device_id,
                sender: &auth.user_id,
                event_type,
                content: &msg.content,
            };
            to_device::insert(&mut tx, pos, &queued, now).await?;
            targets.insert(msg.user_id);
        }
    }
    tx.commit().await?;
    state.notifier.notify(targets);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_proto::to_device::SendToDeviceRequest;
    use serde_json::json;

    /// The `messages` of a request body, parsed as the handler parses it.
    fn messages(value: Value) -> Result<Messages, serde_json::Error> {
        serde_json::from_value::<SendToDeviceRequest>(json!({ "messages": value }))
            .map(|r| r.messages)
    }

    #[test]
    fn messages_are_checked_before_sending() {
        let ok = messages(json!({ "@a:x": { "DEV": { "k": 1 }, "*": { "k": 2 } } })).unwrap();
        let out = prepare(&ok, 100).unwrap();
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .any(|m| m.device_id == "*" && m.content == "{\"k\":2}"));

        let not_object = messages(json!({ "@a:x": { "DEV": "text" } })).unwrap();
        assert!(prepare(&not_object, 100).is_err());
        // A user mapped to anything but an object is refused with the body.
        assert!(messages(json!({ "@a:x": ["DEV"] })).is_err());
        let big = messages(json!({ "@a:x": { "DEV": { "k": "x".repeat(200) } } })).unwrap();
        assert_eq!(prepare(&big, 100).err().unwrap().errcode, "M_TOO_LARGE");
    }

    #[test]
    fn message_count_is_capped() {
        let per_device: BTreeMap<String, Value> = (0..=MAX_MESSAGES_PER_REQUEST)
            .map(|i| (format!("D{i}"), json!({})))
            .collect();
        let messages = BTreeMap::from([("@a:x".to_owned(), per_device)]);
        assert!(prepare(&messages, 100).is_err());
    }
}
