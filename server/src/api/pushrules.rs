//! Push rules. Clients evaluate them (the server cannot read encrypted
//! events), so the server's job is to keep each user's rule set and hand it
//! to every device. The whole set is stored as global account data of type
//! `m.push_rules`, which is how `/sync` delivers it. The rule-set logic
//! itself lives in `pushrules_default.rs`.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::state::AppState;
use crate::store::account_data;

// A child module kept beside this file so no `mod.rs` needs editing.
#[path = "pushrules_default.rs"]
mod rules;

pub use rules::default_ruleset;
use rules::{
    build_rule, check_actions, check_kind, delete, find_rule, upsert_rule, with_defaults, RuleBody,
};

pub const PUSH_RULES: &str = "m.push_rules";

/// The user's rule set, `{"global": {...}}`, defaults included.
pub async fn load(state: &AppState, user_id: &str) -> ApiResult<Value> {
    let stored =
        account_data::get(&mut *state.store.read().await?, user_id, "", PUSH_RULES).await?;
    Ok(with_defaults(stored, user_id))
}

/// Applies `change` to the user's global rules and stores the result at a
/// new stream position, so every device sees it in `/sync`.
async fn modify(
    state: &AppState,
    user_id: &str,
    change: impl FnOnce(&mut Map<String, Value>) -> ApiResult<()>,
) -> ApiResult<Json<Value>> {
    let mut tx = state.store.write().await?;
    // Taken before the read: the position's row lock is held to commit, so
    // two edits of one rule set cannot interleave, on PostgreSQL too.
    let pos = tx.next_pos().await?;
    let stored = account_data::get(tx.conn(), user_id, "", PUSH_RULES).await?;
    let mut set = with_defaults(stored, user_id);
    let global = set["global"]
        .as_object_mut()
        .expect("with_defaults builds an object");
    change(global)?;
    account_data::put(tx.conn(), user_id, "", PUSH_RULES, &set, pos).await?;
    tx.commit().await?;
    state.notifier.notify([user_id]);
    Ok(Json(json!({})))
}

async fn read_rule(state: &AppState, user_id: &str, kind: &str, rule_id: &str) -> ApiResult<Value> {
    check_kind(kind)?;
    let mut set = load(state, user_id).await?;
    let global = set["global"]
        .as_object_mut()
        .expect("with_defaults builds an object");
    Ok(find_rule(global, kind, rule_id)?.take())
}

/// `GET /_matrix/client/v3/pushrules/`
pub(super) async fn get_all(State(state): State<AppState>, auth: Auth) -> ApiResult<Json<Value>> {
    Ok(Json(load(&state, &auth.user_id).await?))
}

/// `GET /_matrix/client/v3/pushrules/global/`
pub(super) async fn get_global(
    State(state): State<AppState>,
    auth: Auth,
) -> ApiResult<Json<Value>> {
    Ok(Json(load(&state, &auth.user_id).await?["global"].take()))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(super) async fn get_rule(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        read_rule(&state, &auth.user_id, &kind, &rule_id).await?,
    ))
}

#[derive(Deserialize)]
pub(super) struct PositionQuery {
    before: Option<String>,
    after: Option<String>,
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(super) async fn put_rule(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Query(position): Query<PositionQuery>,
    Body(body): Body<RuleBody>,
) -> ApiResult<Json<Value>> {
    check_kind(&kind)?;
    let rule = build_rule(&kind, &rule_id, body)?;
    modify(&state, &auth.user_id, |global| {
        upsert_rule(
            global,
            &kind,
            rule,
            position.before.as_deref(),
            position.after.as_deref(),
        )
    })
    .await
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(super) async fn delete_rule(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check_kind(&kind)?;
    modify(&state, &auth.user_id, |global| {
        delete(global, &kind, &rule_id)
    })
    .await
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub(super) async fn get_enabled(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let rule = read_rule(&state, &auth.user_id, &kind, &rule_id).await?;
    Ok(Json(
        json!({ "enabled": rule["enabled"].as_bool().unwrap_or(true) }),
    ))
}

#[derive(Deserialize)]
pub(super) struct EnabledBody {
    enabled: bool,
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub(super) async fn put_enabled(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Body(body): Body<EnabledBody>,
) -> ApiResult<Json<Value>> {
    check_kind(&kind)?;
    modify(&state, &auth.user_id, |global| {
        find_rule(global, &kind, &rule_id)?["enabled"] = json!(body.enabled);
        Ok(())
    })
    .await
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub(super) async fn get_actions(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let mut rule = read_rule(&state, &auth.user_id, &kind, &rule_id).await?;
    Ok(Json(json!({ "actions": rule["actions"].take() })))
}

#[derive(Deserialize)]
pub(super) struct ActionsBody {
    actions: Vec<Value>,
}

/// `PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub(super) async fn put_actions(
    State(state): State<AppState>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Body(body): Body<ActionsBody>,
) -> ApiResult<Json<Value>> {
    check_kind(&kind)?;
    check_actions(&body.actions)?;
    modify(&state, &auth.user_id, |global| {
        find_rule(global, &kind, &rule_id)?["actions"] = json!(body.actions);
        Ok(())
    })
    .await
}
