//! A message stored in one statement, on the condition that its room is
//! still as the send read it.
//!
//! On SQLite every statement in the writer is a round trip to its worker
//! thread, and sends queued behind it wait for each (`store::group`): with
//! the room read, the transaction id checked and recorded, a position
//! taken, the event stored and the room bumped, a message cost eight of
//! them. A message (no state key, no redaction) changes nothing that its
//! own authorization reads, so the send reads the room on a reader
//! connection first (`room_snapshot`, `service::checked_send`), and here the
//! writes go to SQLite as one multi-statement query, each statement guarded
//! by the room's `state_serial` still being what was read. If the room's
//! state, memberships or a state event's content moved in between
//! (`rooms::state_changed`), nothing is written, and the caller takes the
//! ordinary path, which reads the room again inside the writer.
//!
//! On PostgreSQL the cost is the stream counter's row lock, which every
//! send waits for and which is held until commit. In a transaction that
//! meant the rest of the statement, a round trip to this process for
//! `COMMIT` (on a busy machine, also the wait for a tokio worker to send
//! it) and the commit's flush. Here the message is one statement with
//! `WITH` clauses, run outside a transaction: PostgreSQL commits it as soon
//! as it has run, so the lock is held for the statement's tail and the
//! flush only. The statement takes the counter before it touches the room's
//! row, the order in which every other writer takes the two (a state event
//! takes its position first and then moves `state_serial`), so it cannot
//! deadlock with them. The check rides on the room row's `UPDATE`: if a
//! state change committed after the statement began, PostgreSQL re-reads
//! the row before updating it (read committed's re-check) and finds the
//! serial moved.

use std::sync::LazyLock;
use std::time::Instant;

use sqlx::Row;

use super::events::{event_arguments, event_values, stored, NewEvent, StoredEvent, COLUMNS};
use super::readable::Class;
use super::{params, Store, Waits, WriteError};

/// What the send read and must still hold when it writes.
pub struct Expected<'a> {
    /// `rooms.state_serial` as the room's snapshot read it.
    pub state_serial: i64,
    /// The transaction id to record, for the sending device.
    pub device_id: &'a str,
    pub txn_id: &'a str,
}

/// `$1`–`$14` the event's columns (`events::event_arguments`), `$15` the
/// expected serial, `$16`/`$17` the device and transaction id, `$18` 1 when
/// the event bumps its room (`sliding_sync::bumps`). The last statement
/// returns the event's position if it was stored. One text for every
/// message: the writer sends several as one query (`Group::run_once`), and
/// each combination of texts would be prepared and cached on its own.
/// Built once: every message sends it.
static SQL: LazyLock<String> = LazyLock::new(|| {
    let room_unchanged = "EXISTS (SELECT 1 FROM rooms WHERE room_id = $2 AND state_serial = $15)";
    let bump = "UPDATE rooms SET bump_pos = (SELECT pos FROM stream_counter WHERE id = 1) \
         WHERE $18 = 1 AND room_id = $2 AND state_serial = $15 \
         AND bump_pos < (SELECT pos FROM stream_counter WHERE id = 1);";
    format!(
        "INSERT INTO txn_ids (user_id, device_id, kind, txn_id, result, created_ts) \
         SELECT $3, $16, 'event', $17, $1, $11 WHERE {room_unchanged}; \
         UPDATE stream_counter SET pos = pos + 1 WHERE id = 1 AND {room_unchanged}; \
         INSERT INTO events ({COLUMNS}, relates_to, rel_type) SELECT {values} \
         FROM stream_counter WHERE id = 1 AND {room_unchanged}; \
         {bump} \
         SELECT stream_pos FROM events WHERE event_id = $1",
        values = event_values("pos"),
    )
});

/// PostgreSQL's statement, with the parameters of [`SQL`]; returns the
/// event's position, or no row when the room moved. `p` takes the position
/// only if the room looked unchanged when the statement began, so a send
/// that will fail costs no position; when the room moved between that look
/// and the row's lock, the position is taken and stays unused, a gap that
/// readers pass over like any other. The room row is updated even when the
/// message does not bump it: the update is what locks the row and re-checks
/// its serial.
static PG_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH p AS (UPDATE stream_counter SET pos = pos + 1 WHERE id = 1 \
         AND EXISTS (SELECT 1 FROM rooms WHERE room_id = $2 AND state_serial = $15) RETURNING pos), \
         r AS (UPDATE rooms SET bump_pos = CASE WHEN $18 = 1 AND rooms.bump_pos < p.pos \
         THEN p.pos ELSE rooms.bump_pos END FROM p \
         WHERE rooms.room_id = $2 AND rooms.state_serial = $15 RETURNING p.pos), \
         t AS (INSERT INTO txn_ids (user_id, device_id, kind, txn_id, result, created_ts) \
         SELECT $3, $16, 'event', $17, $1, $11 FROM r) \
         INSERT INTO events ({COLUMNS}, relates_to, rel_type) SELECT {values} FROM r \
         RETURNING stream_pos",
        values = event_values("r.pos"),
    )
});

