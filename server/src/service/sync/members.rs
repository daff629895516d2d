//! Member events kept for lazy-loading `/sync`s.
//!
//! With lazy loading, every incremental response that carries a room's
//! timeline also carries the member events of its senders, and reading
//! them was a statement of its own on every woken long-poll, for events
//! that change rarely. A room's `state_serial` (`store::rooms::
//! state_changed`) moves in the same transaction as every change to its
//! state, member events included (new state, redaction, erasure's
//! rewrite), so a copy read while the serial was `n` is the current state
//! for as long as the serial is still `n`. The serial a sync compares is
//! read before the copy is used or made, and a copy is only ever labelled
//! with a serial read before its events were: a change in between makes
//! the copy look older than it is, never newer. The serial is read from
//! the database, so this holds across the nodes of one PostgreSQL too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::store::events::StoredEvent;

/// Member events kept per room, at most [`MAX_KEPT_EVENTS`] in all.
#[derive(Default)]
pub struct MemberCache {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    rooms: HashMap<String, KeptRoom>,
    events: usize,
}

struct KeptRoom {
    state_serial: i64,
    /// Per user id: the member event, or None for a user without one.
    members: HashMap<String, Option<Arc<StoredEvent>>>,
}

/// A member event is about a kilobyte with its content: about 16 MiB at
/// most, whatever the number of rooms.
const MAX_KEPT_EVENTS: usize = 16_384;

impl MemberCache {
    /// The member events of `users` in `room_id` at `state_serial`, if all
    /// of them are kept; None if any is not (then read them all and
    /// [`MemberCache::put`] them).
    pub fn get(
        &self,
        room_id: &str,
        state_serial: i64,
        users: &[&str],
    ) -> Option<Vec<Arc<StoredEvent>>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let room = kept.rooms.get(room_id)?;
        if room.state_serial != state_serial {
            return None;
        }
        let mut out = Vec::with_capacity(users.len());
        for user in users {
            if let Some(event) = room.members.get(*user)? {
                out.push(Arc::clone(event));
            }
        }
        Some(out)
    }

    /// Drops every copy (after an erasure, whose rewritten events the
    /// copies would otherwise hold until their rooms are next synced).
    pub fn clear(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        *kept = Kept::default();
    }

    /// Keeps what a read of `users`' member events in `room_id` found,
    /// labelled with a serial read before it. Users without an event are
    /// kept as such.
    pub fn put(
        &self,
        room_id: &str,
        state_serial: i64,
        users: &[&str],
        found: &[Arc<StoredEvent>],
    ) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = &mut *kept;
        let stale = kept
            .rooms
            .get(room_id)
            .is_some_and(|r| r.state_serial != state_serial);
        if stale {
            if let Some(old) = kept.rooms.remove(room_id) {
                kept.events -= old.members.len();
            }
        }
        while kept.events + users.len() > MAX_KEPT_EVENTS {
            let Some(victim) = kept.rooms.keys().find(|r| *r != room_id).cloned() else {
                break;
            };
            let old = kept.rooms.remove(&victim).expect("a key just listed");
            kept.events -= old.members.len();
        }
        if kept.events + users.len() > MAX_KEPT_EVENTS {
            return;
        }
        let room = kept
            .rooms
            .entry(room_id.to_owned())
            .or_insert_with(|| KeptRoom {
                state_serial,
                members: HashMap::new(),
            });
        for user in users {
            let event = found
                .iter()
                .find(|e| e.state_key.as_deref() == Some(*user))
                .cloned();
            if room.members.insert((*user).to_owned(), event).is_none() {
                kept.events += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn member(user: &str, pos: i64) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            pos,
            event_id: format!("$m{pos}"),
            room_id: "!r:x".into(),
            sender: user.into(),
            sender_device: None,
            txn_id: None,
            event_type: "m.room.member".into(),
            state_key: Some(user.into()),
            content: json!({ "membership": "join" }),
            prev_content: None,
            redacts: None,
            redacted_by: None,
            origin_server_ts: 0,
            history_visibility: None,
        })
    }

    fn ids(events: &[Arc<StoredEvent>]) -> Vec<&str> {
        events.iter().map(|e| e.event_id.as_str()).collect()
    }

    #[test]
    fn kept_events_serve_only_the_serial_they_were_read_at() {
        let cache = MemberCache::default();
        assert!(cache.get("!r:x", 3, &["@a:x"]).is_none(), "nothing kept");
        cache.put("!r:x", 3, &["@a:x", "@gone:x"], &[member("@a:x", 1)]);
        let kept = cache.get("!r:x", 3, &["@a:x", "@gone:x"]).unwrap();
        assert_eq!(
            ids(&kept),
            ["$m1"],
            "a user without an event is known to have none"
        );
        assert!(
            cache.get("!r:x", 3, &["@a:x", "@b:x"]).is_none(),
            "@b:x not read yet"
        );
        assert!(
            cache.get("!r:x", 4, &["@a:x"]).is_none(),
            "the state moved on"
        );
        assert!(cache.get("!other:x", 3, &["@a:x"]).is_none());

        // A read at the new serial replaces the old copies.
        cache.put("!r:x", 4, &["@b:x"], &[member("@b:x", 7)]);
        assert!(
            cache.get("!r:x", 4, &["@a:x"]).is_none(),
            "dropped with serial 3"
        );
        assert_eq!(ids(&cache.get("!r:x", 4, &["@b:x"]).unwrap()), ["$m7"]);
        assert!(cache.get("!r:x", 3, &["@b:x"]).is_none());

        cache.clear();
        assert!(cache.get("!r:x", 4, &["@b:x"]).is_none(), "cleared");
    }

    #[test]
    fn the_copies_are_bounded() {
        let cache = MemberCache::default();
        let users: Vec<String> = (0..MAX_KEPT_EVENTS / 2)
            .map(|i| format!("@u{i}:x"))
            .collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        cache.put("!a:x", 1, &users, &[]);
        cache.put("!b:x", 1, &users, &[]);
        assert!(cache.get("!a:x", 1, &users).is_some());
        cache.put("!c:x", 1, &users[..10], &[]);
        let kept = cache.kept.lock().unwrap();
        assert!(kept.events <= MAX_KEPT_EVENTS, "{}", kept.events);
        assert_eq!(
            kept.events,
            kept.rooms.values().map(|r| r.members.len()).sum::<usize>()
        );
        assert!(kept.rooms.contains_key("!c:x"), "the newest read is kept");
    }
}
