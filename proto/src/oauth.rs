//! The OAuth 2.0 API of Matrix (MSC3861 and its parts): the server metadata
//! (MSC2965, RFC 8414), client registration (MSC2966, RFC 7591), the token
//! endpoint's requests and answers (RFC 6749, RFC 7636, RFC 8628), the
//! errors of RFC 6749 section 5.2, and the Matrix scopes (MSC2967), in both
//! their stable and unstable spellings.

use serde::{Deserialize, Serialize};

/// `GET /_matrix/client/v1/auth_metadata`: where a client finds everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerMetadata {
    /// The authorization server's identifier (this server's base URL).
    pub issuer: String,
    /// The page the person signs in and consents on.
    pub authorization_endpoint: String,
    /// Codes, refresh tokens and device codes are exchanged here.
    pub token_endpoint: String,
    /// Dynamic client registration.
    pub registration_endpoint: String,
    /// Token revocation (RFC 7009).
    pub revocation_endpoint: String,
    /// The device authorization grant (RFC 8628).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<String>,
    /// Where a person manages their account and sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_management_uri: Option<String>,
    /// The `action` values the account management page understands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account_management_actions_supported: Vec<String>,
    /// Always `["code"]`.
    pub response_types_supported: Vec<String>,
    /// `query` and `fragment`.
    pub response_modes_supported: Vec<String>,
    /// The grants this server accepts.
    pub grant_types_supported: Vec<String>,
    /// Always `["S256"]`: the plain method is refused.
    pub code_challenge_methods_supported: Vec<String>,
    /// Always `["none"]`: Matrix clients are public clients.
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Scopes a client may ask for (patterns, as in the spec).
    pub scopes_supported: Vec<String>,
    /// `prompt` values understood.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prompt_values_supported: Vec<String>,
}

/// A client's registration request (and, with its id, the answer).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientMetadata {
    /// The client's web site; every other URL must be on its host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// The client's name, shown on the consent page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Its logo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
    /// Its terms of service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tos_uri: Option<String>,
    /// Its privacy policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_uri: Option<String>,
    /// Where codes may be sent: compared exactly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// `web` (the default) or `native`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    /// The grants it will use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grant_types: Vec<String>,
    /// `["code"]` when it uses the authorization code grant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_types: Vec<String>,
    /// Must be `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRegistration {
    /// The id to use from now on.
    pub client_id: String,
    /// When it was issued, in seconds since the epoch.
    pub client_id_issued_at: i64,
    /// The metadata as registered.
    #[serde(flatten)]
    pub metadata: ClientMetadata,
}

/// A successful token answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// A Matrix access token, good on every client-server endpoint.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The token to get the next access token with (rotated on each use).
    pub refresh_token: String,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// The device authorization answer (RFC 8628 section 3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceAuthorization {
    /// What the client polls the token endpoint with.
    pub device_code: String,
    /// What the person types on the other screen.
    pub user_code: String,
    /// Where they type it.
    pub verification_uri: String,
    /// The same with the code filled in (for a QR code).
    pub verification_uri_complete: String,
    /// Seconds until both codes expire.
    pub expires_in: u64,
    /// Seconds the client waits between polls.
    pub interval: u64,
}

/// An OAuth error answer (RFC 6749 section 5.2): `error` is one of the
/// RFC's codes, `error_description` says what was wrong for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_grant`, …
    pub error: String,
    /// A sentence for the developer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// The API scope, stable spelling (MSC2967).
pub const SCOPE_API: &str = "urn:matrix:client:api:*";
/// The API scope, unstable spelling.
pub const SCOPE_API_UNSTABLE: &str = "urn:matrix:org.matrix.msc2967.client:api:*";
/// The device scope's prefix, stable spelling.
pub const SCOPE_DEVICE: &str = "urn:matrix:client:device:";
/// The device scope's prefix, unstable spelling.
pub const SCOPE_DEVICE_UNSTABLE: &str = "urn:matrix:org.matrix.msc2967.client:device:";

/// One scope token a Matrix client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Full access to the client-server API.
    Api,
    /// The device the session is, by id.
    Device(String),
    /// OpenID Connect's `openid`: accepted and ignored (no ID token here).
    OpenId,
}

impl Scope {
    /// Parses one space-separated token; None for a scope this server
    /// does not grant.
    pub fn parse(token: &str) -> Option<Scope> {
        if token == SCOPE_API || token == SCOPE_API_UNSTABLE {
            return Some(Scope::Api);
        }
        if token == "openid" {
            return Some(Scope::OpenId);
        }
        [SCOPE_DEVICE, SCOPE_DEVICE_UNSTABLE]
            .iter()
            .find_map(|prefix| token.strip_prefix(prefix))
            .filter(|id| valid_device_id(id))
            .map(|id| Scope::Device(id.to_owned()))
    }
}

/// MSC2967: a device id in a scope is at least 10 characters of
/// `[A-Za-z0-9-._~]`; this server takes up to 255.
fn valid_device_id(id: &str) -> bool {
    (10..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A whole `scope` parameter: the device it names, if any, and whether it
/// asks for the API. Err with the first scope not granted here.
pub fn parse_scope(scope: &str) -> Result<(bool, Option<String>), String> {
    let mut api = false;
    let mut device = None;
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        match Scope::parse(token) {
            Some(Scope::Api) => api = true,
            Some(Scope::Device(id)) if device.is_none() => device = Some(id),
            Some(Scope::Device(_)) => return Err(format!("{token} (a second device)")),
            Some(Scope::OpenId) => {}
            None => return Err(token.to_owned()),
        }
    }
    Ok((api, device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_in_both_spellings() {
        let stable = "urn:matrix:client:api:* urn:matrix:client:device:ABCDEFGHIJ";
        assert_eq!(parse_scope(stable), Ok((true, Some("ABCDEFGHIJ".into()))));
        let unstable = "openid urn:matrix:org.matrix.msc2967.client:api:* \
                        urn:matrix:org.matrix.msc2967.client:device:abc-def.g~h";
        assert_eq!(
            parse_scope(unstable),
            Ok((true, Some("abc-def.g~h".into())))
        );
        assert_eq!(parse_scope("openid"), Ok((false, None)));
        assert!(parse_scope("urn:matrix:client:device:short").is_err());
        assert!(parse_scope("urn:matrix:client:device:ABCDEFGHIJ/x").is_err());
        assert!(parse_scope("email").is_err());
        let two = "urn:matrix:client:device:ABCDEFGHIJ urn:matrix:client:device:KLMNOPQRST";
        assert!(parse_scope(two).is_err());
    }

    #[test]
    fn registration_round_trips() {
        let example = serde_json::json!({
            "client_id": "01ABC",
            "client_id_issued_at": 1_800_000_000,
            "client_uri": "https://app.example.org/",
            "client_name": "App",
            "redirect_uris": ["https://app.example.org/callback"],
            "application_type": "web",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        });
        let parsed: ClientRegistration = crate::round_trip(&example);
        assert_eq!(parsed.metadata.redirect_uris.len(), 1);
    }
}
