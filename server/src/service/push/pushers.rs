//! Pushers: where a user's devices want notifications sent (spec: "Push
//! Notifications", `POST /pushers/set`). Every field is checked here, before
//! anything is stored, because the gateway URL is one the server will call.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::service::session::Auth;
use crate::service::Context;
use crate::store::push::{self, Pusher};

/// The path every Push Gateway API notification goes to (spec).
pub const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// Spec: "Max length, 64 chars" for the app id, 512 bytes for the pushkey.
const MAX_APP_ID: usize = 64;
const MAX_PUSHKEY: usize = 512;
const MAX_DISPLAY_NAME: usize = 256;
const MAX_LANG: usize = 32;
const MAX_PROFILE_TAG: usize = 64;
const MAX_URL: usize = 2048;
/// `data` is stored and sent to the gateway on every push.
const MAX_DATA_BYTES: usize = 4096;
/// A user has a few phones and browsers, not hundreds: each pusher is a
/// request per notification.
pub const MAX_PUSHERS_PER_USER: i64 = 20;

/// `GET /pushers`: the user's pushers in the spec's shape.
pub async fn list(state: &Context, auth: &Auth) -> ApiResult<Value> {
    let pushers = push::pushers(&mut *state.store.read().await?, &auth.user_id).await?;
    let rendered: Vec<Value> = pushers.iter().map(render).collect();
    Ok(json!({ "pushers": rendered }))
}

fn render(p: &Pusher) -> Value {
    let mut out = json!({
        "app_id": p.app_id,
        "pushkey": p.pushkey,
        "kind": p.kind,
        "app_display_name": p.app_display_name,
        "device_display_name": p.device_display_name,
        "lang": p.lang,
        "data": p.data,
    });
    if let Some(tag) = &p.profile_tag {
        out["profile_tag"] = json!(tag);
    }
    out
}

/// `POST /pushers/set`: adds, replaces or (`kind: null`) deletes a pusher.
pub async fn set(state: &Context, auth: &Auth, body: &Value) -> ApiResult<()> {
    let body = body
        .as_object()
        .ok_or_else(|| ApiError::bad_json("the body must be a JSON object"))?;
    let app_id = required_str(body, "app_id", MAX_APP_ID)?;
    let pushkey = required_str(body, "pushkey", MAX_PUSHKEY)?;
    let kind = match body.get("kind") {
        None => {
            return Err(ApiError::missing_param(
                "kind is required (a string, or null to delete)",
            ))
        }
        Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(ApiError::bad_json("kind must be a string or null")),
    };
    let Some(kind) = kind else {
        let mut tx = state.store.write().await?;
        push::delete_pushers(&mut tx, app_id, pushkey, Some(&auth.user_id), None).await?;
        tx.commit().await?;
        return Ok(());
    };
    if kind != "http" {
        return Err(ApiError::invalid_param(format!(
            "pusher kind {kind:?} is not supported; this server sends only \"http\" pushes"
        )));
    }
    let app_display_name = required_str(body, "app_display_name", MAX_DISPLAY_NAME)?;
    let device_display_name = required_str(body, "device_display_name", MAX_DISPLAY_NAME)?;
    let lang = required_str(body, "lang", MAX_LANG)?;
    let profile_tag = optional_str(body, "profile_tag", MAX_PROFILE_TAG)?;
    let append = match body.get("append") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_json("append must be a boolean")),
    };
    let data = match body.get("data") {
        None => {
            return Err(ApiError::missing_param(
                "data is required for an http pusher",
            ))
        }
        Some(Value::Object(d)) => d,
        Some(_) => return Err(ApiError::bad_json("data must be an object")),
    };
    if Value::Object(data.clone()).to_string().len() > MAX_DATA_BYTES {
        return Err(ApiError::invalid_param(format!(
            "data is larger than {MAX_DATA_BYTES} bytes"
        )));
    }
    let url = match data.get("url") {
        None => {
            return Err(ApiError::missing_param(
                "data.url is required for an http pusher",
            ))
        }
        Some(Value::String(u)) => u,
        Some(_) => return Err(ApiError::bad_json("data.url must be a string")),
    };
    check_gateway_url(state, url)?;
    if let Some(format) = data.get("format") {
        if !format.is_string() {
            return Err(ApiError::bad_json("data.format must be a string"));
        }
    }
    let pusher = Pusher {
        user_id: auth.user_id.clone(),
        device_id: auth.device_id.clone(),
        app_id: app_id.to_owned(),
        pushkey: pushkey.to_owned(),
        kind: kind.to_owned(),
        app_display_name: app_display_name.to_owned(),
        device_display_name: device_display_name.to_owned(),
        profile_tag: profile_tag.map(str::to_owned),
        lang: lang.to_owned(),
        data: Value::Object(data.clone()),
        pushkey_ts: state.now_ms(),
    };
    let mut tx = state.store.write().await?;
    let exists = push::pusher(tx.conn(), &auth.user_id, app_id, pushkey)
        .await?
        .is_some();
    if !exists && push::count_pushers(tx.conn(), &auth.user_id).await? >= MAX_PUSHERS_PER_USER {
        return Err(ApiError::forbidden(format!(
            "an account may have at most {MAX_PUSHERS_PER_USER} pushers"
        )));
    }
    if !append {
        // Spec: without `append`, one pushkey notifies one account.
        push::delete_pushers(&mut tx, app_id, pushkey, None, Some(&auth.user_id)).await?;
    }
    push::put_pusher(&mut tx, &pusher).await?;
    tx.commit().await?;
    Ok(())
}

