//! One room of a response: everything the client asked for when the
//! connection has not sent it yet (`initial`), else what changed since.
//! Timelines are read with `/v3/sync`'s reader, so history visibility and
//! retention apply alike.

use std::collections::HashSet;

use cloister_proto::event::ClientEvent;
use cloister_proto::sliding_sync::RoomResult;
use serde_json::Value;
use sqlx::AnyConnection;

use super::connection::SentRoom;
use super::lists::Want;
use super::summary;
use crate::error::ApiResult;
use crate::service::sync::filter::SyncFilter;
use crate::service::sync::rooms::{self as sync_rooms, RoomWindow};
use crate::service::{retention, visibility, Context};
use crate::store::events::{self, StoredEvent, Viewer};
use crate::store::rooms::SyncRoom;

/// What a room is read against.
pub(super) struct Frame<'a> {
    pub state: &'a Context,
    pub viewer: Viewer<'a>,
    /// The stream position of the connection's `pos`; None for a fresh one.
    pub conn_pos: Option<i64>,
    pub to: i64,
    pub now: i64,
}

/// A room's entry, if it has one to send, and what the connection then holds.
pub(super) struct Outcome {
    pub result: Option<RoomResult>,
    pub held: Option<SentRoom>,
}

impl Outcome {
    fn nothing() -> Self {
        Outcome {
            result: None,
            held: None,
        }
    }
}

