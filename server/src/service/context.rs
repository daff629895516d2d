//! What every service is handed: configuration, store, clock, notifier,
//! limiters and the audit log. The HTTP layer passes it to handlers as
//! axum state, the CLI builds its own; there are no globals.

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::password::Passwords;
use crate::ratelimit::RateLimiter;
use crate::service::audit::Auditor;
use crate::service::oidc::OidcProviders;
use crate::store::Store;

/// Cloned for every request, by each layer that takes it as axum state:
/// one reference count to bump, not one per part.
#[derive(Clone)]
pub struct Context(Arc<Parts>);

impl std::ops::Deref for Context {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.0
    }
}

pub struct Parts {
    pub config: Arc<Config>,
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub notifier: Notifier,
    pub limiter: RateLimiter,
    pub login_limiter: RateLimiter,
    /// User-directory searches, per user (`[directory]`).
    pub directory_limiter: RateLimiter,
    /// Bounds the password hashes in flight (each takes 19 MiB).
    pub passwords: Passwords,
    pub audit: Arc<Auditor>,
    pub metrics: Arc<Metrics>,
    /// One push-rule evaluation at a time on this node (`service::push`).
    pub push_evaluation: Arc<tokio::sync::Mutex<()>>,
    /// OpenID Connect providers' discovery documents and keys, cached.
    pub oidc: Arc<OidcProviders>,
    /// Rooms as messages into them last read them (`service::checked_send`).
    pub room_cache: crate::service::checked_send::RoomCache,
    /// Sync filters as read from the store (`service::sync::filter`).
    pub sync_filters: crate::service::sync::filter::StoredFilters,
    /// Member events kept for lazy-loading syncs (`service::sync::members`).
    pub sync_members: crate::service::sync::members::MemberCache,
    /// Recent events kept for incremental syncs (`service::sync::recent`).
    pub sync_recent: crate::service::sync::recent::RecentEvents,
    /// Room summaries kept for sliding sync (`service::sliding_sync::summary`).
    pub sliding_summaries: crate::service::sliding_sync::SummaryCache,
    /// Bounds the fresh sliding sync connections being answered at once
    /// (`service::sliding_sync::MAX_FIRST_BUILDS`).
    pub sliding_first_builds: tokio::sync::Semaphore,
}

impl Context {
    pub fn new(config: Config, store: Store, clock: Arc<dyn Clock>, audit: Auditor) -> Self {
        let rl = &config.rate_limit;
        let metrics = Arc::new(Metrics::default());
        Context(Arc::new(Parts {
            limiter: RateLimiter::new(rl.per_second, rl.burst),
            login_limiter: RateLimiter::new(rl.login_per_second, rl.login_burst),
            directory_limiter: RateLimiter::new(
                config.directory.search_per_second,
                config.directory.search_burst,
            ),
            passwords: Passwords::new(
                config.limits.max_password_hashes,
                config.limits.password_hash_queue,
            ),
            config: Arc::new(config),
            store,
            clock,
            notifier: Notifier::new(metrics.clone()),
            audit: Arc::new(audit),
            metrics,
            push_evaluation: Arc::default(),
            oidc: Arc::default(),
            room_cache: Default::default(),
            sync_filters: Default::default(),
            sync_members: Default::default(),
            sync_recent: Default::default(),
            sliding_summaries: Default::default(),
            sliding_first_builds: tokio::sync::Semaphore::new(
                crate::service::sliding_sync::MAX_FIRST_BUILDS,
            ),
        }))
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Every metric of this node in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        self.metrics.render(&self.store.pool_stats())
    }

    pub fn server_name(&self) -> &str {
        &self.config.server_name
    }

    /// `@localpart:server_name`
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.config.server_name)
    }

    /// The sender of the events the server writes on its own authority
    /// (retention policies set by a DPO, legal-hold notices). Its localpart
    /// cannot be registered.
    pub fn system_user_id(&self) -> String {
        self.user_id(crate::ids::SYSTEM_LOCALPART)
    }

    pub fn is_local_user(&self, user_id: &str) -> bool {
        crate::ids::parse_user_id(user_id)
            .is_some_and(|(_, server)| server == self.config.server_name)
    }
}
