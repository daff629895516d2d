//! Single sign-on in the browser: the redirect to the identity provider,
//! the provider's callback, the pages a person sees on the way, and the
//! provider's back-channel logout. These answer browsers, so failures are
//! HTML pages rather than Matrix errors (except where an app asks).

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::error::{ApiError, ErrCode};
use crate::markup::escape;
use crate::service::sso::{self, SsoError};
use crate::service::{oidc, saml, uia, Context};

#[derive(Deserialize)]
pub(super) struct RedirectQuery {
    #[serde(rename = "redirectUrl")]
    redirect_url: Option<String>,
}

/// A small page; every dynamic part of `body` must come escaped. No script
/// and no outside resources, which the CSP also enforces. (`Cache-Control:
/// no-store` comes from the router's layer, as on every answer.)
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title></head><body><main><h1>{}</h1>{body}</main></body></html>",
        escape(title),
        escape(title)
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'none'; frame-ancestors 'none'"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// Whether the caller is a browser (it asks for HTML): a failure is then a
/// page for the person; an app or script gets the Matrix error shape.
#[derive(Clone, Copy)]
pub(crate) struct Accepts {
    pub(crate) html: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Accepts {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let html = parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("text/html")));
        Ok(Accepts { html })
    }
}

fn failure(error: &SsoError, accepts: Accepts) -> Response {
    if !accepts.html {
        let code = match error.status() {
            StatusCode::NOT_FOUND => ErrCode::NotFound,
            StatusCode::BAD_REQUEST => ErrCode::InvalidParam,
            StatusCode::FORBIDDEN => ErrCode::Forbidden,
            _ => ErrCode::Unknown,
        };
        return ApiError::new(code, error.to_string())
            .with_status(error.status())
            .into_response();
    }
    page(
        error.status(),
        "Sign-in failed",
        &format!("<p>{}</p>", escape(&error.to_string())),
    )
}

/// Redirects the browser to `url` (a provider or the app).
fn go(url: &str) -> Response {
    Redirect::to(url).into_response()
}

async fn begin(state: &Context, idp_id: &str, query: RedirectQuery, accepts: Accepts) -> Response {
    let Some(redirect_url) = query.redirect_url else {
        return failure(&SsoError::BadRedirect, accepts);
    };
    match sso::begin(state, idp_id, &redirect_url).await {
        Ok(url) => go(&url),
        Err(e) => {
            sso::audit_refusal(state, &e, None).await;
            failure(&e, accepts)
        }
    }
}

/// `GET /_matrix/client/v3/login/sso/redirect`
///
/// With one provider, straight to it; with several, a page to choose.
pub(super) async fn redirect(
    State(state): State<Context>,
    accepts: Accepts,
    Query(query): Query<RedirectQuery>,
) -> Response {
    let providers = sso::providers(&state);
    match providers.as_slice() {
        [] => failure(&SsoError::UnknownProvider(String::new()), accepts),
        [only] => {
            let id = only.id.to_owned();
            begin(&state, &id, query, accepts).await
        }
        several => {
            let Some(redirect_url) = query.redirect_url.as_deref() else {
                return failure(&SsoError::BadRedirect, accepts);
            };
            let encoded: String =
                form_urlencoded::byte_serialize(redirect_url.as_bytes()).collect();
            let items: String = several
                .iter()
                .map(|p| {
                    format!(
                        "<li><a href=\"redirect/{}?redirectUrl={}\">{}</a></li>",
                        escape(p.id),
                        escape(&encoded),
                        escape(p.name)
                    )
                })
                .collect();
            page(
                StatusCode::OK,
                "Choose how to sign in",
                &format!("<ul>{items}</ul>"),
            )
        }
    }
}

