//! User profiles: display name and avatar.
//!
//! Profile lookups require an access token: on a server whose point is
//! privacy, who is registered here is not public information.

use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::Context;
use crate::store::users::{self, ProfileField, User};

const MAX_DISPLAYNAME_LEN: usize = 256;
const MAX_AVATAR_URL_LEN: usize = 1000;

async fn load(state: &Context, user_id: &str) -> ApiResult<User> {
    users::get(&mut *state.store.read().await?, user_id)
        .await?
        .filter(|u| !u.deactivated)
        .ok_or_else(|| ApiError::not_found("Profile not found"))
}

fn field_json(user: &User, fields: &[ProfileField]) -> Value {
    let mut out = Map::new();
    for field in fields {
        let value = match field {
            ProfileField::Displayname => &user.displayname,
            ProfileField::AvatarUrl => &user.avatar_url,
        };
        if let Some(v) = value {
            out.insert(field.key().to_owned(), json!(v));
        }
    }
    Value::Object(out)
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub(super) async fn get_profile(
    State(state): State<Context>,
    _auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = load(&state, &user_id).await?;
    Ok(Json(field_json(
        &user,
        &[ProfileField::Displayname, ProfileField::AvatarUrl],
    )))
}

/// `GET /_matrix/client/v3/profile/{userId}/displayname`
pub(super) async fn get_displayname(
    State(state): State<Context>,
    _auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = load(&state, &user_id).await?;
    Ok(Json(field_json(&user, &[ProfileField::Displayname])))
}

/// `GET /_matrix/client/v3/profile/{userId}/avatar_url`
pub(super) async fn get_avatar_url(
    State(state): State<Context>,
    _auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = load(&state, &user_id).await?;
    Ok(Json(field_json(&user, &[ProfileField::AvatarUrl])))
}

#[derive(Deserialize)]
pub(super) struct DisplaynameBody {
    displayname: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct AvatarUrlBody {
    avatar_url: Option<String>,
}

/// `PUT /_matrix/client/v3/profile/{userId}/displayname`
pub(super) async fn put_displayname(
    State(state): State<Context>,
    auth: Auth,
    Path(user_id): Path<String>,
    Body(body): Body<DisplaynameBody>,
) -> ApiResult<Json<Value>> {
    let value = validate_displayname(body.displayname.as_deref())?;
    set_field(&state, &auth, &user_id, ProfileField::Displayname, value).await
}

/// `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
pub(super) async fn put_avatar_url(
    State(state): State<Context>,
    auth: Auth,
    Path(user_id): Path<String>,
    Body(body): Body<AvatarUrlBody>,
) -> ApiResult<Json<Value>> {
    let value = validate_avatar_url(body.avatar_url.as_deref())?;
    set_field(&state, &auth, &user_id, ProfileField::AvatarUrl, value).await
}

async fn set_field(
    state: &Context,
    auth: &Auth,
    user_id: &str,
    field: ProfileField,
    value: Option<&str>,
) -> ApiResult<Json<Value>> {
    if user_id != auth.user_id {
        return Err(ApiError::forbidden("You may only change your own profile"));
    }
    let mut tx = state.store.write().await?;
    users::set_profile_field(tx.conn(), &auth.user_id, field, value).await?;
    tx.commit().await?;
    // Member events in joined rooms repeat the profile, so clients show the
    // new name without fetching profiles.
    crate::service::rooms::propagate_profile(state, &auth.user_id).await?;
    Ok(Json(json!({})))
}

/// An empty or absent name clears it.
fn validate_displayname(name: Option<&str>) -> ApiResult<Option<&str>> {
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_DISPLAYNAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::invalid_param(
            "displayname must be at most 256 characters without control characters",
        ));
    }
    Ok(Some(name))
}

/// An empty or absent URL clears the avatar; otherwise it must be an
/// `mxc://server/media` URI.
fn validate_avatar_url(url: Option<&str>) -> ApiResult<Option<&str>> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let valid = url.len() <= MAX_AVATAR_URL_LEN
        && url.strip_prefix("mxc://").is_some_and(|rest| {
            rest.split_once('/').is_some_and(|(server, media)| {
                !server.is_empty()
                    && !media.is_empty()
                    && !media.contains('/')
                    && rest.bytes().all(|b| b.is_ascii_graphic())
            })
        });
    if !valid {
        return Err(ApiError::invalid_param(
            "avatar_url must be an mxc:// URI of at most 1000 characters, or empty",
        ));
    }
    Ok(Some(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avatar_urls() {
        assert_eq!(validate_avatar_url(None).unwrap(), None);
        assert_eq!(validate_avatar_url(Some("")).unwrap(), None);
        assert_eq!(
            validate_avatar_url(Some("mxc://example.org/abc")).unwrap(),
            Some("mxc://example.org/abc")
        );
        for bad in [
            "https://example.org/a.png",
            "mxc://example.org",
            "mxc:///abc",
            "mxc://example.org/a/b",
            "mxc://exa mple.org/abc",
        ] {
            assert!(validate_avatar_url(Some(bad)).is_err(), "{bad}");
        }
        assert!(validate_avatar_url(Some(&format!("mxc://a/{}", "x".repeat(1000)))).is_err());
    }

    #[test]
    fn displaynames() {
        assert_eq!(validate_displayname(Some("")).unwrap(), None);
        assert_eq!(validate_displayname(Some("Alice")).unwrap(), Some("Alice"));
        assert!(validate_displayname(Some(&"é".repeat(256))).is_ok());
        assert!(validate_displayname(Some(&"é".repeat(257))).is_err());
        assert!(validate_displayname(Some("a\nb")).is_err());
    }
}
