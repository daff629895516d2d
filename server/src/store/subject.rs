//! Reading everything that names one person, table by table, for erasure
//! and subject-access exports (see `personal_data` for the registry).
//!
//! Finding a user id inside JSON uses `LIKE` as a coarse filter (its `_`
//! wildcard and SQLite's case folding only widen the match), then an exact
//! substring check here, so both backends return the same rows.

use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// `%<user id>%` for `LIKE`. User ids cannot contain `%`, and a `_` in
/// them matching any character only widens the coarse filter.
pub fn like_pattern(user_id: &str) -> String {
    format!("%{user_id}%")
}

/// One column of a row rendered as JSON.
#[derive(Clone, Copy)]
pub enum Col {
    /// Text (or NULL).
    Text(&'static str),
    /// An integer (or NULL).
    Int(&'static str),
    /// An integer flag, as a boolean.
    Flag(&'static str),
    /// Text holding JSON, parsed (NULL stays null; unparsable text stays text).
    Json(&'static str),
}

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::Text(n) | Col::Int(n) | Col::Flag(n) | Col::Json(n) => n,
        }
    }
}

fn row_json(row: &AnyRow, cols: &[Col]) -> Result<Value, sqlx::Error> {
    let mut out = Map::new();
    for (i, col) in cols.iter().enumerate() {
        let value = match col {
            Col::Text(_) => row
                .try_get::<Option<String>, _>(i)?
                .map_or(Value::Null, Value::String),
            Col::Int(_) => row
                .try_get::<Option<i64>, _>(i)?
                .map_or(Value::Null, Value::from),
            Col::Flag(_) => row
                .try_get::<Option<i64>, _>(i)?
                .map_or(Value::Null, |v| Value::Bool(v != 0)),
            Col::Json(_) => row
                .try_get::<Option<String>, _>(i)?
                .map_or(Value::Null, |s| {
                    serde_json::from_str(&s).unwrap_or(Value::String(s))
                }),
        };
        out.insert(col.name().to_owned(), value);
    }
    Ok(Value::Object(out))
}

/// `SELECT <cols> FROM <table> WHERE <filter>` with every `$n` bound to
/// `binds[n-1]`, each row as a JSON object keyed by column name.
pub async fn rows(
    c: &mut AnyConnection,
    table: &str,
    cols: &[Col],
    filter: &str,
    order: &str,
    binds: &[&str],
) -> Result<Vec<Value>, sqlx::Error> {
    let names: Vec<&str> = cols.iter().map(|c| c.name()).collect();
    let sql = format!(
        "SELECT {} FROM {table} WHERE {filter} ORDER BY {order}",
        names.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    query
        .fetch_all(c)
        .await?
        .iter()
        .map(|r| row_json(r, cols))
        .collect()
}

/// An event row, with its JSON still as stored text so that rewriting it
/// changes nothing else.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub pos: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub sender_device: Option<String>,
    pub txn_id: Option<String>,
    pub event_type: String,
    pub state_key: Option<String>,
    pub content: String,
    pub prev_content: Option<String>,
    pub redacts: Option<String>,
    pub redacted_by: Option<String>,
    pub origin_server_ts: i64,
}

impl EventRow {
    pub fn names(&self, user_id: &str) -> bool {
        self.sender == user_id
            || self.state_key.as_deref() == Some(user_id)
            || self.content.contains(user_id)
            || self
                .prev_content
                .as_deref()
                .is_some_and(|p| p.contains(user_id))
    }

    pub fn to_json(&self) -> Value {
        let parse = |s: &str| serde_json::from_str(s).unwrap_or(Value::String(s.to_owned()));
        serde_json::json!({
            "event_id": self.event_id,
            "room_id": self.room_id,
            "sender": self.sender,
            "sender_device": self.sender_device,
            "type": self.event_type,
            "state_key": self.state_key,
            "origin_server_ts": self.origin_server_ts,
            "stream_pos": self.pos,
            "content": parse(&self.content),
            "prev_content": self.prev_content.as_deref().map(parse),
            "redacts": self.redacts,
            "redacted_by": self.redacted_by,
        })
    }
}

/// Every event that names `user_id`: sent by them, about them (state key),
/// or mentioning them in its content, in stream order.
pub async fn events_naming(
    c: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT stream_pos, event_id, room_id, sender, sender_device, txn_id, event_type, state_key, \
         content, prev_content, redacts, redacted_by, origin_server_ts FROM events \
         WHERE sender = $1 OR state_key = $1 OR content LIKE $2 OR prev_content LIKE $2 ORDER BY stream_pos",
    )
    .bind(user_id)
    .bind(like_pattern(user_id))
    .fetch_all(c)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let event = EventRow {
            pos: r.try_get(0)?,
            event_id: r.try_get(1)?,
            room_id: r.try_get(2)?,
            sender: r.try_get(3)?,
            sender_device: r.try_get(4)?,
            txn_id: r.try_get(5)?,
            event_type: r.try_get(6)?,
            state_key: r.try_get(7)?,
            content: r.try_get(8)?,
            prev_content: r.try_get(9)?,
            redacts: r.try_get(10)?,
            redacted_by: r.try_get(11)?,
            origin_server_ts: r.try_get(12)?,
        };
        if event.names(user_id) {
            out.push(event);
        }
    }
    Ok(out)
}

/// Whether `event_id` is part of its room's current state.
pub async fn is_current_state(c: &mut AnyConnection, event_id: &str) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM current_state WHERE event_id = $1")
        .bind(event_id)
        .fetch_one(c)
        .await?;
    Ok(n > 0)
}

/// A media row's id and size.
pub struct Upload {
    pub media_id: String,
    pub size: i64,
}

pub async fn uploads(c: &mut AnyConnection, user_id: &str) -> Result<Vec<Upload>, sqlx::Error> {
    sqlx::query(
        "SELECT media_id, size FROM media WHERE uploader = $1 ORDER BY created_ts, media_id",
    )
    .bind(user_id)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        Ok(Upload {
            media_id: r.try_get(0)?,
            size: r.try_get(1)?,
        })
    })
    .collect()
}

/// The events carrying `media_id`.
pub async fn media_events(
    c: &mut AnyConnection,
    media_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT event_id FROM event_media WHERE media_id = $1 ORDER BY event_id")
        .bind(media_id)
        .fetch_all(c)
        .await
}

pub async fn count(
    c: &mut AnyConnection,
    table: &str,
    filter: &str,
    binds: &[&str],
) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT COUNT(*) FROM {table} WHERE {filter}");
    let mut query = sqlx::query_scalar(&sql);
    for bind in binds {
        query = query.bind(*bind);
    }
    query.fetch_one(c).await
}
