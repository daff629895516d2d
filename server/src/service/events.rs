//! Appending events to rooms: authorization (membership, power levels) and
//! the encryption-only rule, then storage and wake-ups in one transaction.

use serde_json::Value;
use sqlx::AnyConnection;

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::service::{encryption_rule, retention};
use crate::store::events::{self, NewEvent, StoredEvent};
use crate::store::{media, room_snapshot, rooms, txn_ids, WriteTx};

pub use crate::service::encryption_rule::MEGOLM;

/// State types only the server writes, through [`send_as_server_in`]: a
/// legal-hold notice a moderator could overwrite or send would let them
/// hide a hold from the room, or fake one.
const SERVER_ONLY_TYPES: &[&str] = &[crate::service::holds::NOTICE_EVENT];

/// The parts of a room's current state that authorization reads.
pub struct AuthState {
    pub power_levels: Value,
    pub join_rule: String,
    /// The whole `m.room.join_rules` content: a restricted room's `allow`.
    pub join_rules: Value,
}

pub async fn auth_state(c: &mut AnyConnection, room_id: &str) -> Result<AuthState, sqlx::Error> {
    let content = |e: Option<StoredEvent>| e.map(|e| e.content);
    let power_levels =
        content(events::state_event(&mut *c, room_id, "m.room.power_levels", "").await?);
    let join_rules = content(events::state_event(&mut *c, room_id, "m.room.join_rules", "").await?);
    Ok(AuthState::new(power_levels, join_rules))
}

impl AuthState {
    /// From the contents of the room's `m.room.power_levels` and
    /// `m.room.join_rules`, where it has them.
    pub(super) fn new(power_levels: Option<Value>, join_rules: Option<Value>) -> Self {
        let join_rules = join_rules.unwrap_or(Value::Null);
        let join_rule = join_rules
            .get("join_rule")
            .and_then(Value::as_str)
            .unwrap_or("invite")
            .to_owned();
        AuthState {
            power_levels: power_levels.unwrap_or(Value::Null),
            join_rule,
            join_rules,
        }
    }
}

fn int(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}

pub fn user_level(pl: &Value, user_id: &str) -> i64 {
    int(pl.get("users").and_then(|u| u.get(user_id)))
        .or_else(|| int(pl.get("users_default")))
        .unwrap_or(0)
}

/// Level needed to send `event_type` (state or not).
pub fn event_level(pl: &Value, event_type: &str, is_state: bool) -> i64 {
    int(pl.get("events").and_then(|e| e.get(event_type))).unwrap_or_else(|| {
        if is_state {
            int(pl.get("state_default")).unwrap_or(50)
        } else {
            int(pl.get("events_default")).unwrap_or(0)
        }
    })
}

/// Level for `invite`, `kick`, `ban` or `redact`.
pub fn action_level(pl: &Value, action: &str) -> i64 {
    int(pl.get(action)).unwrap_or(if action == "invite" { 0 } else { 50 })
}

/// Authorizes, stores and announces one event. Redactions also strip their
/// target's content.
pub async fn send(state: &Context, event: NewEvent<'_>) -> ApiResult<StoredEvent> {
    let size = event.content.to_string().len();
    if size > state.config.limits.max_event_size {
        return Err(ApiError::too_large(format!(
            "event content is {size} bytes; the limit is {}",
            state.config.limits.max_event_size
        )));
    }
    let mut tx = state.store.write_grouped().await?;
    let (stored, audience) = send_in(state, &mut tx, &event, crate::ids::new_event_id()).await?;
    tx.commit().await?;
    announce(state, &stored, &audience);
    Ok(stored)
}

/// After the commit: wakes the audience's long-polls and counts the event.
pub(super) fn announce(state: &Context, stored: &StoredEvent, audience: &[String]) {
    state.notifier.notify(audience.iter().map(String::as_str));
    state
        .metrics
        .events_sent
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if stored.redacts.is_some() {
        // Redaction overwrote the content in the database, but SQLite keeps
        // the old page in its write-ahead log until a checkpoint.
        state.store.reclaim_soon();
    }
}

