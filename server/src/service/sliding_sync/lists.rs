//! Which rooms are in view: the user's joined and invited rooms, sorted by
//! recency, cut by each list's filters and ranges, plus the subscribed ones.
//!
//! Recency (`bump_stamp`) is the stream position of the room's latest event
//! of a `store::sliding_sync::BUMP_TYPES` type (or its creation), or of the
//! user's own membership when that is later (a room just joined or invited
//! to comes first). Receipts, reactions and state changes do not move a room.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use cloister_proto::sliding_sync::{Request, RoomConfig};
use serde_json::Value;
use sqlx::AnyConnection;

use crate::error::ApiResult;
use crate::store::rooms::SyncRoom;
use crate::store::sliding_sync;

/// What the client asked of one room: the union of the lists and the
/// subscription that show it.
#[derive(Debug, Default, Clone)]
pub(super) struct Want {
    pub required_state: BTreeSet<(String, String)>,
    pub timeline_limit: u64,
}

impl Want {
    fn merge(&mut self, required_state: &[(String, String)], timeline_limit: Option<u64>) {
        self.required_state.extend(required_state.iter().cloned());
        self.timeline_limit = self.timeline_limit.max(timeline_limit.unwrap_or(0));
    }

    /// Stored with the room, to tell what a client asks for anew.
    pub(super) fn config(&self) -> String {
        serde_json::json!([self.required_state, self.timeline_limit]).to_string()
    }

    /// The inverse of [`config`](Self::config); None for a row it did not write.
    pub(super) fn parse(config: &str) -> Option<Want> {
        let (required_state, timeline_limit) = serde_json::from_str(config).ok()?;
        Some(Want {
            required_state,
            timeline_limit,
        })
    }
}

pub(super) struct View {
    pub counts: BTreeMap<String, u64>,
    /// Rooms in view, by id.
    pub rooms: BTreeMap<String, Want>,
    pub bump_stamps: HashMap<String, i64>,
    pub dms: HashSet<String>,
}

/// `rooms` as read up to `to`, `direct` the user's `m.direct` content.
pub(super) async fn view(
    c: &mut AnyConnection,
    req: &Request,
    rooms: &[SyncRoom],
    direct: Option<Value>,
    to: i64,
) -> ApiResult<View> {
    let bumps = sliding_sync::bump_positions(&mut *c, rooms, to).await?;
    let dms = direct_rooms(direct);
    let mut candidates: Vec<(&SyncRoom, i64)> = rooms
        .iter()
        .filter(|r| matches!(r.membership.membership.as_str(), "join" | "invite"))
        .map(|r| {
            let own = if r.membership.membership == "join" {
                r.membership.span_start_pos
            } else {
                r.membership.pos
            };
            let bump = bumps.get(&r.room_id).copied().unwrap_or(0).max(own);
            (r, bump)
        })
        .collect();
    candidates.sort_by(|(a, ab), (b, bb)| bb.cmp(ab).then_with(|| a.room_id.cmp(&b.room_id)));
    let bump_stamps: HashMap<String, i64> = candidates
        .iter()
        .map(|(r, b)| (r.room_id.clone(), *b))
        .collect();

    let mut counts = BTreeMap::new();
    let mut in_view: BTreeMap<String, Want> = BTreeMap::new();
    for (name, list) in &req.lists {
        let filters = list.filters.clone().unwrap_or_default();
        let listed: Vec<&SyncRoom> = candidates
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| {
                filters
                    .is_invite
                    .is_none_or(|want| want == (r.membership.membership == "invite"))
                    && filters
                        .is_dm
                        .is_none_or(|want| want == dms.contains(&r.room_id))
            })
            .collect();
        counts.insert(name.clone(), listed.len() as u64);
        for &(start, end) in &list.ranges {
            let Ok(start) = usize::try_from(start) else {
                continue;
            };
            let end = usize::try_from(end).unwrap_or(usize::MAX);
            for room in listed
                .iter()
                .skip(start)
                .take(end.saturating_sub(start).saturating_add(1))
            {
                in_view
                    .entry(room.room_id.clone())
                    .or_default()
                    .merge(&list.required_state, list.timeline_limit);
            }
        }
    }
    for (
        room_id,
        RoomConfig {
            required_state,
            timeline_limit,
        },
    ) in &req.room_subscriptions
    {
        // Only rooms the user is in or invited to; others are not theirs to read.
        if bump_stamps.contains_key(room_id) {
            in_view
                .entry(room_id.clone())
                .or_default()
                .merge(required_state, *timeline_limit);
        }
    }
    Ok(View {
        counts,
        rooms: in_view,
        bump_stamps,
        dms,
    })
}

/// The rooms `m.direct` names, whoever they are with.
fn direct_rooms(content: Option<Value>) -> HashSet<String> {
    let Some(Value::Object(by_user)) = content else {
        return HashSet::new();
    };
    by_user
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}
