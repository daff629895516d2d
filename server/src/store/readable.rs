//! Which of a room's events one reader may see, as data the store filters
//! on. `service::visibility` works the intervals out from the reader's
//! membership history; this module applies them, in SQL for ranges and in
//! Rust for single events, from the one description so the two cannot
//! disagree.

use serde_json::Value;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::events::StoredEvent;
use super::WriteTx;

/// The `m.room.history_visibility` in force when an event was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Joined,
    Invited,
    Shared,
    WorldReadable,
}

impl Class {
    /// Unknown or missing values read as the most restrictive class, so a
    /// value the server does not understand never widens access.
    pub fn parse(value: Option<&str>) -> Class {
        match value {
            Some("world_readable") => Class::WorldReadable,
            Some("shared") => Class::Shared,
            Some("invited") => Class::Invited,
            _ => Class::Joined,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Joined => "joined",
            Class::Invited => "invited",
            Class::Shared => "shared",
            Class::WorldReadable => "world_readable",
        }
    }
}

/// Inclusive stream-position intervals, per visibility class, in which one
/// user may read events; plus that user's own membership events, which they
/// may always read (a declined invite or a ban must reach their client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readable {
    pub user_id: String,
    pub shared: Vec<(i64, i64)>,
    pub invited: Vec<(i64, i64)>,
    pub joined: Vec<(i64, i64)>,
}

/// More intervals than this only come from someone joining and leaving
/// hundreds of times; the oldest are dropped (which hides, never reveals).
const MAX_INTERVALS: usize = 64;

impl Readable {
    /// The intervals applied to a class, at most [`MAX_INTERVALS`]; None
    /// when the class is readable by anyone.
    fn intervals(&self, class: Class) -> Option<&[(i64, i64)]> {
        match class {
            Class::WorldReadable => None,
            Class::Shared => Some(applied(&self.shared)),
            Class::Invited => Some(applied(&self.invited)),
            Class::Joined => Some(applied(&self.joined)),
        }
    }

    /// True when the reader may see `event`.
    pub fn allows(&self, event: &StoredEvent) -> bool {
        if event.event_type == "m.room.member"
            && event.state_key.as_deref() == Some(self.user_id.as_str())
        {
            return true;
        }
        match self.intervals(Class::parse(event.history_visibility.as_deref())) {
            None => true,
            Some(list) => list.iter().any(|&(a, b)| a <= event.pos && event.pos <= b),
        }
    }

    /// The same rule as [`Readable::allows`] as an SQL condition over the
    /// `events` table; `user_param` is the placeholder bound to the user id,
    /// and the intervals' bounds are `$first_bound` onwards, bound by
    /// [`Readable::bind_bounds`] after every other parameter. The bounds are
    /// parameters, not inlined, so that readers with as many intervals share
    /// one statement text: each text is prepared (and on PostgreSQL planned)
    /// on its own, and per-reader texts kept the statement caches cold
    /// (docs/performance.md, "One statement text for every reader").
    pub fn sql(&self, user_param: &str, first_bound: usize) -> String {
        let mut next = first_bound;
        let mut within = |list: &[(i64, i64)]| {
            if list.is_empty() {
                return "1 = 0".to_owned();
            }
            let mut out = String::new();
            for _ in list {
                if !out.is_empty() {
                    out.push_str(" OR ");
                }
                out.push_str(&format!("stream_pos BETWEEN ${next} AND ${}", next + 1));
                next += 2;
            }
            out
        };
        let [shared, invited, joined] = self.classes().map(&mut within);
        format!(
            "(history_visibility = 'world_readable' \
             OR (event_type = 'm.room.member' AND state_key = {user_param}) \
             OR (history_visibility = 'shared' AND ({shared})) \
             OR (history_visibility = 'invited' AND ({invited})) \
             OR ((history_visibility IS NULL OR history_visibility NOT IN ('world_readable', 'shared', 'invited')) \
                 AND ({joined})))",
        )
    }

    /// Binds the bounds [`Readable::sql`] numbered, in its order.
    pub fn bind_bounds<'q>(
        &self,
        mut query: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for list in self.classes() {
            for &(low, high) in list {
                query = query.bind(low).bind(high);
            }
        }
        query
    }

    /// The shared, invited and joined intervals, as [`Readable::sql`]
    /// numbers them.
    fn classes(&self) -> [&[(i64, i64)]; 3] {
        [&self.shared, &self.invited, &self.joined].map(|list| applied(list))
    }
}

/// The intervals of a list that apply: at most [`MAX_INTERVALS`].
fn applied(list: &[(i64, i64)]) -> &[(i64, i64)] {
    &list[..list.len().min(MAX_INTERVALS)]
}

