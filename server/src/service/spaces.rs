//! Space hierarchies (spec: "Spaces", `GET /v1/rooms/{roomId}/hierarchy`):
//! a depth-first walk along `m.space.child` state from a root room,
//! showing the rooms the requester may see, with each room's child events.
//!
//! A room is shown to someone joined or invited, and to anyone when it is
//! `public`, `world_readable`, or `restricted` with a condition they meet:
//! the rooms they could join or read without being asked in. A room they
//! may not see is left out together with everything below it. Rooms not on
//! this server are left out too (there is no federation).

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use crate::error::{ApiError, ApiResult};
use crate::service::directory::{summaries, RoomSummary};
use crate::service::{restricted_join, Context};
use crate::store::{directory, rooms};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;
/// How deep a walk goes when the client names no depth, or a deeper one.
pub const MAX_DEPTH: i64 = 10;
/// Rooms one walk looks at. Every page walks again from the root up to its
/// own end, so this bounds the work of one request; spaces of an
/// institution are far smaller.
const MAX_ROOMS: usize = 500;

pub struct HierarchyRequest<'a> {
    pub from: Option<&'a str>,
    pub limit: Option<i64>,
    pub max_depth: Option<i64>,
    pub suggested_only: bool,
}

#[derive(Serialize)]
pub struct HierarchyRoom {
    #[serde(flatten)]
    pub summary: RoomSummary,
    pub children_state: Vec<Value>,
}

pub struct HierarchyPage {
    pub rooms: Vec<HierarchyRoom>,
    pub next_batch: Option<String>,
}

/// A child event that still names a child: a room id as state key and a
/// non-empty `via` (an emptied event removes the child).
struct Child {
    room_id: String,
    order: Option<String>,
    ts: i64,
    suggested: bool,
    stripped: Value,
}

/// `order` counts only when it is at most 50 printable ASCII characters.
fn valid_order(content: &Value) -> Option<String> {
    let order = content.get("order")?.as_str()?;
    (order.len() <= 50 && order.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .then(|| order.to_owned())
}

async fn children(c: &mut AnyConnection, room_id: &str) -> ApiResult<Vec<Child>> {
    let mut out: Vec<Child> = directory::state_of_type(c, room_id, "m.space.child")
        .await?
        .into_iter()
        .filter(|e| crate::ids::is_valid_room_id(&e.state_key))
        .filter(|e| {
            e.content
                .get("via")
                .and_then(Value::as_array)
                .is_some_and(|via| !via.is_empty())
        })
        .map(|e| Child {
            order: valid_order(&e.content),
            suggested: e.content.get("suggested") == Some(&Value::Bool(true)),
            stripped: json!({
                "type": "m.space.child",
                "state_key": e.state_key,
                "sender": e.sender,
                "content": e.content,
                "origin_server_ts": e.origin_server_ts,
            }),
            room_id: e.state_key,
            ts: e.origin_server_ts,
        })
        .collect();
    // The spec's order: children with an `order` first, by it; then by
    // when the child was added; then by room id.
    out.sort_by(|a, b| {
        (a.order.is_none(), &a.order, a.ts, &a.room_id).cmp(&(
            b.order.is_none(),
            &b.order,
            b.ts,
            &b.room_id,
        ))
    });
    Ok(out)
}

/// Whether `user_id` may see `room` in a hierarchy (see the module comment).
async fn may_see(c: &mut AnyConnection, room: &RoomSummary, user_id: &str) -> ApiResult<bool> {
    let membership = rooms::membership(&mut *c, &room.room_id, user_id).await?;
    if membership.is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite")) {
        return Ok(true);
    }
    if room.join_rule == "public" || room.world_readable {
        return Ok(true);
    }
    Ok(restricted_join::by_conditions(&room.join_rule)
        && restricted_join::meets_conditions(c, &room.join_rules, user_id).await?)
}

