//! `GET /_cloister/metrics`: counters in the Prometheus text format, for a
//! scraper on the same machine. Answered only to a direct loopback
//! connection that a reverse proxy did not forward (no `X-Forwarded-For`),
//! so the public listener does not publish them.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::service::Context;

/// `GET /_cloister/metrics`
pub(super) async fn metrics(
    State(state): State<Context>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !peer.ip().is_loopback() || headers.contains_key("x-forwarded-for") {
        return Err(ApiError::forbidden(
            "Metrics are served only to local scrapers",
        ));
    }
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.render_metrics(),
    )
        .into_response())
}
