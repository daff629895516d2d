//! SQLite's process-wide settings, made once before the first connection.

use std::ffi::{c_int, c_void};

use libsqlite3_sys as ffi;

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
    // SAFETY: SQLITE_CONFIG_MEMSTATUS takes one int; the caller guarantees
    // no other thread is in SQLite meanwhile.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int) };
    rc == ffi::SQLITE_OK
}

/// Makes SQLite allocate from jemalloc, the allocator the `cloister`
/// binary uses for everything else, rather than from glibc's malloc:
/// SQLite's page buffers are most of what it allocates, one per page read
/// after a write emptied a reader's cache, from as many threads as there
/// are connections (docs/performance.md, "SQLite's pages from jemalloc").
/// Same rules as [`tune_before_first_connection`]. Returns whether SQLite
/// took it.
pub fn allocate_with_jemalloc() -> bool {
    // SQLite copies the methods, so a local is enough.
    let methods = ffi::sqlite3_mem_methods {
        xMalloc: Some(jemalloc::malloc),
        xFree: Some(jemalloc::free),
        xRealloc: Some(jemalloc::realloc),
        xSize: Some(jemalloc::size),
        xRoundup: Some(jemalloc::roundup),
        xInit: Some(jemalloc::init),
        xShutdown: Some(jemalloc::shutdown),
        pAppData: std::ptr::null_mut(),
    };
    // SAFETY: SQLITE_CONFIG_MALLOC takes a pointer to the methods, which
    // SQLite copies before returning; the caller guarantees no other
    // thread is in SQLite meanwhile.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods) };
    rc == ffi::SQLITE_OK
}

/// SQLite's `sqlite3_mem_methods` over jemalloc. SQLite asks for at most
/// 2^31 - 1 bytes and needs 8-byte alignment; jemalloc gives 16.
mod jemalloc {
    use super::{c_int, c_void};
    use tikv_jemalloc_sys as je;

    pub(super) unsafe extern "C" fn malloc(n: c_int) -> *mut c_void {
        // SAFETY: any size is valid for malloc; SQLite never passes a negative one.
        unsafe { je::malloc(n.max(0) as usize) }
    }

    pub(super) unsafe extern "C" fn free(p: *mut c_void) {
        // SAFETY: SQLite frees only what these methods allocated.
        unsafe { je::free(p) }
    }

    pub(super) unsafe extern "C" fn realloc(p: *mut c_void, n: c_int) -> *mut c_void {
        // SAFETY: as for free; SQLite never passes a negative size.
        unsafe { je::realloc(p, n.max(0) as usize) }
    }

    pub(super) unsafe extern "C" fn size(p: *mut c_void) -> c_int {
        if p.is_null() {
            return 0;
        }
        // SAFETY: p came from these methods. SQLite's allocations are
        // below 2^31, and jemalloc's size classes round them up by at most
        // a quarter, so the result fits an int except near that limit.
        let n = unsafe { je::malloc_usable_size(p) };
        c_int::try_from(n).unwrap_or(c_int::MAX)
    }

    pub(super) unsafe extern "C" fn roundup(n: c_int) -> c_int {
        // SAFETY: nallocx only computes a size class.
        let rounded = unsafe { je::nallocx(n.max(1) as usize, 0) };
        // SQLite allocates what this answers, so never less than asked:
        // nallocx answers 0 for a size it cannot serve.
        c_int::try_from(rounded)
            .ok()
            .filter(|&r| r >= n)
            .unwrap_or(n)
    }

    pub(super) unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        super::ffi::SQLITE_OK
    }

    pub(super) unsafe extern "C" fn shutdown(_: *mut c_void) {}
}

#[cfg(test)]
mod tests {
    /// Once SQLite is running (this test's process has opened databases or
    /// may have), the settings are refused rather than half applied, and
    /// SQLite keeps working.
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
        assert!(!super::allocate_with_jemalloc());
    }
}
