//! Migrations that move rows keep them: the schema is taken to the version
//! before the move, rows are written as a server of that version wrote
//! them, and the rest of the migrations must carry them over unchanged —
//! on both backends.

use cloister_server::store::Store;
use cloister_tests::postgres::TestDatabase;
use cloister_tests::{both_backends, Backend};
use sqlx::Row;

/// The last migration before notifications were keyed by stream position.
const BEFORE_NOTIFICATIONS_BY_POSITION: i64 = 23;

type Notification = (String, i64, String, String, i64, String, String, i64);

fn notification(user: &str, pos: i64, room: &str, thread: &str, highlight: i64) -> Notification {
    (
        user.to_owned(),
        pos,
        room.to_owned(),
        thread.to_owned(),
        highlight,
        format!("$event{pos}"),
        r#"["notify"]"#.to_owned(),
        1_000 + pos,
    )
}

async fn all_notifications(store: &Store) -> Vec<Notification> {
    let mut c = store.read().await.unwrap();
    sqlx::query(
        "SELECT user_id, stream_pos, room_id, thread_id, highlight, event_id, actions, ts \
         FROM notifications ORDER BY user_id, stream_pos",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
        )
    })
    .collect()
}

async fn notifications_survive_rekeying(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let database = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(TestDatabase::create().await),
    };
    let url = match &database {
        Some(db) => db.url().to_owned(),
        None => format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
    };
    let store = Store::connect(&url).await.unwrap();
    store
        .migrate_through(BEFORE_NOTIFICATIONS_BY_POSITION)
        .await
        .unwrap();

    let rows = vec![
        notification("@bob:localhost", 7, "!a:localhost", "main", 0),
        notification("@bob:localhost", 9, "!a:localhost", "$root", 1),
        notification("@carol:localhost", 7, "!a:localhost", "main", 0),
        notification("@carol:localhost", 12, "!b:localhost", "main", 1),
    ];
    let mut tx = store.write().await.unwrap();
    for n in &rows {
        sqlx::query(
            "INSERT INTO notifications (user_id, stream_pos, room_id, thread_id, highlight, event_id, actions, ts) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&n.0)
        .bind(n.1)
        .bind(&n.2)
        .bind(&n.3)
        .bind(n.4)
        .bind(&n.5)
        .bind(&n.6)
        .bind(n.7)
        .execute(tx.conn())
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    store.migrate().await.unwrap();
    assert_eq!(all_notifications(&store).await, rows);

    // The new key is (user, stream position): the evaluator's retry of an
    // event already recorded adds nothing, another user's row still goes in.
    let mut tx = store.write().await.unwrap();
    let inserted = |user: &'static str| {
        sqlx::query(
            "INSERT INTO notifications (user_id, stream_pos, room_id, thread_id, highlight, event_id, actions, ts) \
             VALUES ($1, 9, '!a:localhost', 'main', 0, '$event9', '[]', 5) \
             ON CONFLICT (user_id, stream_pos) DO NOTHING",
        )
        .bind(user)
    };
    let again = inserted("@bob:localhost").execute(tx.conn()).await.unwrap();
    assert_eq!(
        again.rows_affected(),
        0,
        "a recorded notification went in twice"
    );
    let other = inserted("@carol:localhost")
        .execute(tx.conn())
        .await
        .unwrap();
    assert_eq!(other.rows_affected(), 1);
    tx.commit().await.unwrap();
    assert_eq!(all_notifications(&store).await.len(), rows.len() + 1);

    // Migrating again (a restart) changes nothing.
    store.migrate().await.unwrap();
    assert_eq!(all_notifications(&store).await.len(), rows.len() + 1);
    drop(store);
    if let Some(db) = database {
        db.drop_database().await;
    }
}

both_backends!(notifications_by_position, notifications_survive_rekeying);
