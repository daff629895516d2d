//! Room lifecycle: creation (always end-to-end encrypted), membership
//! changes and profile propagation. What a user may read of a room is
//! `service::visibility`.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::ids;
use crate::service::events::{self as event_service, MEGOLM};
use crate::service::Context;
use crate::store::events::{self, NewEvent};
use crate::store::{rooms, users};

/// The room version new rooms get unless the client asks for another.
pub const ROOM_VERSION: &str = "10";

/// The room versions a room can be created with. Element asks for 9 when it
/// creates a room restricted to a space's members (its preferred version
/// for restricted joins); 9 and 10 share every rule this server applies
/// (restricted joins, redaction), except that 10 refuses power levels given
/// as strings, which this server refuses in every room.
pub const ROOM_VERSIONS: &[&str] = &["9", "10"];

#[derive(Deserialize, Default)]
pub struct CreateRoom {
    pub visibility: Option<String>,
    pub room_alias_name: Option<String>,
    pub name: Option<String>,
    pub topic: Option<String>,
    #[serde(default)]
    pub invite: Vec<String>,
    #[serde(default)]
    pub invite_3pid: Vec<Value>,
    pub room_version: Option<String>,
    pub creation_content: Option<Map<String, Value>>,
    #[serde(default)]
    pub initial_state: Vec<InitialState>,
    pub preset: Option<String>,
    #[serde(default)]
    pub is_direct: bool,
    pub power_level_content_override: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
pub struct InitialState {
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub state_key: String,
    pub content: Map<String, Value>,
}

/// The `m.room.encryption` content every room starts with.
pub fn default_encryption() -> Value {
    json!({ "algorithm": MEGOLM, "rotation_period_ms": 604_800_000u64, "rotation_period_msgs": 100 })
}

pub async fn create_room(state: &Context, creator: &str, req: CreateRoom) -> ApiResult<String> {
    let version = req.room_version.as_deref().unwrap_or(ROOM_VERSION);
    if !ROOM_VERSIONS.contains(&version) {
        return Err(ApiError::new(
            ErrCode::UnsupportedRoomVersion,
            format!(
                "Room version {version} is not supported; supported: {}",
                ROOM_VERSIONS.join(", ")
            ),
        ));
    }
    let version = version.to_owned();
    if !req.invite_3pid.is_empty() {
        return Err(ApiError::invalid_param(
            "Third-party invites are not supported",
        ));
    }
    let preset = req.preset.clone().unwrap_or_else(|| {
        if req.visibility.as_deref() == Some("public") {
            "public_chat"
        } else {
            "private_chat"
        }
        .to_owned()
    });
    if !["private_chat", "trusted_private_chat", "public_chat"].contains(&preset.as_str()) {
        return Err(ApiError::bad_json(
            "preset must be private_chat, trusted_private_chat or public_chat",
        ));
    }
    let mut conn = state.store.read().await?;
    for invitee in &req.invite {
        if !state.is_local_user(invitee) || users::get(&mut conn, invitee).await?.is_none() {
            return Err(ApiError::not_found(format!("Unknown user {invitee}")));
        }
    }
    let alias = match &req.room_alias_name {
        Some(name) => {
            let alias = format!("#{name}:{}", state.server_name());
            if name.is_empty() || name.contains(':') || ids::parse_room_alias(&alias).is_none() {
                return Err(ApiError::invalid_param("Invalid room alias name"));
            }
            Some(alias)
        }
        None => None,
    };
    let mut initial_encryption = None;
    for item in &req.initial_state {
        if matches!(item.event_type.as_str(), "m.room.create" | "m.room.member") {
            return Err(ApiError::invalid_param(format!(
                "{} cannot be set through initial_state",
                item.event_type
            )));
        }
        let content = Value::Object(item.content.clone());
        event_service::check_initial_state(creator, &item.event_type, &item.state_key, &content)?;
        if item.event_type == "m.room.encryption" {
            initial_encryption = Some(content);
        }
    }
    let profile = users::get(&mut conn, creator).await?;
    drop(conn);

    let room_id = ids::new_room_id(state.server_name());
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    if let Some(alias) = &alias {
        if !rooms::put_alias(&mut tx, alias, &room_id, creator).await? {
            return Err(ApiError::new(
                ErrCode::RoomInUse,
                "That room alias is taken",
            ));
        }
    }
    rooms::create(
        &mut tx,
        &room_id,
        creator,
        &version,
        req.visibility.as_deref() == Some("public"),
        now,
    )
    .await?;

    let mut create = req.creation_content.clone().unwrap_or_default();
    create.insert("creator".into(), json!(creator));
    create.insert("room_version".into(), json!(version));
    let mut power = json!({
        "users": { creator: 100 },
        "users_default": 0,
        "events": {
            "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
            "m.room.server_acl": 100, "m.room.encryption": 100
        },
        "events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0
    });
    if preset == "trusted_private_chat" {
        for invitee in &req.invite {
            power["users"][invitee] = json!(100);
        }
    }
    if let Some(overrides) = &req.power_level_content_override {
        for (k, v) in overrides {
            power[k] = v.clone();
        }
    }
    cloister_proto::canonical::check_numbers(&power)
        .map_err(|e| ApiError::bad_json(e.to_string()))?;
    let join_rule = if preset == "public_chat" {
        "public"
    } else {
        "invite"
    };

    let mut state_events: Vec<(String, String, Value)> = vec![
        ("m.room.create".into(), String::new(), Value::Object(create)),
        (
            "m.room.member".into(),
            creator.to_owned(),
            member_content("join", profile.as_ref(), None),
        ),
        ("m.room.power_levels".into(), String::new(), power),
    ];
    if let Some(alias) = &alias {
        state_events.push((
            "m.room.canonical_alias".into(),
            String::new(),
            json!({ "alias": alias }),
        ));
    }
    state_events.push((
        "m.room.join_rules".into(),
        String::new(),
        json!({ "join_rule": join_rule }),
    ));
    state_events.push((
        "m.room.history_visibility".into(),
        String::new(),
        json!({ "history_visibility": "shared" }),
    ));
    state_events.push((
        "m.room.guest_access".into(),
        String::new(),
        json!({ "guest_access": "forbidden" }),
    ));
    for item in req.initial_state {
        if item.event_type != "m.room.encryption" {
            state_events.push((item.event_type, item.state_key, Value::Object(item.content)));
        }
    }
    state_events.push((
        "m.room.encryption".into(),
        String::new(),
        initial_encryption.unwrap_or_else(default_encryption),
    ));
    if let Some(name) = req.name {
        state_events.push(("m.room.name".into(), String::new(), json!({ "name": name })));
    }
    if let Some(topic) = req.topic {
        state_events.push((
            "m.room.topic".into(),
            String::new(),
            json!({ "topic": topic }),
        ));
    }
    let mut invitee_profiles = Vec::new();
    for invitee in &req.invite {
        let p = users::get(tx.conn(), invitee).await?;
        let mut content = member_content("invite", p.as_ref(), None);
        if req.is_direct {
            content["is_direct"] = json!(true);
        }
        invitee_profiles.push((invitee.clone(), content));
    }
    state_events.extend(
        invitee_profiles
            .into_iter()
            .map(|(u, c)| ("m.room.member".into(), u, c)),
    );

    // The creator builds the room from nothing, so these are stored without
    // the per-event authorization that later events go through.
    for (event_type, state_key, content) in &state_events {
        if content.to_string().len() > state.config.limits.max_event_size {
            return Err(ApiError::too_large(format!(
                "initial {event_type} event is too large"
            )));
        }
        let event = NewEvent::state(&room_id, creator, event_type, state_key, content);
        events::append(&mut tx, &event, now).await?;
    }
    tx.commit().await?;
    let mut audience = req.invite.clone();
    audience.push(creator.to_owned());
    state.notifier.notify(audience.iter().map(String::as_str));
    for member in &audience {
        crate::service::holds::announce_custodian(state, &room_id, member).await?;
    }
    tracing::info!("room created");
    Ok(room_id)
}

fn member_content(membership: &str, profile: Option<&users::User>, reason: Option<&str>) -> Value {
    let mut content = json!({ "membership": membership });
    if let Some(p) = profile {
        if let Some(name) = &p.displayname {
            content["displayname"] = json!(name);
        }
        if let Some(avatar) = &p.avatar_url {
            content["avatar_url"] = json!(avatar);
        }
    }
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    content
}

/// Sends an `m.room.member` event by `sender` about `target`.
pub async fn change_membership(
    state: &Context,
    room_id: &str,
    sender: &str,
    target: &str,
    membership: &str,
    reason: Option<&str>,
    extra: Option<&Map<String, Value>>,
) -> ApiResult<String> {
    if reason.is_some_and(|r| r.len() > 4096) {
        return Err(ApiError::invalid_param("reason is too long"));
    }
    let mut conn = state.store.read().await?;
    if !rooms::exists(&mut conn, room_id).await? {
        return Err(ApiError::not_found("Unknown room"));
    }
    let current = rooms::membership(&mut conn, room_id, target).await?;
    // Joining a room you are in, or leaving one you are not in, changes nothing.
    match (membership, current.as_ref().map(|m| m.membership.as_str())) {
        ("join", Some("join")) | ("leave", Some("leave")) if sender == target => {
            return Ok(String::new())
        }
        _ => {}
    }
    let profile = if matches!(membership, "join" | "invite") {
        if membership == "invite"
            && (!state.is_local_user(target) || users::get(&mut conn, target).await?.is_none())
        {
            return Err(ApiError::not_found("Unknown user"));
        }
        users::get(&mut conn, target).await?
    } else {
        None
    };
    drop(conn);
    let mut content = member_content(membership, profile.as_ref(), reason);
    if let Some(extra) = extra {
        for (k, v) in extra {
            if k != "membership" {
                content[k] = v.clone();
            }
        }
    }
    let event = NewEvent::state(room_id, sender, "m.room.member", target, &content);
    let event_id = event_service::send(state, event).await?.event_id;
    if matches!(membership, "join" | "invite") {
        crate::service::holds::announce_custodian(state, room_id, target).await?;
    }
    Ok(event_id)
}

/// Re-sends the user's membership in every joined room with their new
/// display name and avatar, as other servers do.
pub async fn propagate_profile(state: &Context, user_id: &str) -> ApiResult<()> {
    let mut conn = state.store.read().await?;
    let joined = rooms::joined_rooms(&mut conn, user_id).await?;
    let profile = users::get(&mut conn, user_id).await?;
    drop(conn);
    for room_id in joined {
        let content = member_content("join", profile.as_ref(), None);
        let event = NewEvent::state(&room_id, user_id, "m.room.member", user_id, &content);
        event_service::send(state, event).await?;
    }
    Ok(())
}