/// Like [`send`], but idempotent per (sender, device, `txn_id`): a retried
/// request returns the event id of the first instead of sending twice.
/// `attach_media` are uploads of the sender's that the event carries.
pub async fn send_idempotent(
    state: &Context,
    event: NewEvent<'_>,
    device_id: &str,
    txn_id: &str,
    attach_media: &[String],
) -> ApiResult<String> {
    if txn_id.is_empty() || txn_id.len() > 255 {
        return Err(ApiError::invalid_param(
            "transaction id must be 1-255 bytes",
        ));
    }
    let size = event.content.to_string().len();
    if size > state.config.limits.max_event_size {
        return Err(ApiError::too_large(format!(
            "event content is {size} bytes; the limit is {}",
            state.config.limits.max_event_size
        )));
    }
    if attach_media.is_empty() {
        if let Some(event_id) =
            super::checked_send::try_send(state, &event, device_id, txn_id).await?
        {
            return Ok(event_id);
        }
    }
    let mut tx = state.store.write_grouped_or_busy().await?;
    if let Some(existing) =
        txn_ids::result(tx.conn(), event.sender, device_id, "event", txn_id).await?
    {
        return Ok(existing);
    }
    // Recorded and linked before the event is stored: storing it takes the
    // stream counter's lock on PostgreSQL, which every send waits for until
    // this transaction commits, so nothing that can go first comes after.
    let event_id = crate::ids::new_event_id();
    let recorded = txn_ids::put(
        &mut tx,
        event.sender,
        device_id,
        "event",
        txn_id,
        &event_id,
        state.now_ms(),
    )
    .await;
    if let Err(err) = recorded {
        // A concurrent retry on PostgreSQL won the race: answer with its event.
        if crate::store::is_unique_violation(&err) {
            drop(tx);
            let mut conn = state.store.read().await?;
            if let Some(existing) =
                txn_ids::result(&mut conn, event.sender, device_id, "event", txn_id).await?
            {
                return Ok(existing);
            }
        }
        return Err(err.into());
    }
    for media_id in attach_media {
        // Only the uploader may link a file: a link lets the file expire
        // with the event, which nobody else should decide.
        match media::get(tx.conn(), media_id).await? {
            Some(m) if m.uploader == event.sender => {
                media::attach(&mut tx, &event_id, media_id).await?
            }
            _ => {
                return Err(ApiError::invalid_param(
                    "attach_media names an upload that is not yours",
                ))
            }
        }
    }
    let (stored, audience) = send_in(state, &mut tx, &event, event_id).await?;
    tx.commit().await?;
    announce(state, &stored, &audience);
    Ok(stored.event_id)
}

/// The body of [`send`]: the event, and whom to wake once it commits.
async fn send_in(
    state: &Context,
    tx: &mut WriteTx,
    event: &NewEvent<'_>,
    event_id: String,
) -> ApiResult<(StoredEvent, Vec<String>)> {
    // Everything below reads about the room from this one statement: the
    // writer runs sends one at a time, so each read there is paid by all.
    let room = room_snapshot::read(tx.conn(), event.room_id, event.sender)
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown room"))?;
    let auth = AuthState::new(room.power_levels, room.join_rules);
    authorize(
        state,
        tx.conn(),
        event,
        &auth,
        room.sender_membership.as_deref(),
    )
    .await?;
    let redaction_target = match (event.event_type, event.redacts) {
        ("m.room.redaction", Some(target)) => {
            Some(check_redaction(state, tx.conn(), event, target, &auth.power_levels).await?)
        }
        ("m.room.redaction", None) => {
            return Err(ApiError::bad_json("a redaction needs `redacts`"))
        }
        _ => None,
    };
    let visibility = room.history_visibility.as_ref();
    let stored = events::append_under(tx, event, event_id, state.now_ms(), visibility).await?;
    if let Some(target) = redaction_target {
        let redacted = cloister_proto::redaction::redact_content(
            super::rooms::ROOM_VERSION,
            &target.event_type,
            &target.content,
        );
        events::apply_redaction(tx, &target, &redacted, &stored.event_id).await?;
    }
    // The members as they were before the event: only a membership event
    // changes them, and only for its target, whom the audience holds anyway.
    let audience = audience(room.members, &stored);
    Ok((stored, audience))
}

