//! `/sync` (assembly pending the key and account-data stores).

pub mod device_lists;
pub mod filter;
pub mod rooms;
pub mod tokens;
