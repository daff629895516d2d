//! What the end-to-end tests against the real server share.

#![allow(dead_code)]

use std::sync::Arc;

use cloister_sdk::client::Client;
use cloister_sdk::store::MemoryStore;

pub(crate) const PASSWORD: &str = "a long enough password";

/// A new device of `name` (registered with [`PASSWORD`]), its state in
/// memory.
pub(crate) async fn login(url: &str, name: &str) -> Client {
    Client::login(url, name, PASSWORD, Arc::new(MemoryStore::new()), None)
        .await
        .unwrap()
}