/// Appends a state event on the server's own authority — a DPO's retention
/// policy, a legal-hold notice — inside the caller's transaction. Its sender
/// is the server's system user, which belongs to no room, so membership and
/// power levels do not apply; the caller has already checked that an
/// administrator asked for it. Returns the event and whom to wake after
/// commit.
pub async fn send_as_server_in(
    state: &Context,
    tx: &mut WriteTx,
    room_id: &str,
    event_type: &str,
    state_key: &str,
    content: &Value,
) -> ApiResult<(StoredEvent, Vec<String>)> {
    let sender = state.system_user_id();
    let room = room_snapshot::read(tx.conn(), room_id, &sender)
        .await?
        .ok_or_else(|| ApiError::not_found("Unknown room"))?;
    let event = NewEvent::state(room_id, &sender, event_type, state_key, content);
    let now = state.now_ms();
    let event_id = crate::ids::new_event_id();
    let visibility = room.history_visibility.as_ref();
    let stored = events::append_under(tx, &event, event_id, now, visibility).await?;
    let audience = audience(room.members, &stored);
    Ok((stored, audience))
}

/// Checks a `createRoom` `initial_state` item by the rules the same state
/// event would meet once the room exists: the creator builds the room, but
/// may not put into it what no member could send later.
pub fn check_initial_state(
    creator: &str,
    event_type: &str,
    state_key: &str,
    content: &Value,
) -> ApiResult<()> {
    encryption_rule::check_initial_state(creator, event_type, state_key, content)?;
    if SERVER_ONLY_TYPES.contains(&event_type) {
        return Err(ApiError::forbidden(format!(
            "Only the server sends {event_type} events"
        )));
    }
    if event_type == retention::RETENTION_EVENT {
        retention::validate_content(content)?;
    }
    Ok(())
}

/// Everyone whose /sync an event changes: joined and invited members, plus
/// the target of a membership change (an invitee, a kicked user), given
/// the room's joined and invited members.
pub(super) fn audience(mut users: Vec<String>, event: &StoredEvent) -> Vec<String> {
    if event.event_type == "m.room.member" {
        if let Some(target) = &event.state_key {
            if !users.contains(target) {
                users.push(target.clone());
            }
        }
    }
    users
}

async fn check_redaction(
    state: &Context,
    c: &mut AnyConnection,
    event: &NewEvent<'_>,
    target_id: &str,
    pl: &Value,
) -> ApiResult<StoredEvent> {
    let target = events::get(&mut *c, target_id)
        .await?
        .filter(|t| t.room_id == event.room_id)
        .ok_or_else(|| ApiError::not_found("Unknown event in this room"))?;
    encryption_rule::check_redaction_target(&target)?;
    // What the server posted on its own authority (hold notices, a DPO's
    // retention policy) is the record of that decision; a newer state event
    // may supersede a policy where room admins may set one, but nobody
    // erases the record.
    if target.sender == state.system_user_id()
        || SERVER_ONLY_TYPES.contains(&target.event_type.as_str())
    {
        return Err(ApiError::forbidden(
            "Events the server posted on its own authority cannot be redacted",
        ));
    }
    if target.sender != event.sender && user_level(pl, event.sender) < action_level(pl, "redact") {
        return Err(ApiError::forbidden(
            "You may redact only your own events in this room",
        ));
    }
    Ok(target)
}

pub(super) async fn authorize(
    state: &Context,
    c: &mut AnyConnection,
    event: &NewEvent<'_>,
    auth: &AuthState,
    sender_membership: Option<&str>,
) -> ApiResult<()> {
    if event.event_type == "m.room.member" {
        return authorize_membership(c, event, auth, sender_membership).await;
    }
    authorize_other(state, event, auth, sender_membership)
}

