//! `device_lists.changed` and `device_lists.left`: whose device keys a client
//! must (re)fetch, and whom it no longer needs to track.

use std::collections::BTreeSet;

use cloister_proto::sync::DeviceLists;
use sqlx::AnyConnection;

use crate::error::ApiResult;
use crate::store::events;
use crate::store::rooms::{self, SyncRoom};

/// `keys_changed`: the users whose device lists changed in `(from, to]`
/// (see `store::device_news`). `my_rooms`: the rooms the user is or was in,
/// as read for the window; a caller may leave out rooms it knows to hold
/// no membership events in it.
pub async fn changes(
    c: &mut AnyConnection,
    user_id: &str,
    keys_changed: Vec<String>,
    my_rooms: &[&SyncRoom],
    from: i64,
    to: i64,
) -> ApiResult<DeviceLists> {
    // Usually nobody changed keys and no membership moved, and then who
    // shares a room with the user need not be read.
    let mut changed: BTreeSet<String> = keys_changed.into_iter().collect();
    let mut maybe_left = BTreeSet::new();
    for room in my_rooms {
        let (room_id, membership) = (&room.room_id, &room.membership);
        let is_joined = membership.membership == "join";
        let changed_recently = membership.pos > from;
        if !is_joined && !changed_recently {
            continue;
        }
        if !room.has_events && !changed_recently {
            // No events in the window, so no membership changes either:
            // reading its member events would find nothing.
            continue;
        }
        if is_joined && membership.span_start_pos > from {
            // We joined since `from`: everyone here may be new to us.
            changed.extend(rooms::joined_members(&mut *c, room_id).await?);
            continue;
        }
        if !is_joined {
            // We left since `from`: everyone here may have left our view.
            maybe_left.extend(
                rooms::members(&mut *c, room_id, &["join", "leave", "ban", "invite"]).await?,
            );
            continue;
        }
        for event in events::member_events_between(&mut *c, room_id, from, to).await? {
            let Some(target) = event.state_key else {
                continue;
            };
            match event
                .content
                .get("membership")
                .and_then(serde_json::Value::as_str)
            {
                Some("join")
                    if event
                        .prev_content
                        .as_ref()
                        .and_then(|p| p.get("membership"))
                        .and_then(|m| m.as_str())
                        != Some("join") =>
                {
                    changed.insert(target);
                }
                Some("leave") | Some("ban") => {
                    maybe_left.insert(target);
                }
                _ => {}
            }
        }
    }
    if changed.is_empty() && maybe_left.is_empty() {
        return Ok(DeviceLists::default());
    }
    let sharing: BTreeSet<String> = rooms::users_sharing_rooms(&mut *c, user_id)
        .await?
        .into_iter()
        .collect();
    let left: Vec<String> = maybe_left
        .into_iter()
        .filter(|u| u != user_id && !sharing.contains(u))
        .collect();
    changed.retain(|u| sharing.contains(u) && !left.contains(u));
    Ok(DeviceLists {
        changed: changed.into_iter().collect(),
        left,
    })
}
