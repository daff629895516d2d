//! Who is asking: access tokens, how they are stored, and the signed-in
//! device they stand for. The HTTP layer reads the token from a request;
//! everything after that is here.

use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::service::Context;
use crate::store::TokenLookup;

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
    let digest = hash_token(token);
    let mut may_reuse = true;
    loop {
        // A recent copy of the row, or the row (`store::token_cache`); the
        // rules below hold either way.
        let (found, read_now) = match state.store.token_owner(&digest, may_reuse).await? {
            TokenLookup::Kept(owner) => (owner, false),
            TokenLookup::Read(Some(owner)) => (owner, true),
            TokenLookup::Read(None) => return Ok(None),
        };
        if found.deactivated {
            return Ok(None);
        }
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
            if !read_now {
                // The copy may predate another request's stamp.
                may_reuse = false;
                continue;
            }
            let mut conn = state.store.autocommit().await?;
            crate::store::devices::touch(&mut conn, &found.user_id, &found.device_id, now).await?;
            // The copy holds the time before this stamp.
            state.store.forget_token(&digest);
        }
        return Ok(Some(Auth {
            user_id: found.user_id,
            device_id: found.device_id,
            is_admin: found.is_admin,
        }));
    }
}