/// A `from` token: where the previous page ended, and a fingerprint of the
/// request it belongs to, which the spec requires to match.
fn fingerprint(root: &str, max_depth: i64, suggested_only: bool) -> String {
    let digest = Sha256::digest(format!("{root}\0{max_depth}\0{suggested_only}"));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn encode_from(offset: usize, fingerprint: &str) -> String {
    format!(
        "h{}",
        URL_SAFE_NO_PAD.encode(format!("{offset}|{fingerprint}"))
    )
}

fn decode_from(token: &str, fingerprint: &str) -> ApiResult<usize> {
    let bad = || {
        ApiError::invalid_param(
            "from is not a pagination token this server gave out for this request",
        )
    };
    let raw = token.strip_prefix('h').ok_or_else(bad)?;
    let text =
        String::from_utf8(URL_SAFE_NO_PAD.decode(raw).map_err(|_| bad())?).map_err(|_| bad())?;
    let (offset, print) = text.split_once('|').ok_or_else(bad)?;
    let offset: usize = offset.parse().map_err(|_| bad())?;
    if print != fingerprint || offset == 0 {
        return Err(bad());
    }
    Ok(offset)
}

pub async fn hierarchy(
    ctx: &Context,
    user_id: &str,
    root: &str,
    req: HierarchyRequest<'_>,
) -> ApiResult<HierarchyPage> {
    let limit = match req.limit {
        None => DEFAULT_LIMIT,
        Some(l) if l < 1 => {
            return Err(ApiError::invalid_param("limit must be a positive integer"))
        }
        Some(l) => l.min(MAX_LIMIT),
    } as usize;
    let max_depth = match req.max_depth {
        None => MAX_DEPTH,
        Some(d) if d < 0 => {
            return Err(ApiError::invalid_param(
                "max_depth must be a non-negative integer",
            ))
        }
        Some(d) => d.min(MAX_DEPTH),
    };
    if !crate::ids::is_valid_room_id(root) {
        return Err(ApiError::invalid_param("Not a room id"));
    }
    let print = fingerprint(root, max_depth, req.suggested_only);
    let skip = req
        .from
        .map(|f| decode_from(f, &print))
        .transpose()?
        .unwrap_or(0);
    let mut conn = ctx.store.read().await?;
    if !rooms::exists(&mut conn, root).await? {
        return Err(ApiError::not_found("Unknown room"));
    }
    let mut shown: Vec<HierarchyRoom> = Vec::new();
    let mut visited = HashSet::new();
    let mut stack = vec![(root.to_owned(), 0i64)];
    // One room past the page says whether there is a next one.
    while let Some((room_id, depth)) = stack.pop() {
        if shown.len() > skip + limit || visited.len() >= MAX_ROOMS {
            break;
        }
        if !visited.insert(room_id.clone()) {
            continue;
        }
        let Some(summary) = summaries(&mut conn, std::slice::from_ref(&room_id))
            .await?
            .pop()
        else {
            continue;
        };
        if !may_see(&mut conn, &summary, user_id).await? {
            if room_id == root {
                return Err(ApiError::forbidden(
                    "You may not see this room: join it, or ask to be invited",
                ));
            }
            continue;
        }
        let mut kids = children(&mut conn, &room_id).await?;
        if req.suggested_only {
            kids.retain(|k| k.suggested);
        }
        if depth < max_depth {
            stack.extend(kids.iter().rev().map(|k| (k.room_id.clone(), depth + 1)));
        }
        shown.push(HierarchyRoom {
            summary,
            children_state: kids.into_iter().map(|k| k.stripped).collect(),
        });
    }
    let more = shown.len() > skip + limit;
    let rooms: Vec<HierarchyRoom> = shown.into_iter().skip(skip).take(limit).collect();
    Ok(HierarchyPage {
        next_batch: more.then(|| encode_from(skip + limit, &print)),
        rooms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_tokens_belong_to_their_request() {
        let print = fingerprint("!s:x", 3, false);
        let token = encode_from(20, &print);
        assert_eq!(decode_from(&token, &print).unwrap(), 20);
        assert!(decode_from(&token, &fingerprint("!s:x", 2, false)).is_err());
        assert!(decode_from(&token, &fingerprint("!t:x", 3, false)).is_err());
        assert!(decode_from(&encode_from(0, &print), &print).is_err());
        assert!(decode_from("h", &print).is_err());
        assert!(decode_from("20", &print).is_err());
    }

    #[test]
    fn order_must_be_short_printable_ascii() {
        assert_eq!(valid_order(&json!({"order": "a b~"})), Some("a b~".into()));
        assert_eq!(valid_order(&json!({"order": "é"})), None);
        assert_eq!(valid_order(&json!({"order": "x".repeat(51)})), None);
        assert_eq!(valid_order(&json!({"order": 1})), None);
    }
}
