//! Recent events kept per room for incremental `/sync`s.
//!
//! One message into a room of ten wakes ten long-polls (`/v3/sync` or
//! sliding sync), and each of them read the same new event with a
//! statement of its own. A node now keeps, per room, every event of one
//! stretch of positions `(after, upto]` as a read found them, whoever may
//! see them; each response filters its copy as the database query would
//! (`Readable::allows`, the retention cutoff). The backward `/messages`
//! pages that fill a `limited` timeline's gap are taken from the same
//! stretch ([`RecentEvents::page_before`], `service::event_reads::page`).
//!
//! A response may use the stretch when it covers the response's window:
//! it starts at or before the client's position, and reaches the room's
//! last event up to the response's position (read with the response's
//! rooms in the device's news, `store::rooms::SyncRoom::last_event_pos`,
//! on both sync APIs). A position is
//! committed only after every position before it, so a read up to a
//! response's position saw all of the room's events there; those events
//! stay as read until one is rewritten or deleted (a redaction, erasure,
//! the retention purge), and each of those moves the room's
//! `state_serial` in the same transaction (`store::rooms::state_changed`).
//! The stretch is labelled with a serial read before its events, as the
//! kept member events are (`super::members`): a change in between makes
//! it look older, never newer. Both the serial and the last position come
//! from the database, so this holds across the nodes of one PostgreSQL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::store::events::StoredEvent;

/// Events kept per room, at most [`MAX_KEPT_EVENTS`] in all.
#[derive(Default)]
pub struct RecentEvents {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    rooms: HashMap<String, Stretch>,
    events: usize,
}

/// Every event of a room with a position in `(after, upto]`, oldest first.
struct Stretch {
    state_serial: i64,
    after: i64,
    upto: i64,
    events: Vec<Arc<StoredEvent>>,
}

/// Enough for every client a few messages behind; one further behind
/// reads its window as before.
const MAX_ROOM_EVENTS: usize = 128;

/// About 1.5 KiB an encrypted message: about 12 MiB at most, whatever the
/// number of rooms.
const MAX_KEPT_EVENTS: usize = 8_192;

/// A read made to keep a stretch spans at most this many positions, and so
/// returns at most this many events. Positions are shared by every room,
/// so this is a little over a second of a busy server.
pub const MAX_READ_SPAN: i64 = 1_024;

/// One response's window in one room.
#[derive(Clone, Copy, Debug)]
pub struct Ask<'a> {
    pub room_id: &'a str,
    /// The room's `state_serial`, read with the response's rooms.
    pub state_serial: i64,
    /// The client's position: the window is `(from, to]`.
    pub from: i64,
    pub to: i64,
    /// The room's last event up to `to`, read with the response's rooms.
    pub last_event_pos: Option<i64>,
}

impl Stretch {
    fn covers(&self, ask: &Ask<'_>) -> bool {
        let end = ask.last_event_pos.unwrap_or(ask.from).min(ask.to);
        self.state_serial == ask.state_serial
            && (end <= ask.from || (self.after <= ask.from && end <= self.upto))
    }

    fn window(&self, ask: &Ask<'_>) -> Vec<Arc<StoredEvent>> {
        let start = self.events.partition_point(|e| e.pos <= ask.from);
        self.events[start..]
            .iter()
            .take_while(|e| e.pos <= ask.to)
            .cloned()
            .collect()
    }

    /// Holds every event of the room up to `high`, and some before it.
    fn reaches_back(&self, high: i64) -> bool {
        self.after < high && high <= self.upto
    }

    /// Drops the oldest events beyond [`MAX_ROOM_EVENTS`]; the stretch then
    /// starts at the last one dropped.
    fn trim(&mut self) {
        let excess = self.events.len().saturating_sub(MAX_ROOM_EVENTS);
        if excess > 0 {
            self.after = self.events[excess - 1].pos;
            self.events.drain(..excess);
        }
    }
}

impl RecentEvents {
    /// The room's events in the window, oldest first, if kept.
    pub fn get(&self, ask: &Ask<'_>) -> Option<Vec<Arc<StoredEvent>>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let stretch = kept.rooms.get(ask.room_id)?;
        stretch.covers(ask).then(|| stretch.window(ask))
    }

