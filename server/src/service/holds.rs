//! Legal holds: preserving a custodian's or a room's data for a legal case.
//!
//! A hold takes precedence over erasure and retention (GDPR Art. 17(3)(e)):
//! the purge and erasure skip what it covers. Holds are never silent: a
//! room hold puts an `org.cloister.legal_hold` state event (state key "")
//! into the room, a user hold one per room the custodian is in (state key =
//! the custodian), so members' clients can show it. The notice says that
//! data is preserved and since when — not the case id or reason, which stay
//! with the DPO. Setting and releasing are audited in the same transaction,
//! naming the held room or person by pseudonym only: which rooms are held
//! can say who is in a dispute. Only the server sends the notice and nobody
//! redacts it (`service::events`), so no room moderator can hide a hold.

use cloister_audit::{Action, Actor};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::service::{audit, events as event_service};
use crate::store::holds;
use crate::store::{rooms, users, WriteTx};

pub use crate::store::holds::{Hold, Scope};

pub const NOTICE_EVENT: &str = "org.cloister.legal_hold";

const MAX_CASE_ID: usize = 128;
const MAX_REASON: usize = 2048;

/// What an administrator asks to hold.
pub struct NewHold<'a> {
    pub scope: Scope,
    pub target: &'a str,
    pub case_id: &'a str,
    pub reason: &'a str,
}

/// Who acts: the name stored with the hold (an admin's user id, or
/// `operator` for the CLI) and the audit actor.
pub struct By {
    pub name: String,
    pub actor: Actor,
}

fn text_field(name: &str, value: &str, max: usize) -> ApiResult<()> {
    if value.trim().is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(ApiError::invalid_param(format!(
            "{name} must be 1 to {max} bytes without control characters"
        )));
    }
    Ok(())
}

/// Active holds, newest first, then (when asked for) released ones.
pub async fn list(state: &Context, include_released: bool) -> ApiResult<Vec<Hold>> {
    Ok(holds::list(&mut *state.store.read().await?, !include_released).await?)
}

pub async fn set(state: &Context, by: By, new: NewHold<'_>) -> ApiResult<Hold> {
    text_field("case_id", new.case_id, MAX_CASE_ID)?;
    text_field("reason", new.reason, MAX_REASON)?;
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    let exists = match new.scope {
        Scope::User => users::get(tx.conn(), new.target).await?.is_some(),
        Scope::Room => rooms::exists(tx.conn(), new.target).await?,
    };
    if !exists {
        return Err(ApiError::not_found(format!(
            "Unknown {}",
            new.scope.as_str()
        )));
    }
    let hold = Hold {
        hold_id: format!("hold_{}", crate::ids::random_string(16)),
        scope: new.scope,
        target: new.target.to_owned(),
        case_id: new.case_id.to_owned(),
        reason: new.reason.to_owned(),
        set_by: by.name,
        set_ts: now,
        released_by: None,
        released_ts: None,
    };
    holds::insert(&mut tx, &hold).await?;
    let entry =
        audit::by_actor(state, by.actor, Action::HoldSet).target(state.audit.target(&hold.target));
    audit::record(&mut tx, entry).await?;
    let notice = json!({
        "held": true,
        "since": now,
        "body": notice_text(hold.scope),
    });
    let wake = post_notices(state, &mut tx, hold.scope, &hold.target, &notice).await?;
    tx.commit().await?;
    state.notifier.notify(wake.iter().map(String::as_str));
    tracing::info!(scope = hold.scope.as_str(), "legal hold set");
    Ok(hold)
}

/// Releases a hold; normal retention resumes for what no other hold covers.
pub async fn release(state: &Context, by: By, hold_id: &str) -> ApiResult<Hold> {
    let now = state.now_ms();
    let mut tx = state.store.write().await?;
    let Some(hold) = holds::get(tx.conn(), hold_id).await? else {
        return Err(ApiError::not_found("Unknown hold"));
    };
    if !holds::release(&mut tx, hold_id, &by.name, now).await? {
        return Err(ApiError::invalid_param("That hold is already released"));
    }
    let entry = audit::by_actor(state, by.actor, Action::HoldReleased)
        .target(state.audit.target(&hold.target));
    audit::record(&mut tx, entry).await?;
    // Another case may still hold the same target; the notice stays then.
    let wake = if holds::active_on(tx.conn(), hold.scope, &hold.target)
        .await?
        .is_empty()
    {
        let notice = json!({ "held": false, "released": now });
        post_notices(state, &mut tx, hold.scope, &hold.target, &notice).await?
    } else {
        Vec::new()
    };
    tx.commit().await?;
    state.notifier.notify(wake.iter().map(String::as_str));
    tracing::info!(scope = hold.scope.as_str(), "legal hold released");
    holds::get(&mut *state.store.read().await?, hold_id)
        .await?
        .ok_or_else(ApiError::internal)
}

fn notice_text(scope: Scope) -> &'static str {
    match scope {
        Scope::Room => {
            "Messages and files in this room are preserved under a legal hold: \
             they are kept even after the room's retention period and cannot be erased until the hold ends."
        }
        Scope::User => {
            "This member's messages and files are preserved under a legal hold: \
             they are kept even after the room's retention period and cannot be erased until the hold ends."
        }
    }
}

/// The room-visible notices of a hold: one in the held room, or one per
/// room the custodian has joined or been invited to.
async fn post_notices(
    state: &Context,
    tx: &mut WriteTx,
    scope: Scope,
    target: &str,
    content: &Value,
) -> ApiResult<Vec<String>> {
    let placements: Vec<(String, &str)> = match scope {
        Scope::Room => vec![(target.to_owned(), "")],
        Scope::User => rooms::rooms_for_user(tx.conn(), target)
            .await?
            .into_iter()
            .filter(|(_, m)| m.membership == "join" || m.membership == "invite")
            .map(|(room_id, _)| (room_id, target))
            .collect(),
    };
    let mut wake = Vec::new();
    for (room_id, state_key) in placements {
        let (_, audience) =
            event_service::send_as_server_in(state, tx, &room_id, NOTICE_EVENT, state_key, content)
                .await?;
        wake.extend(audience);
    }
    Ok(wake)
}

/// A custodian who joins or is invited to a room after their hold was set:
/// that room is told too, so no room holds them silently.
pub async fn announce_custodian(state: &Context, room_id: &str, user_id: &str) -> ApiResult<()> {
    let held_since = {
        let mut c = state.store.read().await?;
        let active = holds::active_on(&mut c, Scope::User, user_id).await?;
        let Some(first) = active.first() else {
            return Ok(());
        };
        let shown = crate::store::events::state_event(&mut c, room_id, NOTICE_EVENT, user_id)
            .await?
            .is_some_and(|e| e.content.get("held") == Some(&Value::Bool(true)));
        if shown {
            return Ok(());
        }
        first.set_ts
    };
    let notice = json!({ "held": true, "since": held_since, "body": notice_text(Scope::User) });
    let mut tx = state.store.write().await?;
    let (_, wake) =
        event_service::send_as_server_in(state, &mut tx, room_id, NOTICE_EVENT, user_id, &notice)
            .await?;
    tx.commit().await?;
    state.notifier.notify(wake.iter().map(String::as_str));
    Ok(())
}
