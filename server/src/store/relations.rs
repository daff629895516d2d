//! Events found through the event they relate to (`events.relates_to`):
//! the children of one event for `/relations`, the light rows bundled
//! aggregations are computed from, and thread roots ordered by their latest
//! reply for `/threads`. Every read applies the reader's history visibility
//! and the room's retention cutoff, as `events::range` does.

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::events::{self, StoredEvent, COLUMNS};
use super::readable::Readable;
use super::{params, WriteTx};

/// Relation types that bundled aggregations summarize (spec: "Aggregations
/// of child events"). Annotations are not among them since spec v1.7.
pub const BUNDLED: &[&str] = &["m.thread", "m.replace", "m.reference"];

/// How deep `recurse=true` follows relations of relations. The spec asks
/// for at least 3; deeper trees are left out, never an error.
pub const MAX_DEPTH: u32 = 3;

/// A page of the children of one event.
pub struct Children<'a> {
    pub room_id: &'a str,
    pub parent: &'a str,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Also follow relations of relations, up to [`MAX_DEPTH`].
    pub recurse: bool,
    /// Inclusive stream-position bounds.
    pub low: i64,
    pub high: i64,
    pub limit: i64,
    pub backwards: bool,
    pub cutoff: i64,
    pub readable: &'a Readable,
}

/// Unexpired (message events before the cutoff) and readable; the readable
/// rule takes the user id as `$2`, the cutoff is `$3`, and the readable
/// intervals' bounds `$first_bound` onwards (`Readable::bind_bounds`, last).
fn visible(readable: &Readable, first_bound: usize) -> String {
    format!(
        "(state_key IS NOT NULL OR origin_server_ts >= $3) AND {}",
        readable.sql("$2", first_bound)
    )
}

pub async fn children(
    c: &mut AnyConnection,
    q: &Children<'_>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let order = if q.backwards { "DESC" } else { "ASC" };
    // `$1` room, `$2` reader, `$3` cutoff, `$4` parent, `$5`/`$6` bounds,
    // `$7` limit, then the optional filters.
    let mut filters = String::new();
    let mut next = 8;
    for (column, value) in [("rel_type", q.rel_type), ("event_type", q.event_type)] {
        if value.is_some() {
            filters.push_str(&format!(" AND {column} = ${next}"));
            next += 1;
        }
    }
    let related = if q.recurse {
        format!(
            "event_id IN (WITH RECURSIVE tree(event_id, depth) AS ( \
               SELECT event_id, 1 FROM events WHERE relates_to = $4 AND room_id = $1 \
               UNION ALL \
               SELECT e.event_id, t.depth + 1 FROM events e JOIN tree t ON e.relates_to = t.event_id \
               WHERE t.depth < {MAX_DEPTH} AND e.room_id = $1) \
             SELECT event_id FROM tree)"
        )
    } else {
        "relates_to = $4".to_owned()
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND {related} \
         AND stream_pos >= $5 AND stream_pos <= $6 AND {visible}{filters} \
         ORDER BY stream_pos {order} LIMIT $7",
        visible = visible(q.readable, next),
    );
    let mut query = sqlx::query(&sql)
        .bind(q.room_id)
        .bind(&q.readable.user_id)
        .bind(q.cutoff)
        .bind(q.parent)
        .bind(q.low)
        .bind(q.high)
        .bind(q.limit);
    for value in [q.rel_type, q.event_type].into_iter().flatten() {
        query = query.bind(value);
    }
    events::all(c, q.readable.bind_bounds(query)).await
}

/// What bundling needs to know of one child, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationRow {
    pub parent: String,
    pub rel_type: String,
    pub pos: i64,
    pub event_id: String,
    pub sender: String,
    pub event_type: String,
}

/// The children of `parents` whose relation is one of [`BUNDLED`], oldest
/// first.
pub async fn bundled_rows(
    c: &mut AnyConnection,
    room_id: &str,
    parents: &[&str],
    readable: &Readable,
    cutoff: i64,
) -> Result<Vec<RelationRow>, sqlx::Error> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    let types: Vec<String> = BUNDLED.iter().map(|t| format!("'{t}'")).collect();
    let sql = format!(
        "SELECT relates_to, rel_type, stream_pos, event_id, sender, event_type FROM events \
         WHERE room_id = $1 AND relates_to IN ({}) AND rel_type IN ({}) AND {} ORDER BY stream_pos",
        params::list(4, parents.len()),
        types.join(", "),
        visible(readable, 4 + parents.len()),
    );
    let mut query = sqlx::query(&sql)
        .bind(room_id)
        .bind(&readable.user_id)
        .bind(cutoff);
    for parent in parents {
        query = query.bind(*parent);
    }
    readable
        .bind_bounds(query)
        .fetch_all(c)
        .await?
        .into_iter()
        .map(|r| {
            Ok(RelationRow {
                parent: r.try_get(0)?,
                rel_type: r.try_get(1)?,
                pos: r.try_get(2)?,
                event_id: r.try_get(3)?,
                sender: r.try_get(4)?,
                event_type: r.try_get(5)?,
            })
        })
        .collect()
}

