//! The `[console]` section: the web console at `/_cloister/console/`.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Console {
    /// Serve the console. Its pages and API answer 404 when off.
    pub enabled: bool,
    /// A session with no request for this long ends, in seconds.
    pub idle_timeout_secs: u64,
    /// A session ends this long after sign-in however busy, in seconds.
    pub session_lifetime_secs: u64,
}

impl Default for Console {
    fn default() -> Self {
        Console {
            enabled: true,
            idle_timeout_secs: 15 * 60,
            session_lifetime_secs: 8 * 3600,
        }
    }
}

impl Console {
    pub(super) fn validate(&self) -> Result<(), String> {
        if !(10..=24 * 3600).contains(&self.idle_timeout_secs) {
            return Err("console.idle_timeout_secs must be 10 to 86400".into());
        }
        if !(60..=7 * 24 * 3600).contains(&self.session_lifetime_secs) {
            return Err("console.session_lifetime_secs must be 60 to 604800".into());
        }
        Ok(())
    }
}
