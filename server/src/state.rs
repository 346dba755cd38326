//! The one shared state of the server, cloned into every handler and connection.

use std::sync::Arc;

use lianxin_protocol::PeerId;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::hub::DocHub;
use crate::live::LiveConnections;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::storage::Store;

#[derive(Clone, Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub auth: Arc<Authenticator>,
    pub hub: DocHub,
    /// Open connections and feed streams by user and device, for revocation.
    pub live: LiveConnections,
    /// Requests per user on the HTTP API.
    pub rate_limit: Arc<crate::rate_limit::UserRateLimit>,
    pub metrics: Arc<Metrics>,
    /// One permit per open websocket connection.
    pub connection_slots: Arc<Semaphore>,
    /// This node: its ID, whether it hears the others, whether it is draining.
    pub node: Arc<crate::cluster::Node>,
    /// This process's peer ID in the sync protocol.
    pub server_peer: PeerId,
    /// The storage ID shared by every process on this database.
    pub storage_id: String,
    /// Notified after every commit of changes, for the changes feed's waiters.
    pub changes: Arc<tokio::sync::Notify>,
    /// Cancelled when the server shuts down.
    pub shutdown: CancellationToken,
    /// Owns every connection and document task, so shutdown can wait for them.
    pub tracker: TaskTracker,
}
