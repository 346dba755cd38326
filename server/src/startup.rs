//! Building and running the server: connect and migrate the store, load keys, bind the
//! listener, then serve until a shutdown future resolves. Tests bind port 0 and pass their own
//! shutdown future; `main` passes SIGTERM / ctrl-c.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lianxin_protocol::PeerId;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::hub::{DocContext, DocHub};
use crate::metrics::Metrics;
use crate::settings::{Settings, redacted_url};
use crate::state::AppState;
use crate::storage::{PoolConfig, Store};

/// How long shutdown waits for connections and documents to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A server ready to run: store migrated, listener bound.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects to the store (running migrations), loads keys and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
        let store = connect_store(&settings).await?;
        store.migrate().await.context("running migrations")?;
        let storage_id = store.storage_id().await.context("reading storage id")?;
        let auth = Authenticator::from_settings(&settings.auth, &settings.data_dir)
            .context("setting up token verification")?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;

        let node_id = settings.node_id();
        let metrics = Arc::new(Metrics::for_node(&node_id));
        let node = Arc::new(crate::cluster::Node::new(
            node_id,
            matches!(store, Store::Sqlite(_)),
            metrics.clone(),
        ));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let server_peer = PeerId::new(format!("lianxin-server-{}", rand::random::<u64>()))
            .context("server peer id")?;
        let changes = Arc::new(tokio::sync::Notify::new());
        let committer = crate::committer::Committer::start(
            store.clone(),
            metrics.clone(),
            shutdown.clone(),
            &tracker,
        );
        let hub = DocHub::new(DocContext {
            committer,
            changes: changes.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            limits: settings.limits.clone(),
            server_peer: server_peer.clone(),
            allow_untyped: settings.documents.allow_untyped,
            rules: settings.documents.rules(),
            projection: settings.documents.projection(),
            server_actor: automerge::ActorId::random(),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
        });
        let live = crate::live::LiveConnections::default();
        tracker.spawn(crate::cluster::run_listener(crate::cluster::Listener {
            live: live.clone(),
            store: store.clone(),
            hub: hub.clone(),
            node: node.clone(),
            metrics: metrics.clone(),
            changes: changes.clone(),
            shutdown: shutdown.clone(),
        }));
        let state = AppState {
            node,
            changes,
            connection_slots: Arc::new(Semaphore::new(settings.limits.max_connections)),
            rate_limit: Arc::new(crate::rate_limit::UserRateLimit::new(
                settings.limits.http_requests_per_second,
                settings.limits.http_burst,
            )),
            settings: Arc::new(settings),
            store,
            auth: Arc::new(auth),
            hub,
            live,
            metrics,
            server_peer,
            storage_id,
            shutdown,
            tracker,
        };
        Ok(Self { listener, state })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state, for tests that inspect the store or metrics.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains (reports not-ready, waits
    /// `cluster.drain_grace_secs`, closes the connections over `cluster.drain_secs` so devices
    /// move to other nodes), stops, lets document actors save their sync state, and waits
    /// (bounded) for them.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application { listener, state } = self;
        tracing::info!(
            addr = %listener.local_addr()?,
            storage = state.store.backend(),
            node = %state.node.id,
            "lianxin-server listening"
        );
        let token = state.shutdown.clone();
        let tracker = state.tracker.clone();
        let draining = state.clone();
        let app = crate::routes::router(state);
        let server_token = token.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = shutdown => drain(&draining).await,
                    _ = server_token.cancelled() => {}
                }
                tracing::info!("shutting down");
                server_token.cancel();
            })
            .await
            .context("serving")?;
        token.cancel();
        tracker.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections or documents did not finish in time");
        }
        Ok(())
    }
}

/// Moves this node's devices to other nodes before it stops: not-ready first (the load
/// balancer stops sending connections here), then the open connections are closed gradually.
async fn drain(state: &AppState) {
    let cluster = &state.settings.cluster;
    state.node.start_draining();
    tracing::info!(
        grace_secs = cluster.drain_grace_secs,
        drain_secs = cluster.drain_secs,
        "draining: not ready; closing connections after the grace period"
    );
    tokio::time::sleep(Duration::from_secs(cluster.drain_grace_secs)).await;
    let closed = state
        .live
        .drain(Duration::from_secs(cluster.drain_secs))
        .await;
    tracing::info!(connections = closed, "drained");
}

/// Connects to the configured database, or the embedded SQLite file.
pub async fn connect_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.effective_database_url();
    let pool = PoolConfig {
        application_name: Some(settings.node_id()),
        max_connections: settings.database.max_connections,
        acquire_timeout: Duration::from_secs(settings.database.acquire_timeout_secs),
    };
    let store = Store::connect(&url, &pool)
        .await
        .with_context(|| format!("connecting to {}", redacted_url(&url)))?;
    tracing::info!(url = %redacted_url(&url), "connected to storage");
    Ok(store)
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
