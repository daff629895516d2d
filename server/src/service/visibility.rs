//! What part of a room one user may read (spec: "History visibility").
//!
//! Each event is judged by the visibility in force when it was sent:
//! `world_readable` events by anyone, `shared` ones by whoever joined at
//! any point after they were sent (up to their departure), `invited` ones
//! by whoever was invited or joined when they were sent, and `joined` ones
//! by whoever was joined then. A user's own membership events are always
//! theirs to read, so a declined invite or a ban reaches their client.
//!
//! Room state follows the same line: members read the current state, former
//! members the state at their last departure, and people who were never
//! joined (a declined or withdrawn invite, a pre-emptive ban) none at all,
//! unless the room is world-readable now. Forgetting a room ends all of it.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::error::{ApiError, ApiResult};
use crate::store::readable::{self, Class, Readable};
use crate::store::room_access::{self, RoomAccess};

/// What one user may read of one room.
#[derive(Debug, Clone)]
pub struct Access {
    pub events: Readable,
    /// The position whose room state the user may read: `i64::MAX` for the
    /// current state, `None` for no state at all.
    pub state_at: Option<i64>,
}

impl Access {
    /// The position of the state the user may read, or 403.
    pub fn require_state(&self) -> ApiResult<i64> {
        self.state_at.ok_or_else(|| {
            ApiError::forbidden(
                "You have not been a member of this room, so you cannot read its state",
            )
        })
    }
}

/// `None` when the user may read nothing of the room: they were never in it
/// (or forgot it) and it is not world-readable.
pub async fn access(
    c: &mut AnyConnection,
    room_id: &str,
    user_id: &str,
) -> ApiResult<Option<Access>> {
    Ok(access_of(
        user_id,
        &room_access::read(c, room_id, user_id).await?,
    ))
}

/// [`access`] from what [`room_access::read`] found.
fn access_of(user_id: &str, room: &RoomAccess) -> Option<Access> {
    let history: &[(i64, String)] = if room.forgotten { &[] } else { &room.history };
    let mut access = from_history(user_id, history);
    let class = room
        .history_visibility
        .as_ref()
        .map_or(Class::Shared, |content| {
            Class::parse(content.get("history_visibility").and_then(Value::as_str))
        });
    if access.state_at.is_none() && class == Class::WorldReadable {
        access.state_at = Some(i64::MAX);
    }
    if history.is_empty() && access.state_at.is_none() {
        return None;
    }
    Some(access)
}

/// [`access`] for a member whose current join began at `span_start`, valid
/// for events at or after `span_start` only: a joined member reads events
/// of every visibility class, so the membership history before this span
/// (which [`access`] reads) changes nothing there. An incremental sync whose
/// `from` is at or after `span_start` asks for no other events, and saves a
/// query per room with news.
pub fn current_member(user_id: &str, span_start: i64) -> Access {
    let span = vec![(span_start, i64::MAX)];
    Access {
        events: Readable {
            user_id: user_id.to_owned(),
            shared: vec![(0, i64::MAX)],
            invited: span.clone(),
            joined: span,
        },
        state_at: Some(i64::MAX),
    }
}

/// Like [`access`], but 404 for an unknown room and 403 for someone who may
/// read nothing of it.
pub async fn require(c: &mut AnyConnection, room_id: &str, user_id: &str) -> ApiResult<Access> {
    Ok(require_reading(c, room_id, user_id).await?.0)
}

/// [`require`], with what was read about the room on the way (its
/// retention event, serial and last event), in the same one statement.
pub async fn require_reading(
    c: &mut AnyConnection,
    room_id: &str,
    user_id: &str,
) -> ApiResult<(Access, RoomAccess)> {
    let room = room_access::read(c, room_id, user_id).await?;
    if !room.exists {
        return Err(ApiError::not_found("Unknown room"));
    }
    let access = access_of(user_id, &room)
        .ok_or_else(|| ApiError::forbidden("You are not a member of this room"))?;
    Ok((access, room))
}

