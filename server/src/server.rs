//! Starting and stopping the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::service::Context;
use crate::store::{file_modes, Store};

pub struct Server {
    state: Context,
    listener: TcpListener,
}

/// A server running in the background of this process (tests, embedding).
pub struct RunningServer {
    pub addr: SocketAddr,
    pub state: Context,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Opens the store, applies migrations and binds the listener.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        Self::bind_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn bind_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Server> {
        secure_data_dir(&config).await?;
        let max_write_wait = config.limits.max_write_wait_ms;
        let store = Store::connect(&config.database_url())
            .await?
            .bound_write_queue((max_write_wait > 0).then(|| Duration::from_millis(max_write_wait)))
            .cache_tokens(Some(config.access_token_cache()));
        store.migrate().await?;
        let auditor =
            crate::service::audit::Auditor::load_or_create(&config.data_dir, &config.server_name)?;
        let listener = TcpListener::bind(config.listen).await?;
        // The bound address, not port 0: pusher URLs are checked against it.
        let mut config = config;
        config.listen = listener.local_addr()?;
        let state = Context::new(config, store, clock, auditor);
        Ok(Server { state, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let notifier = self.state.notifier.clone();
        let store = self.state.store.clone();
        // Before the first request: its notifications must reach other nodes.
        let cluster = crate::cluster::start(&self.state);
        let housekeeping = tokio::spawn(crate::service::housekeeping::run(self.state.clone()));
        let push = crate::service::push::sender::start(&self.state);
        let app = crate::api::router(self.state);
        let result = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            notifier.shutdown();
        })
        .await;
        // Dropping their connections ends this node's sessions: the jobs'
        // lock is free for another node at once.
        housekeeping.abort();
        for task in push {
            task.abort();
        }
        for task in cluster {
            task.abort();
        }
        store.close().await;
        result
    }

    pub fn spawn(self) -> std::io::Result<RunningServer> {
        let addr = self.local_addr()?;
        let state = self.state.clone();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(self.run(async move {
            let _ = stopped.await;
        }));
        Ok(RunningServer {
            addr,
            state,
            stop: Some(stop),
            task,
        })
    }
}

/// Creates the data and media directories 0700 and removes group and other
/// access from anything already in them (the database, its journals, media
/// and audit keys): other local users have no business reading any of it.
async fn secure_data_dir(config: &Config) -> anyhow::Result<()> {
    let (data_dir, media_dir) = (config.data_dir.clone(), config.media_dir());
    // A large media tree takes a while to walk; keep it off the async workers.
    let tightened = tokio::task::spawn_blocking(move || {
        file_modes::create_private_dir(&data_dir)?;
        file_modes::create_private_dir(&media_dir)?;
        file_modes::tighten_tree(&data_dir)
    })
    .await??;
    file_modes::log_tightened(&tightened);
    Ok(())
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful stop: waits for in-flight requests and closes the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await??;
        Ok(())
    }
}
