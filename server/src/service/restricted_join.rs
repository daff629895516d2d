//! Restricted joins (room versions 8 and later): `join_rule: restricted`
//! with `allow: [{"type": "m.room_membership", "room_id": …}]` admits anyone
//! joined to one of the listed rooms, without an invite.
//!
//! The spec splits the check between the server that signs the join (it
//! checks the `allow` conditions and names, in
//! `join_authorised_via_users_server`, one of its users who could have
//! invited the joiner) and the auth rules (which check only that user's
//! power). This server is both, so it checks both whenever a join reaches
//! the room: a client that sends its own member event with a made-up
//! authoriser still has to meet the conditions.

use serde_json::{json, Map, Value};
use sqlx::AnyConnection;

use crate::error::{ApiError, ApiResult};
use crate::service::events::{action_level, auth_state, user_level, AuthState};
use crate::service::Context;
use crate::store::events::NewEvent;
use crate::store::rooms;

pub const AUTHORISER_KEY: &str = "join_authorised_via_users_server";

/// Whether a join rule admits by `allow` conditions: `restricted`, and
/// `knock_restricted` (room version 10 has both; knocking itself is not
/// supported here, but its joins by condition are the same rule).
pub fn by_conditions(join_rule: &str) -> bool {
    matches!(join_rule, "restricted" | "knock_restricted")
}

/// The rooms whose members a restricted room admits. Conditions of other
/// types (none other is specified yet) admit nobody.
pub fn allowed_rooms(join_rules: &Value) -> Vec<&str> {
    join_rules
        .get("allow")
        .and_then(Value::as_array)
        .map(|allow| {
            allow
                .iter()
                .filter(|c| c.get("type").and_then(Value::as_str) == Some("m.room_membership"))
                .filter_map(|c| c.get("room_id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `user_id` meets the `allow` conditions of `join_rules`.
pub async fn meets_conditions(
    c: &mut AnyConnection,
    join_rules: &Value,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    for room_id in allowed_rooms(join_rules) {
        let membership = rooms::membership(&mut *c, room_id, user_id).await?;
        if membership.is_some_and(|m| m.membership == "join") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A joined member who may invite, to vouch for a join: the most powerful,
/// then the first by user id, so the choice does not depend on row order.
async fn authoriser(
    c: &mut AnyConnection,
    room_id: &str,
    auth: &AuthState,
    joiner: &str,
) -> Result<Option<String>, sqlx::Error> {
    let pl = &auth.power_levels;
    let needed = action_level(pl, "invite");
    let mut best: Option<(i64, String)> = None;
    for member in rooms::joined_members(c, room_id).await? {
        let level = user_level(pl, &member);
        if member == joiner || level < needed {
            continue;
        }
        if best.as_ref().is_none_or(|(l, _)| level > *l) {
            best = Some((level, member));
        }
    }
    Ok(best.map(|(_, m)| m))
}

/// The fields a join into `room_id` by `user_id` must carry: for a
/// restricted room the user is neither invited to nor in, the authorising
/// member; nothing otherwise. Refuses a join the `allow` conditions do not
/// admit, with the reason.
pub async fn join_fields(
    ctx: &Context,
    room_id: &str,
    user_id: &str,
) -> ApiResult<Option<Map<String, Value>>> {
    let mut conn = ctx.store.read().await?;
    if !rooms::exists(&mut conn, room_id).await? {
        return Err(ApiError::not_found("Unknown room"));
    }
    let auth = auth_state(&mut conn, room_id).await?;
    if !by_conditions(&auth.join_rule) {
        return Ok(None);
    }
    let current = rooms::membership(&mut conn, room_id, user_id).await?;
    if current.is_some_and(|m| matches!(m.membership.as_str(), "join" | "invite" | "ban")) {
        // Invited or joined users need no voucher; a ban is refused by the
        // auth rules with its own reason.
        return Ok(None);
    }
    if !meets_conditions(&mut conn, &auth.join_rules, user_id).await? {
        return Err(not_admitted());
    }
    let by = authoriser(&mut conn, room_id, &auth, user_id)
        .await?
        .ok_or_else(|| {
            ApiError::forbidden("No member of this room may invite, so nobody can admit you")
        })?;
    let mut fields = Map::new();
    fields.insert(AUTHORISER_KEY.into(), json!(by));
    Ok(Some(fields))
}

fn not_admitted() -> ApiError {
    ApiError::forbidden(
        "This room admits only members of the rooms its join rules list, and you are in none of them",
    )
}

/// The auth rule for a join into a restricted room by someone neither
/// invited nor joined (see the module comment for why the conditions are
/// checked here too).
pub async fn authorize(
    c: &mut AnyConnection,
    event: &NewEvent<'_>,
    auth: &AuthState,
) -> ApiResult<()> {
    if !meets_conditions(&mut *c, &auth.join_rules, event.sender).await? {
        return Err(not_admitted());
    }
    let by = event
        .content
        .get(AUTHORISER_KEY)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::forbidden(format!("A restricted join needs {AUTHORISER_KEY}")))?;
    let joined = rooms::membership(&mut *c, event.room_id, by)
        .await?
        .is_some_and(|m| m.membership == "join");
    let pl = &auth.power_levels;
    if !joined || user_level(pl, by) < action_level(pl, "invite") {
        return Err(ApiError::forbidden(format!(
            "{AUTHORISER_KEY} must name a member of this room who may invite"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_membership_conditions_admit() {
        let rules = json!({"join_rule": "restricted", "allow": [
            {"type": "m.room_membership", "room_id": "!a:x"},
            {"type": "m.other", "room_id": "!b:x"},
            {"type": "m.room_membership"},
            "junk"
        ]});
        assert_eq!(allowed_rooms(&rules), vec!["!a:x"]);
        assert!(allowed_rooms(&json!({"join_rule": "restricted"})).is_empty());
        assert!(allowed_rooms(&json!({"allow": {"room_id": "!a:x"}})).is_empty());
    }
}
