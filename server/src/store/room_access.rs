//! What a read of one room's events needs to know first, in one statement:
//! whether the room exists, the reader's membership history and whether
//! they forgot the room, the room's history visibility and retention
//! events, its `state_serial` and its last event. Each statement is a
//! hand-off to a database worker; a `/messages` page made five of these
//! reads before its events (docs/performance.md, "`/messages` from the
//! kept events"). Each part stays readable alone (`rooms::exists`,
//! `rooms::membership`, `rooms::membership_history`,
//! `events::state_event`), and a unit test holds the two ways to the same
//! answers.

use serde_json::Value;
use sqlx::{AnyConnection, Row};

/// The rows of [`read`], taken apart.
#[derive(Debug, Default, PartialEq)]
pub struct RoomAccess {
    pub exists: bool,
    /// The reader forgot the room (their membership row says so).
    pub forgotten: bool,
    /// The reader's membership events, oldest first: (position, membership).
    pub history: Vec<(i64, String)>,
    /// Contents of the room's current `m.room.history_visibility` and
    /// `m.room.retention` events (state key `""`).
    pub history_visibility: Option<Value>,
    pub retention: Option<Value>,
    pub state_serial: i64,
    pub last_event_pos: Option<i64>,
}

const MEMBERSHIP: i64 = 0;
const HISTORY: i64 = 1;
const ROOM: i64 = 2;
const LAST_EVENT: i64 = 3;
const VISIBILITY: i64 = 4;
const RETENTION: i64 = 5;

/// One union, each part tagged with its kind; the bigint and text columns
/// line up so that both backends type the union the same way.
const SQL: &str = "\
SELECT CAST(0 AS BIGINT), m.forgotten, CAST(NULL AS TEXT) \
 FROM memberships m WHERE m.room_id = $1 AND m.user_id = $2 \
UNION ALL SELECT CAST(1 AS BIGINT), e.stream_pos, e.content \
 FROM events e WHERE e.room_id = $1 AND e.event_type = 'm.room.member' AND e.state_key = $2 \
UNION ALL SELECT CAST(2 AS BIGINT), r.state_serial, CAST(NULL AS TEXT) \
 FROM rooms r WHERE r.room_id = $1 \
UNION ALL SELECT CAST(3 AS BIGINT), MAX(l.stream_pos), CAST(NULL AS TEXT) \
 FROM events l WHERE l.room_id = $1 \
UNION ALL SELECT CAST(CASE WHEN s.event_type = 'm.room.retention' THEN 5 ELSE 4 END AS BIGINT), \
 s.stream_pos, p.content \
 FROM current_state s JOIN events p ON p.event_id = s.event_id \
 WHERE s.room_id = $1 AND s.state_key = '' \
 AND s.event_type IN ('m.room.history_visibility', 'm.room.retention') \
ORDER BY 1, 2";