/// The spans of a membership history, oldest first: each membership lasts
/// until the position before the next one.
fn from_history(user_id: &str, history: &[(i64, String)]) -> Access {
    let (mut joined, mut invited) = (Vec::new(), Vec::new());
    for (i, (start, membership)) in history.iter().enumerate() {
        let end = history.get(i + 1).map_or(i64::MAX, |(next, _)| next - 1);
        match membership.as_str() {
            "join" => joined.push((*start, end)),
            "invite" => invited.push((*start, end)),
            _ => {}
        }
    }
    let still_joined = history.last().is_some_and(|(_, m)| m == "join");
    let last_join_end = joined.last().map(|&(_, end)| end);
    // The event that ended the last join (a leave, kick or ban) is the last
    // state a former member saw.
    let state_at = if still_joined {
        Some(i64::MAX)
    } else {
        last_join_end.map(|end| end + 1)
    };
    let shared = last_join_end.map(|end| vec![(0, end)]).unwrap_or_default();
    invited.extend_from_slice(&joined);
    Access {
        events: Readable {
            user_id: user_id.to_owned(),
            shared,
            invited: readable::normalize(invited),
            joined: readable::normalize(joined),
        },
        state_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(items: &[(i64, &str)]) -> Vec<(i64, String)> {
        items.iter().map(|(p, m)| (*p, (*m).to_owned())).collect()
    }

    #[test]
    fn member_reads_current_state_and_shared_history() {
        let a = from_history("@u:x", &history(&[(10, "invite"), (12, "join")]));
        assert_eq!(a.state_at, Some(i64::MAX));
        assert_eq!(a.events.shared, vec![(0, i64::MAX)]);
        assert_eq!(a.events.invited, vec![(10, i64::MAX)]);
        assert_eq!(a.events.joined, vec![(12, i64::MAX)]);
    }

    #[test]
    fn never_joined_reads_no_state_and_no_shared_history() {
        for h in [
            history(&[(10, "invite"), (12, "leave")]),
            history(&[(10, "ban")]),
            history(&[(10, "invite"), (11, "leave"), (20, "ban")]),
        ] {
            let a = from_history("@u:x", &h);
            assert_eq!(a.state_at, None, "{h:?}");
            assert!(a.events.shared.is_empty(), "{h:?}");
            assert!(a.events.joined.is_empty(), "{h:?}");
        }
        let declined = from_history("@u:x", &history(&[(10, "invite"), (12, "leave")]));
        assert_eq!(declined.events.invited, vec![(10, 11)]);
    }

    #[test]
    fn former_member_stops_at_departure_whatever_follows() {
        // Joined at 10, left at 20; later banned, or re-invited and declined.
        for h in [
            history(&[(10, "join"), (20, "leave"), (30, "ban")]),
            history(&[(10, "join"), (20, "leave"), (30, "invite"), (35, "leave")]),
        ] {
            let a = from_history("@u:x", &h);
            assert_eq!(a.state_at, Some(20), "{h:?}");
            assert_eq!(a.events.shared, vec![(0, 19)], "{h:?}");
            assert_eq!(a.events.joined, vec![(10, 19)], "{h:?}");
        }
    }

    /// Within the window it is used for, the fast path lets through exactly
    /// what the full computation does, whatever came before the current span.
    #[test]
    fn current_member_agrees_with_history_after_span_start() {
        use crate::store::readable::tests::event;
        let histories = [
            history(&[(12, "join")]),
            history(&[(10, "invite"), (12, "join")]),
            history(&[(10, "join"), (20, "leave"), (30, "join")]),
            history(&[(5, "ban"), (8, "leave"), (9, "invite"), (30, "join")]),
            history(&[(10, "join"), (15, "leave"), (20, "join"), (30, "join")]),
        ];
        for h in histories {
            // The current span starts at the first join after the last non-join.
            let span_start = h
                .iter()
                .rev()
                .take_while(|(_, m)| m == "join")
                .last()
                .map(|(p, _)| *p)
                .unwrap();
            let full = from_history("@u:x", &h);
            let fast = current_member("@u:x", span_start);
            assert_eq!(fast.state_at, full.state_at, "{h:?}");
            for pos in span_start..span_start + 40 {
                for class in ["joined", "invited", "shared", "world_readable", "odd"] {
                    for (event_type, state_key) in [
                        ("m.room.encrypted", None),
                        ("m.room.member", Some("@u:x")),
                        ("m.room.member", Some("@v:x")),
                    ] {
                        let e = event(pos, class, event_type, state_key);
                        assert_eq!(
                            fast.events.allows(&e),
                            full.events.allows(&e),
                            "{h:?} {pos} {class} {event_type}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejoining_spans_stay_apart_and_profile_changes_merge() {
        let a = from_history(
            "@u:x",
            &history(&[(10, "join"), (15, "join"), (20, "leave"), (40, "join")]),
        );
        assert_eq!(a.events.joined, vec![(10, 19), (40, i64::MAX)]);
        assert_eq!(a.events.shared, vec![(0, i64::MAX)]);
    }
}
