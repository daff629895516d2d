//! What sending an event reads about its room before writing, in one
//! statement: whether the room exists, the state that authorization and
//! history visibility read, the sender's membership, and who is joined or
//! invited (the audience to wake once the event commits).
//!
//! Sends run one after another on the single writer (see `store::group`),
//! and each statement there is a round trip to SQLite's worker thread, so
//! six separate reads became one (measured: no throughput change on its
//! own, see docs/performance.md, "A send reads its room once"). Each part stays
//! readable alone (`rooms::exists`, `events::state_event`,
//! `rooms::membership`, `rooms::members`), and a unit test holds the two
//! ways to the same answers.

use serde_json::Value;
use sqlx::{AnyConnection, Row};

use super::codec;

/// A room's state as a send into it finds it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSnapshot {
    /// The contents of the room's current `m.room.power_levels`,
    /// `m.room.join_rules` and `m.room.history_visibility` (state key "").
    pub power_levels: Option<Value>,
    pub join_rules: Option<Value>,
    pub history_visibility: Option<Value>,
    /// The sender's membership, whatever it is.
    pub sender_membership: Option<String>,
    /// Joined and invited members, by user id.
    pub members: Vec<String>,
    /// Those of `members` who are invited, not joined.
    pub invited: Vec<String>,
    /// The room's `state_serial` (`rooms::state_changed`): the same value
    /// later means every part above is still as read.
    pub state_serial: i64,
}

const ROOM: i64 = 0;
const STATE: i64 = 1;
const MEMBER: i64 = 2;

