//! Cloister client SDK: the library every Cloister app embeds to talk to a
//! Cloister (or any Matrix) homeserver with end-to-end encryption.
//!
//! - [`client`]: the async client (tokio, reqwest with rustls/ring): login,
//!   sync, rooms, encrypted messages and files, history, devices, a stream
//!   of decrypted events. Most apps need only this.
//! - [`store`]: persistence — [`SqliteStore`](store::SqliteStore), every
//!   value encrypted under a passphrase (Argon2id, XChaCha20-Poly1305), and
//!   [`MemoryStore`](store::MemoryStore) for tests and WebAssembly.
//! - [`crypto`]: the sans-I/O end-to-end encryption core: an
//!   [`OlmMachine`](crypto::OlmMachine) built on vodozemac that speaks
//!   Matrix's Olm and Megolm formats byte for byte, turns its needs into
//!   requests for the application to send, and takes responses and sync data
//!   back. It does no networking and reads no clock; callers pass the time
//!   in. Its state is exported and rebuilt as records for a store.
//!
//! The app developer's guide is `docs/sdk.md`.

#![warn(missing_docs)]

#[cfg(feature = "client")]
pub mod client;
pub mod crypto;
pub mod store;

/// The protocol types this crate speaks: identifiers, canonical JSON,
/// [`ErrCode`](cloister_proto::ErrCode) (see
/// [`ClientError::code`](client::ClientError::code)).
pub use cloister_proto;
/// The vodozemac version this crate is built on, for matching key types.
pub use vodozemac;
