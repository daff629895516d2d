//! Throwaway PostgreSQL databases, one per [`crate::TestServer`].
//!
//! The cluster comes from `CLOISTER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each test server gets
//! `CREATE DATABASE cloister_test_<random>` and drops it again (`WITH (FORCE)`)
//! when it stops — or, if the test panicked first, when it is dropped.

use std::time::Duration;

use rand::distributions::Uniform;
use rand::Rng;
use sqlx::{Connection, Executor};

pub const POSTGRES_URL_ENV: &str = "CLOISTER_TEST_POSTGRES_URL";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin URL of the PostgreSQL cluster the tests use.
pub fn admin_url() -> String {
    std::env::var(POSTGRES_URL_ENV)
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// A database created for one test server.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    dropped: bool,
}

impl TestDatabase {
    /// Creates a fresh, empty database. Panics — failing the test — with
    /// instructions when PostgreSQL cannot be reached.
    pub async fn create() -> TestDatabase {
        let admin_url = admin_url();
        let name = random_name();
        let mut conn = connect_admin(&admin_url).await;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url} failed: {e}"));
        let _ = conn.close().await;
        let url = with_database(&admin_url, &name);
        TestDatabase {
            admin_url,
            name,
            url,
            dropped: false,
        }
    }

    /// `postgres://…/cloister_test_…`, for `Config::database_url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, terminating any connections still open to it.
    pub async fn drop_database(mut self) {
        self.dropped = true;
        drop_database(&self.admin_url, &self.name).await;
    }
}

impl Drop for TestDatabase {
    /// A test that panicked never reaches `drop_database`; clean up here on a
    /// separate thread (no runtime may be blocked on inside a runtime).
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_database(&admin_url, &name));
            }
        });
        let _ = cleanup.join();
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    let Ok(Ok(mut conn)) =
        tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(admin_url)).await
    else {
        eprintln!("warning: could not connect to {admin_url} to drop test database {name}");
        return;
    };
    if let Err(e) = conn
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
    {
        eprintln!("warning: DROP DATABASE {name} failed: {e}");
    }
    let _ = conn.close().await;
}

async fn connect_admin(admin_url: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let result = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(admin_url))
        .await
        .map_err(|_| format!("no answer within {CONNECT_TIMEOUT:?}"))
        .and_then(|r| r.map_err(|e| e.to_string()));
    match result {
        Ok(conn) => conn,
        Err(error) => panic!("{}", unreachable_message(admin_url, &error)),
    }
}

fn unreachable_message(admin_url: &str, error: &str) -> String {
    format!(
        "\n\nPostgreSQL is required by the Postgres-backend tests and is not reachable.\n\
         URL: {admin_url} (set {POSTGRES_URL_ENV} to use another)\n\
         Error: {error}\n\n\
         Start one, then re-run the tests:\n\
         \x20 - the system cluster:   pg_ctlcluster 15 main start   (or: service postgresql start)\n\
         \x20 - a private throwaway:  D=$(mktemp -d) && initdb -D $D -U postgres --auth=trust \\\n\
         \x20                         && pg_ctl -D $D -o \"-k $D -h 127.0.0.1 -p 5432\" -l $D/log start\n\
         \x20   (on Debian initdb and pg_ctl are in /usr/lib/postgresql/<version>/bin)\n\
         The role in the URL needs CREATEDB; tests create and drop databases named cloister_test_*.\n"
    )
}

/// `cloister_test_` followed by 16 random lowercase letters: a valid unquoted
/// identifier, so it needs no escaping.
fn random_name() -> String {
    let letters: String = rand::thread_rng()
        .sample_iter(Uniform::new_inclusive(b'a', b'z'))
        .take(16)
        .map(char::from)
        .collect();
    format!("cloister_test_{letters}")
}

/// Replaces the database (path) part of a `postgres://` URL, keeping any
/// query parameters.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }

    #[test]
    fn names_are_plain_identifiers() {
        let name = random_name();
        assert_eq!(name.len(), "cloister_test_".len() + 16);
        assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    }
}