    /// Where a read for `ask` starts: at the end of the kept stretch when
    /// that is at or after the client's position (so the read extends it),
    /// else at the client's position. None when that is more than
    /// [`MAX_READ_SPAN`] positions before the window's end.
    pub fn read_after(&self, ask: &Ask<'_>) -> Option<i64> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let after = match kept.rooms.get(ask.room_id) {
            Some(s)
                if s.state_serial == ask.state_serial
                    && s.after <= ask.from
                    && ask.from <= s.upto =>
            {
                s.upto.min(ask.to)
            }
            _ => ask.from,
        };
        (ask.to - after <= MAX_READ_SPAN).then_some(after)
    }

    /// Keeps `read`, every event of the room in `(after, ask.to]` oldest
    /// first, with what is kept of the room at the same serial, and returns
    /// the room's events in `ask`'s window. None when they cannot be put
    /// together: the stretch the read was to extend changed meanwhile.
    pub fn put(
        &self,
        ask: &Ask<'_>,
        after: i64,
        read: Vec<Arc<StoredEvent>>,
    ) -> Option<Vec<Arc<StoredEvent>>> {
        let mut stretch = Stretch {
            state_serial: ask.state_serial,
            after,
            upto: ask.to,
            events: read,
        };
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = &mut *kept;
        if let Some(old) = kept.rooms.get(ask.room_id) {
            if old.state_serial > ask.state_serial {
                // Read at an older serial than what is kept: answer from it
                // if it covers the window, keep nothing.
                return (after <= ask.from).then(|| stretch.window(ask));
            }
            if old.state_serial == ask.state_serial
                && old.after <= stretch.upto
                && stretch.after <= old.upto
            {
                stretch = merged(old, stretch);
            }
        }
        if stretch.after > ask.from {
            return None;
        }
        let answer = stretch.window(ask);
        stretch.trim();
        if let Some(old) = kept.rooms.remove(ask.room_id) {
            kept.events -= old.events.len();
        }
        while kept.events + stretch.events.len() > MAX_KEPT_EVENTS {
            let Some(victim) = kept.rooms.keys().next().cloned() else {
                break;
            };
            let old = kept.rooms.remove(&victim).expect("a key just listed");
            kept.events -= old.events.len();
        }
        kept.events += stretch.events.len();
        kept.rooms.insert(ask.room_id.to_owned(), stretch);
        Some(answer)
    }

    /// The kept events a backward `/messages` page ending at `high` may be
    /// served from: the room's stretch at `state_serial` when it reaches
    /// `high` and starts before it. `last_event_pos` is the room's last
    /// event, read with the serial.
    pub fn page_before(
        &self,
        room_id: &str,
        state_serial: i64,
        last_event_pos: Option<i64>,
        high: i64,
    ) -> Option<KeptPage> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let stretch = kept.rooms.get(room_id)?;
        let usable = stretch.state_serial == state_serial && stretch.reaches_back(high);
        usable.then(|| KeptPage {
            after: stretch.after,
            reaches_room_end: last_event_pos.unwrap_or(0) <= stretch.upto,
            events: stretch.events.clone(),
        })
    }

    /// Drops every copy (after an erasure, whose rewritten events the
    /// copies would otherwise hold until their rooms are next synced).
    pub fn clear(&self) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        *kept = Kept::default();
    }
}

/// A room's kept stretch, for a `/messages` page (see
/// `service::event_reads::page`).
pub struct KeptPage {
    /// The stretch holds every event of the room after this position.
    pub after: i64,
    /// ... and every one up to the room's last event, so every child
    /// (edit, reaction, thread reply) of its events too.
    pub reaches_room_end: bool,
    /// Oldest first, whoever may read them.
    pub events: Vec<Arc<StoredEvent>>,
}

