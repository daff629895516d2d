//! The real Cloister server, in-process, on a temporary data directory and
//! either SQLite or a throwaway PostgreSQL database.

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::sync::Arc;

use cloister_server::clock::{Clock, ManualClock, SystemClock};
use cloister_server::config::{Config, Registration};
use cloister_server::service::Context;
use cloister_server::{RunningServer, Server};
use tempfile::TempDir;

use crate::postgres::TestDatabase;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A running Cloister server for one test.
///
/// `stop` it at the end of the test: that stops the server gracefully and
/// drops its PostgreSQL database. (If the test panics first, dropping the
/// `TestServer` still removes the database and the data directory.)
pub struct TestServer {
    backend: Backend,
    config: Config,
    clock: Arc<dyn Clock>,
    manual_clock: Option<ManualClock>,
    running: Option<RunningServer>,
    url: String,
    // Dropped after `running` (field order): the server closes its database
    // before the database and the directory go away.
    database: Option<TestDatabase>,
    /// Shared with the nodes started by [`TestServer::start_peer`].
    data_dir: Arc<TempDir>,
}

/// The default test configuration: registration open, rate limiting off,
/// `server_name` "localhost", listening on a free port of 127.0.0.1.
pub fn test_config(data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        server_name: "localhost".into(),
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        data_dir: data_dir.to_path_buf(),
        registration: Registration::Open,
        ..Config::default()
    };
    config.rate_limit.enabled = false;
    config
}

