//! Cloister homeserver: a Matrix Client-Server API (v3, no federation) that
//! stores only ciphertext and key bundles and refuses plaintext in encrypted
//! rooms. Layers: `api` (HTTP handlers, one module per area of the spec) →
//! `service` (the rules) → `store` (SQL over SQLite or PostgreSQL).

pub mod api;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod error;
pub mod extract;
pub mod ids;
pub mod latency;
pub mod ldap;
pub mod markup;
pub mod metrics;
pub mod notify;
pub mod password;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod store;

pub use config::Config;
pub use server::{RunningServer, Server};
