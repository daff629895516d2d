//! Who is asking: access tokens, how they are stored, and the signed-in
//! device they stand for. The HTTP layer reads the token from a request;
//! everything after that is here.

use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::service::Context;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth {
    pub user_id: String,
    pub device_id: String,
    pub is_admin: bool,
}

const LAST_SEEN_GRANULARITY_MS: i64 = 5 * 60 * 1000;

/// Tokens are stored as SHA-256 digests: a database leak yields no usable
/// token, and looking up by digest leaks nothing through timing.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The live session an access token belongs to, if any; an error for a
/// token its identity provider logged out softly.
pub async fn authenticate(state: &Context, token: &str) -> Result<Option<Auth>, ApiError> {
    // The same connection stamps the device's last-seen time below.
    let mut conn = state.store.autocommit().await?;
    let found = crate::store::users::user_for_token(&mut conn, &hash_token(token)).await?;
    let Some(found) = found.filter(|f| !f.deactivated) else {
        return Ok(None);
    };
    if found.soft_logout {
        return Err(ApiError::soft_logged_out());
    }
    let now = state.now_ms();
    if found.expires_ts.is_some_and(|at| at <= now) {
        // Soft: the client keeps its device and refreshes the token.
        return Err(ApiError::new(
            crate::error::ErrCode::UnknownToken,
            "The access token has expired; use the refresh token",
        )
        .with("soft_logout", serde_json::Value::Bool(true)));
    }
    // "Last seen" for the device list, coarse on purpose: at most one
    // write per device every few minutes, and no IP address kept.
    if found
        .last_seen_ts
        .is_none_or(|seen| now - seen > LAST_SEEN_GRANULARITY_MS)
    {
        crate::store::devices::touch(&mut conn, &found.user_id, &found.device_id, now).await?;
    }
    Ok(Some(Auth {
        user_id: found.user_id,
        device_id: found.device_id,
        is_admin: found.is_admin,
    }))
}
