//! The rules of the homeserver, between the HTTP handlers and the store.

pub mod account_data;
pub mod accounts;
pub mod aliases;
pub mod audit;
pub mod backup;
pub mod context;
pub mod cross_signing;
pub mod devices;
pub mod encryption_rule;
pub mod ephemeral;
pub mod erasure;
pub mod event_reads;
pub mod events;
pub mod filters;
pub mod holds;
pub mod housekeeping;
pub mod keys;
pub mod media;
pub mod membership;
pub mod plaintext_events;
pub mod processing_report;
pub mod profile;
pub mod purge;
pub mod pushrules;
pub mod retention;
pub mod room_events;
pub mod room_reads;
pub mod rooms;
pub mod session;
pub mod subject_export;
pub mod sync;
pub mod to_device;
pub mod uia;
pub mod visibility;

pub use context::Context;