impl TestServer {
    /// Starts a server with the default test configuration; returns once it
    /// is listening.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`TestServer::start`], after `tweak` has adjusted the config
    /// (rate limits, plaintext rooms, limits…). `data_dir` and, on
    /// PostgreSQL, `database_url` are set by the harness before `tweak` runs.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestServer {
        Self::launch(backend, None, tweak).await
    }

    /// Starts a server whose "now" is `clock`: move time with
    /// `clock.advance_ms(…)` (retention, expiry) without sleeping.
    pub async fn start_with_clock(
        backend: Backend,
        clock: ManualClock,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        Self::launch(backend, Some(clock), tweak).await
    }

    async fn launch(
        backend: Backend,
        manual_clock: Option<ManualClock>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let data_dir = tempfile::Builder::new()
            .prefix("cloister-test-")
            .tempdir()
            .expect("create a temporary data directory");
        let mut config = test_config(data_dir.path());
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = TestDatabase::create().await;
                config.database_url = db.url().to_owned();
                Some(db)
            }
        };
        tweak(&mut config);
        let clock: Arc<dyn Clock> = match &manual_clock {
            Some(clock) => Arc::new(clock.clone()),
            None => Arc::new(SystemClock),
        };
        let mut server = TestServer {
            backend,
            config,
            clock,
            manual_clock,
            running: None,
            url: String::new(),
            database,
            data_dir: Arc::new(data_dir),
        };
        server.boot(false).await;
        server
    }

    /// Starts another node of this server (PostgreSQL only): its own
    /// listener and process state, the same database, data directory (audit
    /// keys, media) and clock — a second `cloister serve` behind the same
    /// load balancer. Stop peers before this server, which owns the database.
    pub async fn start_peer(&self) -> TestServer {
        assert_eq!(
            self.backend,
            Backend::Postgres,
            "several nodes share one PostgreSQL database"
        );
        let mut config = self.config.clone();
        config.listen.set_port(0);
        let mut peer = TestServer {
            backend: self.backend,
            config,
            clock: self.clock.clone(),
            manual_clock: self.manual_clock.clone(),
            running: None,
            url: String::new(),
            database: None,
            data_dir: self.data_dir.clone(),
        };
        peer.boot(false).await;
        peer
    }

    /// Binds and spawns the server. When the configured port is 0, picks a
    /// concrete free port first so that `config.listen` (and with it
    /// `public_baseurl` and `.well-known`) names the real address. On a
    /// restart (`reuse_port`) the previous port is tried first.
    async fn boot(&mut self, reuse_port: bool) {
        // A port the test asked for explicitly is used as is, or fails.
        let fixed_port = self.config.listen.port() != 0 && !reuse_port;
        let mut last_error = None;
        for attempt in 0..10 {
            let mut config = self.config.clone();
            if config.listen.port() == 0 || (reuse_port && attempt > 0) {
                config.listen.set_port(free_port(config.listen));
            }
            match Server::bind_with_clock(config.clone(), self.clock.clone()).await {
                Ok(server) => {
                    let running = server.spawn().expect("spawn the server");
                    self.url = running.base_url();
                    config.listen = running.addr;
                    self.config = config;
                    self.running = Some(running);
                    return;
                }
                Err(e) if !fixed_port && is_addr_in_use(&e) => last_error = Some(e),
                Err(e) => panic!(
                    "the {} test server failed to start: {e:#}\n(data dir {}, database {})",
                    self.backend,
                    self.data_dir.path().display(),
                    self.config.database_url()
                ),
            }
        }
        panic!(
            "the {} test server found no free port: {:#}",
            self.backend,
            last_error.expect("at least one attempt")
        );
    }

    /// `http://127.0.0.1:<port>` (no trailing slash).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().expect("server is running").addr
    }

    /// The configuration the server is running with (the real listen address).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn server_name(&self) -> &str {
        &self.config.server_name
    }

    /// `@localpart:server_name`
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.config.server_name)
    }

    /// The database the server uses (`sqlite://…` or `postgres://…`).
    pub fn database_url(&self) -> String {
        self.config.database_url()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// The clock passed to `start_with_clock`, if any.
    pub fn clock(&self) -> Option<&ManualClock> {
        self.manual_clock.as_ref()
    }

    /// One `COUNT(*)`-style number from the database, with `arg` bound to
    /// `$1`: for tests that check what was (not) stored.
    pub async fn count(&self, sql: &str, arg: &str) -> i64 {
        sqlx::query_scalar(sql)
            .bind(arg)
            .fetch_one(self.state().store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// How many audit entries' JSON matches the SQL `LIKE` `pattern`, e.g.
    /// `%"account_deactivated"%"ldap_disabled"%`.
    pub async fn audit_count(&self, pattern: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM audit_entries WHERE entry LIKE $1",
            pattern,
        )
        .await
    }

    /// `GET /_cloister/metrics` from this machine: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(format!("{}/_cloister/metrics", self.url()))
            .await
            .expect("GET /_cloister/metrics");
        assert_eq!(response.status(), 200, "the metrics endpoint answered");
        response.text().await.expect("the metrics text")
    }

    /// The running server's state (store, config, notifier): for tests that
    /// must look behind the HTTP API, e.g. at what was stored.
    pub fn state(&self) -> &Context {
        &self.running.as_ref().expect("server is running").state
    }

    /// Evaluates push rules for every event committed so far, here and
    /// now, instead of waiting for the server's background evaluator (which
    /// may run concurrently: the two never evaluate an event twice). Tests
    /// that count rows naming someone call it so notifications are settled.
    pub async fn push_caught_up(&self) {
        loop {
            let done = cloister_server::service::push::evaluate_batch(self.state())
                .await
                .expect("evaluate push rules");
            if done.events == 0 {
                return;
            }
        }
    }

    /// Registers `localpart` and makes it a server admin (as
    /// `cloister user create --admin` would), for the admin API.
    pub async fn register_admin(&self, localpart: &str) -> crate::Client {
        let admin = crate::Client::register(&self.url(), localpart, "admin-pw").await;
        let mut tx = self
            .state()
            .store
            .write()
            .await
            .expect("a write transaction");
        sqlx::query("UPDATE users SET is_admin = 1 WHERE user_id = $1")
            .bind(&admin.user_id)
            .execute(tx.conn())
            .await
            .expect("make the user an admin");
        // Requests made since registering may have left a copy of the
        // token's row without the flag (`store::token_cache`).
        tx.ends_sessions();
        tx.commit().await.expect("commit");
        admin
    }

    /// Graceful stop, then start again on the same data directory and
    /// database (and the same clock). Usually the port stays the same; if it
    /// was taken meanwhile it changes, and `url()` reflects it — rebase
    /// clients with `client.with_base(&server.url())`.
    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.boot(true).await;
    }

    /// Like [`restart`](Self::restart), with the configuration changed in
    /// between (as an operator editing the config file would).
    pub async fn restart_with(&mut self, tweak: impl FnOnce(&mut Config)) {
        self.shutdown().await;
        tweak(&mut self.config);
        self.boot(true).await;
    }

    /// Graceful stop of this node alone: the database and the data
    /// directory stay, for its peers, until [`stop`](Self::stop).
    pub async fn stop_node(&mut self) {
        self.shutdown().await;
    }

    /// Graceful stop; drops the PostgreSQL database and the data directory.
    pub async fn stop(mut self) {
        self.shutdown().await;
        if let Some(db) = self.database.take() {
            db.drop_database().await;
        }
    }

    async fn shutdown(&mut self) {
        if let Some(running) = self.running.take() {
            if let Err(e) = running.stop().await {
                panic!(
                    "the {} test server did not stop cleanly: {e:#}",
                    self.backend
                );
            }
        }
    }
}

fn free_port(listen: SocketAddr) -> u16 {
    StdListener::bind(SocketAddr::new(listen.ip(), 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

fn is_addr_in_use(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse)
    })
}
