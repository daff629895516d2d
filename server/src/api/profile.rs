//! User profiles: display name and avatar.
//!
//! Profile lookups require an access token: on a server whose point is
//! privacy, who is registered here is not public information.

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::EmptyResponse;
use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::{profile, Context};

/// Fields the user has not set are omitted. In alphabetical order, as
/// serde_json orders map keys, so the output is the same byte for byte as
/// when it was built as a map.
#[derive(Serialize)]
pub(super) struct ProfileResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    displayname: Option<String>,
}

#[derive(Serialize)]
pub(super) struct DisplaynameResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    displayname: Option<String>,
}

#[derive(Serialize)]
pub(super) struct AvatarUrlResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
}

/// `GET /_matrix/client/v3/profile/{userId}`
pub(super) async fn get_profile(
    State(state): State<Context>,
    _auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<ProfileResponse>> {
    let profile = profile::get(&state, &user_id).await?;
    Ok(Json(ProfileResponse {
        avatar_url: profile.avatar_url,
        displayname: profile.displayname,
    }))
}

/// `GET /_matrix/client/v3/profile/{userId}/displayname`
pub(super) async fn get_displayname(
    State(state): State<Context>,
    _auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<DisplaynameResponse>> {
    let profile = profile::get(&state, &user_id).await?;
    Ok(Json(DisplaynameResponse {
        displayname: profile.displayname,
    }))
}

/// `GET /_matrix/client/v3/profile/{userId}/avatar_url`
pub(super) async fn get_avatar_url(
    State(state): State<Context>,
    _auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Json<AvatarUrlResponse>> {
    let profile = profile::get(&state, &user_id).await?;
    Ok(Json(AvatarUrlResponse {
        avatar_url: profile.avatar_url,
    }))
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
) -> ApiResult<Json<EmptyResponse>> {
    let name = body.displayname.as_deref();
    profile::set_displayname(&state, &auth.user_id, &user_id, name).await?;
    Ok(Json(EmptyResponse {}))
}

/// `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
pub(super) async fn put_avatar_url(
    State(state): State<Context>,
    auth: Auth,
    Path(user_id): Path<String>,
    Body(body): Body<AvatarUrlBody>,
) -> ApiResult<Json<EmptyResponse>> {
    let url = body.avatar_url.as_deref();
    profile::set_avatar_url(&state, &auth.user_id, &user_id, url).await?;
    Ok(Json(EmptyResponse {}))
}
