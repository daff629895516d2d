//! The public room directory (spec: "Room directory"): which rooms are
//! published, who may change that, the listing with its search and
//! pagination, and the room summaries the listing and space hierarchies
//! share.
//!
//! Only rooms someone chose to publish are listed. Their names, topics and
//! avatars are room state, which the server reads in every room (encrypted
//! ones included); publishing shows them to every user of the server.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::events::{auth_state, event_level, user_level};
use crate::service::Context;
use crate::store::{directory, rooms};

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// A room as the directory and space hierarchies show it. Fields in
/// alphabetical order, as serde_json orders map keys.
#[derive(Debug, Clone, Serialize)]
pub struct RoomSummary {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical_alias: Option<String>,
    pub guest_can_join: bool,
    pub join_rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub num_joined_members: i64,
    pub room_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    pub world_readable: bool,
    /// The whole `m.room.join_rules` content, for access checks; not sent.
    #[serde(skip)]
    pub join_rules: Value,
}

fn text(content: &Value, field: &str) -> Option<String> {
    content
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Summaries of `room_ids` that exist, in the order given.
pub async fn summaries(
    c: &mut sqlx::AnyConnection,
    room_ids: &[String],
) -> ApiResult<Vec<RoomSummary>> {
    let state = directory::summary_state(&mut *c, room_ids).await?;
    let counts = directory::joined_counts(&mut *c, room_ids).await?;
    let mut by_room: HashMap<String, HashMap<String, Value>> = HashMap::new();
    for (room, event_type, content) in state {
        by_room.entry(room).or_default().insert(event_type, content);
    }
    let mut out = Vec::new();
    for room_id in room_ids {
        // Every room has a create event; one without is not a room here.
        let Some(state) = by_room.get(room_id.as_str()) else {
            continue;
        };
        let get = |t: &str| state.get(t).cloned().unwrap_or(Value::Null);
        let join_rules = get("m.room.join_rules");
        out.push(RoomSummary {
            avatar_url: text(&get("m.room.avatar"), "url"),
            canonical_alias: text(&get("m.room.canonical_alias"), "alias"),
            guest_can_join: text(&get("m.room.guest_access"), "guest_access").as_deref()
                == Some("can_join"),
            join_rule: text(&join_rules, "join_rule").unwrap_or_else(|| "invite".into()),
            name: text(&get("m.room.name"), "name"),
            num_joined_members: counts.get(room_id).copied().unwrap_or(0),
            room_id: room_id.clone(),
            room_type: text(&get("m.room.create"), "type"),
            topic: text(&get("m.room.topic"), "topic"),
            world_readable: text(&get("m.room.history_visibility"), "history_visibility")
                .as_deref()
                == Some("world_readable"),
            join_rules,
        });
    }
    Ok(out)
}

fn require_room_id(room_id: &str) -> ApiResult<()> {
    if crate::ids::is_valid_room_id(room_id) {
        Ok(())
    } else {
        Err(ApiError::invalid_param(
            "The roomId in the path is not a room id",
        ))
    }
}

/// Whether the room is published: `public` or `private`.
pub async fn visibility(ctx: &Context, room_id: &str) -> ApiResult<&'static str> {
    require_room_id(room_id)?;
    let published = directory::published(&mut *ctx.store.read().await?, room_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown room"))?;
    Ok(if published { "public" } else { "private" })
}

/// Publishes or withdraws a room. The spec leaves who may to the server:
/// here a joined member who may set the room's `m.room.canonical_alias`
/// (moderators and admins with the default power levels), since publishing
/// is, like an address, a way for strangers to find the room.
pub async fn set_visibility(
    ctx: &Context,
    user_id: &str,
    room_id: &str,
    visibility: &str,
) -> ApiResult<()> {
    require_room_id(room_id)?;
    let published = match visibility {
        "public" => true,
        "private" => false,
        _ => {
            return Err(ApiError::invalid_param(
                "visibility must be public or private",
            ))
        }
    };
    let mut tx = ctx.store.write().await?;
    if directory::published(tx.conn(), room_id).await?.is_none() {
        return Err(ApiError::not_found("Unknown room"));
    }
    let joined = rooms::membership(tx.conn(), room_id, user_id)
        .await?
        .is_some_and(|m| m.membership == "join");
    if !joined {
        return Err(ApiError::forbidden("You are not joined to this room"));
    }
    let pl = auth_state(tx.conn(), room_id).await?.power_levels;
    let needed = event_level(&pl, "m.room.canonical_alias", true);
    let have = user_level(&pl, user_id);
    if have < needed {
        return Err(ApiError::forbidden(format!(
            "Publishing this room needs power level {needed}; you have {have}"
        )));
    }
    directory::set_published(&mut tx, room_id, published).await?;
    tx.commit().await?;
    Ok(())
}

/// What a `/publicRooms` request asks for.
#[derive(Default)]
pub struct ListRequest<'a> {
    pub limit: Option<i64>,
    pub since: Option<&'a str>,
    pub search_term: Option<&'a str>,
    /// `None` or empty for any type (ruma-based clients send `[]`); a
    /// `None` inside for rooms without one.
    pub room_types: Option<Vec<Option<String>>>,
}