/// [`authorize`] for every event but a membership: it reads nothing more.
pub(super) fn authorize_other(
    state: &Context,
    event: &NewEvent<'_>,
    auth: &AuthState,
    sender_membership: Option<&str>,
) -> ApiResult<()> {
    debug_assert_ne!(event.event_type, "m.room.member");
    let pl = &auth.power_levels;
    if sender_membership != Some("join") {
        return Err(ApiError::forbidden("You are not joined to this room"));
    }
    encryption_rule::check(state, event)?;
    if SERVER_ONLY_TYPES.contains(&event.event_type) {
        return Err(ApiError::forbidden(format!(
            "Only the server sends {} events",
            event.event_type
        )));
    }
    let is_state = event.state_key.is_some();
    if event.event_type == "m.room.create" {
        return Err(ApiError::forbidden(
            "m.room.create cannot be sent after room creation",
        ));
    }
    let needed = event_level(pl, event.event_type, is_state);
    let have = user_level(pl, event.sender);
    if have < needed {
        return Err(ApiError::forbidden(format!(
            "Sending {} needs power level {needed}; you have {have}",
            event.event_type
        )));
    }
    if let Some(key) = event.state_key {
        if key.starts_with('@') && key != event.sender {
            return Err(ApiError::forbidden(
                "State keys naming another user are reserved for that user",
            ));
        }
    }
    if event.event_type == "m.room.power_levels" {
        check_power_levels_change(pl, event.content, event.sender)?;
    }
    if event.event_type == retention::RETENTION_EVENT && is_state {
        retention::validate_content(event.content)?;
    }
    Ok(())
}

async fn authorize_membership(
    c: &mut AnyConnection,
    event: &NewEvent<'_>,
    auth: &AuthState,
    sender_membership: Option<&str>,
) -> ApiResult<()> {
    let target = event
        .state_key
        .ok_or_else(|| ApiError::bad_json("membership events need a state_key"))?;
    if crate::ids::parse_user_id(target).is_none() {
        return Err(ApiError::invalid_param(
            "The state_key of a membership event must be a user id",
        ));
    }
    let membership = event
        .content
        .get("membership")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let target_membership = rooms::membership(c, event.room_id, target)
        .await?
        .map(|m| m.membership);
    let target_membership = target_membership.as_deref();
    let pl = &auth.power_levels;
    let sender_level = user_level(pl, event.sender);
    let target_level = user_level(pl, target);
    let joined = sender_membership == Some("join");
    match membership {
        "join" => {
            if target != event.sender {
                return Err(ApiError::forbidden("You can only join as yourself"));
            }
            match target_membership {
                Some("ban") => Err(ApiError::forbidden("You are banned from this room")),
                Some("join") | Some("invite") => Ok(()),
                _ if auth.join_rule == "public" => Ok(()),
                _ if super::restricted_join::by_conditions(&auth.join_rule) => {
                    super::restricted_join::authorize(c, event, auth).await
                }
                _ => Err(ApiError::forbidden("You are not invited to this room")),
            }
        }
        "invite" => {
            if !joined {
                return Err(ApiError::forbidden("You are not joined to this room"));
            }
            match target_membership {
                Some("join") => Err(ApiError::forbidden("That user is already in the room")),
                Some("ban") => Err(ApiError::forbidden("That user is banned from this room")),
                _ if sender_level < action_level(pl, "invite") => {
                    Err(ApiError::forbidden("Your power level is too low to invite"))
                }
                _ => Ok(()),
            }
        }
        "leave" if target == event.sender => match target_membership {
            Some("join") | Some("invite") => Ok(()),
            _ => Err(ApiError::forbidden("You are not in this room")),
        },
        "leave" => {
            if !joined {
                return Err(ApiError::forbidden("You are not joined to this room"));
            }
            match target_membership {
                Some("ban") if sender_level >= action_level(pl, "ban") => Ok(()),
                Some("ban") => Err(ApiError::forbidden("Your power level is too low to unban")),
                Some("join") | Some("invite")
                    if sender_level >= action_level(pl, "kick") && sender_level > target_level =>
                {
                    Ok(())
                }
                Some("join") | Some("invite") => Err(ApiError::forbidden(
                    "Your power level is too low to kick that user",
                )),
                _ => Err(ApiError::forbidden("That user is not in this room")),
            }
        }
        "ban" => {
            if !joined {
                return Err(ApiError::forbidden("You are not joined to this room"));
            }
            if sender_level >= action_level(pl, "ban") && sender_level > target_level {
                Ok(())
            } else {
                Err(ApiError::forbidden(
                    "Your power level is too low to ban that user",
                ))
            }
        }
        "knock" => Err(ApiError::forbidden(
            "Knocking is not supported on this server",
        )),
        _ => Err(ApiError::bad_json(
            "membership must be join, invite, leave or ban",
        )),
    }
}