/// Stores a message event and its transaction id, and returns once they
/// are committed, if the room's `state_serial` is still
/// `expected.state_serial`; `None` (nothing written) if it moved, or, on
/// SQLite, if the message sent before it in the same query failed.
/// `visibility` is the room's history visibility as the snapshot read it. A
/// transaction id recorded meanwhile by a retry is a unique violation, with
/// nothing written. Refused like [`Store::write_grouped_or_busy`] while the
/// writer's queue is past its bound.
pub async fn append_message(
    store: &Store,
    event: &NewEvent<'_>,
    event_id: String,
    now: i64,
    visibility: Class,
    expected: &Expected<'_>,
) -> Result<Option<StoredEvent>, WriteError> {
    debug_assert!(event.state_key.is_none() && event.redacts.is_none());
    let waiting = store.admission.enter()?;
    let content = serde_json::to_string(event.content).unwrap_or_else(|_| "{}".into());
    let mut args = event_arguments(event, &event_id, content, None, now, visibility)?;
    params::push(&mut args, expected.state_serial)?;
    params::push(&mut args, expected.device_id.to_owned())?;
    params::push(&mut args, expected.txn_id.to_owned())?;
    let bump = super::sliding_sync::bumps(event.event_type, None);
    params::push(&mut args, i64::from(bump))?;
    let started = Instant::now();
    let pos = match &store.group {
        Some(group) => {
            let waits = store.waits.clone();
            let on_turn = move || Waits::record(&waits.writes, &waits.write_wait_micros, started);
            let begin = {
                let store = store.clone();
                async move { store.begin().await }
            };
            let Some(rows) = group.run_once(waiting, begin, on_turn, &SQL, args).await? else {
                // Not run, with nothing written: the ordinary path will do it.
                return Ok(None);
            };
            rows.last()
                .map(|row| row.try_get::<i64, _>(0))
                .transpose()?
        }
        // PostgreSQL, which has no group: one statement on a pooled
        // connection, committed by PostgreSQL as it ends.
        None => {
            let mut conn = store.pool.acquire().await?;
            Waits::record(&store.waits.writes, &store.waits.write_wait_micros, started);
            drop(waiting);
            // Spawned, like a commit (`WriteTx::commit`): a connection
            // dropped mid-statement is closed, and the outcome must not
            // depend on when the client hangs up.
            tokio::spawn(async move {
                sqlx::query_scalar_with::<_, i64, _>(&PG_SQL, args)
                    .fetch_optional(&mut *conn)
                    .await
            })
            .await
            .map_err(|_| sqlx::Error::WorkerCrashed)??
        }
    };
    Ok(pos.map(|pos| stored(event, event_id, pos, now, visibility, None)))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::store::events::{self, apply_redaction};
    use crate::store::tests::sqlite_store;
    use crate::store::{current_pos, room_snapshot, rooms, txn_ids, Store};

    const ROOM: &str = "!r:x";

    async fn serial(store: &Store) -> i64 {
        let mut c = store.read().await.unwrap();
        room_snapshot::read(&mut c, ROOM, "@a:x")
            .await
            .unwrap()
            .unwrap()
            .state_serial
    }

    async fn append_state(store: &Store, event_type: &str, key: &str, content: Value) -> String {
        let mut tx = store.write().await.unwrap();
        let event = NewEvent::state(ROOM, "@a:x", event_type, key, &content);
        let stored = events::append(&mut tx, &event, 0).await.unwrap();
        tx.commit().await.unwrap();
        stored.event_id
    }

    /// A store with the room, where `@a:x` has joined.
    async fn room_with_a_member(dir: &tempfile::TempDir) -> Store {
        let store = sqlite_store(dir).await;
        let mut tx = store.write().await.unwrap();
        rooms::create(&mut tx, ROOM, "@a:x", "10", false, 0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let join = json!({"membership": "join"});
        append_state(&store, "m.room.member", "@a:x", join).await;
        store
    }

    fn message<'a>(content: &'a Value, txn_id: &'a str) -> NewEvent<'a> {
        NewEvent {
            room_id: ROOM,
            sender: "@a:x",
            sender_device: Some("D"),
            txn_id: Some(txn_id),
            event_type: "m.room.encrypted",
            state_key: None,
            content,
            redacts: None,
        }
    }

    async fn try_append(
        store: &Store,
        serial: i64,
        txn_id: &str,
    ) -> Result<Option<StoredEvent>, WriteError> {
        let content = json!({"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": txn_id});
        let expected = Expected {
            state_serial: serial,
            device_id: "D",
            txn_id,
        };
        let id = crate::ids::new_event_id();
        let event = message(&content, txn_id);
        append_message(store, &event, id, 7, Class::Shared, &expected).await
    }

    /// Stored in full when the room is as read; nothing at all when its
    /// state moved in between, or when the transaction id is taken.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_message_is_stored_only_while_its_room_is_as_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = room_with_a_member(&dir).await;
        let read = serial(&store).await;

        let before = current_pos(&mut store.read().await.unwrap()).await.unwrap();
        let stored = try_append(&store, read, "t1")
            .await
            .unwrap()
            .expect("the room is as read");
        assert_eq!(stored.pos, before + 1);
        let mut c = store.read().await.unwrap();
        let again = events::get(&mut c, &stored.event_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (again.pos, again.content, again.txn_id),
            (stored.pos, stored.content, Some("t1".into()))
        );
        assert_eq!(again.history_visibility.as_deref(), Some("shared"));
        assert_eq!(
            txn_ids::result(&mut c, "@a:x", "D", "event", "t1")
                .await
                .unwrap(),
            Some(stored.event_id.clone())
        );
        let bump: i64 = sqlx::query_scalar("SELECT bump_pos FROM rooms WHERE room_id = $1")
            .bind(ROOM)
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!(bump, stored.pos, "an encrypted message bumps the room");
        drop(c);
        assert_eq!(serial(&store).await, read, "a message moves no state");

        // A retry of the same transaction id writes nothing more.
        match try_append(&store, read, "t1").await {
            Err(WriteError::Db(err)) => assert!(crate::store::is_unique_violation(&err), "{err}"),
            other => panic!("a retry was {other:?}"),
        }
        assert_eq!(
            current_pos(&mut store.read().await.unwrap()).await.unwrap(),
            stored.pos
        );

        // A membership change in between: the send must be read again.
        append_state(
            &store,
            "m.room.member",
            "@b:x",
            json!({"membership": "join"}),
        )
        .await;
        let pos = current_pos(&mut store.read().await.unwrap()).await.unwrap();
        assert!(serial(&store).await > read);
        assert!(try_append(&store, read, "t2").await.unwrap().is_none());
        let mut c = store.read().await.unwrap();
        assert_eq!(current_pos(&mut c).await.unwrap(), pos, "no position taken");
        assert_eq!(
            txn_ids::result(&mut c, "@a:x", "D", "event", "t2")
                .await
                .unwrap(),
            None
        );
        drop(c);
        let now = serial(&store).await;
        assert!(try_append(&store, now, "t2").await.unwrap().is_some());
    }

    /// Every write that changes what authorization reads moves the serial
    /// (a redacted state event's content), and so does every rewrite of a
    /// stored event, a message's redaction included: the node's copies of
    /// recent events are labelled with it (`service::sync::recent`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_redaction_moves_the_serial() {
        let dir = tempfile::tempdir().unwrap();
        let store = room_with_a_member(&dir).await;
        let levels = append_state(
            &store,
            "m.room.power_levels",
            "",
            json!({"events_default": 50}),
        )
        .await;
        let message = try_append(&store, serial(&store).await, "m")
            .await
            .unwrap()
            .unwrap();
        let mut c = store.read().await.unwrap();
        let levels = events::get(&mut c, &levels).await.unwrap().unwrap();
        drop(c);

        let read = serial(&store).await;
        let mut tx = store.write().await.unwrap();
        apply_redaction(&mut tx, &message, &json!({}), "$r1")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let after_message = serial(&store).await;
        assert!(after_message > read, "a redacted message");
        let mut tx = store.write().await.unwrap();
        apply_redaction(&mut tx, &levels, &json!({}), "$r2")
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert!(
            serial(&store).await > after_message,
            "a redacted state event"
        );
    }
}
