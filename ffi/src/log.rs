//! Log output: the library's own diagnostics (logins, sync errors, key
//! changes) on stderr at a level the application chooses. Off by default.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

use tracing::Level;

use crate::result::{cloister_result, guard, CLOISTER_RESULT_INVALID_ARGUMENT, CLOISTER_RESULT_OK};

/// Log levels for `cloister_log_set_level`. Stable values.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum cloister_log_level {
    /// Nothing (the default).
    CLOISTER_LOG_OFF = 0,
    /// Failures the library could not handle.
    CLOISTER_LOG_ERROR = 1,
    /// Also failures it recovers from: sync errors, changed device keys.
    CLOISTER_LOG_WARN = 2,
    /// Also logins and other milestones.
    CLOISTER_LOG_INFO = 3,
    /// Also details for debugging.
    CLOISTER_LOG_DEBUG = 4,
    /// Everything.
    CLOISTER_LOG_TRACE = 5,
}

pub use cloister_log_level::*;

static LEVEL: AtomicU32 = AtomicU32::new(0);

fn enabled(level: &Level) -> bool {
    let wanted = match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    };
    wanted <= LEVEL.load(Ordering::Relaxed)
}

/// Set how much the library logs to stderr (a `cloister_log_level`); the
/// default is `CLOISTER_LOG_OFF`. Process-wide; may be called at any time
/// from any thread. Levels above `CLOISTER_LOG_TRACE` give
/// `CLOISTER_RESULT_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn cloister_log_set_level(level: u32) -> cloister_result {
    guard(|| {
        if level > CLOISTER_LOG_TRACE as u32 {
            return CLOISTER_RESULT_INVALID_ARGUMENT;
        }
        LEVEL.store(level, Ordering::Relaxed);
        install();
        CLOISTER_RESULT_OK
    })
}

/// The current log level.
#[no_mangle]
pub extern "C" fn cloister_log_get_level() -> u32 {
    LEVEL.load(Ordering::Relaxed)
}

/// Install the stderr subscriber once (unless the host process, e.g. a
/// Rust app linking the rlib, has its own).
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        let filter = tracing_subscriber::filter::filter_fn(|meta| {
            meta.target().starts_with("cloister") && enabled(meta.level())
        });
        let _ = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(filter),
            )
            .try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_and_kept() {
        assert_eq!(cloister_log_set_level(99), CLOISTER_RESULT_INVALID_ARGUMENT);
        assert_eq!(
            cloister_log_set_level(CLOISTER_LOG_WARN as u32),
            CLOISTER_RESULT_OK
        );
        assert_eq!(cloister_log_get_level(), 2);
        assert!(enabled(&Level::ERROR) && !enabled(&Level::INFO));
        assert_eq!(cloister_log_set_level(0), CLOISTER_RESULT_OK);
    }
}