fn required_str<'a>(body: &'a Map<String, Value>, key: &str, max: usize) -> ApiResult<&'a str> {
    optional_str(body, key, max)?
        .ok_or_else(|| ApiError::missing_param(format!("{key} is required")))
}

fn optional_str<'a>(
    body: &'a Map<String, Value>,
    key: &str,
    max: usize,
) -> ApiResult<Option<&'a str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => {
            Err(ApiError::invalid_param(format!("{key} may not be empty")))
        }
        Some(Value::String(s)) if s.len() > max => Err(ApiError::invalid_param(format!(
            "{key} is longer than {max} bytes"
        ))),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_json(format!("{key} must be a string"))),
    }
}

/// The gateway URL must be http(s), end in the notify path (spec), and not
/// lead back to this server: the server would be calling itself with
/// requests a client chose the target of.
fn check_gateway_url(state: &Context, url: &str) -> ApiResult<()> {
    let bad = |why: &str| ApiError::invalid_param(format!("data.url {why}"));
    if url.len() > MAX_URL {
        return Err(bad(&format!("is longer than {MAX_URL} bytes")));
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("is not a valid URL"))?;
    let default_port = match parsed.scheme() {
        "http" => 80,
        "https" => 443,
        _ => return Err(bad("must be an http or https URL")),
    };
    if parsed.path() != NOTIFY_PATH || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad(&format!("must end in {NOTIFY_PATH}")));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("may not carry credentials"));
    }
    let host = parsed.host_str().ok_or_else(|| bad("has no host"))?;
    let port = parsed.port().unwrap_or(default_port);
    if points_at_self(state, host, port) {
        return Err(bad("points at this homeserver, not at a push gateway"));
    }
    Ok(())
}

fn points_at_self(state: &Context, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let listen = state.config.listen;
    let ip: Option<IpAddr> = host.parse().ok();
    // Any local address reaches the listener on its port.
    let local = host == "localhost"
        || ip.is_some_and(|ip| ip.is_loopback() || ip.is_unspecified() || ip == listen.ip());
    if local && port == listen.port() {
        return true;
    }
    let public = state.config.public_baseurl();
    if let Ok(base) = reqwest::Url::parse(&public) {
        let base_port = base.port_or_known_default();
        if base.host_str().map(str::to_ascii_lowercase).as_deref() == Some(host.as_str())
            && base_port == Some(port)
        {
            return true;
        }
    }
    host == state.config.server_name.to_ascii_lowercase() && port == listen.port()
}
