//! The Matrix protocol as Cloister speaks it, written once for the server,
//! the SDK, the C library and the tests: identifiers, canonical JSON and
//! signatures, error codes with their HTTP status, stream tokens, the
//! redaction algorithm of each room version, and the wire types of
//! end-to-end encryption (key upload, query and claim, to-device messages,
//! room keys, the crypto parts of `/sync`) and of room events.
//!
//! No I/O, no clock, no randomness: what needs those (generating ids,
//! sending requests) stays with the caller.

#![warn(missing_docs)]

pub mod canonical;
pub mod errcode;
pub mod event;
pub mod ids;
pub mod keys;
pub mod oauth;
pub mod redaction;
pub mod sliding_sync;
pub mod sync;
pub mod to_device;
pub mod tokens;

pub use errcode::{ErrCode, MatrixError};

/// Parses `example`, checks that it serializes back to exactly the same
/// JSON (so absent optionals stay absent), and returns it.
#[cfg(test)]
pub(crate) fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(
    example: &serde_json::Value,
) -> T {
    let parsed: T = serde_json::from_value(example.clone()).unwrap();
    assert_eq!(&serde_json::to_value(&parsed).unwrap(), example);
    parsed
}
