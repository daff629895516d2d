//! Stream tokens: the one grammar is `cloister_proto::tokens`, shared with
//! the SDK and every endpoint that takes a token.

pub use cloister_proto::tokens::{gap, parse_gap, SyncToken};
