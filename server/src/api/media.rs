//! Content repository (`service::media` stores the files): uploads, and
//! downloads only through the authenticated `/_matrix/client/v1/media`
//! endpoints.

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::error::{ApiError, ApiResult};
use crate::service::media::{self, Upload};
use crate::service::session::Auth;
use crate::service::Context;

const READ_CHUNK: usize = 64 * 1024;

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    filename: Option<String>,
}

#[derive(Serialize)]
pub(super) struct UploadResponse {
    content_uri: String,
}

/// `POST /_matrix/media/v3/upload`
pub(super) async fn upload(
    State(state): State<Context>,
    auth: Auth,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<UploadResponse>> {
    let upload = Upload {
        declared_len: headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok()),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        filename: query.filename,
    };
    let content_uri = media::upload(&state, &auth.user_id, upload, body.into_data_stream()).await?;
    Ok(Json(UploadResponse { content_uri }))
}

#[derive(Serialize)]
pub(super) struct MediaConfigResponse {
    #[serde(rename = "m.upload.size")]
    upload_size: usize,
}

/// `GET /_matrix/client/v1/media/config` and `GET /_matrix/media/v3/config`
pub(super) async fn config(State(state): State<Context>, _auth: Auth) -> Json<MediaConfigResponse> {
    Json(MediaConfigResponse {
        upload_size: state.config.limits.max_upload_size,
    })
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}`
pub(super) async fn download(
    State(state): State<Context>,
    _auth: Auth,
    UrlPath((server_name, media_id)): UrlPath<(String, String)>,
) -> ApiResult<Response> {
    serve(&state, &server_name, &media_id, None).await
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}`
pub(super) async fn download_named(
    State(state): State<Context>,
    _auth: Auth,
    UrlPath((server_name, media_id, file_name)): UrlPath<(String, String, String)>,
) -> ApiResult<Response> {
    serve(&state, &server_name, &media_id, Some(file_name)).await
}

async fn serve(
    state: &Context,
    server_name: &str,
    media_id: &str,
    file_name: Option<String>,
) -> ApiResult<Response> {
    let download = media::open(state, server_name, media_id).await?;
    let chunks = futures::stream::unfold(Some(download.file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; READ_CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    let content_type = download
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(download.len));
    headers.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(file_name.as_deref().or(download.filename.as_deref())),
    );
    // Served bytes are whatever a user uploaded: never let a browser run them.
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    Ok(response)
}

/// `attachment`, with the filename as a quoted string when it is plain
/// ASCII and as RFC 8187 `filename*` otherwise, so no name can break out of
/// the header value.
fn content_disposition(filename: Option<&str>) -> HeaderValue {
    let value = match filename.filter(|f| !f.is_empty()) {
        None => "attachment".to_owned(),
        Some(name)
            if name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
        {
            format!("attachment; filename=\"{name}\"")
        }
        Some(name) => format!("attachment; filename*=utf-8''{}", percent_encode(name)),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`
pub(super) async fn thumbnail(_auth: Auth) -> ApiError {
    ApiError::not_found(
        "No thumbnails: media on this server is end-to-end encrypted, so only clients can make them",
    )
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}` (and the
/// `{fileName}` and thumbnail variants)
pub(super) async fn legacy() -> ApiError {
    ApiError::not_found(
        "Unauthenticated media is not served; use /_matrix/client/v1/media/download with an access token",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_is_safely_quoted() {
        assert_eq!(content_disposition(None), "attachment");
        assert_eq!(
            content_disposition(Some("photo.jpg")),
            "attachment; filename=\"photo.jpg\""
        );
        assert_eq!(
            content_disposition(Some("a\"b\r\nX: y")),
            "attachment; filename*=utf-8''a%22b%0D%0AX%3A%20y"
        );
        assert_eq!(
            content_disposition(Some("größe.txt")),
            "attachment; filename*=utf-8''gr%C3%B6%C3%9Fe.txt"
        );
    }
}
