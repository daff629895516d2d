//! Stored `/sync` filters (`service::filters` holds the rules).

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiResult;
use crate::extract::{Auth, Body};
use crate::service::{filters, Context};

#[derive(Serialize)]
pub(super) struct CreateFilterResponse {
    filter_id: String,
}

/// `POST /_matrix/client/v3/user/{userId}/filter`
pub(super) async fn create(
    State(state): State<Context>,
    auth: Auth,
    Path(user_id): Path<String>,
    Body(filter): Body<Value>,
) -> ApiResult<Json<CreateFilterResponse>> {
    let filter_id = filters::create(&state, &auth.user_id, &user_id, &filter).await?;
    Ok(Json(CreateFilterResponse { filter_id }))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub(super) async fn fetch(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, filter_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        filters::get(&state, &auth.user_id, &user_id, &filter_id).await?,
    ))
}
