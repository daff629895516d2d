//! OpenID Connect sign-in (relying party): discovery, the authorization
//! code flow with PKCE, ID-token checks (issuer, audience, nonce, expiry
//! with leeway, signature — refetching the provider's keys once when a
//! token names a key we do not know), userinfo, and back-channel logout
//! tokens. Built on the `openidconnect` crate; only the logout token, which
//! that crate does not model, is checked here, with its key types.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKey, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::OAuth2TokenResponse;
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKey, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::config::Oidc;
use crate::service::sso::{Identity, ProviderRequest, SsoError};
use crate::service::Context;

/// How long a provider's discovery document and keys are used before they
/// are fetched again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches caused by unknown keys, so tokens
/// naming made-up keys cannot make us hammer the provider.
const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(10);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Logout tokens older than this (by `iat`) are refused.
const LOGOUT_TOKEN_MAX_AGE_S: i64 = 10 * 60;

/// The providers' discovery documents, fetched lazily and shared by all
/// requests of this node, and the HTTP client that talks to them.
pub struct OidcProviders {
    http: openidconnect::reqwest::Client,
    cache: Mutex<HashMap<String, Cached>>,
}

struct Cached {
    metadata: CoreProviderMetadata,
    fetched: Instant,
}

impl Default for OidcProviders {
    fn default() -> Self {
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects from the token endpoint would be an SSRF
            // gift; the spec needs none.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(HTTP_TIMEOUT)
            .build()
            .expect("a reqwest client with rustls");
        OidcProviders {
            http,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl OidcProviders {
    /// The provider's metadata (with its keys): cached, or fetched when
    /// stale, or when `refetch_older_than` says the cached copy is too old
    /// for this caller (a token named a key it does not have).
    async fn metadata(
        &self,
        provider: &Oidc,
        refetch_older_than: Option<Duration>,
    ) -> Result<CoreProviderMetadata, SsoError> {
        let mut cache = self.cache.lock().await;
        if let Some(cached) = cache.get(&provider.id) {
            let age = cached.fetched.elapsed();
            let fresh = age < METADATA_TTL && refetch_older_than.is_none_or(|min| age < min);
            if fresh {
                return Ok(cached.metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(provider.issuer.clone()).map_err(|_| SsoError::Internal)?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %provider.id, error = %e, "OIDC discovery failed");
                SsoError::Unreachable
            })?;
        cache.insert(
            provider.id.clone(),
            Cached {
                metadata: metadata.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(metadata)
    }
}

/// `<public_baseurl>_cloister/client/oidc/callback`, registered at the
/// provider as the redirect URI.
pub fn callback_url(state: &Context) -> String {
    format!(
        "{}_cloister/client/oidc/callback",
        state.config.public_baseurl()
    )
}

/// A client made from discovery: authorization endpoint known, token and
/// userinfo endpoints as the provider lists them.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn client(
    state: &Context,
    provider: &Oidc,
    metadata: CoreProviderMetadata,
) -> Result<Client, SsoError> {
    let secret = (!provider.client_secret.is_empty())
        .then(|| ClientSecret::new(provider.client_secret.clone()));
    let redirect = RedirectUrl::new(callback_url(state)).map_err(|_| SsoError::Internal)?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.client_id.clone()),
        secret,
    )
    .set_redirect_uri(redirect))
}

/// An authorization request (code flow, PKCE with S256, a fresh nonce).
pub async fn authorization_request(
    state: &Context,
    provider: &Oidc,
) -> Result<ProviderRequest, SsoError> {
    let metadata = state.oidc.metadata(provider, None).await?;
    let client = client(state, provider, metadata)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for scope in &provider.scopes {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, csrf, nonce) = request.url();
    Ok(ProviderRequest {
        url: url.to_string(),
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
    })
}

fn invalid(reason: &'static str) -> SsoError {
    SsoError::Invalid { reason }
}

fn claims_error(e: &ClaimsVerificationError) -> SsoError {
    match e {
        ClaimsVerificationError::InvalidNonce(_) => invalid("sso_wrong_nonce"),
        ClaimsVerificationError::Expired(_) => invalid("sso_expired"),
        ClaimsVerificationError::InvalidAudience(_) => invalid("sso_wrong_audience"),
        ClaimsVerificationError::InvalidIssuer(_) => invalid("sso_wrong_issuer"),
        ClaimsVerificationError::SignatureVerification(_) => invalid("sso_bad_signature"),
        _ => invalid("sso_invalid_id_token"),
    }
}

fn unknown_key(e: &ClaimsVerificationError) -> bool {
    matches!(
        e,
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)
    )
}

