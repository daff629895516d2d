//! Per-user account data (global and per room) and stored `/sync` filters.
//!
//! Global account data uses `room_id = ""`, so one primary key covers both
//! scopes. Content is stored as JSON text; every write carries the stream
//! position `/sync` uses to find what changed.

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{codec, WriteTx};

/// Inserts or replaces one account-data entry at stream position `pos`.
pub async fn put(
    tx: &mut WriteTx,
    user_id: &str,
    room_id: &str,
    data_type: &str,
    content: &Value,
    pos: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO account_data (user_id, room_id, data_type, content, stream_pos) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
    )
    .bind(user_id)
    .bind(room_id)
    .bind(data_type)
    .bind(content.to_string())
    .bind(pos)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn get(
    c: &mut AnyConnection,
    user_id: &str,
    room_id: &str,
    data_type: &str,
) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> = sqlx::query_scalar(
        "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
    )
    .bind(user_id)
    .bind(room_id)
    .bind(data_type)
    .fetch_optional(c)
    .await?;
    text.map(|t| codec::decode(&t, "account_data.content"))
        .transpose()
}

/// Entries of `user_id` written in `(from, to]`: (room_id or "" for global,
/// type, content), oldest first.
pub async fn changed_since(
    c: &mut AnyConnection,
    user_id: &str,
    from: i64,
    to: i64,
) -> Result<Vec<(String, String, Value)>, sqlx::Error> {
    sqlx::query(
        "SELECT room_id, data_type, content FROM account_data \
         WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos",
    )
    .bind(user_id)
    .bind(from)
    .bind(to)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        let content: String = r.try_get(2)?;
        Ok((
            r.try_get(0)?,
            r.try_get(1)?,
            codec::decode(&content, "account_data.content")?,
        ))
    })
    .collect()
}

/// Stores `filter` for `user_id` and returns its id. Clients post the same
/// filter on every start, so an identical stored filter's id is reused
/// rather than growing the table without bound.
pub async fn put_filter(
    tx: &mut WriteTx,
    user_id: &str,
    filter: &Value,
) -> Result<String, sqlx::Error> {
    let text = filter.to_string();
    let existing: Option<String> =
        sqlx::query_scalar("SELECT filter_id FROM filters WHERE user_id = $1 AND filter_json = $2")
            .bind(user_id)
            .bind(&text)
            .fetch_optional(tx.conn())
            .await?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let filter_id = crate::ids::random_string(16);
    sqlx::query("INSERT INTO filters (user_id, filter_id, filter_json) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(&filter_id)
        .bind(&text)
        .execute(tx.conn())
        .await?;
    Ok(filter_id)
}

pub async fn get_filter(
    c: &mut AnyConnection,
    user_id: &str,
    filter_id: &str,
) -> Result<Option<Value>, sqlx::Error> {
    let text: Option<String> =
        sqlx::query_scalar("SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user_id)
            .bind(filter_id)
            .fetch_optional(c)
            .await?;
    text.map(|t| codec::decode(&t, "filters.filter_json"))
        .transpose()
}
