//! The `[oauth]` section: Cloister as the OAuth 2.0 authorization server
//! of the Matrix spec (what Element X signs in with).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuth {
    /// Offer the OAuth 2.0 API (`auth_metadata` and the endpoints it
    /// names). Off: those answer 404 and clients use `/login`.
    pub enabled: bool,
    /// Hosts whose clients may register (a client's `client_uri` host, or
    /// a subdomain of one). Empty: any client may register.
    pub allowed_client_hosts: Vec<String>,
    /// Lifetime of an access token from the token endpoint, in seconds.
    pub access_token_lifetime_secs: u64,
    /// How long a refresh token just rotated is still accepted once more
    /// (an answer lost on the way), in seconds. Used later, it signs the
    /// session out: someone else has it.
    pub refresh_reuse_grace_secs: u64,
}

impl Default for OAuth {
    fn default() -> Self {
        OAuth {
            enabled: true,
            allowed_client_hosts: Vec::new(),
            access_token_lifetime_secs: 300,
            refresh_reuse_grace_secs: 60,
        }
    }
}

impl OAuth {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(60..=24 * 3600).contains(&self.access_token_lifetime_secs) {
            return Err("oauth.access_token_lifetime_secs must be 60 to 86400".into());
        }
        if self.refresh_reuse_grace_secs > 600 {
            return Err("oauth.refresh_reuse_grace_secs must be at most 600".into());
        }
        if let Some(bad) = self
            .allowed_client_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ':', ' ']))
        {
            return Err(format!(
                "oauth.allowed_client_hosts: {bad:?} is not a host name"
            ));
        }
        Ok(())
    }
}
