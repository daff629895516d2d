//! Cloister as the OAuth 2.0 authorization server of the Matrix spec
//! (MSC3861: MSC2964 authorization code grant with PKCE, MSC2965 server
//! metadata, MSC2966 dynamic client registration, MSC2967 scopes, RFC 7009
//! revocation). What Element X signs in with: the person signs in on
//! Cloister's own page (password or LDAP), consents, and the app exchanges
//! the code for an ordinary Matrix access token that expires, with a
//! refresh token that rotates.
//!
//! Every piece of flow state is in the database, so any node can answer
//! any step. Secrets are stored as SHA-256 digests and compared by lookup.

pub mod account;
pub mod authorize;
pub mod clients;
pub mod device;
pub mod tokens;

use cloister_proto::oauth::ServerMetadata;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::service::Context;

/// Where the endpoints live, under the server's base URL.
pub const AUTHORIZE_PATH: &str = "_cloister/oauth2/authorize";
pub const TOKEN_PATH: &str = "_cloister/oauth2/token";
pub const REGISTER_PATH: &str = "_cloister/oauth2/register";
pub const REVOKE_PATH: &str = "_cloister/oauth2/revoke";
pub const DEVICE_PATH: &str = "_cloister/oauth2/device";

/// An answer of RFC 6749 section 5.2 (or RFC 7591's registration errors).
#[derive(Debug)]
pub struct OAuthFailure {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthFailure {
    pub fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = if error == "invalid_client" { 401 } else { 400 };
        OAuthFailure {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

/// Database and other internal failures: a 500 without details.
impl From<sqlx::Error> for OAuthFailure {
    fn from(e: sqlx::Error) -> Self {
        tracing::error!(error = %e, "oauth: database error");
        OAuthFailure {
            status: 500,
            error: "server_error",
            description: "internal error".into(),
        }
    }
}

impl From<ApiError> for OAuthFailure {
    fn from(e: ApiError) -> Self {
        let status = e.status.as_u16();
        OAuthFailure {
            status: if status >= 500 { 500 } else { 400 },
            error: if status >= 500 {
                "server_error"
            } else {
                "invalid_request"
            },
            description: e.message.into_owned(),
        }
    }
}

pub type OAuthResult<T> = Result<T, OAuthFailure>;

pub fn enabled(state: &Context) -> bool {
    state.config.oauth.enabled
}

/// `auth_metadata`: everything a client needs, from the base URL.
pub fn metadata(state: &Context) -> ServerMetadata {
    let base = state.config.public_baseurl();
    let at = |path: &str| format!("{base}{path}");
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    ServerMetadata {
        issuer: base.clone(),
        authorization_endpoint: at(AUTHORIZE_PATH),
        token_endpoint: at(TOKEN_PATH),
        registration_endpoint: at(REGISTER_PATH),
        revocation_endpoint: at(REVOKE_PATH),
        device_authorization_endpoint: Some(at(DEVICE_PATH)),
        account_management_uri: Some(at(account::ACCOUNT_PATH)),
        account_management_actions_supported: strings(&[account::CROSS_SIGNING_RESET]),
        response_types_supported: strings(&["code"]),
        response_modes_supported: strings(&["query", "fragment"]),
        grant_types_supported: strings(&[
            "authorization_code",
            "refresh_token",
            device::GRANT_TYPE,
        ]),
        code_challenge_methods_supported: strings(&["S256"]),
        token_endpoint_auth_methods_supported: strings(&["none"]),
        scopes_supported: strings(&[
            "openid",
            cloister_proto::oauth::SCOPE_API,
            "urn:matrix:client:device:*",
            cloister_proto::oauth::SCOPE_API_UNSTABLE,
            "urn:matrix:org.matrix.msc2967.client:device:*",
        ]),
        prompt_values_supported: Vec::new(),
    }
}

/// A fresh secret: 256 random bits, URL-safe.
pub fn secret() -> String {
    crate::ids::random_string(43)
}

/// How secrets are stored and looked up.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Forgets authorization requests that expired; for the background jobs.
pub async fn purge_expired(state: &Context) -> Result<u64, sqlx::Error> {
    let mut w = state.store.autocommit().await?;
    let now = state.now_ms();
    let grants = crate::store::oauth::purge_expired_grants(&mut w, now).await?;
    Ok(grants + crate::store::oauth_device::purge_expired(&mut w, now).await?)
}
