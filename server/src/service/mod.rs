//! The rules of the homeserver, between the HTTP handlers and the store.

pub mod audit;
pub mod backup;
pub mod cross_signing;
pub mod devices;
pub mod events;
pub mod housekeeping;
pub mod keys;
pub mod rooms;
pub mod sync;
pub mod to_device;
pub mod uia;
