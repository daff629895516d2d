//! User-interactive authentication (spec §"User-Interactive Authentication
//! API"): the 401 dance with `flows`, `session` and `completed`.

use axum::http::StatusCode;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::session::hash_token;
use crate::service::Context;
use crate::store::users::{self, UiaSession};

pub const PASSWORD: &str = "m.login.password";
pub const DUMMY: &str = "m.login.dummy";
pub const REGISTRATION_TOKEN: &str = "m.login.registration_token";
/// Completed through the fallback page, by signing in at the provider.
pub const SSO: &str = "m.login.sso";
/// Completed on the account management page, for apps signed in through
/// the OAuth API (the caller checks the approval; see `service::oauth::account`).
pub const OAUTH: &str = "m.oauth";

/// Sessions older than this must start over.
pub(crate) const SESSION_LIFETIME_MS: i64 = 15 * 60 * 1000;

/// Runs one step of user-interactive auth. Returns `Ok(())` once the stages
/// of one of `flows` are all complete; otherwise the 401 body to send back.
/// `user_id` is the account being acted on (None while registering).
pub async fn check(
    state: &Context,
    flows: &[&[&'static str]],
    auth: Option<&Value>,
    user_id: Option<&str>,
) -> ApiResult<()> {
    check_with_params(state, flows, json!({}), auth, user_id).await
}

/// [`check`], with the challenge's `params` (what a stage needs to know,
/// such as `m.oauth`'s URL).
pub async fn check_with_params(
    state: &Context,
    flows: &[&[&'static str]],
    params: Value,
    auth: Option<&Value>,
    user_id: Option<&str>,
) -> ApiResult<()> {
    let owned = flows_for(state, flows, user_id).await?;
    let flows: Vec<&[&str]> = owned.iter().map(Vec::as_slice).collect();
    let flows = flows.as_slice();
    let now = state.now_ms();
    let Some(auth) = auth.filter(|a| a.is_object()) else {
        let session_id = crate::ids::random_string(24);
        let session = UiaSession {
            user_id: user_id.map(str::to_owned),
            request_hash: String::new(),
            completed: vec![],
            created_ts: now,
        };
        users::put_uia_session(&mut state.store.autocommit().await?, &session_id, &session).await?;
        return Err(challenge(flows, &params, &session_id, &[], None));
    };
    let session_id = auth
        .get("session")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut conn = state.store.read().await?;
    let (session_id, mut session) = match session_id {
        Some(id) => match users::get_uia_session(&mut conn, &id).await? {
            Some(s)
                if s.user_id.as_deref() == user_id && now - s.created_ts < SESSION_LIFETIME_MS =>
            {
                (id, s)
            }
            _ => {
                return Err(ApiError::new(
                    ErrCode::Unknown,
                    "Unknown or expired auth session",
                ))
            }
        },
        // A client may answer the first challenge without a session (some
        // send the password straight away); start one for it.
        None => (
            crate::ids::random_string(24),
            UiaSession {
                user_id: user_id.map(str::to_owned),
                request_hash: String::new(),
                completed: vec![],
                created_ts: now,
            },
        ),
    };
    drop(conn);
    let stage = auth.get("type").and_then(Value::as_str).unwrap_or_default();
    // The SSO and OAuth stages are completed in the browser, never by a
    // body; a retry after one (with or without `type`) only asks whether
    // it is done.
    if stage.is_empty() || stage == SSO || stage == OAUTH {
        let mut conn = state.store.autocommit().await?;
        if is_done(flows, &session.completed) {
            users::delete_uia_session(&mut conn, &session_id).await?;
            return Ok(());
        }
        users::put_uia_session(&mut conn, &session_id, &session).await?;
        return Err(challenge(
            flows,
            &params,
            &session_id,
            &session.completed,
            None,
        ));
    }
    if !flows.iter().any(|f| f.contains(&stage)) {
        return Err(ApiError::bad_json(format!(
            "auth type {stage:?} is not offered here"
        )));
    }
    let outcome = complete_stage(state, stage, auth, user_id).await?;
    let mut conn = state.store.autocommit().await?;
    if let Err(message) = outcome {
        users::put_uia_session(&mut conn, &session_id, &session).await?;
        return Err(challenge(
            flows,
            &params,
            &session_id,
            &session.completed,
            Some(message),
        ));
    }
    if !session.completed.iter().any(|s| s == stage) {
        session.completed.push(stage.to_owned());
    }
    if is_done(flows, &session.completed) {
        users::delete_uia_session(&mut conn, &session_id).await?;
        Ok(())
    } else {
        users::put_uia_session(&mut conn, &session_id, &session).await?;
        Err(challenge(
            flows,
            &params,
            &session_id,
            &session.completed,
            None,
        ))
    }
}

fn is_done(flows: &[&[&str]], completed: &[String]) -> bool {
    flows
        .iter()
        .any(|flow| flow.iter().all(|s| completed.iter().any(|c| c == s)))
}

/// The flows offered for `user_id`: where a password is asked, an account
/// that signs in through an identity provider is offered `m.login.sso` —
/// instead, when it has no password at all.
async fn flows_for(
    state: &Context,
    flows: &[&[&'static str]],
    user_id: Option<&str>,
) -> ApiResult<Vec<Vec<&'static str>>> {
    let mut out: Vec<Vec<&'static str>> = flows.iter().map(|f| f.to_vec()).collect();
    let Some(user_id) = user_id else {
        return Ok(out);
    };
    if !out.iter().any(|f| f.as_slice() == [PASSWORD]) {
        return Ok(out);
    }
    let mut conn = state.store.read().await?;
    if !crate::store::sso::is_linked(&mut conn, user_id).await? {
        return Ok(out);
    }
    let has_password = users::get(&mut conn, user_id)
        .await?
        .is_some_and(|u| u.password_hash.is_some());
    drop(conn);
    let ldap = crate::service::ldap_login::is_ldap_account(state, user_id).await?;
    if !has_password && !ldap {
        out.retain(|f| f.as_slice() != [PASSWORD]);
    }
    out.push(vec![SSO]);
    Ok(out)
}

/// The account a UIA session is for, while it is alive.
pub async fn session_user(state: &Context, session_id: &str) -> ApiResult<Option<String>> {
    let session = users::get_uia_session(&mut *state.store.read().await?, session_id).await?;
    Ok(session
        .filter(|s| state.now_ms() - s.created_ts < SESSION_LIFETIME_MS)
        .and_then(|s| s.user_id))
}

/// Marks the SSO stage of `session_id` complete: `user_id` has just
/// signed in at their provider. False when the session is gone or is
/// another account's.
pub async fn complete_sso(state: &Context, session_id: &str, user_id: &str) -> ApiResult<bool> {
    let mut conn = state.store.autocommit().await?;
    let Some(mut session) = users::get_uia_session(&mut conn, session_id).await? else {
        return Ok(false);
    };
    let alive = state.now_ms() - session.created_ts < SESSION_LIFETIME_MS;
    if !alive || session.user_id.as_deref() != Some(user_id) {
        return Ok(false);
    }
    if !session.completed.iter().any(|s| s == SSO) {
        session.completed.push(SSO.to_owned());
    }
    users::put_uia_session(&mut conn, session_id, &session).await?;
    Ok(true)
}

/// Ok(Err(message)) is a failed attempt the client may retry.
async fn complete_stage(
    state: &Context,
    stage: &str,
    auth: &Value,
    user_id: Option<&str>,
) -> ApiResult<Result<(), &'static str>> {
    match stage {
        DUMMY => Ok(Ok(())),
        PASSWORD => {
            let Some(user_id) = user_id else {
                return Ok(Err("password auth needs an existing account"));
            };
            let claimed = auth
                .get("identifier")
                .and_then(|i| i.get("user"))
                .or_else(|| auth.get("user"))
                .and_then(Value::as_str);
            if let Some(claimed) = claimed {
                if claimed != user_id && state.user_id(claimed) != user_id {
                    return Err(ApiError::forbidden("auth is for a different user"));
                }
            }
            // The bucket /login spends per account: a stolen access token
            // must not make this an unlimited password oracle, nor let
            // guesses alternate between the two to double their rate.
            if state.config.rate_limit.enabled {
                state
                    .login_limiter
                    .check(&format!("login:{user_id}"))
                    .map_err(ApiError::limit_exceeded)?;
            }
            let password = Zeroizing::new(
                auth.get("password")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            );
            if state.config.ldap.enabled
                && crate::service::ldap_login::is_ldap_account(state, user_id).await?
            {
                let ok = crate::service::ldap_login::confirm(state, user_id, &password).await?;
                return Ok(if ok { Ok(()) } else { Err("Invalid password") });
            }
            let stored = users::get(&mut *state.store.read().await?, user_id)
                .await?
                .and_then(|u| u.password_hash);
            if state.passwords.check(password, stored).await? {
                Ok(Ok(()))
            } else {
                Ok(Err("Invalid password"))
            }
        }
        REGISTRATION_TOKEN => {
            let token = auth
                .get("token")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let used = users::use_registration_token(
                &mut state.store.autocommit().await?,
                &hash_token(token),
                state.now_ms(),
            )
            .await?;
            Ok(if used {
                Ok(())
            } else {
                Err("Invalid registration token")
            })
        }
        _ => Ok(Err("Unsupported auth stage")),
    }
}

fn challenge(
    flows: &[&[&str]],
    params: &Value,
    session: &str,
    completed: &[String],
    error: Option<&'static str>,
) -> ApiError {
    let flows: Vec<Value> = flows.iter().map(|f| json!({ "stages": f })).collect();
    let mut err = ApiError::new(
        ErrCode::Forbidden,
        error.unwrap_or("Additional authentication required"),
    )
    .with_status(StatusCode::UNAUTHORIZED)
    .with("flows", Value::Array(flows))
    .with("params", params.clone())
    .with("session", json!(session));
    if !completed.is_empty() {
        err = err.with("completed", json!(completed));
    }
    if error.is_none() {
        // A first challenge is not a failure: no errcode, as in the spec.
        err.bare = true;
    }
    err
}