/// Events of one room by id, in stream order; ids not found are left out.
pub async fn by_ids(
    c: &mut AnyConnection,
    room_id: &str,
    ids: &[&str],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE room_id = $1 AND event_id IN ({}) ORDER BY stream_pos",
        params::list(2, ids.len())
    );
    let mut query = sqlx::query(&sql).bind(room_id);
    for id in ids {
        query = query.bind(*id);
    }
    events::all(c, query).await
}

/// A thread as `/threads` lists it: its root and its latest reply's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadActivity {
    pub root: String,
    pub latest: i64,
}

/// Threads of a room whose latest visible reply is before `before`, most
/// recently active first; with `participant`, only threads that user
/// started or replied in.
pub async fn threads(
    c: &mut AnyConnection,
    room_id: &str,
    participant: Option<&str>,
    before: i64,
    limit: i64,
    readable: &Readable,
    cutoff: i64,
) -> Result<Vec<ThreadActivity>, sqlx::Error> {
    let participated = if participant.is_some() {
        " AND (SUM(CASE WHEN sender = $2 THEN 1 ELSE 0 END) > 0 \
           OR relates_to IN (SELECT event_id FROM events WHERE room_id = $1 AND sender = $2))"
    } else {
        ""
    };
    let sql = format!(
        "SELECT relates_to, MAX(stream_pos) FROM events \
         WHERE room_id = $1 AND rel_type = 'm.thread' AND {} \
         GROUP BY relates_to HAVING MAX(stream_pos) < $4{participated} \
         ORDER BY MAX(stream_pos) DESC LIMIT $5",
        visible(readable, 6),
    );
    let query = sqlx::query(&sql)
        .bind(room_id)
        .bind(&readable.user_id)
        .bind(cutoff)
        .bind(before)
        .bind(limit);
    readable
        .bind_bounds(query)
        .fetch_all(c)
        .await?
        .into_iter()
        .map(|r| {
            Ok(ThreadActivity {
                root: r.try_get(0)?,
                latest: r.try_get(1)?,
            })
        })
        .collect()
}

/// The root of the thread `event_id` replies in, if it is a thread reply.
pub async fn thread_root(
    c: &mut AnyConnection,
    room_id: &str,
    event_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT relates_to FROM events WHERE room_id = $1 AND event_id = $2 AND rel_type = 'm.thread'",
    )
    .bind(room_id)
    .bind(event_id)
    .fetch_optional(c)
    .await
}

/// Fills in `relates_to` and `rel_type` for rows written before the columns
/// existed, a batch at a time so a large database is not read at once.
pub async fn backfill(tx: &mut WriteTx) -> Result<(), sqlx::Error> {
    const BATCH: i64 = 1000;
    let mut after = i64::MIN;
    loop {
        let rows = sqlx::query(
            "SELECT stream_pos, content FROM events WHERE stream_pos > $1 \
             AND content LIKE '%m.relates_to%' ORDER BY stream_pos LIMIT $2",
        )
        .bind(after)
        .bind(BATCH)
        .fetch_all(tx.conn())
        .await?;
        for row in &rows {
            let pos: i64 = row.try_get(0)?;
            let content: String = row.try_get(1)?;
            after = pos;
            let Ok(content) = serde_json::from_str::<Value>(&content) else {
                continue;
            };
            if let Some(relation) = cloister_proto::event::relation(&content) {
                sqlx::query(
                    "UPDATE events SET relates_to = $1, rel_type = $2 WHERE stream_pos = $3",
                )
                .bind(relation.event_id)
                .bind(relation.rel_type)
                .bind(pos)
                .execute(tx.conn())
                .await?;
            }
        }
        if (rows.len() as i64) < BATCH {
            return Ok(());
        }
    }
}