/// `None` when there is no such room.
pub async fn read(
    c: &mut AnyConnection,
    room_id: &str,
    sender: &str,
) -> Result<Option<RoomSnapshot>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT CAST(0 AS BIGINT), NULL, NULL, state_serial FROM rooms WHERE room_id = $1 \
         UNION ALL \
         SELECT CAST(1 AS BIGINT), s.event_type, e.content, CAST(NULL AS BIGINT) FROM current_state s \
         JOIN events e ON e.event_id = s.event_id \
         WHERE s.room_id = $1 AND s.state_key = '' \
         AND s.event_type IN ('m.room.power_levels', 'm.room.join_rules', 'm.room.history_visibility') \
         UNION ALL \
         SELECT CAST(2 AS BIGINT), user_id, membership, CAST(NULL AS BIGINT) FROM memberships \
         WHERE room_id = $1 AND (membership IN ('join', 'invite') OR user_id = $2)",
    )
    .bind(room_id)
    .bind(sender)
    .fetch_all(c)
    .await?;
    let mut exists = false;
    let mut snapshot = RoomSnapshot {
        power_levels: None,
        join_rules: None,
        history_visibility: None,
        sender_membership: None,
        members: Vec::new(),
        invited: Vec::new(),
        state_serial: 0,
    };
    for r in rows {
        match r.try_get::<i64, _>(0)? {
            ROOM => {
                exists = true;
                snapshot.state_serial = r.try_get(3)?;
            }
            STATE => {
                let event_type: String = r.try_get(1)?;
                let content = Some(codec::json(&r, 2, "events.content")?);
                match event_type.as_str() {
                    "m.room.power_levels" => snapshot.power_levels = content,
                    "m.room.join_rules" => snapshot.join_rules = content,
                    _ => snapshot.history_visibility = content,
                }
            }
            MEMBER => {
                let (user_id, membership): (String, String) = (r.try_get(1)?, r.try_get(2)?);
                if user_id == sender {
                    snapshot.sender_membership = Some(membership.clone());
                }
                if membership == "invite" {
                    snapshot.invited.push(user_id.clone());
                }
                if membership == "join" || membership == "invite" {
                    snapshot.members.push(user_id);
                }
            }
            kind => {
                return Err(sqlx::Error::Protocol(format!(
                    "room snapshot: unknown row kind {kind}"
                )))
            }
        }
    }
    // The order `rooms::members` gives, so wake-ups go out the same way.
    snapshot.members.sort_unstable();
    snapshot.invited.sort_unstable();
    Ok(exists.then_some(snapshot))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::events::{self, NewEvent};
    use crate::store::rooms;
    use crate::store::tests::{create_room, sqlite_store};

    const ROOM_ID: &str = "!r:x";

    /// The snapshot, and the same facts read one by one.
    async fn both(c: &mut AnyConnection, sender: &str) -> (RoomSnapshot, RoomSnapshot) {
        let one = read(c, ROOM_ID, sender)
            .await
            .unwrap()
            .expect("the room exists");
        let mut content = Vec::new();
        for t in [
            "m.room.power_levels",
            "m.room.join_rules",
            "m.room.history_visibility",
        ] {
            let event = events::state_event(&mut *c, ROOM_ID, t, "").await.unwrap();
            content.push(event.map(|e| e.content));
        }
        let mut content = content.into_iter();
        let separate = RoomSnapshot {
            power_levels: content.next().unwrap(),
            join_rules: content.next().unwrap(),
            history_visibility: content.next().unwrap(),
            sender_membership: rooms::membership(c, ROOM_ID, sender)
                .await
                .unwrap()
                .map(|m| m.membership),
            members: rooms::members(c, ROOM_ID, &["join", "invite"])
                .await
                .unwrap(),
            invited: rooms::members(c, ROOM_ID, &["invite"]).await.unwrap(),
            state_serial: sqlx::query_scalar("SELECT state_serial FROM rooms WHERE room_id = $1")
                .bind(ROOM_ID)
                .fetch_one(&mut *c)
                .await
                .unwrap(),
        };
        (one, separate)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_statement_reads_what_the_separate_reads_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(&dir).await;
        let mut c = store.read().await.unwrap();
        assert_eq!(read(&mut c, ROOM_ID, "@a:x").await.unwrap(), None);
        drop(c);

        create_room(&store, ROOM_ID).await;
        // A room with no state yet: nothing but its existence.
        let mut c = store.read().await.unwrap();
        let (one, separate) = both(&mut c, "@a:x").await;
        assert_eq!(one, separate);
        assert_eq!(one.members, Vec::<String>::new());
        drop(c);

        let state = [
            ("m.room.member", "@b:x", json!({"membership": "join"})),
            ("m.room.member", "@a:x", json!({"membership": "join"})),
            ("m.room.member", "@c:x", json!({"membership": "invite"})),
            ("m.room.member", "@d:x", json!({"membership": "ban"})),
            ("m.room.member", "@e:x", json!({"membership": "leave"})),
            ("m.room.power_levels", "", json!({"users": {"@a:x": 100}})),
            ("m.room.join_rules", "", json!({"join_rule": "public"})),
            (
                "m.room.history_visibility",
                "",
                json!({"history_visibility": "joined"}),
            ),
            // Not read: another state key, another type.
            (
                "m.room.power_levels",
                "other",
                json!({"users": {"@e:x": 100}}),
            ),
            ("m.room.name", "", json!({"name": "n"})),
        ];
        let mut tx = store.write().await.unwrap();
        for (event_type, state_key, content) in &state {
            let event = NewEvent::state(ROOM_ID, "@a:x", event_type, state_key, content);
            events::append(&mut tx, &event, 0).await.unwrap();
        }
        tx.commit().await.unwrap();

        let mut c = store.read().await.unwrap();
        for sender in ["@a:x", "@c:x", "@d:x", "@e:x", "@nobody:x"] {
            let (one, separate) = both(&mut c, sender).await;
            assert_eq!(one, separate, "{sender}");
        }
        let (one, _) = both(&mut c, "@d:x").await;
        assert_eq!(one.sender_membership.as_deref(), Some("ban"));
        assert_eq!(one.members, ["@a:x", "@b:x", "@c:x"]);
        assert_eq!(one.power_levels, Some(json!({"users": {"@a:x": 100}})));
        assert_eq!(
            one.history_visibility,
            Some(json!({"history_visibility": "joined"}))
        );
    }
}
