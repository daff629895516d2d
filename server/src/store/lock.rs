//! Session-level advisory locks on PostgreSQL, for work one node at a time
//! should do. The lock lives as long as the database session that took it,
//! so it sits on a connection of its own, outside the pool (a pooled
//! connection is shared, recycled and closed at will): when the node dies,
//! its connection closes, PostgreSQL ends the session and the lock is free
//! for the next node that asks.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};

use super::Store;

/// A dead database must not stall the caller's loop for long.
const TIMEOUT: Duration = Duration::from_secs(5);

/// One advisory lock, and the connection that holds it (or keeps asking).
pub struct SessionLock {
    url: String,
    /// Shows in `pg_stat_activity`, so an operator can tell who holds it.
    application_name: String,
    key: i64,
    conn: Option<PgConnection>,
    held: bool,
}

impl Store {
    /// A handle on the advisory lock `key`; nothing is asked until
    /// [`SessionLock::hold`]. PostgreSQL only.
    pub fn session_lock(&self, key: i64, application_name: &str) -> SessionLock {
        SessionLock {
            url: self.url.to_string(),
            application_name: application_name.to_owned(),
            key,
            conn: None,
            held: false,
        }
    }
}

impl SessionLock {
    /// Whether this node holds the lock now: takes it if it is free, or
    /// checks that the session holding it is still alive. An error means
    /// not held; the next call starts on a new connection.
    pub async fn hold(&mut self) -> Result<bool, sqlx::Error> {
        let result = tokio::time::timeout(TIMEOUT, self.try_hold())
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut));
        if result.is_err() {
            // The session may have ended with the lock; asking again on the
            // same connection would fail the same way.
            self.conn = None;
            self.held = false;
        }
        result
    }

    async fn try_hold(&mut self) -> Result<bool, sqlx::Error> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let options = PgConnectOptions::from_str(&self.url)?
                    .application_name(&self.application_name)
                    .disable_statement_logging();
                self.held = false;
                self.conn
                    .insert(PgConnection::connect_with(&options).await?)
            }
        };
        if self.held {
            // A live session still holds its lock; asking again would stack
            // a second hold on it.
            conn.ping().await?;
        } else {
            self.held = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(self.key)
                .fetch_one(&mut *conn)
                .await?;
        }
        Ok(self.held)
    }
}