/// Two overlapping or touching stretches of one serial: each holds every
/// event of its own span, so together they hold every event of both.
fn merged(old: &Stretch, new: Stretch) -> Stretch {
    // Where the two overlap, the new read's copies are used: they are the
    // same events at the same serial.
    let before = old.events.iter().filter(|e| e.pos <= new.after);
    let after = old.events.iter().filter(|e| e.pos > new.upto);
    let mut all: Vec<Arc<StoredEvent>> = before.cloned().collect();
    all.extend(new.events);
    all.extend(after.cloned());
    Stretch {
        state_serial: new.state_serial,
        after: old.after.min(new.after),
        upto: old.upto.max(new.upto),
        events: all,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(pos: i64) -> Arc<StoredEvent> {
        Arc::new(StoredEvent {
            pos,
            event_id: format!("$e{pos}"),
            room_id: "!r:x".into(),
            sender: "@a:x".into(),
            sender_device: None,
            txn_id: None,
            event_type: "m.room.encrypted".into(),
            state_key: None,
            content: json!({}),
            prev_content: None,
            redacts: None,
            redacted_by: None,
            origin_server_ts: 0,
            history_visibility: None,
        })
    }

    fn events(positions: &[i64]) -> Vec<Arc<StoredEvent>> {
        positions.iter().copied().map(event).collect()
    }

    fn ask(from: i64, to: i64, last: i64) -> Ask<'static> {
        Ask {
            room_id: "!r:x",
            state_serial: 1,
            from,
            to,
            last_event_pos: Some(last),
        }
    }

    fn positions(events: Option<Vec<Arc<StoredEvent>>>) -> Option<Vec<i64>> {
        events.map(|list| list.iter().map(|e| e.pos).collect())
    }

    #[test]
    fn a_stretch_serves_windows_it_covers_at_its_serial() {
        let recent = RecentEvents::default();
        let first = ask(10, 20, 15);
        assert!(recent.get(&first).is_none(), "nothing kept");
        assert_eq!(recent.read_after(&first), Some(10));
        assert_eq!(
            positions(recent.put(&first, 10, events(&[12, 15]))),
            Some(vec![12, 15])
        );

        // Another client, a little later, from inside the stretch.
        assert_eq!(positions(recent.get(&ask(12, 25, 15))), Some(vec![15]));
        // Nothing in the room since: an empty window, whatever the stretch.
        assert_eq!(positions(recent.get(&ask(30, 40, 15))), Some(vec![]));
        // A client from before the stretch, or a room event after it.
        assert!(recent.get(&ask(9, 20, 15)).is_none());
        assert!(recent.get(&ask(12, 30, 26)).is_none());
        // An event rewritten since (a redaction moved the serial).
        assert!(recent
            .get(&Ask {
                state_serial: 2,
                ..ask(12, 20, 15)
            })
            .is_none());

        recent.clear();
        assert!(recent.get(&ask(12, 20, 15)).is_none(), "cleared");
    }

    #[test]
    fn a_read_from_inside_the_stretch_extends_it() {
        let recent = RecentEvents::default();
        recent.put(&ask(10, 20, 15), 10, events(&[12, 15]));
        // A new event at 26: read only after the stretch's end.
        let later = ask(15, 30, 26);
        assert_eq!(recent.read_after(&later), Some(20));
        assert_eq!(
            positions(recent.put(&later, 20, events(&[26]))),
            Some(vec![26])
        );
        // The slower client is still served from the one stretch.
        assert_eq!(
            positions(recent.get(&ask(10, 30, 26))),
            Some(vec![12, 15, 26])
        );
        // A read at the next serial starts afresh, and replaces it.
        let moved = Ask {
            state_serial: 2,
            ..ask(26, 40, 33)
        };
        assert_eq!(recent.read_after(&moved), Some(26));
        recent.put(&moved, 26, events(&[33]));
        assert!(recent.get(&ask(10, 30, 26)).is_none());
        // A read at an older serial answers but does not replace it.
        assert_eq!(
            positions(recent.put(&ask(20, 40, 33), 20, events(&[26, 33]))),
            Some(vec![26, 33])
        );
        assert!(recent
            .get(&Ask {
                state_serial: 2,
                ..ask(26, 40, 33)
            })
            .is_some());
    }

    #[test]
    fn a_page_before_is_served_while_the_stretch_holds_the_room_up_to_it() {
        let recent = RecentEvents::default();
        assert!(recent.page_before("!r:x", 1, Some(15), 20).is_none());
        recent.put(&ask(10, 20, 15), 10, events(&[12, 15]));

        let page = recent.page_before("!r:x", 1, Some(15), 20).expect("kept");
        assert_eq!(page.after, 10);
        assert!(page.reaches_room_end);
        assert_eq!(positions(Some(page.events)), Some(vec![12, 15]));
        // A later event, not kept: pages up to the stretch's end still
        // serve, but the children of their events may lie beyond it.
        let page = recent.page_before("!r:x", 1, Some(26), 16).expect("kept");
        assert!(!page.reaches_room_end);
        // A page from beyond the stretch's end, or wholly before it.
        assert!(recent.page_before("!r:x", 1, Some(15), 21).is_none());
        assert!(recent.page_before("!r:x", 1, Some(15), 10).is_none());
        // Another serial: rewritten since.
        assert!(recent.page_before("!r:x", 2, Some(15), 20).is_none());
    }

    #[test]
    fn a_client_far_behind_reads_as_before() {
        let recent = RecentEvents::default();
        assert_eq!(recent.read_after(&ask(0, MAX_READ_SPAN + 1, 5)), None);
        assert_eq!(recent.read_after(&ask(1, MAX_READ_SPAN + 1, 5)), Some(1));
    }

    #[test]
    fn an_extension_that_lost_its_stretch_is_not_answered() {
        let recent = RecentEvents::default();
        recent.put(&ask(10, 20, 15), 10, events(&[12, 15]));
        let later = ask(15, 30, 26);
        let after = recent.read_after(&later).unwrap();
        recent.clear();
        assert!(recent.put(&later, after, events(&[26])).is_none());
    }

    #[test]
    fn the_copies_are_bounded() {
        let recent = RecentEvents::default();
        let many: Vec<i64> = (1..=MAX_ROOM_EVENTS as i64 + 10).collect();
        let last = *many.last().unwrap();
        let answer = recent.put(&ask(0, last, last), 0, events(&many));
        assert_eq!(answer.unwrap().len(), many.len(), "the reader gets all");
        // The oldest ten are dropped, and the stretch starts after them.
        assert!(recent.get(&ask(9, last, last)).is_none());
        assert_eq!(
            recent.get(&ask(10, last, last)).unwrap().len(),
            MAX_ROOM_EVENTS
        );

        for room in 0..MAX_KEPT_EVENTS / MAX_ROOM_EVENTS + 5 {
            let room = format!("!{room}:x");
            let ask = Ask {
                room_id: &room,
                ..ask(0, last, last)
            };
            recent.put(&ask, 0, events(&many));
        }
        let kept = recent.kept.lock().unwrap();
        assert!(kept.events <= MAX_KEPT_EVENTS, "{}", kept.events);
        assert_eq!(
            kept.events,
            kept.rooms.values().map(|r| r.events.len()).sum::<usize>()
        );
    }
}
