//! Dynamic client registration (MSC2966, RFC 7591): what a client must say
//! about itself, and the operator's policy on who may register.
//!
//! Every URL a client names must be on its `client_uri`'s host (or a
//! subdomain), so the consent page's "App at example.org" is true of where
//! the code goes. Native apps may instead use a loopback redirect (any
//! port) or a private-use scheme named after that host reversed.

use cloister_proto::oauth::{ClientMetadata, ClientRegistration};
use url::Url;

use super::{OAuthFailure, OAuthResult};
use crate::service::Context;
use crate::store::oauth as store;

/// Limits on what a registration may carry.
const MAX_REDIRECT_URIS: usize = 10;
const MAX_URL_LEN: usize = 2048;
const MAX_NAME_LEN: usize = 200;

fn bad(what: impl Into<String>) -> OAuthFailure {
    OAuthFailure::new("invalid_client_metadata", what)
}

fn bad_redirect(what: impl Into<String>) -> OAuthFailure {
    OAuthFailure::new("invalid_redirect_uri", what)
}

/// `host` is `base` or a subdomain of it.
fn on_host(host: &str, base: &str) -> bool {
    host == base
        || host
            .strip_suffix(base)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn parse_https(field: &str, url: &str) -> OAuthResult<Url> {
    if url.len() > MAX_URL_LEN {
        return Err(bad(format!("{field} is too long")));
    }
    let parsed = Url::parse(url).map_err(|_| bad(format!("{field} is not a URL")))?;
    if parsed.scheme() != "https" || !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad(format!(
            "{field} must be an https URL without credentials"
        )));
    }
    Ok(parsed)
}

fn is_loopback(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

fn check_redirect(uri: &str, host: &str, native: bool) -> OAuthResult<()> {
    if uri.len() > MAX_URL_LEN {
        return Err(bad_redirect("a redirect URI is too long"));
    }
    let url = Url::parse(uri).map_err(|_| bad_redirect(format!("{uri} is not a URL")))?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad_redirect(format!(
            "{uri} must have no fragment or credentials"
        )));
    }
    let ok = match url.scheme() {
        "https" => url.host_str().is_some_and(|h| on_host(h, host)),
        "http" => native && url.host_str().is_some_and(is_loopback),
        scheme => {
            // A private-use scheme: the client's host reversed, e.g.
            // `org.example.app:/callback` for app.example.org.
            let reversed: Vec<&str> = host.split('.').rev().collect();
            native && scheme.starts_with(&reversed.join(".")) && scheme.contains('.')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(bad_redirect(format!(
            "{uri} is not allowed: web apps redirect to https on {host}, native apps also to \
             http://localhost or a scheme named after {host} reversed"
        )))
    }
}

/// Checks a registration request and the operator's policy.
pub fn validate(state: &Context, m: &ClientMetadata) -> OAuthResult<()> {
    let client_uri = m
        .client_uri
        .as_deref()
        .ok_or_else(|| bad("client_uri is required"))?;
    let client = parse_https("client_uri", client_uri)?;
    let host = client
        .host_str()
        .ok_or_else(|| bad("client_uri has no host"))?
        .to_ascii_lowercase();
    let allowed = &state.config.oauth.allowed_client_hosts;
    if !allowed.is_empty() && !allowed.iter().any(|a| on_host(&host, a)) {
        return Err(bad(format!(
            "this server's operator does not allow apps from {host} to register"
        )));
    }
    for (field, url) in [
        ("logo_uri", &m.logo_uri),
        ("tos_uri", &m.tos_uri),
        ("policy_uri", &m.policy_uri),
    ] {
        if let Some(url) = url {
            let parsed = parse_https(field, url)?;
            if !parsed.host_str().is_some_and(|h| on_host(h, &host)) {
                return Err(bad(format!("{field} must be on {host}")));
            }
        }
    }
    if m.client_name
        .as_ref()
        .is_some_and(|n| n.len() > MAX_NAME_LEN)
    {
        return Err(bad("client_name is too long"));
    }
    let native = match m.application_type.as_deref() {
        None | Some("web") => false,
        Some("native") => true,
        Some(other) => return Err(bad(format!("application_type {other} is unknown"))),
    };
    if m.token_endpoint_auth_method
        .as_deref()
        .is_some_and(|a| a != "none")
    {
        return Err(bad(
            "token_endpoint_auth_method must be none: Matrix clients are public",
        ));
    }
    let known = [
        "authorization_code",
        "refresh_token",
        super::device::GRANT_TYPE,
    ];
    if let Some(g) = m.grant_types.iter().find(|g| !known.contains(&g.as_str())) {
        return Err(bad(format!("grant type {g} is not offered here")));
    }
    if m.response_types.iter().any(|r| r != "code") {
        return Err(bad("only the code response type is offered"));
    }
    // A client of the device grant alone never redirects anywhere.
    let redirects =
        m.grant_types.is_empty() || m.grant_types.iter().any(|g| g == "authorization_code");
    if (redirects && m.redirect_uris.is_empty()) || m.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad_redirect(format!(
            "give 1 to {MAX_REDIRECT_URIS} redirect_uris"
        )));
    }
    for uri in &m.redirect_uris {
        check_redirect(uri, &host, native)?;
    }
    Ok(())
}

/// Registers a client; the answer repeats what was registered.
pub async fn register(state: &Context, m: ClientMetadata) -> OAuthResult<ClientRegistration> {
    validate(state, &m)?;
    let client_id = crate::ids::random_string(26);
    let json = serde_json::to_string(&m).map_err(|e| bad(e.to_string()))?;
    let now = state.now_ms();
    let mut w = state.store.autocommit().await?;
    store::insert_client(&mut w, &client_id, &json, now).await?;
    tracing::info!(client = %client_id, "oauth client registered");
    Ok(ClientRegistration {
        client_id,
        client_id_issued_at: now / 1000,
        metadata: m,
    })
}

/// A registered client's metadata.
pub async fn get(state: &Context, client_id: &str) -> OAuthResult<Option<ClientMetadata>> {
    let json = store::client(&mut *state.store.read().await?, client_id).await?;
    json.map(|j| {
        serde_json::from_str(&j).map_err(|e| {
            tracing::error!(error = %e, "oauth: stored client metadata unreadable");
            OAuthFailure::new("server_error", "internal error")
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_the_clients_host() {
        let web = |u: &str| check_redirect(u, "app.example.org", false).is_ok();
        let native = |u: &str| check_redirect(u, "app.example.org", true).is_ok();
        assert!(web("https://app.example.org/cb"));
        assert!(web("https://login.app.example.org/cb"));
        assert!(!web("https://evilapp.example.org/cb"));
        assert!(!web("https://example.org/cb"));
        assert!(!web("http://app.example.org/cb"));
        assert!(!web("http://localhost:1234/cb"));
        assert!(!web("https://app.example.org/cb#frag"));
        assert!(native("http://localhost:1234/cb"));
        assert!(native("http://127.0.0.1/cb"));
        assert!(native("org.example.app:/callback"));
        assert!(!native("com.evil:/callback"));
        assert!(!web("org.example.app:/callback"));
    }
}