/// The verifier's "now": the server's clock minus the leeway, so a token
/// that expired less than `leeway` ago still passes (the crate has no
/// leeway of its own; ID tokens carry no `nbf` to check the other way).
fn verifier_now(state: &Context, provider: &Oidc) -> chrono::DateTime<chrono::Utc> {
    let leeway = provider.leeway.as_millis().unwrap_or(0);
    let ms = state.now_ms().saturating_sub(leeway);
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Finishes the code flow for `code`: exchanges it (with the PKCE
/// verifier), verifies the ID token against the nonce of this sign-in, and
/// returns who signed in.
pub async fn finish(
    state: &Context,
    provider: &Oidc,
    nonce: &str,
    pkce_verifier: &str,
    code: &str,
) -> Result<Identity, SsoError> {
    let metadata = state.oidc.metadata(provider, None).await?;
    let client = client(state, provider, metadata)?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| SsoError::Internal)?
        .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
        .request_async(&state.oidc.http)
        .await
        .map_err(|e| {
            tracing::warn!(provider = %provider.id, error = %e, "OIDC code exchange failed");
            SsoError::Provider("the code was not accepted".into())
        })?;
    let id_token = tokens.id_token().ok_or(invalid("sso_invalid_id_token"))?;
    let nonce = Nonce::new(nonce.to_owned());
    let now = verifier_now(state, provider);
    let verify = |client: &Client| {
        let verifier = client.id_token_verifier().set_time_fn(move || now);
        id_token.claims(&verifier, &nonce).cloned()
    };
    let claims = match verify(&client) {
        Err(e) if unknown_key(&e) => {
            // The provider rotated its keys since we fetched them. This token
            // came from the provider's token endpoint, not from whoever
            // calls us, so the fetch need not be throttled.
            let metadata = state.oidc.metadata(provider, Some(Duration::ZERO)).await?;
            verify(&self::client(state, provider, metadata)?)
        }
        other => other,
    }
    .map_err(|e| {
        tracing::info!(provider = %provider.id, error = %e, "ID token refused");
        claims_error(&e)
    })?;
    // The claims as sent, now that the token is verified: the crate's
    // typed claims drop the ones it does not know (`sid`, or a `upn` an
    // operator maps to the localpart).
    let id_token_text = id_token.to_string();
    let mut fields = id_token_text
        .split('.')
        .nth(1)
        .and_then(json_part)
        .ok_or(SsoError::Internal)?;
    if provider.userinfo {
        let info: CoreUserInfoClaims = client
            .user_info(
                tokens.access_token().clone(),
                Some(claims.subject().clone()),
            )
            .map_err(|_| SsoError::Internal)?
            .request_async(&state.oidc.http)
            .await
            .map_err(|e| {
                tracing::warn!(provider = %provider.id, error = %e, "OIDC userinfo failed");
                SsoError::Unreachable
            })?;
        if let (Value::Object(into), Ok(Value::Object(more))) =
            (&mut fields, serde_json::to_value(&info))
        {
            for (k, v) in more {
                into.entry(k).or_insert(v);
            }
        }
    }
    let claim = |name: &str| -> Option<String> {
        if name.is_empty() {
            return None;
        }
        fields.get(name).and_then(Value::as_str).map(str::to_owned)
    };
    Ok(Identity {
        issuer: provider.issuer.clone(),
        subject: claims.subject().as_str().to_owned(),
        session_id: claim("sid"),
        localpart: claim(&provider.localpart_claim),
        display_name: claim(&provider.display_name_claim),
        mail: claim(&provider.mail_claim),
    })
}

/// One base64url part of a compact JWT (header or claims), as JSON.
fn json_part(part: &str) -> Option<Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a verified logout token asks to end.
#[derive(Debug)]
pub struct LogoutRequest {
    pub issuer: String,
    pub subject: Option<String>,
    pub session_id: Option<String>,
}

/// Verifies a back-channel logout token (OpenID Connect Back-Channel
/// Logout 1.0, section 2.6): signed by a configured provider that accepts
/// back-channel logout, for our client id, recent, with the logout event,
/// a `sub` or `sid`, and no `nonce`.
pub async fn verify_logout_token(state: &Context, token: &str) -> Result<LogoutRequest, SsoError> {
    let bad = || invalid("sso_bad_logout_token");
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let header = json_part(header_b64).ok_or_else(bad)?;
    let claims = json_part(claims_b64).ok_or_else(bad)?;
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| bad())?;

    let issuer = claims.get("iss").and_then(Value::as_str).ok_or_else(bad)?;
    let provider = state
        .config
        .oidc
        .iter()
        .find(|p| p.issuer == issuer && p.backchannel_logout)
        .ok_or_else(bad)?;
    // Asymmetric algorithms only: "none" and the HMAC family are refused.
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(header.get("alg").cloned().unwrap_or(Value::Null))
            .map_err(|_| bad())?;
    if matches!(
        alg,
        CoreJwsSigningAlgorithm::None
            | CoreJwsSigningAlgorithm::HmacSha256
            | CoreJwsSigningAlgorithm::HmacSha384
            | CoreJwsSigningAlgorithm::HmacSha512
    ) {
        return Err(bad());
    }
    let kid = header.get("kid").and_then(Value::as_str);
    let message = format!("{header_b64}.{claims_b64}");
    let verify = |metadata: &CoreProviderMetadata| -> Result<(), SignatureVerificationError> {
        let keys: Vec<&CoreJsonWebKey> = metadata
            .jwks()
            .keys()
            .iter()
            .filter(|k| kid.is_none() || k.key_id().map(|id| id.as_str()) == kid)
            .collect();
        if keys.is_empty() {
            return Err(SignatureVerificationError::NoMatchingKey);
        }
        keys.iter()
            .find_map(|k| {
                k.verify_signature(&alg, message.as_bytes(), &signature)
                    .ok()
            })
            .ok_or(SignatureVerificationError::Other(
                "no key verifies it".into(),
            ))
    };
    let metadata = state.oidc.metadata(provider, None).await?;
    match verify(&metadata) {
        Ok(()) => {}
        Err(SignatureVerificationError::NoMatchingKey) => {
            // Anyone can post a logout token: at most one fetch per
            // REFETCH_MIN_INTERVAL for made-up key ids.
            let metadata = state
                .oidc
                .metadata(provider, Some(REFETCH_MIN_INTERVAL))
                .await?;
            verify(&metadata).map_err(|_| bad())?;
        }
        Err(_) => return Err(bad()),
    }

    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => *aud == provider.client_id,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(&provider.client_id)),
        _ => false,
    };
    let has_event = claims
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.contains_key(BACKCHANNEL_LOGOUT_EVENT));
    let now_s = state.now_ms() / 1000;
    let leeway_s = provider.leeway.as_millis().unwrap_or(0) / 1000;
    let iat_ok = claims
        .get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| {
            iat <= now_s + leeway_s && now_s - iat <= LOGOUT_TOKEN_MAX_AGE_S + leeway_s
        });
    let exp_ok = claims
        .get("exp")
        .and_then(Value::as_i64)
        .is_none_or(|exp| exp + leeway_s > now_s);
    let subject = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
    let session_id = claims.get("sid").and_then(Value::as_str).map(str::to_owned);
    let valid = audience_ok
        && has_event
        && iat_ok
        && exp_ok
        && claims.get("jti").is_some_and(Value::is_string)
        && claims.get("nonce").is_none()
        && (subject.is_some() || session_id.is_some());
    if !valid {
        return Err(bad());
    }
    Ok(LogoutRequest {
        issuer: provider.issuer.clone(),
        subject,
        session_id,
    })
}
