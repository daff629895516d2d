//! SQLite's process-wide settings, made once before the first connection.

/// Turns off SQLite's memory statistics. With them on (the library's
/// default), every allocation SQLite makes, a page read into a
/// connection's cache among them, takes one global mutex. Under load every
/// write resets every reader's cache, so the readers' worker threads
/// queue on that mutex (docs/performance.md, "SQLite's allocation
/// counter"). Cloister never reads the statistics.
///
/// Call it first thing in `main`, before any thread opens a database:
/// `sqlite3_config` is not thread-safe and fails once SQLite has started.
/// Returns whether SQLite took the setting.
pub fn tune_before_first_connection() -> bool {
    // SAFETY: sqlite3_config with SQLITE_CONFIG_MEMSTATUS takes one int;
    // the caller guarantees no other thread is in SQLite meanwhile.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_config(
            libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
            0 as std::ffi::c_int,
        )
    };
    rc == libsqlite3_sys::SQLITE_OK
}

#[cfg(test)]
mod tests {
    /// Once SQLite is running (this test's process has opened databases or
    /// may have), the setting is refused rather than half applied; in a
    /// fresh process it is taken. Both leave SQLite working.
    #[test]
    fn refused_once_sqlite_runs_and_sqlite_still_works() {
        super::tune_before_first_connection();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect("sqlite::memory:")
                .await
                .unwrap();
            let one: i64 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(one, 1);
        });
        assert!(
            !super::tune_before_first_connection(),
            "sqlite3_config after start must be refused"
        );
    }
}
