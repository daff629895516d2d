//! HTTP handlers, one module per area of the Client-Server API; `routes`
//! lists every endpoint and builds the router. This module adds the cross-cutting
//! layers: rate limits, the Matrix error shape for every failure, CORS,
//! request logging without secrets, and panic containment.

pub mod account;
pub mod account_data;
pub mod admin;
pub mod admin_compliance;
pub mod admin_subjects;
pub mod auth;
pub mod backup;
pub mod console;
pub mod devices;
pub mod directory;
pub mod discovery;
pub mod ephemeral;
pub mod events;
pub mod filters;
pub mod keys;
pub mod media;
pub mod membership;
pub mod metrics;
pub mod oauth;
pub mod profile;
pub mod push;
pub mod pushrules;
pub mod relations;
pub mod rooms;
pub mod routes;
pub mod sliding_sync;
pub mod sso;
pub mod sync;
pub mod to_device;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::cors::{Any, CorsLayer};

use crate::error::{ApiError, ErrCode};
use crate::extract::{access_token, CheckedToken};
use crate::service::session::authenticate;
use crate::service::Context;

/// The `{}` many endpoints answer with.
#[derive(serde::Serialize)]
pub struct EmptyResponse {}

pub fn router(state: Context) -> Router {
    let api = routes::router()
        .fallback(unrecognized)
        .method_not_allowed_fallback(method_not_allowed);

    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-requested-with"),
        ]);

    api.layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(middleware::from_fn(refuse_nul_in_uri))
        .layer(middleware::from_fn(matrix_error_shape))
        .layer(middleware::from_fn_with_state(state.clone(), log_request))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
        .layer(cors)
        .layer(middleware::from_fn_with_state(state.clone(), console_layer))
        .with_state(state)
}

/// The console's answers, errors included, carry its security headers; a
/// console switched off (`console.enabled = false`) is not there at all.
async fn console_layer(State(state): State<Context>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(console::PREFIX) {
        return next.run(req).await;
    }
    let mut response = if state.config.console.enabled {
        next.run(req).await
    } else {
        unrecognized().await.into_response()
    };
    console::headers(&mut response);
    response
}

async fn unrecognized() -> ApiError {
    ApiError::unrecognized("Unrecognized request")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrCode::Unrecognized, "Method not allowed on this endpoint")
        .with_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// `%00` anywhere in the path or query would reach the database as U+0000,
/// which PostgreSQL text refuses; no Matrix identifier may contain it.
async fn refuse_nul_in_uri(req: Request, next: Next) -> Response {
    let uri = req.uri();
    let encoded = uri
        .path()
        .as_bytes()
        .windows(3)
        .chain(uri.query().unwrap_or("").as_bytes().windows(3));
    if encoded.into_iter().any(|w| w == b"%00") {
        return ApiError::invalid_param("identifiers may not contain U+0000").into_response();
    }
    next.run(req).await
}

/// The client's address for per-address limits. Behind a reverse proxy
/// every connection comes from the proxy, so when the peer is one of
/// `trusted_proxies` the address is taken from `X-Forwarded-For`: the
/// rightmost entry that is not itself a trusted proxy (entries further left
/// are whatever the client chose to send).
pub fn client_ip(parts: &axum::http::request::Parts, trusted: &[std::net::IpAddr]) -> String {
    let Some(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
    else {
        return "unknown".into();
    };
    if !trusted.contains(&peer) {
        return peer.to_string();
    }
    let forwarded = parts
        .headers
        .get_all(header::HeaderName::from_static("x-forwarded-for"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    forwarded_client(&forwarded, trusted)
        .unwrap_or(peer)
        .to_string()
}

fn forwarded_client(header: &str, trusted: &[std::net::IpAddr]) -> Option<std::net::IpAddr> {
    let hops: Vec<std::net::IpAddr> = header
        .split(',')
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .or(hops.first())
        .copied()
}

/// The value of cookie `name`, if the request carries a non-empty one.
pub(crate) fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// Axum's own rejections (bad path or query parameters, wrong method) answer
/// in plain text; clients expect `{"errcode", "error"}` from every failure.
async fn matrix_error_shape(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    // JSON is already the shape; HTML is a page meant for a person's
    // browser (single sign-on), deliberately not JSON.
    let shaped = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if shaped {
        return response;
    }
    let errcode = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ErrCode::Unrecognized,
        StatusCode::PAYLOAD_TOO_LARGE => ErrCode::TooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrCode::NotJson,
        StatusCode::UNPROCESSABLE_ENTITY => ErrCode::BadJson,
        StatusCode::BAD_REQUEST => ErrCode::InvalidParam,
        _ => ErrCode::Unknown,
    };
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_owned();
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    ApiError::new(errcode, message)
        .with_status(status)
        .into_response()
}

/// Logs the route template, never the raw URI: paths carry room and user
/// ids, and the query string may carry an access token.
async fn log_request(State(state): State<Context>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map(MatchedPath::as_str);
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .observe(method.as_str(), route, elapsed);
    let status = response.status().as_u16();
    if state.config.access_log.logs(status) {
        // A target of its own, so `RUST_LOG` can also choose (`cloister::access=off`).
        tracing::info!(target: "cloister::access", %method, route = route.unwrap_or("<unmatched>"), status, elapsed_ms = elapsed.as_millis() as u64, "request");
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The layer in front of every route. A bucket is chosen by who is asking,
/// and only a checked token says that: a valid one spends its session's
/// bucket, anything else the client address's, so an unknown token buys no
/// fresh bucket. A wrong token is also a guess at a credential and spends
/// the address's failed-login bucket too.
async fn rate_limit(State(state): State<Context>, req: Request, next: Next) -> Response {
    if !state.config.rate_limit.enabled || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let address = format!("ip:{}", client_ip(&parts, &state.config.trusted_proxies));
    let verdict = match access_token(&parts) {
        None => state.limiter.check(&address),
        Some(token) => {
            let checked = match authenticate(&state, &token).await {
                Ok(checked) => checked,
                Err(err) => return err.into_response(),
            };
            let verdict = match &checked {
                // User ids hold no space, so no two sessions share a key.
                Some(auth) => state
                    .limiter
                    .check(&format!("session:{} {}", auth.user_id, auth.device_id)),
                None => state
                    .limiter
                    .check(&address)
                    .and_then(|()| state.login_limiter.check(&format!("token:{address}"))),
            };
            parts.extensions.insert(CheckedToken(checked));
            verdict
        }
    };
    if let Err(wait) = verdict {
        return ApiError::limit_exceeded(wait).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::forwarded_client;

    #[test]
    fn forwarded_for_is_read_from_the_right() {
        let trusted = ["127.0.0.1".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        let ip = |s: &str| Some(s.parse().unwrap());
        assert_eq!(forwarded_client("203.0.113.7", &trusted), ip("203.0.113.7"));
        // A client cannot choose its address by prepending one.
        assert_eq!(
            forwarded_client("6.6.6.6, 203.0.113.7", &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            forwarded_client("203.0.113.7, 10.0.0.5", &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(forwarded_client("10.0.0.5", &trusted), ip("10.0.0.5"));
        assert_eq!(forwarded_client("garbage", &trusted), None);
        assert_eq!(forwarded_client("", &trusted), None);
    }
}
