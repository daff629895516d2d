//! The rules of the homeserver, between the HTTP handlers and the store.

pub mod devices;
pub mod events;
pub mod rooms;
pub mod sync;
pub mod uia;
