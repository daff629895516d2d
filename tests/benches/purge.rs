//! How fast the retention purge deletes: `cargo bench -p cloister-tests --bench purge`.
//!
//! Seeds a room with expired encrypted events (a tenth of them carrying an
//! uploaded file) straight into the database, then times one purge run
//! through the same code the scheduler calls. Runs on SQLite, and on
//! PostgreSQL too when `CLOISTER_TEST_POSTGRES_URL` is set (as
//! `scripts/test` sets it). Prints figures; asserts only that everything
//! expired was deleted.

use std::time::Instant;

use cloister_tests::{Backend, Client, ManualClock, TestServer};
use serde_json::json;

const EVENTS: i64 = 20_000;
const FILE_EVERY: i64 = 10;
const START: i64 = 1_800_000_000_000;

async fn bench(backend: Backend) {
    let server = TestServer::start_with_clock(backend, ManualClock::new(START), |c| {
        c.retention.default_max_lifetime = "1h".parse().unwrap();
        c.retention.purge_interval = "520w".parse().unwrap();
    })
    .await;
    let alice = Client::register(&server.url(), "alice", "pw").await;
    let room = alice.create_room(json!({})).await;
    let pool = server.state().store.pool().clone();
    let media_dir = server.config().media_dir();

    let seeding = Instant::now();
    let mut tx = pool.begin().await.unwrap();
    let content = json!({
        "algorithm": "m.megolm.v1.aes-sha2", "sender_key": "k", "device_id": "D",
        "session_id": "s", "ciphertext": "A".repeat(400),
    })
    .to_string();
    for i in 0..EVENTS {
        let event_id = format!("$bench{i}");
        sqlx::query(
            "INSERT INTO events (stream_pos, event_id, room_id, sender, event_type, content, origin_server_ts) \
             VALUES ($1, $2, $3, $4, 'm.room.encrypted', $5, $6)",
        )
        .bind(1_000_000_000 + i)
        .bind(&event_id)
        .bind(&room)
        .bind(&alice.user_id)
        .bind(&content)
        .bind(START + i)
        .execute(&mut *tx)
        .await
        .unwrap();
        if i % FILE_EVERY == 0 {
            let media_id = format!("bm{i:08}");
            let path = cloister_server::store::media::path(&media_dir, &media_id);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, vec![0u8; 4096]).unwrap();
            sqlx::query(
                "INSERT INTO media (media_id, uploader, size, created_ts) VALUES ($1, $2, 4096, $3)",
            )
            .bind(&media_id)
            .bind(&alice.user_id)
            .bind(START)
            .execute(&mut *tx)
            .await
            .unwrap();
            sqlx::query("INSERT INTO event_media (event_id, media_id) VALUES ($1, $2)")
                .bind(&event_id)
                .bind(&media_id)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
    }
    tx.commit().await.unwrap();
    let seeded = seeding.elapsed();

    server.clock().unwrap().advance_ms(2 * 3_600_000);
    let started = Instant::now();
    let summary = cloister_server::service::purge::run(server.state())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(summary.events, EVENTS as u64);
    assert_eq!(summary.media_files, (EVENTS / FILE_EVERY) as u64);
    let secs = took.as_secs_f64();
    println!(
        "{:<10} purged {} events and {} files ({} KiB) in {secs:.2} s: {:.0} events/s \
         (seeding took {:.1} s)",
        backend.name(),
        summary.events,
        summary.media_files,
        summary.media_bytes / 1024,
        summary.events as f64 / secs,
        seeded.as_secs_f64()
    );
    server.stop().await;
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        bench(Backend::Sqlite).await;
        if std::env::var_os("CLOISTER_TEST_POSTGRES_URL").is_some() {
            bench(Backend::Postgres).await;
        } else {
            println!("postgres   skipped: CLOISTER_TEST_POSTGRES_URL is not set");
        }
    });
}
