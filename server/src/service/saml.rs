//! SAML 2.0 sign-in (service provider): this server's metadata, the
//! AuthnRequest sent with the HTTP-Redirect binding, and the checks on the
//! Response the provider posts back (HTTP-POST binding). What a signature
//! covers is `saml_response`'s business; this module checks the rest
//! against its own state: `InResponseTo` against the requests this server
//! issued (kept in the database, so any node can finish a sign-in), issuer,
//! audience, recipient and destination, the validity window with
//! `clock_skew`, and a replay cache of assertion ids.

use base64::Engine;

use crate::config::Saml;
use crate::markup::escape;
use crate::service::saml_response::{self, Assertion, Refusal, PERSISTENT, STATUS_SUCCESS};
use crate::service::sso::{append_query, Identity, ProviderRequest, SsoError};
use crate::service::Context;
use crate::store::sso::Pending;

/// The largest response accepted (base64-decoded); real ones are a few KiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
const METADATA_PATH: &str = "_cloister/client/saml/metadata";
const ACS_PATH: &str = "_cloister/client/saml/acs";

/// This server's entity id: configured, or its metadata URL.
pub fn entity_id(state: &Context) -> String {
    if state.config.sso.saml_entity_id.is_empty() {
        format!("{}{METADATA_PATH}", state.config.public_baseurl())
    } else {
        state.config.sso.saml_entity_id.clone()
    }
}

/// The Assertion Consumer Service: where providers post responses.
pub fn acs_url(state: &Context) -> String {
    format!("{}{ACS_PATH}", state.config.public_baseurl())
}

/// The SP metadata an IdP administrator imports.
pub fn metadata(state: &Context) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" entityID=\"{}\">\
         <md:SPSSODescriptor AuthnRequestsSigned=\"false\" WantAssertionsSigned=\"true\" \
         protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
         <md:NameIDFormat>{PERSISTENT}</md:NameIDFormat>\
         <md:AssertionConsumerService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" \
         Location=\"{}\" index=\"0\" isDefault=\"true\"/>\
         </md:SPSSODescriptor></md:EntityDescriptor>\n",
        escape(&entity_id(state)),
        escape(&acs_url(state)),
    )
}