/// Nobody may grant or take away more power than they have (room v10 rules).
pub fn check_power_levels_change(old: &Value, new: &Value, sender: &str) -> ApiResult<()> {
    let limit = user_level(old, sender);
    let bad = |what: &str| {
        Err(ApiError::forbidden(format!(
            "You cannot change {what} beyond your own power level ({limit})"
        )))
    };
    for key in [
        "users_default",
        "events_default",
        "state_default",
        "ban",
        "redact",
        "kick",
        "invite",
    ] {
        let (o, n) = (int(old.get(key)), int(new.get(key)));
        if new.get(key).is_some_and(|v| !v.is_i64()) {
            return Err(ApiError::bad_json(format!(
                "power level `{key}` must be an integer"
            )));
        }
        if o != n && (o.is_some_and(|o| o > limit) || n.is_some_and(|n| n > limit)) {
            return bad(key);
        }
    }
    for (map, is_users) in [("events", false), ("users", true)] {
        let empty = serde_json::Map::new();
        let o = old.get(map).and_then(Value::as_object).unwrap_or(&empty);
        let n = new.get(map).and_then(Value::as_object).unwrap_or(&empty);
        for key in o.keys().chain(n.keys()) {
            let (ov, nv) = (int(o.get(key)), int(n.get(key)));
            if n.get(key).is_some_and(|v| !v.is_i64()) {
                return Err(ApiError::bad_json(format!(
                    "power level for {key} must be an integer"
                )));
            }
            if ov == nv {
                continue;
            }
            if nv.is_some_and(|v| v > limit) {
                return bad(key);
            }
            let others_at_or_above = is_users && key != sender && ov.is_some_and(|v| v >= limit);
            if others_at_or_above || (!is_users && ov.is_some_and(|v| v > limit)) {
                return bad(key);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn levels_default_per_spec() {
        let pl = json!({"users": {"@a:x": 100}, "events": {"m.room.name": 50}});
        assert_eq!(user_level(&pl, "@a:x"), 100);
        assert_eq!(user_level(&pl, "@b:x"), 0);
        assert_eq!(event_level(&pl, "m.room.name", true), 50);
        assert_eq!(event_level(&pl, "m.room.topic", true), 50);
        assert_eq!(event_level(&pl, "m.room.encrypted", false), 0);
        assert_eq!(action_level(&pl, "invite"), 0);
        assert_eq!(action_level(&pl, "kick"), 50);
    }

    #[test]
    fn power_cannot_exceed_own() {
        let old = json!({"users": {"@mod:x": 50, "@admin:x": 100, "@u:x": 0}, "kick": 50});
        // A moderator may raise a user up to their own level, not past it.
        let ok = json!({"users": {"@mod:x": 50, "@admin:x": 100, "@u:x": 50}, "kick": 50});
        assert!(check_power_levels_change(&old, &ok, "@mod:x").is_ok());
        let too_high = json!({"users": {"@mod:x": 50, "@admin:x": 100, "@u:x": 60}, "kick": 50});
        assert!(check_power_levels_change(&old, &too_high, "@mod:x").is_err());
        // ...nor demote someone at their level or above.
        let demote_admin = json!({"users": {"@mod:x": 50, "@admin:x": 0}, "kick": 50});
        assert!(check_power_levels_change(&old, &demote_admin, "@mod:x").is_err());
        // Demoting oneself is fine.
        let self_demote = json!({"users": {"@mod:x": 0, "@admin:x": 100, "@u:x": 0}, "kick": 50});
        assert!(check_power_levels_change(&old, &self_demote, "@mod:x").is_ok());
        let kick_up = json!({"users": {"@mod:x": 50, "@admin:x": 100, "@u:x": 0}, "kick": 75});
        assert!(check_power_levels_change(&old, &kick_up, "@mod:x").is_err());
    }
}
