//! The Matrix protocol as Cloister speaks it, written once for the server,
//! the SDK, the C library and the tests: identifiers, canonical JSON and
//! signatures, error codes with their HTTP status, stream tokens, and the
//! redaction algorithm of each room version.
//!
//! No I/O, no clock, no randomness: what needs those (generating ids,
//! sending requests) stays with the caller.

pub mod canonical;
pub mod errcode;
pub mod ids;
pub mod redaction;
pub mod tokens;

pub use errcode::{ErrCode, MatrixError};
