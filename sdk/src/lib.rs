//! Cloister client SDK: the library every Cloister app embeds to talk to a
//! Cloister (or any Matrix) homeserver with end-to-end encryption.
//!
//! So far it holds [`crypto`], the sans-I/O end-to-end encryption core: an
//! [`OlmMachine`](crypto::OlmMachine) built on vodozemac that speaks Matrix's
//! Olm and Megolm formats byte for byte, turns its needs into requests for
//! the application to send, and takes responses and sync data back. It does
//! no networking and reads no clock; callers pass the time in.

pub mod client;
pub mod crypto;
pub mod store;

/// The vodozemac version this crate is built on, for matching key types.
pub use vodozemac;
