//! Stored `/sync` filters. Clients upload one at start-up and then refer to
//! it by id; the filter itself is applied by the sync code.

use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::service::Context;
use crate::store::account_data;

const MAX_FILTER_LEN: usize = 64 * 1024;

fn check_owner(requester: &str, user_id: &str) -> ApiResult<()> {
    if requester != user_id {
        return Err(ApiError::forbidden("You may only access your own filters"));
    }
    Ok(())
}

/// Stores a filter of `user_id` at `requester`'s request (who must be that
/// user); returns its id.
pub async fn create(
    state: &Context,
    requester: &str,
    user_id: &str,
    filter: &Value,
) -> ApiResult<String> {
    check_owner(requester, user_id)?;
    if !filter.is_object() {
        return Err(ApiError::bad_json("A filter must be a JSON object"));
    }
    if filter.to_string().len() > MAX_FILTER_LEN {
        return Err(ApiError::too_large("A filter may be at most 64 KiB"));
    }
    // Checked here, once: /sync reads stored filters without refusing them.
    crate::service::sync::filter::validate(filter)?;
    let mut tx = state.store.write().await?;
    let filter_id = account_data::put_filter(&mut tx, user_id, filter).await?;
    tx.commit().await?;
    Ok(filter_id)
}

/// A stored filter of `user_id`, if there is one by that id.
pub async fn find(state: &Context, user_id: &str, filter_id: &str) -> ApiResult<Option<Value>> {
    Ok(account_data::get_filter(&mut *state.store.read().await?, user_id, filter_id).await?)
}

/// A filter of `user_id`, read by `requester` (who must be that user).
pub async fn get(
    state: &Context,
    requester: &str,
    user_id: &str,
    filter_id: &str,
) -> ApiResult<Value> {
    check_owner(requester, user_id)?;
    find(state, user_id, filter_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Filter not found"))
}