/// `GET /_matrix/client/v3/login/sso/redirect/{idpId}`
pub(super) async fn redirect_to(
    State(state): State<Context>,
    accepts: Accepts,
    Path(idp_id): Path<String>,
    Query(query): Query<RedirectQuery>,
) -> Response {
    begin(&state, &idp_id, query, accepts).await
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /_cloister/client/oidc/callback` (Cloister's own, registered at the
/// provider as the redirect URI)
pub(super) async fn oidc_callback(
    State(state): State<Context>,
    accepts: Accepts,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let result = oidc_login(&state, query).await;
    completed(&state, result, accepts).await
}

/// Back to the app with its login token, the end of a confirmation, or a
/// page saying why not.
async fn completed(
    state: &Context,
    result: Result<sso::Finished, SsoError>,
    accepts: Accepts,
) -> Response {
    match result {
        Ok(sso::Finished::App(completion)) if completion.allowlisted => go(&completion.redirect),
        Ok(sso::Finished::App(completion)) => confirm_page(state, &completion),
        Ok(sso::Finished::Confirmed) => done_page(),
        Err(e) => {
            sso::audit_refusal(state, &e, None).await;
            failure(&e, accepts)
        }
    }
}

/// `GET /_cloister/client/saml/metadata`: this server as a SAML service
/// provider, for the identity provider's administrator.
pub(super) async fn saml_metadata(State(state): State<Context>) -> Response {
    let mut response = saml::metadata(&state).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    response
}

/// `POST /_cloister/client/saml/acs`: the provider's Response, posted by
/// the browser (HTTP-POST binding).
pub(super) async fn saml_acs(
    State(state): State<Context>,
    accepts: Accepts,
    body: Bytes,
) -> Response {
    let result = saml_login(&state, &body).await;
    completed(&state, result, accepts).await
}

async fn saml_login(state: &Context, body: &[u8]) -> Result<sso::Finished, SsoError> {
    let (mut posted, mut relay_state) = (None, None);
    for (key, value) in form_urlencoded::parse(body) {
        match key.as_ref() {
            "SAMLResponse" => posted = Some(value.into_owned()),
            "RelayState" => relay_state = Some(value.into_owned()),
            _ => {}
        }
    }
    let xml = saml::decode(posted.as_deref().unwrap_or_default())?;
    let pending = sso::take_pending(state, relay_state.as_deref().unwrap_or_default()).await?;
    let Some(pending) = pending else {
        return Err(saml::classify_stray(state, &xml).await);
    };
    let provider = state
        .config
        .saml
        .iter()
        .find(|p| p.id == pending.idp_id)
        .ok_or_else(|| SsoError::UnknownProvider(pending.idp_id.clone()))?;
    let identity = saml::finish(state, provider, &pending, &xml).await?;
    sso::finish(state, &pending, identity).await
}

async fn oidc_login(state: &Context, query: CallbackQuery) -> Result<sso::Finished, SsoError> {
    let pending = sso::take_pending(state, query.state.as_deref().unwrap_or_default())
        .await?
        .ok_or(SsoError::UnknownState)?;
    if let Some(error) = query.error {
        let shown: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(SsoError::Provider(shown));
    }
    let code = query.code.ok_or(SsoError::UnknownState)?;
    let provider = state
        .config
        .oidc
        .iter()
        .find(|p| p.id == pending.idp_id)
        .ok_or_else(|| SsoError::UnknownProvider(pending.idp_id.clone()))?;
    let identity = oidc::finish(
        state,
        provider,
        &pending.nonce,
        &pending.pkce_verifier,
        &code,
    )
    .await?;
    sso::finish(state, &pending, identity).await
}

/// For an app the operator has not listed: name it and let the person
/// decide, so a link from someone else cannot collect their login.
fn confirm_page(state: &Context, completion: &sso::Completion) -> Response {
    let host = completion
        .redirect
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(rest))
        .unwrap_or_default();
    page(
        StatusCode::OK,
        "Continue to your app?",
        &format!(
            "<p>You are signed in to {} as <strong>{}</strong>.</p>\
             <p>Continue only if you started this sign-in from the app at <strong>{}</strong>; \
             it will get access to your account.</p><p><a href=\"{}\">Continue to {}</a></p>",
            escape(state.server_name()),
            escape(&completion.user_id),
            escape(host),
            escape(&completion.redirect),
            escape(host)
        ),
    )
}

/// `POST /_cloister/client/oidc/backchannel_logout` (OpenID Connect
/// Back-Channel Logout 1.0): the provider ends a session; the devices it
/// opened are logged out softly.
pub(super) async fn oidc_backchannel_logout(State(state): State<Context>, body: Bytes) -> Response {
    let token = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let refused = |description: &str| {
        (
            StatusCode::BAD_REQUEST,
            // OAuth's error fields for the provider, Matrix's for the rest.
            axum::Json(serde_json::json!({
                "error": "invalid_request",
                "error_description": description,
                "errcode": "M_INVALID_PARAM",
            })),
        )
            .into_response()
    };
    let Some(token) = token else {
        return refused("logout_token is missing");
    };
    let request = match oidc::verify_logout_token(&state, &token).await {
        Ok(request) => request,
        Err(e) => {
            sso::audit_refusal(&state, &e, None).await;
            return refused("the logout token is not valid");
        }
    };
    match sso::provider_logout(
        &state,
        &request.issuer,
        request.subject.as_deref(),
        request.session_id.as_deref(),
    )
    .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// What the fallback page runs when the stage is done (spec: User-
/// Interactive Authentication, "Fallback"): the only script on any page
/// here, allowed by its hash.
const AUTH_DONE_SCRIPT: &str = "if (window.onAuthDone) { window.onAuthDone(); } \
else if (window.opener && window.opener.postMessage) { window.opener.postMessage(\"authDone\", \"*\"); }";

fn done_page() -> Response {
    use base64::Engine;
    use sha2::Digest;
    let mut response = page(
        StatusCode::OK,
        "Confirmed",
        &format!(
            "<p>Thank you. You can close this window and go back to your app.</p>\
             <script>{AUTH_DONE_SCRIPT}</script>"
        ),
    );
    let hash = base64::engine::general_purpose::STANDARD
        .encode(sha2::Sha256::digest(AUTH_DONE_SCRIPT.as_bytes()));
    let policy = format!(
        "default-src 'none'; script-src 'sha256-{hash}'; form-action 'none'; frame-ancestors 'none'"
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

#[derive(Deserialize)]
pub(super) struct FallbackQuery {
    session: Option<String>,
    idp: Option<String>,
}

/// `GET /_matrix/client/v3/auth/{auth_type}/fallback/web`
///
/// For `m.login.sso`: the person confirms it is them by signing in at a
/// provider their account is linked to.
pub(super) async fn uia_fallback(
    State(state): State<Context>,
    accepts: Accepts,
    Path(auth_type): Path<String>,
    Query(query): Query<FallbackQuery>,
) -> Response {
    if auth_type != uia::SSO {
        if !accepts.html {
            return ApiError::unrecognized("Only m.login.sso has a fallback page here")
                .with_status(StatusCode::NOT_FOUND)
                .into_response();
        }
        return page(
            StatusCode::NOT_FOUND,
            "Not available",
            "<p>This server has a fallback page for single sign-on only.</p>",
        );
    }
    let session = query.session.unwrap_or_default();
    let user_id = match uia::session_user(&state, &session).await {
        Ok(Some(user_id)) => user_id,
        Ok(None) => return failure(&SsoError::UnknownState, accepts),
        Err(_) => return failure(&SsoError::Internal, accepts),
    };
    let providers = match sso::providers_of(&state, &user_id).await {
        Ok(providers) => providers,
        Err(e) => return failure(&e, accepts),
    };
    if let Some(idp) = query.idp {
        if !providers.iter().any(|p| p.id == idp) {
            return failure(&SsoError::UnknownProvider(idp), accepts);
        }
        return match sso::begin_confirmation(&state, &idp, &session).await {
            Ok(url) => go(&url),
            Err(e) => {
                sso::audit_refusal(&state, &e, Some(&user_id)).await;
                failure(&e, accepts)
            }
        };
    }
    let session: String = form_urlencoded::byte_serialize(session.as_bytes()).collect();
    let links: String = providers
        .iter()
        .map(|p| {
            format!(
                "<li><a href=\"web?session={}&amp;idp={}\">Continue with {}</a></li>",
                escape(&session),
                escape(p.id),
                escape(p.name)
            )
        })
        .collect();
    page(
        StatusCode::OK,
        "Confirm it is you",
        &format!(
            "<p>To continue as <strong>{}</strong>, sign in again.</p><ul>{links}</ul>",
            escape(&user_id)
        ),
    )
}
