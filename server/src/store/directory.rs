//! The room directory (which rooms are published), the state its entries
//! and space hierarchies are summarised from, and the user directory's
//! candidates with the attributes directory sign-in imported for them.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::{codec, params, WriteTx};

/// The state types a room's directory entry is built from.
pub const SUMMARY_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
];

const IDS_PER_QUERY: usize = params::MAX;

/// Whether the room is published; `None` when there is no such room.
pub async fn published(c: &mut AnyConnection, room_id: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query("SELECT is_public FROM rooms WHERE room_id = $1")
        .bind(room_id)
        .fetch_optional(c)
        .await?
        .map(|r| codec::flag(&r, 0))
        .transpose()
}

pub async fn set_published(
    tx: &mut WriteTx,
    room_id: &str,
    published: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE rooms SET is_public = $1 WHERE room_id = $2")
        .bind(codec::flag_param(published))
        .bind(room_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Every published room's id.
pub async fn published_rooms(c: &mut AnyConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT room_id FROM rooms WHERE is_public = 1 ORDER BY room_id")
        .fetch_all(c)
        .await
}

/// The current [`SUMMARY_TYPES`] state (state key `""`) of `room_ids`, as
/// (room id, event type, content).
pub async fn summary_state(
    c: &mut AnyConnection,
    room_ids: &[String],
) -> Result<Vec<(String, String, Value)>, sqlx::Error> {
    let types = SUMMARY_TYPES
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::new();
    for chunk in room_ids.chunks(IDS_PER_QUERY) {
        let sql = format!(
            "SELECT s.room_id, s.event_type, e.content FROM current_state s \
             JOIN events e ON e.event_id = s.event_id \
             WHERE s.state_key = '' AND s.event_type IN ({types}) AND s.room_id IN ({})",
            params::list(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for r in query.fetch_all(&mut *c).await? {
            out.push((
                r.try_get(0)?,
                r.try_get(1)?,
                codec::json(&r, 2, "events.content")?,
            ));
        }
    }
    Ok(out)
}

/// How many members each of `room_ids` has joined (rooms with none are absent).
pub async fn joined_counts(
    c: &mut AnyConnection,
    room_ids: &[String],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut out = HashMap::new();
    for chunk in room_ids.chunks(IDS_PER_QUERY) {
        let sql = format!(
            "SELECT room_id, COUNT(*) FROM memberships WHERE membership = 'join' \
             AND room_id IN ({}) GROUP BY room_id",
            params::list(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for id in chunk {
            query = query.bind(id);
        }
        for r in query.fetch_all(&mut *c).await? {
            out.insert(r.try_get(0)?, r.try_get(1)?);
        }
    }
    Ok(out)
}

/// One current state event of a type with many state keys (`m.space.child`).
pub struct KeyedState {
    pub state_key: String,
    pub sender: String,
    pub content: Value,
    pub origin_server_ts: i64,
}

/// The room's current state events of `event_type`, by state key.
pub async fn state_of_type(
    c: &mut AnyConnection,
    room_id: &str,
    event_type: &str,
) -> Result<Vec<KeyedState>, sqlx::Error> {
    sqlx::query(
        "SELECT s.state_key, e.sender, e.content, e.origin_server_ts FROM current_state s \
         JOIN events e ON e.event_id = s.event_id \
         WHERE s.room_id = $1 AND s.event_type = $2 ORDER BY s.state_key",
    )
    .bind(room_id)
    .bind(event_type)
    .fetch_all(c)
    .await?
    .into_iter()
    .map(|r| {
        Ok(KeyedState {
            state_key: r.try_get(0)?,
            sender: r.try_get(1)?,
            content: codec::json(&r, 2, "events.content")?,
            origin_server_ts: r.try_get(3)?,
        })
    })
    .collect()
}

/// A user the directory may show.
pub struct DirectoryUser {
    pub user_id: String,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub attributes: Attributes,
}

/// What directory sign-in imported of a person (`directory_attributes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub mail: Option<String>,
    pub department: Option<String>,
}

/// Stores `user_id`'s imported attributes; none at all deletes the row.
pub async fn set_attributes(
    tx: &mut WriteTx,
    user_id: &str,
    attributes: &Attributes,
    now: i64,
) -> Result<(), sqlx::Error> {
    if attributes == &Attributes::default() {
        return delete_attributes(tx, user_id).await;
    }
    sqlx::query(
        "INSERT INTO directory_attributes (user_id, mail, department, updated_ts) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
         mail = excluded.mail, department = excluded.department, updated_ts = excluded.updated_ts",
    )
    .bind(user_id)
    .bind(attributes.mail.as_deref())
    .bind(attributes.department.as_deref())
    .bind(now)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn delete_attributes(tx: &mut WriteTx, user_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM directory_attributes WHERE user_id = $1")
        .bind(user_id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Every user's imported attributes.
pub async fn all_attributes(
    c: &mut AnyConnection,
) -> Result<HashMap<String, Attributes>, sqlx::Error> {
    sqlx::query("SELECT user_id, mail, department FROM directory_attributes")
        .fetch_all(c)
        .await?
        .into_iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Attributes {
                    mail: r.try_get(1)?,
                    department: r.try_get(2)?,
                },
            ))
        })
        .collect()
}

/// Whom a search looks among.
pub enum Among<'a> {
    /// Every active account.
    Everyone,
    /// People joined to a room `searcher` is joined to, or to a published room.
    RoomsOf { searcher: &'a str },
}

/// Active accounts (not deactivated; erased ones have no row) among
/// `among`, except `excluded`, whose user id, display name, mail or
/// department contains `contains` (lower case ASCII, compared with the
/// lower-cased columns), ordered by user id, at most `cap` of them.
pub async fn candidates(
    c: &mut AnyConnection,
    among: Among<'_>,
    excluded: &str,
    contains: Option<&str>,
    cap: i64,
) -> Result<Vec<DirectoryUser>, sqlx::Error> {
    let mut sql = String::from(
        "SELECT u.user_id, u.displayname, u.avatar_url, a.mail, a.department FROM users u \
         LEFT JOIN directory_attributes a ON a.user_id = u.user_id \
         WHERE u.deactivated = 0 AND u.user_id <> $1",
    );
    let searcher = match among {
        Among::Everyone => None,
        Among::RoomsOf { searcher } => {
            sql.push_str(
                " AND EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = u.user_id \
                 AND m.membership = 'join' AND (m.room_id IN (SELECT o.room_id FROM memberships o \
                 WHERE o.user_id = $2 AND o.membership = 'join') \
                 OR m.room_id IN (SELECT r.room_id FROM rooms r WHERE r.is_public = 1)))",
            );
            Some(searcher)
        }
    };
    let pattern = contains.map(|word| {
        let n = if searcher.is_some() { 3 } else { 2 };
        sql.push_str(&format!(
            " AND (LOWER(u.user_id) LIKE ${n} ESCAPE '\\' \
             OR LOWER(COALESCE(u.displayname, '')) LIKE ${n} ESCAPE '\\' \
             OR LOWER(COALESCE(a.mail, '')) LIKE ${n} ESCAPE '\\' \
             OR LOWER(COALESCE(a.department, '')) LIKE ${n} ESCAPE '\\')"
        ));
        super::codec::contains_pattern(word)
    });
    sql.push_str(&format!(" ORDER BY u.user_id LIMIT {}", cap.max(0)));
    let mut query = sqlx::query(&sql).bind(excluded);
    if let Some(s) = searcher {
        query = query.bind(s);
    }
    if let Some(p) = pattern {
        query = query.bind(p);
    }
    query
        .fetch_all(c)
        .await?
        .into_iter()
        .map(|r| {
            Ok(DirectoryUser {
                user_id: r.try_get(0)?,
                displayname: r.try_get(1)?,
                avatar_url: r.try_get(2)?,
                attributes: Attributes {
                    mail: r.try_get(3)?,
                    department: r.try_get(4)?,
                },
            })
        })
        .collect()
}
