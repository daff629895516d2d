//! The `[directory]` section: whom the user directory shows, and how fast
//! one user may search it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Directory {
    /// Whether a search finds every active account on the server (an
    /// institution's staff directory), not only the people who share a room
    /// with the searcher or sit in a published room.
    pub search_all_users: bool,
    /// Searches per second per user, sustained, and the burst beyond it.
    /// Clients search as the user types; the bound is on enumerating the
    /// directory, on top of the general per-session limit.
    pub search_per_second: f64,
    pub search_burst: f64,
}

impl Default for Directory {
    fn default() -> Self {
        Directory {
            search_all_users: false,
            search_per_second: 2.0,
            search_burst: 30.0,
        }
    }
}
