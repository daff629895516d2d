//! Metadata of uploaded media. The bytes live on disk under the media
//! directory (see `api::media`); a row exists only once its file is in place.

use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub media_id: String,
    pub uploader: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: i64,
    pub created_ts: i64,
}

pub async fn insert(c: &mut AnyConnection, media: &Media) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO media (media_id, uploader, content_type, filename, size, created_ts) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&media.media_id)
    .bind(&media.uploader)
    .bind(media.content_type.as_deref())
    .bind(media.filename.as_deref())
    .bind(media.size)
    .bind(media.created_ts)
    .execute(c)
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
