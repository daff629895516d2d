//! User profiles: display name and avatar. A change is repeated in the
//! user's membership events, so rooms show it without fetching profiles.

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::users::{self, ProfileField};

const MAX_DISPLAYNAME_LEN: usize = 256;
const MAX_AVATAR_URL_LEN: usize = 1000;

pub struct Profile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// The profile of an active account; 404 for unknown and deactivated ones
/// alike.
pub async fn get(ctx: &Context, user_id: &str) -> ApiResult<Profile> {
    let user = users::get(&mut *ctx.store.read().await?, user_id)
        .await?
        .filter(|u| !u.deactivated)
        .ok_or_else(|| ApiError::not_found("Profile not found"))?;
    Ok(Profile {
        displayname: user.displayname,
        avatar_url: user.avatar_url,
    })
}

/// Sets (or, with `None` or "", clears) `target`'s display name.
pub async fn set_displayname(
    ctx: &Context,
    user_id: &str,
    target: &str,
    name: Option<&str>,
) -> ApiResult<()> {
    let value = validate_displayname(name)?;
    set_field(ctx, user_id, target, ProfileField::Displayname, value).await
}

/// Sets (or, with `None` or "", clears) `target`'s avatar.
pub async fn set_avatar_url(
    ctx: &Context,
    user_id: &str,
    target: &str,
    url: Option<&str>,
) -> ApiResult<()> {
    let value = validate_avatar_url(url)?;
    set_field(ctx, user_id, target, ProfileField::AvatarUrl, value).await
}

async fn set_field(
    ctx: &Context,
    user_id: &str,
    target: &str,
    field: ProfileField,
    value: Option<&str>,
) -> ApiResult<()> {
    if target != user_id {
        return Err(ApiError::forbidden("You may only change your own profile"));
    }
    let mut tx = ctx.store.write().await?;
    users::set_profile_field(&mut tx, user_id, field, value).await?;
    tx.commit().await?;
    crate::service::rooms::propagate_profile(ctx, user_id).await
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