pub(super) async fn room(
    c: &mut AnyConnection,
    f: &Frame<'_>,
    room: &SyncRoom,
    want: &Want,
    sent: Option<&SentRoom>,
) -> ApiResult<Outcome> {
    let config = want.config();
    let user_id = f.viewer.user_id;
    let membership = &room.membership;
    let held = |sent_pos| SentRoom {
        sent_pos,
        config: config.clone(),
    };
    if membership.membership == "invite" {
        if sent.is_some_and(|s| s.sent_pos >= membership.pos) {
            return Ok(Outcome::nothing());
        }
        let invite = sync_rooms::invited(&mut *c, &room.room_id, user_id).await?;
        let stripped = match &invite["invite_state"]["events"] {
            Value::Array(events) => events.clone(),
            _ => vec![],
        };
        // Only what the invite shows: an invitee may not read the room yet.
        let shown = |event_type: &str, field: &str| {
            stripped
                .iter()
                .find(|e| e["type"] == event_type)
                .and_then(|e| e["content"][field].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let result = RoomResult {
            initial: true,
            name: shown("m.room.name", "name"),
            avatar: shown("m.room.avatar", "url"),
            invite_state: Some(stripped),
            ..RoomResult::default()
        };
        return Ok(Outcome {
            result: Some(result),
            held: Some(held(f.to)),
        });
    }
    if membership.membership != "join" {
        return Ok(Outcome::nothing());
    }
    // Held since the current join: only the changes are due, plus, when the
    // client now asks for more, the longer timeline (`expanded`) or the
    // state it did not ask for before. Otherwise the room is sent whole.
    let held_since_join = sent.filter(|s| s.sent_pos >= membership.span_start_pos);
    let before = held_since_join.and_then(|s| Want::parse(&s.config));
    let from = held_since_join
        .filter(|_| before.is_some())
        .map(|s| s.sent_pos);
    let expanded = before
        .as_ref()
        .is_some_and(|b| want.timeline_limit > b.timeline_limit);
    let more_state = before
        .as_ref()
        .is_some_and(|b| !want.required_state.is_subset(&b.required_state));
    if let (Some(from), Some(conn_pos)) = (from, f.conn_pos) {
        if from >= conn_pos && !room.has_events && !room.has_ephemeral && !expanded && !more_state {
            // Asked for less (or alike): what it holds is unchanged, but a
            // later "more" must be measured against what it asks for now.
            return Ok(Outcome {
                result: None,
                held: sent.filter(|s| s.config != config).map(|_| held(f.to)),
            });
        }
    }
    // Every event since the join is the member's to read.
    let whole_window = from.is_some() && !expanded && !membership.forgotten;
    let access = if whole_window {
        visibility::current_member(user_id, membership.span_start_pos)
    } else {
        match visibility::access(&mut *c, &room.room_id, user_id).await? {
            Some(access) => access,
            None => return Ok(Outcome::nothing()),
        }
    };
    let filter = SyncFilter {
        timeline_limit: want.timeline_limit as i64,
        ..SyncFilter::default()
    };
    let window = RoomWindow {
        room_id: &room.room_id,
        viewer: f.viewer,
        from: from.filter(|_| !expanded),
        to: f.to,
        readable: &access.events,
        filter: &filter,
        full_state: false,
        now: f.now,
        cutoff: retention::cutoff_from_content(f.state, room.state_content.as_ref(), f.now),
        kept: Some(sync_rooms::Kept {
            members: &f.state.sync_members,
            recent: &f.state.sync_recent,
            state_serial: room.state_serial,
            last_event_pos: room.last_event_pos,
            metrics: &f.state.metrics,
        }),
    };
    let timeline = sync_rooms::timeline(&mut *c, &window).await?;
    let speakers: Vec<&str> = timeline.events.iter().map(|e| e.sender.as_str()).collect();
    let required_state = match (from.filter(|_| !more_state), access.state_at) {
        (_, None) => vec![],
        (None, Some(at)) => events::state_until(&mut *c, &room.room_id, at).await?,
        (Some(from), Some(_)) => {
            // A timeline that is not limited holds every event of the
            // gap: without a state event among them, no state changed.
            let state_moved = !whole_window
                || timeline.limited
                || timeline.events.iter().any(|e| e.state_key.is_some());
            let mut changed = if state_moved {
                events::current_state_part(&mut *c, &room.room_id, None, Some((from, f.to + 1)))
                    .await?
            } else {
                vec![]
            };
            if want.required_state.iter().any(|(_, k)| k == "$LAZY") && !speakers.is_empty() {
                let mut keys = speakers.clone();
                keys.sort_unstable();
                keys.dedup();
                changed.extend(
                    events::current_state_part(&mut *c, &room.room_id, Some(&keys), None).await?,
                );
            }
            changed
        }
    };
    let mut seen = HashSet::new();
    let required_state: Vec<ClientEvent> = required_state
        .iter()
        .filter(|e| e.pos <= f.to && wanted(want, e, user_id, &speakers))
        .filter(|e| seen.insert(e.event_id.clone()))
        .map(|e| e.to_client(None, f.now))
        .collect();
    if from.is_some()
        && timeline.events.is_empty()
        && required_state.is_empty()
        && !room.has_ephemeral
    {
        // Up to date: held as of now, so later requests skip it cheaply.
        return Ok(Outcome {
            result: None,
            held: Some(held(f.to)),
        });
    }
    let events = sync_rooms::render(&mut *c, &window, &timeline).await?;
    let mut result = RoomResult {
        initial: from.is_none(),
        unstable_expanded_timeline: expanded,
        prev_batch: (from.is_none() || !events.is_empty()).then(|| timeline.prev_batch.clone()),
        limited: timeline.limited,
        timeline: events,
        required_state,
        ..RoomResult::default()
    };
    summary::summarize(
        &mut *c,
        &f.state.sliding_summaries,
        (&room.room_id, room.state_serial),
        user_id,
        &mut result,
    )
    .await?;
    Ok(Outcome {
        result: Some(result),
        held: Some(held(f.to)),
    })
}

/// A held room the user has left or was banned from since it was sent: its
/// timeline up to the departure, which carries the leave, once, and the
/// state changes asked for up to it (the leave under `$ME`), as for a
/// joined room. Without them a client would show the room as joined for
/// ever: matrix-sdk reads its own membership only from `required_state`.
pub(super) async fn left(
    c: &mut AnyConnection,
    f: &Frame<'_>,
    room: &SyncRoom,
    held: &SentRoom,
) -> ApiResult<RoomResult> {
    let user_id = f.viewer.user_id;
    let left_at = room.membership.pos;
    let want = Want::parse(&held.config);
    let limit = want.as_ref().map_or(0, |w| w.timeline_limit).max(1);
    let mut result = RoomResult {
        bump_stamp: left_at,
        ..RoomResult::default()
    };
    match visibility::access(&mut *c, &room.room_id, user_id).await? {
        Some(access) => {
            let filter = SyncFilter {
                timeline_limit: limit as i64,
                ..SyncFilter::default()
            };
            let window = RoomWindow {
                room_id: &room.room_id,
                viewer: f.viewer,
                from: Some(held.sent_pos),
                to: left_at,
                readable: &access.events,
                filter: &filter,
                full_state: false,
                now: f.now,
                cutoff: retention::cutoff_from_content(f.state, room.state_content.as_ref(), f.now),
                kept: None,
            };
            let timeline = sync_rooms::timeline(&mut *c, &window).await?;
            result.limited = timeline.limited;
            result.prev_batch = Some(timeline.prev_batch.clone());
            result.timeline = sync_rooms::render(&mut *c, &window, &timeline).await?;
            let gap = (held.sent_pos, left_at + 1);
            let changed =
                events::current_state_part(&mut *c, &room.room_id, None, Some(gap)).await?;
            result.required_state = changed
                .iter()
                .filter(|e| want.as_ref().is_some_and(|w| wanted(w, e, user_id, &[])))
                .map(|e| e.to_client(None, f.now))
                .collect();
        }
        // Nothing of the room is readable any more, bar one's own membership.
        None => {
            if let Some(own) =
                events::state_event(&mut *c, &room.room_id, "m.room.member", user_id).await?
            {
                if want.as_ref().is_some_and(|w| wanted(w, &own, user_id, &[])) {
                    result.required_state = vec![own.to_client(None, f.now)];
                }
                result.timeline = vec![own.to_client(Some(f.viewer), f.now)];
            }
        }
    }
    Ok(result)
}

/// Whether the client's `required_state` asks for `event`: `"*"` matches
/// any type or key, `$ME` the user's own key, `$LAZY` the members who sent
/// an event of the returned timeline.
fn wanted(want: &Want, event: &StoredEvent, user_id: &str, speakers: &[&str]) -> bool {
    let key = event.state_key.as_deref().unwrap_or_default();
    want.required_state.iter().any(|(t, k)| {
        let type_ok = t == "*" || *t == event.event_type;
        let key_ok = match k.as_str() {
            "*" => true,
            "$ME" => key == user_id,
            "$LAZY" => event.event_type == "m.room.member" && speakers.contains(&key),
            exact => key == exact,
        };
        type_ok && key_ok
    })
}
