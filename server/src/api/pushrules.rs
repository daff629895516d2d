//! Push rules over HTTP; the rule set and its rules are
//! `service::pushrules`.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::pushrules::{
    build_rule, check_actions, check_kind, delete, find_rule, load, modify, read_rule, upsert_rule,
    RuleBody,
};
use crate::service::Context;

/// `GET /_matrix/client/v3/pushrules/`
pub(super) async fn get_all(State(state): State<Context>, auth: Auth) -> ApiResult<Json<Value>> {
    Ok(Json(load(&state, &auth.user_id).await?))
}

/// `GET /_matrix/client/v3/pushrules/global/`
pub(super) async fn get_global(State(state): State<Context>, auth: Auth) -> ApiResult<Json<Value>> {
    Ok(Json(load(&state, &auth.user_id).await?["global"].take()))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(super) async fn get_rule(
    State(state): State<Context>,
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
    State(state): State<Context>,
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
    .await?;
    Ok(Json(json!({})))
}

/// `DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}`
pub(super) async fn delete_rule(
    State(state): State<Context>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check_kind(&kind)?;
    modify(&state, &auth.user_id, |global| {
        delete(global, &kind, &rule_id)
    })
    .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled`
pub(super) async fn get_enabled(
    State(state): State<Context>,
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
    State(state): State<Context>,
    auth: Auth,
    Path((kind, rule_id)): Path<(String, String)>,
    Body(body): Body<EnabledBody>,
) -> ApiResult<Json<Value>> {
    check_kind(&kind)?;
    modify(&state, &auth.user_id, |global| {
        find_rule(global, &kind, &rule_id)?["enabled"] = json!(body.enabled);
        Ok(())
    })
    .await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions`
pub(super) async fn get_actions(
    State(state): State<Context>,
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
    State(state): State<Context>,
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
    .await?;
    Ok(Json(json!({})))
}
