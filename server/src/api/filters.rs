//! Stored `/sync` filters. Clients upload one at start-up and then refer to
//! it by id; the filter itself is applied by the sync code.

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body};
use crate::service::Context;
use crate::store::account_data;

const MAX_FILTER_LEN: usize = 64 * 1024;

fn check_owner(auth: &Auth, user_id: &str) -> ApiResult<()> {
    if auth.user_id != user_id {
        return Err(ApiError::forbidden("You may only access your own filters"));
    }
    Ok(())
}

/// `POST /_matrix/client/v3/user/{userId}/filter`
pub(super) async fn create(
    State(state): State<Context>,
    auth: Auth,
    Path(user_id): Path<String>,
    Body(filter): Body<Value>,
) -> ApiResult<Json<Value>> {
    check_owner(&auth, &user_id)?;
    if !filter.is_object() {
        return Err(ApiError::bad_json("A filter must be a JSON object"));
    }
    if filter.to_string().len() > MAX_FILTER_LEN {
        return Err(ApiError::too_large("A filter may be at most 64 KiB"));
    }
    // Checked here, once: /sync reads stored filters without refusing them.
    crate::service::sync::filter::validate(&filter)?;
    let mut tx = state.store.write().await?;
    let filter_id = account_data::put_filter(tx.conn(), &user_id, &filter).await?;
    tx.commit().await?;
    Ok(Json(json!({ "filter_id": filter_id })))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
pub(super) async fn fetch(
    State(state): State<Context>,
    auth: Auth,
    Path((user_id, filter_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    check_owner(&auth, &user_id)?;
    account_data::get_filter(&mut *state.store.read().await?, &user_id, &filter_id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("Filter not found"))
}
