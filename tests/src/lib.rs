//! End-to-end test harness for Cloister: the real server over HTTP, on SQLite
//! and on PostgreSQL.
//!
//! ```no_run
//! use cloister_tests::{both_backends, Backend, Client, TestServer};
//!
//! async fn register_works(backend: Backend) {
//!     let server = TestServer::start(backend).await;
//!     let alice = Client::register(&server.url(), "alice", "secret").await;
//!     assert_eq!(alice.user_id, "@alice:localhost");
//!     server.stop().await;
//! }
//! both_backends!(register, register_works);
//! // → tests `register::sqlite` and `register::postgres`
//! ```
//!
//! PostgreSQL tests need a server at `CLOISTER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); they fail, never skip,
//! when it is missing.

pub mod browser;
pub mod client;
pub mod console;
mod harness;
pub mod keys;
pub mod ldap;
pub mod oauth;
pub mod oidc;
pub mod personal;
pub mod postgres;
pub mod process;
pub mod push_gateway;
pub mod saml;
pub mod server;

use std::future::Future;
use std::time::Duration;

pub use client::{assert_refused, encode, errcode, megolm_content, Client};
pub use cloister_server::clock::ManualClock;
pub use cloister_server::config::Config;
pub use keys::DeviceKeys;
pub use process::ServerProcess;
pub use server::{Backend, TestServer};

/// A port of 127.0.0.1 free a moment ago, for a program that must know it
/// before it starts (an identity provider registering the server's URLs).
/// Chosen below Linux's ephemeral range (32768 and up by default), from
/// which the kernel also takes the source ports of outgoing connections: a
/// port from `bind(0)` was once taken by another test's client connection
/// before the server bound it ("Address already in use" in CI).
pub fn free_port() -> u16 {
    for _ in 0..1_000 {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

/// How long one behaviour test may run before it fails as hung.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Runs `test(backend)` with [`TEST_TIMEOUT`]; used by [`both_backends!`].
pub async fn run_test<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Backend) -> Fut,
    Fut: Future<Output = ()>,
{
    if tokio::time::timeout(TEST_TIMEOUT, test(backend))
        .await
        .is_err()
    {
        panic!("test timed out after {TEST_TIMEOUT:?} on {backend}");
    }
}

/// The `event_id`s of a list of events (a timeline, a chunk), in order.
pub fn event_ids(events: &serde_json::Value) -> Vec<String> {
    events
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A unique-enough suffix for user names and transaction ids.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

/// A server with one registered account per prefix (unique localparts, all
/// with `password`): the start of most client scenarios. Returns the server
/// and the localparts, in the order of `prefixes`.
pub async fn server_with_users(
    backend: Backend,
    prefixes: &[&str],
    password: &str,
) -> (TestServer, Vec<String>) {
    let server = TestServer::start(backend).await;
    let mut names = Vec::with_capacity(prefixes.len());
    for prefix in prefixes {
        let name = unique(prefix);
        Client::register(&server.url(), &name, password).await;
        names.push(name);
    }
    (server, names)
}

/// The value of the metrics sample line that starts with `series `
/// exactly (`TestServer::metrics`'s text).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// `alice` (registered at `alice_url`) and `bob` (at `bob_url`, the same
/// server or another node of it), both with password `pw`, in a room alice
/// made and bob joined: the start of most two-person scenarios.
pub async fn alice_and_bob_in_a_room(alice_url: &str, bob_url: &str) -> (Client, Client, String) {
    let alice = Client::register(alice_url, "alice", "pw").await;
    let bob = Client::register(bob_url, "bob", "pw").await;
    let room = alice
        .create_room(serde_json::json!({ "invite": [bob.user_id] }))
        .await;
    bob.join(&room).await;
    (alice, bob, room)
}

/// `both_backends!(name, async_fn)` generates the module `name` with the
/// tests `name::sqlite` and `name::postgres`, each calling
/// `async_fn(Backend::…)` on a two-worker multi-threaded runtime with a
/// timeout. Several at once: `both_backends!(a, fa; b, fb);`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident, $test:ident);+ $(;)?) => {
        $(
            mod $name {
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::run_test($crate::Backend::Sqlite, super::$test).await;
                }

                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::run_test($crate::Backend::Postgres, super::$test).await;
                }
            }
        )+
    };
}
