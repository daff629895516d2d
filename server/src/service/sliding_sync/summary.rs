//! A room's summary (name, avatar, member counts, heroes), which sliding
//! sync sends with every result of the room: two statements each time,
//! for what changes only with the room's state.
//!
//! So each node keeps the last summary it read per room, labelled with the
//! room's `state_serial`, which moves in the same transaction as every
//! change to the room's state (see `service::sync::members` for the rule;
//! it holds here as there, across the nodes of one PostgreSQL too). What is
//! kept is the same for every member; who the heroes are depends on who
//! asks, so the first members are kept and the asker is left out later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use cloister_proto::sliding_sync::{Hero, RoomResult};
use serde_json::Value;
use sqlx::AnyConnection;

use crate::error::ApiResult;
use crate::store::{events, rooms};

/// Heroes shown for a room without a name.
const HEROES: usize = 5;

/// Summaries kept at most: each holds a few names, so a few MiB in all.
const MAX_KEPT_ROOMS: usize = 4_096;

/// What the summary shows, before the asker is left out of the heroes.
struct Summary {
    name: Option<String>,
    avatar: Option<String>,
    joined: u64,
    invited: u64,
    /// The first `HEROES + 1` joined or invited members: whoever asks, at
    /// most one of them is the asker.
    heroes: Vec<Hero>,
}

/// Per room: the serial it was read at, and the summary.
#[derive(Default)]
pub struct SummaryCache {
    kept: Mutex<HashMap<String, (i64, Arc<Summary>)>>,
}

impl SummaryCache {
    fn get(&self, room_id: &str, state_serial: i64) -> Option<Arc<Summary>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let (serial, summary) = kept.get(room_id)?;
        (*serial == state_serial).then(|| Arc::clone(summary))
    }

    fn put(&self, room_id: &str, state_serial: i64, summary: Arc<Summary>) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= MAX_KEPT_ROOMS && !kept.contains_key(room_id) {
            // Crude but bounded; a busy room is read again at once.
            kept.clear();
        }
        kept.insert(room_id.to_owned(), (state_serial, summary));
    }

    /// Drops every copy (after an erasure: the heroes' display names are
    /// personal data, and a copy would otherwise stay until its room is
    /// next summarized).
    pub fn clear(&self) {
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Fills `result`'s name, avatar, counts and heroes (when the room has no
/// name), from the node's copy when the room's state is still the one it
/// was read at (`state_serial`, read before this).
pub(super) async fn summarize(
    c: &mut AnyConnection,
    cache: &SummaryCache,
    (room_id, state_serial): (&str, i64),
    user_id: &str,
    result: &mut RoomResult,
) -> ApiResult<()> {
    let summary = match cache.get(room_id, state_serial) {
        Some(summary) => summary,
        None => {
            let summary = Arc::new(read(c, room_id).await?);
            cache.put(room_id, state_serial, Arc::clone(&summary));
            summary
        }
    };
    result.name.clone_from(&summary.name);
    result.avatar.clone_from(&summary.avatar);
    result.joined_count = summary.joined;
    result.invited_count = summary.invited;
    if result.name.is_none() {
        let heroes = summary
            .heroes
            .iter()
            .filter(|h| h.user_id != user_id)
            .take(HEROES)
            .cloned()
            .collect();
        result.heroes = Some(heroes);
    }
    Ok(())
}

/// Two statements: the members, then every state event the summary shows.
async fn read(c: &mut AnyConnection, room_id: &str) -> ApiResult<Summary> {
    let members = rooms::members_with_membership(&mut *c, room_id, &["join", "invite"]).await?;
    let joined = members.iter().filter(|(_, m)| m == "join").count() as u64;
    let invited = members.len() as u64 - joined;
    // Heroes are shown only for a room without a name, but whether it has
    // one is known only after the read: their member events come with it.
    let candidates: Vec<&str> = members
        .iter()
        .map(|(u, _)| u.as_str())
        .take(HEROES + 1)
        .collect();
    let mut keys = vec![("m.room.name", ""), ("m.room.avatar", "")];
    keys.extend(candidates.iter().map(|h| ("m.room.member", *h)));
    let state = events::state_events(&mut *c, room_id, &keys).await?;
    let content = |event_type: &str, state_key: &str| {
        state
            .iter()
            .find(|e| e.event_type == event_type && e.state_key.as_deref() == Some(state_key))
            .map(|e| &e.content)
    };
    let text = |event_type: &str, state_key: &str, field: &str| {
        content(event_type, state_key)
            .and_then(|c| c.get(field))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let heroes = candidates
        .iter()
        .map(|hero| Hero {
            user_id: (*hero).to_owned(),
            displayname: text("m.room.member", hero, "displayname"),
            avatar_url: text("m.room.member", hero, "avatar_url"),
        })
        .collect();
    let named =
        |event_type: &str, field: &str| text(event_type, "", field).filter(|s| !s.is_empty());
    Ok(Summary {
        name: named("m.room.name", "name"),
        avatar: named("m.room.avatar", "url"),
        joined,
        invited,
        heroes,
    })
}
