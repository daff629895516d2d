//! Messages sent with the room read before the writer, not in it.
//!
//! The writer runs sends one after another, and on SQLite each of its
//! statements is a hand-off to another thread that every queued send waits
//! for; that chain, not CPU, bounded the messages a second (docs/
//! performance.md, "Messages checked, not read, in the writer"). On
//! PostgreSQL every send waits for the stream counter's lock, held until
//! the commit of the send before it. A message changes nothing its
//! authorization reads, so its reads happen on a reader connection, in
//! parallel with other sends, and the writer stores it in one statement
//! guarded by the room's state serial (`store::checked_append`). The
//! outcome is the one of the ordinary path: a refusal is decided on
//! committed state, and a send whose room changed meanwhile goes the
//! ordinary way.
//!
//! The room as read is kept for the next message into it ([`RoomCache`]):
//! the writer's check of the state serial is what makes a message's read
//! safe, and a kept copy is checked the same way, so a message into a
//! room whose state did not move needs no reader connection at all. A
//! copy is only trusted to allow: a send it would refuse reads the room
//! again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

use crate::error::ApiResult;
use crate::service::events::{announce, authorize_other, AuthState};
use crate::service::Context;
use crate::store::checked_append::{self, Expected};
use crate::store::events::{visibility_for, NewEvent};
use crate::store::room_snapshot::RoomSnapshot;
use crate::store::{room_snapshot, txn_ids, WriteError};

/// A room as a message into it reads it, kept between messages.
struct KeptRoom {
    auth: AuthState,
    history_visibility: Option<Value>,
    /// Joined and invited; and those invited. Both sorted, as
    /// `room_snapshot::read` gives them.
    members: Vec<String>,
    invited: Vec<String>,
    state_serial: i64,
}

impl KeptRoom {
    fn new(room: RoomSnapshot) -> Self {
        KeptRoom {
            auth: AuthState::new(room.power_levels, room.join_rules),
            history_visibility: room.history_visibility,
            members: room.members,
            invited: room.invited,
            state_serial: room.state_serial,
        }
    }

    /// The sender's membership as far as the copy tells: `join`, or None
    /// when it does not say (invited, or not a member).
    fn joined(&self, sender: &str) -> Option<&'static str> {
        let member = self
            .members
            .binary_search_by(|m| m.as_str().cmp(sender))
            .is_ok();
        let invited = self
            .invited
            .binary_search_by(|i| i.as_str().cmp(sender))
            .is_ok();
        (member && !invited).then_some("join")
    }
}

/// Rooms kept by [`try_send`], up to [`MAX_KEPT_MEMBERS`] member ids in all.
#[derive(Default)]
pub struct RoomCache {
    rooms: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    rooms: HashMap<String, Arc<KeptRoom>>,
    members: usize,
}

/// About 6 MiB of user ids: a bound on the copies' memory whatever the rooms' sizes.
const MAX_KEPT_MEMBERS: usize = 100_000;

impl RoomCache {
    fn get(&self, room_id: &str) -> Option<Arc<KeptRoom>> {
        let kept = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        kept.rooms.get(room_id).cloned()
    }

    fn put(&self, room_id: &str, room: Arc<KeptRoom>) {
        let size = room.members.len();
        if size > MAX_KEPT_MEMBERS {
            return;
        }
        let mut kept = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = kept.rooms.remove(room_id) {
            kept.members -= old.members.len();
        }
        while kept.members + size > MAX_KEPT_MEMBERS {
            let Some(victim) = kept.rooms.keys().next().cloned() else {
                break;
            };
            let old = kept.rooms.remove(&victim).expect("a key just listed");
            kept.members -= old.members.len();
        }
        kept.members += size;
        kept.rooms.insert(room_id.to_owned(), room);
    }

    /// Drops the copy of the room if it is still the one at `state_serial`.
    fn forget(&self, room_id: &str, state_serial: i64) {
        let mut kept = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
        if kept
            .rooms
            .get(room_id)
            .is_some_and(|r| r.state_serial == state_serial)
        {
            let old = kept.rooms.remove(room_id).expect("checked above");
            kept.members -= old.members.len();
        }
    }
}