fn instant(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An AuthnRequest for `provider`, as the URL to send the browser to. Its
/// ID is what the response's `InResponseTo` must name.
pub fn authn_request(state: &Context, provider: &Saml) -> ProviderRequest {
    // IDs are NCNames: they may not start with a digit.
    let request_id = format!("_{}", crate::ids::random_string(32));
    let relay_state = crate::ids::random_string(32);
    let xml = format!(
        "<samlp:AuthnRequest xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
         xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{request_id}\" Version=\"2.0\" \
         IssueInstant=\"{}\" Destination=\"{}\" AssertionConsumerServiceURL=\"{}\" \
         ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\">\
         <saml:Issuer>{}</saml:Issuer>\
         <samlp:NameIDPolicy Format=\"{PERSISTENT}\" AllowCreate=\"true\"/>\
         </samlp:AuthnRequest>",
        instant(state.now_ms()),
        escape(&provider.idp_sso_url),
        escape(&acs_url(state)),
        escape(&entity_id(state)),
    );
    let deflated = miniz_oxide::deflate::compress_to_vec(xml.as_bytes(), 6);
    let encoded = base64::engine::general_purpose::STANDARD.encode(deflated);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("SAMLRequest", &encoded)
        .append_pair("RelayState", &relay_state)
        .finish();
    ProviderRequest {
        url: append_query(&provider.idp_sso_url, &query),
        state: relay_state,
        nonce: request_id,
        pkce_verifier: String::new(),
    }
}

fn refused(refusal: Refusal) -> SsoError {
    tracing::info!(?refusal, "SAML response refused");
    SsoError::Invalid {
        reason: match refusal {
            Refusal::Malformed(_) => "sso_malformed_response",
            Refusal::Unsigned => "sso_unsigned",
            Refusal::BadSignature => "sso_bad_signature",
            Refusal::WeakAlgorithm => "sso_weak_algorithm",
            Refusal::Wrapped(_) => "sso_signature_wrapping",
        },
    }
}

fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Decodes the posted `SAMLResponse` (base64, line breaks allowed).
pub fn decode(posted: &str) -> Result<String, SsoError> {
    let compact: String = posted.split_ascii_whitespace().collect();
    if compact.len() > MAX_RESPONSE_BYTES * 4 / 3 + 4 {
        return Err(refused(Refusal::Malformed("too large")));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| refused(Refusal::Malformed("not base64")))?;
    String::from_utf8(bytes).map_err(|_| refused(Refusal::Malformed("not UTF-8")))
}

/// Verifies `xml` for the sign-in `pending` began at `provider` and
/// returns who signed in. The assertion id is remembered until it expires,
/// so the same response cannot be used twice, on any node.
pub async fn finish(
    state: &Context,
    provider: &Saml,
    pending: &Pending,
    xml: &str,
) -> Result<Identity, SsoError> {
    let assertion = saml_response::read(xml, &provider.idp_certificates).map_err(refused)?;
    if was_seen(state, &assertion.id).await? {
        return Err(SsoError::Replayed);
    }
    let expires = check(state, provider, pending, &assertion)?;
    let subject = if provider.subject_attribute.is_empty() {
        match (&assertion.name_id, assertion.name_id_format.as_deref()) {
            (Some(id), Some(PERSISTENT)) if !id.is_empty() => id.clone(),
            _ => {
                return Err(SsoError::Invalid {
                    reason: "sso_no_persistent_id",
                })
            }
        }
    } else {
        assertion
            .attribute(&provider.subject_attribute)
            .filter(|s| !s.is_empty())
            .ok_or(SsoError::Invalid {
                reason: "sso_no_persistent_id",
            })?
            .to_owned()
    };
    if !remember(state, &assertion.id, expires).await? {
        return Err(SsoError::Replayed);
    }
    let value = |name: &str| assertion.attribute(name).map(str::to_owned);
    Ok(Identity {
        issuer: provider.idp_entity_id.clone(),
        subject,
        session_id: None,
        localpart: value(&provider.localpart_attribute),
        display_name: value(&provider.display_name_attribute),
        mail: value(&provider.mail_attribute),
    })
}

/// Whether a response that matched no sign-in in progress is a replay of
/// one already used (else it is unsolicited). Only a response some
/// provider signed is looked at.
pub async fn classify_stray(state: &Context, xml: &str) -> SsoError {
    for provider in &state.config.saml {
        if let Ok(assertion) = saml_response::read(xml, &provider.idp_certificates) {
            if matches!(was_seen(state, &assertion.id).await, Ok(true)) {
                return SsoError::Replayed;
            }
            break;
        }
    }
    SsoError::UnknownState
}

/// Everything but the signature and the subject; returns until when the
/// assertion id must be remembered.
fn check(
    state: &Context,
    provider: &Saml,
    pending: &Pending,
    a: &Assertion,
) -> Result<i64, SsoError> {
    let invalid = |reason| Err(SsoError::Invalid { reason });
    if a.status.as_deref() != Some(STATUS_SUCCESS) {
        return Err(SsoError::Provider("the identity provider refused".into()));
    }
    // Unsolicited (IdP-initiated) responses are refused: only an answer to
    // a request this server made, in this browser's sign-in, counts.
    let answers = |id: &Option<String>| id.as_deref() == Some(pending.nonce.as_str());
    if a.response_in_response_to.is_some() && !answers(&a.response_in_response_to) {
        return Err(SsoError::UnknownState);
    }
    let acs = acs_url(state);
    let bearer = a
        .bearers
        .iter()
        .find(|b| answers(&b.in_response_to) && b.recipient.as_deref() == Some(acs.as_str()));
    let Some(bearer) = bearer else {
        return if a.bearers.iter().any(|b| answers(&b.in_response_to)) {
            invalid("sso_wrong_recipient")
        } else {
            Err(SsoError::UnknownState)
        };
    };
    if a.issuer.as_deref() != Some(provider.idp_entity_id.as_str())
        || a.response_issuer
            .as_deref()
            .is_some_and(|i| i != provider.idp_entity_id)
    {
        return invalid("sso_wrong_issuer");
    }
    if a.response_destination.as_deref().is_some_and(|d| d != acs) {
        return invalid("sso_wrong_recipient");
    }
    let me = entity_id(state);
    if !a.audiences.contains(&me) {
        return invalid("sso_wrong_audience");
    }
    let now = state.now_ms();
    let skew = provider.clock_skew.as_millis().unwrap_or(0);
    // An optional time must parse when present; a required one must be there.
    let optional = |text: &Option<String>| match text {
        Some(text) => parse_time(text).map(Some).ok_or(SsoError::Invalid {
            reason: "sso_malformed_response",
        }),
        None => Ok(None),
    };
    if optional(&a.not_before)?.is_some_and(|t| now + skew < t) {
        return invalid("sso_not_yet_valid");
    }
    // The bearer's NotOnOrAfter is required (SAML profiles, 4.1.4.2).
    let Some(bearer_end) = optional(&bearer.not_on_or_after)? else {
        return invalid("sso_malformed_response");
    };
    let conditions_end = optional(&a.not_on_or_after)?.unwrap_or(bearer_end);
    let end = bearer_end.min(conditions_end);
    if now - skew >= end {
        return invalid("sso_expired");
    }
    Ok(end + skew)
}

async fn was_seen(state: &Context, assertion_id: &str) -> Result<bool, sqlx::Error> {
    crate::store::sso::assertion_seen(&mut *state.store.read().await?, assertion_id).await
}

/// Remembers an assertion id until `expires_ts`; false if it already was.
async fn remember(
    state: &Context,
    assertion_id: &str,
    expires_ts: i64,
) -> Result<bool, sqlx::Error> {
    let mut tx = state.store.write().await?;
    let added = crate::store::sso::remember_assertion(&mut tx, assertion_id, expires_ts).await?;
    tx.commit().await?;
    Ok(added)
}
