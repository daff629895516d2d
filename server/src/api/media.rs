//! Content repository. Clients upload files they have already encrypted, so
//! the server stores opaque bytes: no thumbnails, no previews, and downloads
//! only through the authenticated `/_matrix/client/v1/media` endpoints.

use std::path::{Path, PathBuf};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::session::Auth;
use crate::service::Context;
use crate::store::media::{self, path as media_path, Media};

const MAX_FILENAME_LEN: usize = 255;
const MAX_CONTENT_TYPE_LEN: usize = 255;
const READ_CHUNK: usize = 64 * 1024;

#[derive(Deserialize)]
pub(super) struct UploadQuery {
    filename: Option<String>,
}

/// `POST /_matrix/media/v3/upload`
pub(super) async fn upload(
    State(state): State<Context>,
    auth: Auth,
    Query(query): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let limit = state.config.limits.max_upload_size as u64;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_CONTENT_TYPE_LEN)
        .map(str::to_owned);
    let filename = query.filename.filter(|f| !f.is_empty());
    if let Some(name) = &filename {
        if name.len() > MAX_FILENAME_LEN || name.chars().any(char::is_control) {
            return Err(ApiError::invalid_param(
                "filename must be at most 255 bytes without control characters",
            ));
        }
    }

    let media_id = crate::ids::random_string(24);
    let path = media_path(&state.config.media_dir(), &media_id);
    let size = write_file(&path, body, limit).await?;
    let row = Media {
        media_id: media_id.clone(),
        uploader: auth.user_id,
        content_type,
        filename,
        size: size as i64,
        created_ts: state.now_ms(),
    };
    let inserted = match state.store.read().await {
        Ok(mut conn) => media::insert(&mut conn, &row).await,
        Err(e) => Err(e),
    };
    if let Err(e) = inserted {
        // Without its row the file is unreachable; do not keep it.
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e.into());
    }
    Ok(Json(json!({
        "content_uri": format!("mxc://{}/{media_id}", state.server_name())
    })))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!("uploads are limited to {limit} bytes"))
}

/// Media ids name files, so only a path-safe alphabet is accepted.
fn is_valid_media_id(id: &str) -> bool {
    (2..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Removes a temporary upload unless it was renamed into place, so an
/// aborted request (client gone, size exceeded) leaves nothing behind.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Streams `body` into a temporary file beside `path`, then renames it into
/// place: a crash never leaves a partial file under the final name.
async fn write_file(path: &Path, body: Body, limit: u64) -> ApiResult<u64> {
    let dir = path.parent().ok_or_else(ApiError::internal)?;
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .await?;
    let temp_path = dir.join(format!(".upload-{}", crate::ids::random_string(16)));
    let mut temp = TempFile(Some(temp_path.clone()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp_path)
        .await?;
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::new(ErrCode::Unknown, "the upload was interrupted"))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        file.write_all(&chunk).await?;
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&temp_path, path).await?;
    temp.0 = None;
    // The rename is durable only once the directory entry is flushed.
    if let Ok(d) = tokio::fs::File::open(dir).await {
        let _ = d.sync_all().await;
    }
    Ok(size)
}

/// `GET /_matrix/client/v1/media/config` and `GET /_matrix/media/v3/config`
pub(super) async fn config(State(state): State<Context>, _auth: Auth) -> Json<Value> {
    Json(json!({ "m.upload.size": state.config.limits.max_upload_size }))
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
    let not_found = || ApiError::not_found("Media not found");
    // Without federation, media of other servers can never be here.
    if server_name != state.server_name() || !is_valid_media_id(media_id) {
        return Err(not_found());
    }
    let row = {
        let mut conn = state.store.read().await?;
        let row = media::get(&mut conn, media_id)
            .await?
            .ok_or_else(not_found)?;
        if crate::service::retention::media_expired(state, &mut conn, &row, state.now_ms()).await? {
            return Err(not_found());
        }
        row
    };
    let file = match tokio::fs::File::open(media_path(&state.config.media_dir(), media_id)).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("media row without its file");
            return Err(not_found());
        }
        Err(e) => return Err(e.into()),
    };
    let len = file.metadata().await?.len();
    let chunks = futures::stream::unfold(Some(file), |file| async move {
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
    let content_type = row
        .content_type
        .as_deref()
        .and_then(|t| HeaderValue::from_str(t).ok())
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(file_name.as_deref().or(row.filename.as_deref())),
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
    fn media_ids_cannot_traverse() {
        assert!(is_valid_media_id("abcDEF012_-x"));
        for bad in ["", "a", "../etc", "a/b", "a.b", "a%2Fb", "ab\0"] {
            assert!(!is_valid_media_id(bad), "{bad:?}");
        }
        assert_eq!(
            media_path(Path::new("/m"), "abcdef"),
            PathBuf::from("/m/ab/abcdef")
        );
    }

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