/// The message's event id, stored and announced, or its earlier one for a
/// retried `txn_id`; `None` when the caller must take the ordinary path:
/// not a plain message, no such room (the ordinary path says
/// so), or the room changed, or a retry raced this send.
pub(super) async fn try_send(
    state: &Context,
    event: &NewEvent<'_>,
    device_id: &str,
    txn_id: &str,
) -> ApiResult<Option<String>> {
    let plain_message = event.state_key.is_none()
        && event.redacts.is_none()
        && event.event_type != "m.room.redaction"
        && event.event_type != "m.room.member";
    if !plain_message {
        return Ok(None);
    }
    let kept = state.room_cache.get(event.room_id).filter(|room| {
        let joined = room.joined(event.sender);
        authorize_other(state, event, &room.auth, joined).is_ok()
    });
    let room = match kept {
        Some(room) => room,
        None => {
            let mut c = state.store.read().await?;
            if let Some(existing) =
                txn_ids::result(&mut c, event.sender, device_id, "event", txn_id).await?
            {
                return Ok(Some(existing));
            }
            let Some(room) = room_snapshot::read(&mut c, event.room_id, event.sender).await? else {
                return Ok(None);
            };
            // Before the writer: a reader held while queued there would be
            // one fewer for the long-polls.
            drop(c);
            let sender_membership = room.sender_membership.clone();
            let room = Arc::new(KeptRoom::new(room));
            state.room_cache.put(event.room_id, room.clone());
            authorize_other(state, event, &room.auth, sender_membership.as_deref())?;
            room
        }
    };
    let visibility = visibility_for(event, None, room.history_visibility.as_ref());
    let expected = Expected {
        state_serial: room.state_serial,
        device_id,
        txn_id,
    };
    let event_id = crate::ids::new_event_id();
    let now = state.now_ms();
    let stored =
        checked_append::append_message(&state.store, event, event_id, now, visibility, &expected)
            .await;
    let stored = match stored {
        Ok(Some(stored)) => stored,
        // The room moved, or a retry of this transaction id is in the
        // writer's open batch: the ordinary path reads both there.
        Ok(None) => {
            state.room_cache.forget(event.room_id, room.state_serial);
            return Ok(None);
        }
        Err(WriteError::Db(err)) if crate::store::is_unique_violation(&err) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    // A plain message names no one beyond the members (`audience` adds a
    // membership's target), so the kept list is woken as it is.
    announce(state, &stored, &room.members);
    Ok(Some(stored.event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(serial: i64, members: &[&str], invited: &[&str]) -> Arc<KeptRoom> {
        let sorted = |ids: &[&str]| {
            let mut ids: Vec<String> = ids.iter().map(|m| m.to_string()).collect();
            ids.sort_unstable();
            ids
        };
        let members = sorted(members);
        Arc::new(KeptRoom::new(RoomSnapshot {
            power_levels: None,
            join_rules: None,
            history_visibility: None,
            sender_membership: None,
            members,
            invited: sorted(invited),
            state_serial: serial,
        }))
    }

    #[test]
    fn a_kept_room_tells_only_who_has_joined() {
        let r = room(1, &["@a:x", "@b:x"], &["@b:x"]);
        assert_eq!(r.joined("@a:x"), Some("join"));
        assert_eq!(r.joined("@b:x"), None, "invited");
        assert_eq!(r.joined("@c:x"), None, "not a member");
    }

    #[test]
    fn kept_rooms_are_bounded_by_their_members_and_forgotten_by_serial() {
        let cache = RoomCache::default();
        let big: Vec<String> = (0..MAX_KEPT_MEMBERS / 2 + 1)
            .map(|i| format!("@u{i}:x"))
            .collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        cache.put("!a:x", room(1, &big, &[]));
        cache.put("!b:x", room(1, &big, &[]));
        assert!(cache.get("!a:x").is_none(), "room a made way for room b");
        assert!(cache.get("!b:x").is_some());
        cache.put("!c:x", room(7, &["@a:x"], &[]));
        assert_eq!(cache.rooms.lock().unwrap().members, big.len() + 1);

        cache.forget("!c:x", 6);
        assert!(cache.get("!c:x").is_some(), "a newer copy stays");
        cache.forget("!c:x", 7);
        assert!(cache.get("!c:x").is_none());
        assert_eq!(cache.rooms.lock().unwrap().members, big.len());

        let too_big: Vec<String> = (0..=MAX_KEPT_MEMBERS).map(|i| format!("@u{i}:x")).collect();
        let too_big: Vec<&str> = too_big.iter().map(String::as_str).collect();
        cache.put("!d:x", room(1, &too_big, &[]));
        assert!(cache.get("!d:x").is_none(), "never kept");
        assert!(cache.get("!b:x").is_some());
    }
}
