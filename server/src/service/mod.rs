//! The rules of the homeserver, between the HTTP handlers and the store.

pub mod audit;
pub mod backup;
pub mod context;
pub mod cross_signing;
pub mod devices;
pub mod encryption_rule;
pub mod erasure;
pub mod events;
pub mod holds;
pub mod housekeeping;
pub mod keys;
pub mod processing_report;
pub mod purge;
pub mod pushrules;
pub mod retention;
pub mod rooms;
pub mod session;
pub mod subject_export;
pub mod sync;
pub mod to_device;
pub mod uia;
pub mod visibility;

pub use context::Context;