pub struct ListPage {
    pub chunk: Vec<RoomSummary>,
    pub next_batch: Option<String>,
    pub total_room_count_estimate: i64,
}

/// Where a page ends: rooms are listed by joined members (most first), then
/// room id, and the next page starts after this pair. A position, not an
/// offset, so that rooms published or withdrawn in between shift nothing;
/// a room whose member count changes between two pages may still move past
/// the position (and be shown twice or not at all).
fn encode_since(members: i64, room_id: &str) -> String {
    format!(
        "p{}",
        URL_SAFE_NO_PAD.encode(format!("{members}|{room_id}"))
    )
}

fn decode_since(token: &str) -> ApiResult<(i64, String)> {
    let bad = || ApiError::invalid_param("since is not a pagination token from this server");
    let raw = token.strip_prefix('p').ok_or_else(bad)?;
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (members, room_id) = text.split_once('|').ok_or_else(bad)?;
    let members: i64 = members.parse().map_err(|_| bad())?;
    if members < 0 || !crate::ids::is_valid_room_id(room_id) {
        return Err(bad());
    }
    Ok((members, room_id.to_owned()))
}

fn matches(room: &RoomSummary, term: &str) -> bool {
    [&room.name, &room.topic, &room.canonical_alias]
        .into_iter()
        .flatten()
        .any(|field| field.to_lowercase().contains(term))
}

pub async fn list(ctx: &Context, req: ListRequest<'_>) -> ApiResult<ListPage> {
    let limit = match req.limit {
        None => DEFAULT_LIMIT,
        Some(l) if l < 1 => {
            return Err(ApiError::invalid_param("limit must be a positive integer"))
        }
        Some(l) => l.min(MAX_LIMIT),
    };
    let after = req.since.map(decode_since).transpose()?;
    let term = req
        .search_term
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty());
    let mut conn = ctx.store.read().await?;
    let published = directory::published_rooms(&mut conn).await?;
    let mut rooms = summaries(&mut conn, &published).await?;
    drop(conn);
    rooms.retain(|r| {
        term.as_deref().is_none_or(|t| matches(r, t))
            && req
                .room_types
                .as_ref()
                .is_none_or(|types| types.is_empty() || types.contains(&r.room_type))
    });
    let total = rooms.len() as i64;
    let key = |r: &RoomSummary| (-r.num_joined_members, r.room_id.clone());
    rooms.sort_by_key(key);
    if let Some((members, room_id)) = after {
        let position = (-members, room_id);
        rooms.retain(|r| key(r) > position);
    }
    let more = rooms.len() as i64 > limit;
    rooms.truncate(limit as usize);
    let next_batch = rooms
        .last()
        .filter(|_| more)
        .map(|r| encode_since(r.num_joined_members, &r.room_id));
    Ok(ListPage {
        chunk: rooms,
        next_batch,
        total_room_count_estimate: total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_tokens_round_trip_and_are_checked() {
        let token = encode_since(3, "!abc:example.org");
        assert_eq!(
            decode_since(&token).unwrap(),
            (3, "!abc:example.org".into())
        );
        for bad in ["", "p", "x", "p!!!", "pMXw", &encode_since(-1, "!a:b")] {
            assert!(decode_since(bad).is_err(), "{bad}");
        }
        let not_a_room = format!("p{}", URL_SAFE_NO_PAD.encode("1|room"));
        assert!(decode_since(&not_a_room).is_err());
    }
}
