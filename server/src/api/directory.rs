//! Finding people and rooms: the user directory, the public room directory
//! and space hierarchies.
//!
//! Every endpoint here needs an access token, `GET /publicRooms` and
//! `GET /directory/list/room` included, which the spec lets servers serve
//! without one: which rooms an institution publishes, and their names, are
//! for its users, not for anyone who can reach the server.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::EmptyResponse;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::directory::{self, ListRequest, RoomSummary};
use crate::service::spaces::{self, HierarchyRequest, HierarchyRoom};
use crate::service::{user_directory, Context};

#[derive(Deserialize)]
pub(super) struct SearchBody {
    search_term: String,
    limit: Option<i64>,
}

#[derive(Serialize)]
pub(super) struct FoundUser {
    #[serde(skip_serializing_if = "Option::is_none")]
    avatar_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    /// Imported by directory sign-in where the operator configured it; not
    /// in the spec, so namespaced.
    #[serde(
        rename = "org.cloister.department",
        skip_serializing_if = "Option::is_none"
    )]
    department: Option<String>,
    #[serde(rename = "org.cloister.mail", skip_serializing_if = "Option::is_none")]
    mail: Option<String>,
    user_id: String,
}

#[derive(Serialize)]
pub(super) struct SearchResponse {
    limited: bool,
    results: Vec<FoundUser>,
}

/// `POST /_matrix/client/v3/user_directory/search`
pub(super) async fn search_users(
    State(state): State<Context>,
    auth: Auth,
    Body(body): Body<SearchBody>,
) -> ApiResult<Json<SearchResponse>> {
    let found =
        user_directory::search(&state, &auth.user_id, &body.search_term, body.limit).await?;
    Ok(Json(SearchResponse {
        limited: found.limited,
        results: found
            .results
            .into_iter()
            .map(|f| FoundUser {
                avatar_url: f.avatar_url,
                display_name: f.display_name,
                department: f.attributes.department,
                mail: f.attributes.mail,
                user_id: f.user_id,
            })
            .collect(),
    }))
}

#[derive(Deserialize)]
pub(super) struct PublicRoomsQuery {
    limit: Option<i64>,
    since: Option<String>,
    server: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct PublicRoomsFilter {
    generic_search_term: Option<String>,
    room_types: Option<Vec<Option<String>>>,
}

#[derive(Deserialize)]
pub(super) struct PublicRoomsBody {
    limit: Option<i64>,
    since: Option<String>,
    filter: Option<PublicRoomsFilter>,
    // Accepted for clients that send them; there are no other networks.
    #[allow(dead_code)]
    include_all_networks: Option<bool>,
    #[allow(dead_code)]
    third_party_instance_id: Option<String>,
}

#[derive(Serialize)]
pub(super) struct PublicRoomsResponse {
    chunk: Vec<RoomSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_batch: Option<String>,
    total_room_count_estimate: i64,
}

/// The directory of another server would need federation.
fn only_this_server(state: &Context, server: Option<&str>) -> ApiResult<()> {
    match server {
        Some(s) if s != state.server_name() => Err(ApiError::invalid_param(
            "This server does not federate; it lists only its own rooms",
        )),
        _ => Ok(()),
    }
}

async fn public_rooms(
    state: &Context,
    req: ListRequest<'_>,
) -> ApiResult<Json<PublicRoomsResponse>> {
    let page = directory::list(state, req).await?;
    Ok(Json(PublicRoomsResponse {
        chunk: page.chunk,
        next_batch: page.next_batch,
        total_room_count_estimate: page.total_room_count_estimate,
    }))
}

/// `GET /_matrix/client/v3/publicRooms`
pub(super) async fn get_public_rooms(
    State(state): State<Context>,
    _auth: Auth,
    Query(q): Query<PublicRoomsQuery>,
) -> ApiResult<Json<PublicRoomsResponse>> {
    only_this_server(&state, q.server.as_deref())?;
    let req = ListRequest {
        limit: q.limit,
        since: q.since.as_deref(),
        ..ListRequest::default()
    };
    public_rooms(&state, req).await
}

/// `POST /_matrix/client/v3/publicRooms`
pub(super) async fn post_public_rooms(
    State(state): State<Context>,
    _auth: Auth,
    Query(q): Query<PublicRoomsQuery>,
    Body(body): Body<PublicRoomsBody>,
) -> ApiResult<Json<PublicRoomsResponse>> {
    only_this_server(&state, q.server.as_deref())?;
    let filter = body.filter.unwrap_or_default();
    let req = ListRequest {
        limit: body.limit,
        since: body.since.as_deref(),
        search_term: filter.generic_search_term.as_deref(),
        room_types: filter.room_types,
    };
    public_rooms(&state, req).await
}

#[derive(Serialize, Deserialize)]
pub(super) struct Visibility {
    #[serde(default = "public")]
    visibility: String,
}

fn public() -> String {
    "public".into()
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
pub(super) async fn get_visibility(
    State(state): State<Context>,
    _auth: Auth,
    Path(room_id): Path<String>,
) -> ApiResult<Json<Visibility>> {
    let visibility = directory::visibility(&state, &room_id).await?;
    Ok(Json(Visibility {
        visibility: visibility.into(),
    }))
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
pub(super) async fn put_visibility(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Body(body): Body<Visibility>,
) -> ApiResult<Json<EmptyResponse>> {
    directory::set_visibility(&state, &auth.user_id, &room_id, &body.visibility).await?;
    Ok(Json(EmptyResponse {}))
}

#[derive(Deserialize)]
pub(super) struct HierarchyQuery {
    from: Option<String>,
    limit: Option<i64>,
    max_depth: Option<i64>,
    #[serde(default)]
    suggested_only: bool,
}

#[derive(Serialize)]
pub(super) struct HierarchyResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_batch: Option<String>,
    rooms: Vec<HierarchyRoom>,
}

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`
pub(super) async fn hierarchy(
    State(state): State<Context>,
    auth: Auth,
    Path(room_id): Path<String>,
    Query(q): Query<HierarchyQuery>,
) -> ApiResult<Json<HierarchyResponse>> {
    let req = HierarchyRequest {
        from: q.from.as_deref(),
        limit: q.limit,
        max_depth: q.max_depth,
        suggested_only: q.suggested_only,
    };
    let page = spaces::hierarchy(&state, &auth.user_id, &room_id, req).await?;
    Ok(Json(HierarchyResponse {
        next_batch: page.next_batch,
        rooms: page.rooms,
    }))
}
