//! The pages of the authorization step: the authorization endpoint, which
//! checks the app's request and sends the browser on to the grant's page,
//! and that page, which signs the person in and asks for consent. Forms
//! only, no script; every dynamic part is escaped.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::i18n::{t, Key, Lang};
use crate::api::auth::ClientIp;
use crate::api::sso::Accepts;
use crate::config::PasswordLoginMode;
use crate::error::{ApiError, ErrCode};
use crate::markup::escape;
use crate::service::oauth::authorize::{self, AuthorizeRequest, Decided, PageError, Started, View};
use crate::service::oauth::{account, device};
use crate::service::sso;
use crate::service::Context;

/// Binds a sign-in to the browser that began it. `Lax`: the app sends the
/// browser here by a cross-site navigation, and the forms post same-site.
const COOKIE: &str = "__Host-cloister_oauth";
const GRANT_PAGES: &str = "/_cloister/oauth2/authorize/";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;\
padding:0 1rem;line-height:1.5;color:#1b1b1b;background:#fff}\
label{display:block;margin-top:1rem;font-weight:600}\
input{display:block;width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem;\
border:1px solid #555;border-radius:4px}\
button{margin-top:1.25rem;margin-right:.5rem;padding:.55rem 1.2rem;font-size:1rem;\
border-radius:4px;border:1px solid #0b5cad;background:#0b5cad;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#0b5cad}\
:focus-visible{outline:3px solid #f5a623;outline-offset:2px}\
.alert{border-left:4px solid #b00020;padding:.5rem 1rem;background:#fdecee}\
.providers{list-style:none;padding:0;margin-top:1.5rem}\
a.button{display:inline-block;margin-top:.5rem;padding:.55rem 1.2rem;border:1px solid #0b5cad;\
border-radius:4px;color:#0b5cad;text-decoration:none}";

/// The page's one stylesheet is allowed by its hash: no inline anything else.
static CSP: LazyLock<String> = LazyLock::new(|| {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'; base-uri 'none'"
    )
});

fn page(status: StatusCode, lang: Lang, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>",
        lang = lang.code(),
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    if let Ok(csp) = HeaderValue::from_str(&CSP) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A page for a person's browser; the Matrix error shape for anything
/// else (a script probing the endpoint).
fn failure(lang: Lang, accepts: Accepts, error: PageError) -> Response {
    let (status, key, errcode) = match error {
        PageError::UnknownClient => (
            StatusCode::BAD_REQUEST,
            Key::UnknownClient,
            ErrCode::InvalidParam,
        ),
        PageError::BadRequest => (
            StatusCode::BAD_REQUEST,
            Key::BadRequest,
            ErrCode::MissingParam,
        ),
        PageError::Gone => (StatusCode::NOT_FOUND, Key::Gone, ErrCode::NotFound),
        PageError::OtherBrowser => (StatusCode::FORBIDDEN, Key::OtherBrowser, ErrCode::Forbidden),
        PageError::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Key::Internal,
            ErrCode::Unknown,
        ),
    };
    if !accepts.html {
        return ApiError::new(errcode, t(Lang::En, key))
            .with_status(status)
            .into_response();
    }
    let body = format!(
        "<p class=\"alert\" role=\"alert\">{}</p>",
        escape(t(lang, key))
    );
    page(status, lang, t(lang, Key::FailedTitle), &body)
}

/// `text` with its placeholders filled in, each value escaped.
fn fill(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = escape(text);
    for (name, value) in values {
        out = out.replace(name, &format!("<strong>{}</strong>", escape(value)));
    }
    out
}

#[derive(serde::Deserialize)]
pub(in crate::api) struct LangQuery {
    lang: Option<String>,
}

/// `GET /_cloister/oauth2/authorize` (RFC 6749 section 4.1.1, MSC2964)
pub(in crate::api) async fn authorize(
    State(state): State<Context>,
    accepts: Accepts,
    headers: HeaderMap,
    Query(req): Query<AuthorizeRequest>,
    Query(lang): Query<LangQuery>,
) -> Response {
    let lang = Lang::negotiate(lang.lang.as_deref(), &headers);
    if !crate::service::oauth::enabled(&state) {
        return failure(lang, accepts, PageError::UnknownClient);
    }
    let started = authorize::start(&state, req).await;
    to_grant_page(lang, accepts, started)
}

/// On to the grant's page with the browser's new cookie, to the app with
/// its refusal, or an error page.
fn to_grant_page(lang: Lang, accepts: Accepts, started: Result<Started, PageError>) -> Response {
    match started {
        Ok(Started::Page {
            grant_id,
            browser_secret,
        }) => {
            let to = format!("{GRANT_PAGES}{grant_id}?lang={}", lang.code());
            let mut response = Redirect::to(&to).into_response();
            let cookie = format!(
                "{COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=1800",
                browser_secret.as_str()
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Ok(Started::Refused(url)) => Redirect::to(&url).into_response(),
        Err(e) => failure(lang, accepts, e),
    }
}

#[derive(serde::Deserialize)]
pub(in crate::api) struct LinkQuery {
    code: Option<String>,
    lang: Option<String>,
}

/// `GET /_cloister/oauth2/link`: where the person enters a device's code
/// (RFC 8628's verification URI; `?code=` fills it in).
pub(in crate::api) async fn link_page(
    State(state): State<Context>,
    accepts: Accepts,
    headers: HeaderMap,
    Query(query): Query<LinkQuery>,
) -> Response {
    let lang = Lang::negotiate(query.lang.as_deref(), &headers);
    if !crate::service::oauth::enabled(&state) {
        return failure(lang, accepts, PageError::UnknownClient);
    }
    let code = query
        .code
        .as_deref()
        .map(device::normalize)
        .unwrap_or_default();
    let code: String = code
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(8)
        .collect();
    let body = format!(
        "<p>{lead}</p><form method=\"post\">\
         <input type=\"hidden\" name=\"lang\" value=\"{lang_code}\">\
         <label for=\"code\">{label}</label>\
         <input id=\"code\" name=\"code\" value=\"{code}\" autocomplete=\"one-time-code\" \
         autocapitalize=\"characters\" spellcheck=\"false\" required autofocus>\
         <button>{go}</button></form>",
        lead = escape(t(lang, Key::LinkLead)),
        lang_code = lang.code(),
        label = escape(t(lang, Key::Code)),
        go = escape(t(lang, Key::Continue)),
    );
    page(StatusCode::OK, lang, t(lang, Key::LinkTitle), &body)
}

/// `POST /_cloister/oauth2/link`: the code entered; on to sign-in and
/// consent in this browser. No CSRF token: this form only starts a
/// sign-in bound to the browser that submits it.
pub(in crate::api) async fn link(
    State(state): State<Context>,
    ClientIp(ip): ClientIp,
    accepts: Accepts,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: LinkQuery = serde_urlencoded::from_bytes(&body).unwrap_or(LinkQuery {
        code: None,
        lang: None,
    });
    let lang = Lang::negotiate(form.lang.as_deref(), &headers);
    if !crate::service::oauth::enabled(&state) {
        return failure(lang, accepts, PageError::UnknownClient);
    }
    let started = device::link(&state, &ip, form.code.as_deref().unwrap_or_default()).await;
    to_grant_page(lang, accepts, started)
}

async fn load(state: &Context, grant_id: &str, headers: &HeaderMap) -> Result<View, PageError> {
    let cookie = crate::api::cookie(headers, COOKIE).map(Zeroizing::new);
    authorize::view(state, grant_id, cookie.as_deref().map(String::as_str)).await
}

fn client_name(view: &View) -> String {
    view.client
        .client_name
        .clone()
        .unwrap_or_else(|| view.grant.client_id.clone())
}

fn client_host(view: &View) -> String {
    view.client
        .client_uri
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The sign-in form (unless password login is off) and a link per single
/// sign-on provider.
fn sign_in_page(state: &Context, view: &View, lang: Lang, error: bool) -> Response {
    // The account page signs in to the server itself, not for an app.
    let client = if view.grant.response_mode == account::ACCOUNT_MODE {
        state.server_name().to_owned()
    } else {
        client_name(view)
    };
    let alert = if error {
        format!(
            "<p class=\"alert\" role=\"alert\" id=\"error\">{}</p>",
            escape(t(lang, Key::WrongPassword))
        )
    } else {
        String::new()
    };
    let invalid = if error {
        " aria-invalid=\"true\" aria-describedby=\"error\""
    } else {
        ""
    };
    let password_form = if state.config.sso.password_login == PasswordLoginMode::Off {
        String::new()
    } else {
        format!(
            "<form method=\"post\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"lang\" value=\"{code}\">\
             <label for=\"username\">{username}</label>\
             <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus{invalid}>\
             <label for=\"password\">{password}</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{invalid}>\
             <button name=\"action\" value=\"sign_in\">{sign_in}</button></form>",
            csrf = view.csrf_token(),
            code = lang.code(),
            username = escape(t(lang, Key::Username)),
            password = escape(t(lang, Key::Password)),
            sign_in = escape(t(lang, Key::SignIn)),
        )
    };
    let providers: String = sso::providers(state)
        .iter()
        .map(|p| {
            format!(
                "<li><a class=\"button\" href=\"{GRANT_PAGES}{grant}/sso/{id}?lang={code}\">{label}</a></li>",
                grant = escape(&view.grant.grant_id),
                id = escape(&urlencoding(p.id)),
                code = lang.code(),
                label = fill(t(lang, Key::SignInWith), &[("{provider}", p.name)]),
            )
        })
        .collect();
    let providers = if providers.is_empty() {
        providers
    } else {
        format!("<ul class=\"providers\">{providers}</ul>")
    };
    let body = format!(
        "<p>{lead}</p>{alert}{password_form}{providers}",
        lead = fill(t(lang, Key::SignInLead), &[("{client}", &client)]),
    );
    let status = if error {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    page(status, lang, t(lang, Key::SignInTitle), &body)
}

/// A path segment, percent-encoded.
fn urlencoding(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// `GET /_cloister/oauth2/authorize/{grant_id}/sso/{idp_id}`: on to the
/// provider, which sends the browser back to `sso_return`.
pub(in crate::api) async fn sso_start(
    State(state): State<Context>,
    Path((grant_id, idp_id)): Path<(String, String)>,
    accepts: Accepts,
    headers: HeaderMap,
    Query(lang): Query<LangQuery>,
) -> Response {
    let lang = Lang::negotiate(lang.lang.as_deref(), &headers);
    let view = match load(&state, &grant_id, &headers).await {
        Ok(view) => view,
        Err(e) => return failure(lang, accepts, e),
    };
    match authorize::sso_start(&state, &view, &idp_id).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => {
            sso::audit_refusal(&state, &e, None).await;
            failure(lang, accepts, PageError::BadRequest)
        }
    }
}

#[derive(serde::Deserialize)]
pub(in crate::api) struct SsoReturn {
    #[serde(rename = "loginToken")]
    login_token: Option<String>,
}

/// `GET /_cloister/oauth2/authorize/{grant_id}/sso_return`: the provider
/// vouched for the person; on to consent.
pub(in crate::api) async fn sso_return(
    State(state): State<Context>,
    Path(grant_id): Path<String>,
    ClientIp(ip): ClientIp,
    accepts: Accepts,
    headers: HeaderMap,
    Query(back): Query<SsoReturn>,
) -> Response {
    let lang = Lang::negotiate(None, &headers);
    let view = match load(&state, &grant_id, &headers).await {
        Ok(view) => view,
        Err(e) => return failure(lang, accepts, e),
    };
    let token = back.login_token.unwrap_or_default();
    match authorize::sign_in_with_sso(&state, &ip, &view, &token).await {
        Ok(()) => {
            let to = format!("{GRANT_PAGES}{grant_id}?lang={}", lang.code());
            Redirect::to(&to).into_response()
        }
        Err(e) if e.status.is_server_error() => failure(lang, accepts, PageError::Internal),
        Err(_) => failure(lang, accepts, PageError::Gone),
    }
}

fn consent_page(view: &View, lang: Lang, user_id: &str) -> Response {
    let client = client_name(view);
    let host = client_host(view);
    let values = [
        ("{client}", client.as_str()),
        ("{host}", &host),
        ("{user}", user_id),
    ];
    let body = format!(
        "<p>{signed_in}</p><p>{what}</p><p>{revoke}</p>\
         <form method=\"post\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"lang\" value=\"{code}\">\
         <button name=\"action\" value=\"allow\">{allow}</button>\
         <button name=\"action\" value=\"deny\" class=\"secondary\">{deny}</button></form>",
        signed_in = fill(t(lang, Key::ConsentSignedInAs), &values),
        what = fill(t(lang, Key::ConsentWhat), &values),
        revoke = escape(t(lang, Key::ConsentRevoke)),
        csrf = view.csrf_token(),
        code = lang.code(),
        allow = escape(t(lang, Key::Allow)),
        deny = escape(t(lang, Key::Deny)),
    );
    // The title names the client too; `page` escapes it.
    let title = t(lang, Key::ConsentTitle).replace("{client}", &client);
    page(StatusCode::OK, lang, &title, &body)
}

/// The account page's question: may an app replace the cross-signing keys?
fn reset_page(view: &View, lang: Lang, user_id: &str) -> Response {
    let body = format!(
        "<p>{signed_in}</p><p>{what}</p>\
         <form method=\"post\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"lang\" value=\"{code}\">\
         <button name=\"action\" value=\"allow\">{allow}</button>\
         <button name=\"action\" value=\"deny\" class=\"secondary\">{deny}</button></form>",
        signed_in = fill(t(lang, Key::ConsentSignedInAs), &[("{user}", user_id)]),
        what = escape(t(lang, Key::ResetWhat)),
        csrf = view.csrf_token(),
        code = lang.code(),
        allow = escape(t(lang, Key::ResetAllow)),
        deny = escape(t(lang, Key::Deny)),
    );
    page(StatusCode::OK, lang, t(lang, Key::ResetTitle), &body)
}

#[derive(serde::Deserialize)]
pub(in crate::api) struct AccountQuery {
    action: Option<String>,
    lang: Option<String>,
}

/// `GET /_cloister/account/`: the account management page (MSC2965); the
/// one action offered is `org.matrix.cross_signing_reset`.
pub(in crate::api) async fn account_page(
    State(state): State<Context>,
    accepts: Accepts,
    headers: HeaderMap,
    Query(query): Query<AccountQuery>,
) -> Response {
    let lang = Lang::negotiate(query.lang.as_deref(), &headers);
    if !crate::service::oauth::enabled(&state) {
        return failure(lang, accepts, PageError::UnknownClient);
    }
    let started = account::start(&state, query.action.as_deref()).await;
    to_grant_page(lang, accepts, started)
}

/// `GET /_cloister/oauth2/authorize/{grant_id}`: sign-in, then consent.
pub(in crate::api) async fn grant_page(
    State(state): State<Context>,
    Path(grant_id): Path<String>,
    accepts: Accepts,
    headers: HeaderMap,
    Query(lang): Query<LangQuery>,
) -> Response {
    let lang = Lang::negotiate(lang.lang.as_deref(), &headers);
    match load(&state, &grant_id, &headers).await {
        Ok(view) => match view.grant.user_id.clone() {
            None => sign_in_page(&state, &view, lang, false),
            Some(user_id) if view.grant.response_mode == account::ACCOUNT_MODE => {
                reset_page(&view, lang, &user_id)
            }
            Some(user_id) => consent_page(&view, lang, &user_id),
        },
        Err(e) => failure(lang, accepts, e),
    }
}

#[derive(serde::Deserialize)]
struct Action {
    csrf: Option<String>,
    action: Option<String>,
    lang: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// `POST /_cloister/oauth2/authorize/{grant_id}`: the page's forms.
pub(in crate::api) async fn grant_action(
    State(state): State<Context>,
    Path(grant_id): Path<String>,
    ClientIp(ip): ClientIp,
    accepts: Accepts,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Action = serde_urlencoded::from_bytes(&body).unwrap_or(Action {
        csrf: None,
        action: None,
        lang: None,
        username: None,
        password: None,
    });
    let password = Zeroizing::new(form.password.unwrap_or_default());
    let lang = Lang::negotiate(form.lang.as_deref(), &headers);
    let view = match load(&state, &grant_id, &headers).await {
        Ok(view) => view,
        Err(e) => return failure(lang, accepts, e),
    };
    if !form.csrf.as_deref().is_some_and(|c| view.check_csrf(c)) {
        return failure(lang, accepts, PageError::OtherBrowser);
    }
    let back =
        || Redirect::to(&format!("{GRANT_PAGES}{grant_id}?lang={}", lang.code())).into_response();
    match (form.action.as_deref(), &view.grant.user_id) {
        (Some("sign_in"), None) => {
            let user = form.username.unwrap_or_default();
            match authorize::sign_in(&state, &ip, &view, user.trim(), password).await {
                Ok(()) => back(),
                Err(e) if e.status.is_server_error() => failure(lang, accepts, PageError::Internal),
                // Wrong password, rate limit, password login off: one answer.
                Err(_) => sign_in_page(&state, &view, lang, true),
            }
        }
        (Some(choice @ ("allow" | "deny")), Some(_)) => {
            match authorize::decide(&state, &view, choice == "allow").await {
                Ok(Decided::Redirect(url)) => Redirect::to(&url).into_response(),
                Ok(Decided::AccountDone { allowed }) => {
                    let key = if allowed {
                        Key::ResetAllowed
                    } else {
                        Key::ResetDenied
                    };
                    let body = format!("<p role=\"status\">{}</p>", escape(t(lang, key)));
                    page(StatusCode::OK, lang, t(lang, Key::ResetTitle), &body)
                }
                Ok(Decided::DeviceDone { allowed }) => {
                    let key = if allowed {
                        Key::DeviceAllowed
                    } else {
                        Key::DeviceDenied
                    };
                    let body = format!("<p role=\"status\">{}</p>", escape(t(lang, key)));
                    page(StatusCode::OK, lang, t(lang, Key::LinkTitle), &body)
                }
                Err(_) => failure(lang, accepts, PageError::Gone),
            }
        }
        _ => back(),
    }
}
