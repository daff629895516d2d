//! Metadata of uploaded media. The bytes live on disk under the media
//! directory (see `service::media`); a row exists only once its file is in place.

use std::path::{Path, PathBuf};

use sqlx::{AnyConnection, Row};

use super::{WriteTx, Writer};

/// `<media_dir>/<first two chars>/<media_id>`: spreads files over
/// subdirectories so no single directory grows huge.
pub fn path(media_dir: &Path, media_id: &str) -> PathBuf {
    media_dir
        .join(&media_id[..2.min(media_id.len())])
        .join(media_id)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub media_id: String,
    pub uploader: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub created_ts: i64,
}

pub async fn insert(w: &mut impl Writer, media: &Media) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO media (media_id, uploader, content_type, filename, size, created_ts) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&media.media_id)
    .bind(&media.uploader)
    .bind(media.content_type.as_deref())
    .bind(media.filename.as_deref())
    .bind(media.size)
    .bind(media.created_ts)
    .execute(w.conn())
    .await?;
    Ok(())
}

pub async fn get(c: &mut AnyConnection, media_id: &str) -> Result<Option<Media>, sqlx::Error> {
    sqlx::query(
        "SELECT media_id, uploader, content_type, filename, size, created_ts FROM media WHERE media_id = $1",
    )
    .bind(media_id)
    .fetch_optional(c)
    .await?
    .map(|r| {
        Ok(Media {
            media_id: r.try_get(0)?,
            uploader: r.try_get(1)?,
            content_type: r.try_get(2)?,
            filename: r.try_get(3)?,
            size: r.try_get(4)?,
            created_ts: r.try_get(5)?,
        })
    })
    .transpose()
}

/// Records that `event_id` carries `media_id`, so the file goes when the
/// last event carrying it is purged.
pub async fn attach(tx: &mut WriteTx, event_id: &str, media_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_media (event_id, media_id) VALUES ($1, $2) ON CONFLICT (event_id, media_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(media_id)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// The events `media_id` is attached to, as `(room_id, sent_ts)`; `None`
/// for a link whose event is already gone.
pub async fn attached_to(
    c: &mut AnyConnection,
    media_id: &str,
) -> Result<Vec<Option<(String, i64)>>, sqlx::Error> {
    sqlx::query(
        "SELECT e.room_id, e.origin_server_ts FROM event_media m LEFT JOIN events e ON e.event_id = m.event_id \
         WHERE m.media_id = $1",
    )
    .bind(media_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        let room: Option<String> = r.try_get(0)?;
        let ts: Option<i64> = r.try_get(1)?;
        Ok(room.zip(ts))
    })
    .collect()
}

pub async fn delete(tx: &mut WriteTx, media_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM event_media WHERE media_id = $1")
        .bind(media_id)
        .execute(tx.conn())
        .await?;
    let r = sqlx::query("DELETE FROM media WHERE media_id = $1")
        .bind(media_id)
        .execute(tx.conn())
        .await?;
    Ok(r.rows_affected() == 1)
}
