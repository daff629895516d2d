//! Content repository. Clients upload files they have already encrypted, so
//! the server stores opaque bytes: no thumbnails, no previews. A file is
//! written in full before its row exists, so a row always has its file
//! (until the purge, which unlinks first).

use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::error::{ApiError, ApiResult, ErrCode};
use crate::service::Context;
use crate::store::media::{self, path as media_path, Media};

const MAX_FILENAME_LEN: usize = 255;
const MAX_CONTENT_TYPE_LEN: usize = 255;

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

/// What a client says about the file it uploads.
pub struct Upload<'a> {
    /// The declared length, refused early when over the limit (the bytes
    /// are counted as they arrive either way).
    pub declared_len: Option<u64>,
    /// Dropped when empty or unreasonably long.
    pub content_type: Option<&'a str>,
    pub filename: Option<String>,
}

/// Stores an upload by `uploader`; returns its `mxc://` URI.
pub async fn upload<S, B, E>(
    state: &Context,
    uploader: &str,
    upload: Upload<'_>,
    body: S,
) -> ApiResult<String>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let limit = state.config.limits.max_upload_size as u64;
    if upload.declared_len.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let content_type = upload
        .content_type
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= MAX_CONTENT_TYPE_LEN)
        .map(str::to_owned);
    let filename = upload.filename.filter(|f| !f.is_empty());
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
        uploader: uploader.to_owned(),
        content_type,
        filename,
        size: size as i64,
        created_ts: state.now_ms(),
    };
    let inserted = match state.store.autocommit().await {
        Ok(mut w) => media::insert(&mut w, &row).await,
        Err(e) => Err(e),
    };
    if let Err(e) = inserted {
        // Without its row the file is unreachable; do not keep it.
        let _ = tokio::fs::remove_file(&path).await;
        return Err(e.into());
    }
    Ok(format!("mxc://{}/{media_id}", state.server_name()))
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
async fn write_file<S, B, E>(path: &Path, mut body: S, limit: u64) -> ApiResult<u64>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
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
    let mut size: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::new(ErrCode::Unknown, "the upload was interrupted"))?;
        let chunk = chunk.as_ref();
        size += chunk.len() as u64;
        if size > limit {
            return Err(too_large(limit));
        }
        file.write_all(chunk).await?;
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

/// A stored file, opened for reading.
pub struct Download {
    pub file: tokio::fs::File,
    pub len: u64,
    pub content_type: Option<String>,
    /// The name given at upload.
    pub filename: Option<String>,
}

/// Opens `mxc://{server_name}/{media_id}`. Unknown, expired and missing
/// files all answer the same not-found.
pub async fn open(state: &Context, server_name: &str, media_id: &str) -> ApiResult<Download> {
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
    Ok(Download {
        file,
        len,
        content_type: row.content_type,
        filename: row.filename,
    })
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
}