/// Keeps the last [`MAX_INTERVALS`] intervals, merging touching ones first.
pub fn normalize(mut list: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    list.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(list.len());
    for (a, b) in list {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    let excess = out.len().saturating_sub(MAX_INTERVALS);
    out.drain(..excess);
    out
}

/// Fills in `events.history_visibility` for rows written before the column
/// existed, room by room, from the visibility changes stored in each room.
pub async fn backfill(tx: &mut WriteTx) -> Result<(), sqlx::Error> {
    let changes = sqlx::query(
        "SELECT room_id, stream_pos, content FROM events \
         WHERE event_type = 'm.room.history_visibility' AND state_key = '' ORDER BY room_id, stream_pos",
    )
    .fetch_all(tx.conn())
    .await?;
    sqlx::query("UPDATE events SET history_visibility = 'shared' WHERE history_visibility IS NULL")
        .execute(tx.conn())
        .await?;
    let mut previous: Option<(String, Class)> = None;
    for (i, row) in changes.iter().enumerate() {
        let room: String = row.try_get(0)?;
        let pos: i64 = row.try_get(1)?;
        let content: String = row.try_get(2)?;
        let class = Class::parse(
            serde_json::from_str::<Value>(&content)
                .ok()
                .as_ref()
                .and_then(|c| c.get("history_visibility"))
                .and_then(Value::as_str),
        );
        let old = match &previous {
            Some((r, c)) if *r == room => *c,
            _ => Class::Shared,
        };
        let next = changes
            .get(i + 1)
            .filter(|n| n.try_get::<String, _>(0).is_ok_and(|r| r == room))
            .map(|n| n.try_get::<i64, _>(1))
            .transpose()?
            .unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE events SET history_visibility = $1 WHERE room_id = $2 AND stream_pos = $3",
        )
        .bind(old.max(class).as_str())
        .bind(&room)
        .bind(pos)
        .execute(tx.conn())
        .await?;
        sqlx::query(
            "UPDATE events SET history_visibility = $1 WHERE room_id = $2 AND stream_pos > $3 AND stream_pos < $4",
        )
        .bind(class.as_str())
        .bind(&room)
        .bind(pos)
        .bind(next)
        .execute(tx.conn())
        .await?;
        previous = Some((room, class));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// An event at `pos`, sent under history visibility `class`.
    pub(crate) fn event(
        pos: i64,
        class: &str,
        event_type: &str,
        state_key: Option<&str>,
    ) -> StoredEvent {
        StoredEvent {
            pos,
            event_id: format!("$e{pos}"),
            room_id: "!r:x".into(),
            sender: "@s:x".into(),
            sender_device: None,
            txn_id: None,
            event_type: event_type.into(),
            state_key: state_key.map(str::to_owned),
            content: json!({}),
            prev_content: None,
            redacts: None,
            redacted_by: None,
            origin_server_ts: 0,
            history_visibility: Some(class.into()),
        }
    }

    #[test]
    fn classes_use_their_own_intervals() {
        let r = Readable {
            user_id: "@u:x".into(),
            shared: vec![(0, 20)],
            invited: vec![(5, 20)],
            joined: vec![(10, 20)],
        };
        let msg = |pos, class| event(pos, class, "m.room.encrypted", None);
        assert!(r.allows(&msg(1, "shared")));
        assert!(!r.allows(&msg(1, "invited")));
        assert!(r.allows(&msg(6, "invited")));
        assert!(!r.allows(&msg(6, "joined")));
        assert!(r.allows(&msg(15, "joined")));
        assert!(!r.allows(&msg(21, "shared")));
        assert!(r.allows(&msg(99, "world_readable")));
        assert!(!r.allows(&msg(6, "something_new")), "unknown is joined");
        assert!(r.allows(&event(99, "joined", "m.room.member", Some("@u:x"))));
        assert!(!r.allows(&event(99, "joined", "m.room.member", Some("@v:x"))));
    }

    #[test]
    fn nothing_readable_is_false_in_sql() {
        let sql = Readable {
            user_id: "@u:x".into(),
            ..Readable::default()
        }
        .sql("$9", 10);
        assert!(sql.contains("state_key = $9"));
        assert_eq!(sql.matches("1 = 0").count(), 3);
        assert!(!sql.contains("$10"));
    }

    /// Readers with as many intervals share one statement text, whatever
    /// their positions: the bounds are parameters.
    #[test]
    fn readers_alike_share_one_text() {
        let reader = |user: &str, at: i64| Readable {
            user_id: user.into(),
            shared: vec![(at, i64::MAX)],
            invited: vec![],
            joined: vec![(1, 2), (at, at + 7)],
        };
        let a = reader("@a:x", 10).sql("$6", 7);
        assert_eq!(a, reader("@b:x", 99).sql("$6", 7));
        assert!(a.contains("$12") && !a.contains("$13"), "{a}");
        assert!(!a.contains(" 99") && !a.contains(" 10 "), "{a}");
    }

    /// The SQL condition keeps exactly the events `allows` does, with its
    /// bounds bound as [`Readable::bind_bounds`] numbers them.
    #[tokio::test]
    async fn sql_agrees_with_allows() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = super::super::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let classes = ["joined", "invited", "shared", "world_readable", "new"];
        let mut all = vec![];
        let mut tx = store.write().await.unwrap();
        for pos in 1..=40i64 {
            let class = classes[pos as usize % classes.len()];
            let member = pos % 7 == 0;
            let state_key = member.then_some(if pos % 14 == 0 { "@u:x" } else { "@v:x" });
            let kind = if member {
                "m.room.member"
            } else {
                "m.room.encrypted"
            };
            sqlx::query(
                "INSERT INTO events (stream_pos, event_id, room_id, sender, event_type, state_key, \
                 content, origin_server_ts, history_visibility) \
                 VALUES ($1, $2, '!r:x', '@s:x', $3, $4, '{}', 0, $5)",
            )
            .bind(pos)
            .bind(format!("$e{pos}"))
            .bind(kind)
            .bind(state_key)
            .bind(class)
            .execute(tx.conn())
            .await
            .unwrap();
            all.push(event(pos, class, kind, state_key));
        }
        tx.commit().await.unwrap();
        let readers = [
            Readable {
                user_id: "@u:x".into(),
                shared: vec![(3, 9), (20, 40)],
                invited: vec![(5, 6)],
                joined: vec![(1, 2), (12, 18), (30, 33)],
            },
            Readable {
                user_id: "@w:x".into(),
                shared: vec![],
                invited: vec![],
                joined: vec![(8, 25)],
            },
        ];
        let mut c = store.read().await.unwrap();
        for reader in &readers {
            let sql = format!(
                "SELECT stream_pos FROM events WHERE room_id = $1 AND {} ORDER BY stream_pos",
                reader.sql("$2", 3)
            );
            let query = sqlx::query(&sql).bind("!r:x").bind(&reader.user_id);
            let got: Vec<i64> = reader
                .bind_bounds(query)
                .fetch_all(&mut *c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            let want: Vec<i64> = all
                .iter()
                .filter(|e| reader.allows(e))
                .map(|e| e.pos)
                .collect();
            assert!(!want.is_empty() && want.len() < all.len());
            assert_eq!(got, want, "{}", reader.user_id);
        }
    }

    /// Rows written before the column existed get the visibility that was
    /// in force when they were sent.
    #[tokio::test]
    async fn backfill_follows_each_rooms_changes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = super::super::Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        // As in the migration: rows and backfill in one write transaction.
        let mut tx = store.write().await.unwrap();
        let rows: &[(i64, &str, &str, Option<&str>)] = &[
            (1, "!a:x", "m.room.encrypted", None),
            (2, "!a:x", "m.room.history_visibility", Some("joined")),
            (3, "!a:x", "m.room.encrypted", None),
            (4, "!b:x", "m.room.encrypted", None),
            (
                5,
                "!a:x",
                "m.room.history_visibility",
                Some("world_readable"),
            ),
            (6, "!a:x", "m.room.encrypted", None),
            (7, "!b:x", "m.room.history_visibility", Some("invited")),
            (8, "!b:x", "m.room.encrypted", None),
        ];
        for (pos, room, kind, hv) in rows {
            let content = hv.map_or(json!({}), |v| json!({ "history_visibility": v }));
            sqlx::query(
                "INSERT INTO events (stream_pos, event_id, room_id, sender, event_type, state_key, content, origin_server_ts) \
                 VALUES ($1, $2, $3, '@s:x', $4, $5, $6, 0)",
            )
            .bind(pos)
            .bind(format!("$e{pos}"))
            .bind(room)
            .bind(kind)
            .bind(hv.map(|_| ""))
            .bind(content.to_string())
            .execute(tx.conn())
            .await
            .unwrap();
        }
        backfill(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let mut c = store.read().await.unwrap();
        let got: Vec<String> =
            sqlx::query_scalar("SELECT history_visibility FROM events ORDER BY stream_pos")
                .fetch_all(&mut *c)
                .await
                .unwrap();
        // A change itself reads under the more permissive of old and new.
        let want = [
            "shared",
            "shared",
            "joined",
            "shared",
            "world_readable",
            "world_readable",
            "shared",
            "invited",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn normalize_merges_and_caps() {
        assert_eq!(
            normalize(vec![(10, 19), (0, 4), (5, 9), (30, 40)]),
            vec![(0, 19), (30, 40)]
        );
        let many: Vec<_> = (0..200).map(|i| (i * 10, i * 10 + 1)).collect();
        let kept = normalize(many);
        assert_eq!(kept.len(), MAX_INTERVALS);
        assert_eq!(kept.last(), Some(&(1990, 1991)));
    }
}
