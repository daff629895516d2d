//! The schema, as numbered migrations applied in order at start.

use sqlx::Executor;

use super::{readable, relations, unread, Backend, Store};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "core", include_str!("migrations/0001_core.sql")),
    (
        2,
        "typing_expiry",
        include_str!("migrations/0002_typing_expiry.sql"),
    ),
    (
        3,
        "audit_log",
        include_str!("migrations/0003_audit_log.sql"),
    ),
    (
        4,
        "compliance",
        include_str!("migrations/0004_compliance.sql"),
    ),
    (
        5,
        "history_visibility",
        include_str!("migrations/0005_history_visibility.sql"),
    ),
    (6, "pushers", include_str!("migrations/0006_pushers.sql")),
    (
        7,
        "directory",
        include_str!("migrations/0007_directory.sql"),
    ),
    (
        8,
        "relations",
        include_str!("migrations/0008_relations.sql"),
    ),
    (
        10,
        "ldap_accounts",
        include_str!("migrations/0010_ldap_accounts.sql"),
    ),
    (
        11,
        "thread_notifications",
        include_str!("migrations/0011_thread_notifications.sql"),
    ),
    (
        12,
        "directory_attributes",
        include_str!("migrations/0012_directory_attributes.sql"),
    ),
    (13, "sso", include_str!("migrations/0013_sso.sql")),
    (14, "console", include_str!("migrations/0014_console.sql")),
    (
        15,
        "sliding_sync",
        include_str!("migrations/0015_sliding_sync.sql"),
    ),
    (
        16,
        "sliding_sync_states",
        include_str!("migrations/0016_sliding_sync_states.sql"),
    ),
    (17, "oauth", include_str!("migrations/0017_oauth.sql")),
    (
        18,
        "oauth_device",
        include_str!("migrations/0018_oauth_device.sql"),
    ),
    (
        19,
        "oauth_sso",
        include_str!("migrations/0019_oauth_sso.sql"),
    ),
    (
        20,
        "oauth_account_actions",
        include_str!("migrations/0020_oauth_account_actions.sql"),
    ),
    (
        21,
        "room_bump",
        include_str!("migrations/0021_room_bump.sql"),
    ),
    (
        22,
        "notification_counts",
        include_str!("migrations/0022_notification_counts.sql"),
    ),
    (
        23,
        "room_state_serial",
        include_str!("migrations/0023_room_state_serial.sql"),
    ),
    (
        24,
        "notifications_by_position",
        include_str!("migrations/0024_notifications_by_position.sql"),
    ),
];

impl Store {
    /// Applies every migration not yet applied, each in its own transaction.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        self.migrate_through(i64::MAX).await
    }

    /// Applies the migrations not yet applied up to and including
    /// `last`: tests stop at an older schema, write rows as an older
    /// server did, and check that the rest of the migrations keep them.
    pub async fn migrate_through(&self, last: i64) -> Result<(), sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
        )
        .await?;
        for (version, name, sql) in MIGRATIONS.iter().take_while(|(v, _, _)| *v <= last) {
            let mut tx = self.write().await?;
            // Concurrent starts on PostgreSQL: the lock makes the second wait
            // and then see the first one's row.
            if self.backend == Backend::Postgres {
                tx.conn()
                    .execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
                    .await?;
            }
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(tx.conn())
                    .await?;
            if applied.is_some() {
                continue;
            }
            let (blob, without_rowid) = match self.backend {
                Backend::Sqlite => ("BLOB", " WITHOUT ROWID"),
                Backend::Postgres => ("BYTEA", ""),
            };
            let sql = sql
                .replace("{BLOB}", blob)
                .replace("{WITHOUT_ROWID}", without_rowid);
            sqlx::raw_sql(&sql).execute(tx.conn()).await?;
            match *version {
                5 => readable::backfill(&mut tx).await?,
                8 => relations::backfill(&mut tx).await?,
                22 => unread::backfill(&mut tx).await?,
                _ => {}
            }
            sqlx::query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)")
                .bind(*version)
                .bind(*name)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            tracing::info!(version, name, "applied database migration");
        }
        Ok(())
    }
}