pub async fn read(
    c: &mut AnyConnection,
    room_id: &str,
    user_id: &str,
) -> Result<RoomAccess, sqlx::Error> {
    let rows = sqlx::query(SQL)
        .bind(room_id)
        .bind(user_id)
        .fetch_all(c)
        .await?;
    let mut out = RoomAccess::default();
    for r in &rows {
        let kind: i64 = r.try_get(0)?;
        let number: Option<i64> = r.try_get(1)?;
        match kind {
            MEMBERSHIP => out.forgotten = number.unwrap_or(0) != 0,
            HISTORY => {
                let content: Value = super::codec::json(r, 2, "events.content")?;
                let membership = content
                    .get("membership")
                    .and_then(Value::as_str)
                    .unwrap_or("leave")
                    .to_owned();
                out.history.push((number.unwrap_or(0), membership));
            }
            ROOM => {
                out.exists = true;
                out.state_serial = number.unwrap_or(0);
            }
            LAST_EVENT => out.last_event_pos = number,
            VISIBILITY => {
                out.history_visibility = Some(super::codec::json(r, 2, "events.content")?)
            }
            RETENTION => out.retention = Some(super::codec::json(r, 2, "events.content")?),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::events::{self, NewEvent};
    use crate::store::rooms;
    use crate::store::tests::{create_room, sqlite_store};

    const ROOM_ID: &str = "!r:x";

    /// The union, and the same facts read one by one.
    async fn both(c: &mut AnyConnection, user: &str) -> (RoomAccess, RoomAccess) {
        let one = read(c, ROOM_ID, user).await.unwrap();
        let content = |e: Option<events::StoredEvent>| e.map(|e| e.content);
        let state_serial: Option<i64> =
            sqlx::query_scalar("SELECT state_serial FROM rooms WHERE room_id = $1")
                .bind(ROOM_ID)
                .fetch_optional(&mut *c)
                .await
                .unwrap();
        let last_event_pos: Option<i64> =
            sqlx::query_scalar("SELECT MAX(stream_pos) FROM events WHERE room_id = $1")
                .bind(ROOM_ID)
                .fetch_one(&mut *c)
                .await
                .unwrap();
        let separate = RoomAccess {
            exists: rooms::exists(c, ROOM_ID).await.unwrap(),
            forgotten: rooms::membership(c, ROOM_ID, user)
                .await
                .unwrap()
                .is_some_and(|m| m.forgotten),
            history: rooms::membership_history(c, ROOM_ID, user).await.unwrap(),
            history_visibility: content(
                events::state_event(c, ROOM_ID, "m.room.history_visibility", "")
                    .await
                    .unwrap(),
            ),
            retention: content(
                events::state_event(c, ROOM_ID, "m.room.retention", "")
                    .await
                    .unwrap(),
            ),
            state_serial: state_serial.unwrap_or_default(),
            last_event_pos,
        };
        (one, separate)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_statement_reads_what_the_separate_reads_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let mut c = store.read().await.unwrap();
        assert_eq!(
            read(&mut c, ROOM_ID, "@a:x").await.unwrap(),
            RoomAccess::default()
        );
        drop(c);

        create_room(&store, ROOM_ID).await;
        // A room with no events yet: nothing but its existence.
        let mut c = store.read().await.unwrap();
        let (one, separate) = both(&mut c, "@a:x").await;
        assert_eq!(one, separate);
        assert!(one.exists && one.last_event_pos.is_none());
        drop(c);

        let state = [
            ("m.room.member", "@a:x", json!({"membership": "join"})),
            ("m.room.member", "@b:x", json!({"membership": "invite"})),
            (
                "m.room.history_visibility",
                "",
                json!({"history_visibility": "joined"}),
            ),
            ("m.room.member", "@b:x", json!({"membership": "join"})),
            ("m.room.retention", "", json!({"max_lifetime": 86_400_000})),
            ("m.room.member", "@b:x", json!({"membership": "leave"})),
            // Not read: another state key, another type.
            ("m.room.retention", "other", json!({"max_lifetime": 1})),
            ("m.room.name", "", json!({"name": "n"})),
        ];
        let mut tx = store.write().await.unwrap();
        for (event_type, state_key, content) in &state {
            let event = NewEvent::state(ROOM_ID, "@a:x", event_type, state_key, content);
            events::append(&mut tx, &event, 0).await.unwrap();
        }
        sqlx::query("UPDATE memberships SET forgotten = 1 WHERE user_id = '@b:x'")
            .execute(tx.conn())
            .await
            .unwrap();
        tx.commit().await.unwrap();

        let mut c = store.read().await.unwrap();
        for user in ["@a:x", "@b:x", "@nobody:x"] {
            let (one, separate) = both(&mut c, user).await;
            assert_eq!(one, separate, "{user}");
        }
        let (b, _) = both(&mut c, "@b:x").await;
        assert!(b.forgotten);
        let memberships: Vec<&str> = b.history.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(memberships, ["invite", "join", "leave"], "oldest first");
        assert_eq!(
            b.history_visibility,
            Some(json!({"history_visibility": "joined"}))
        );
        assert_eq!(b.retention, Some(json!({"max_lifetime": 86_400_000})));
        assert_eq!(b.last_event_pos, Some(8));
    }
}
