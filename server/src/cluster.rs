//! Several server processes (nodes) on one Postgres: how each hears of the others' changes,
//! how it copes with losing the database, and how it leaves.
//!
//! There is no membership and no node-to-node traffic: Postgres is the shared truth, and its
//! `LISTEN`/`NOTIFY` carries "these documents changed" (see `storage::postgres`). Each append
//! transaction announces its documents; the [`run_listener`] task of every other node hears it
//! once it commits and
//! - tells the document's actor, if the document is in memory here, to read the new chunks
//!   from the database and sync them to its sessions ([`DocHub::announced`]);
//! - tells connections that hold the document without having it open (changed-docs);
//! - wakes the area-sync task of every connection subscribed to an area above the document,
//!   which runs a catch-up pass from its cursor (`crate::area_sync`);
//! - wakes the changes feed's long polls.
//!
//! Revocations travel the same way (channel `lianxin_revocations`): every node cuts the open
//! connections of a revoked user or device, not only the node that handled the request.
//!
//! Announcements are lost when the listening connection is (a database restart, a network
//! cut). The listener therefore keeps a catch-up point: a transaction horizon from before
//! anything it may have missed. It starts at a horizon taken before the node serves; after each
//! (re)connection it is the horizon taken right after `LISTEN` (the catch-up read comes later,
//! so it covers everything before); while connected it moves to horizons sampled on the
//! listening connection once they are `SETTLE` (10 s) old. After every reconnect the listener
//! first lists the documents changed since that point ([`Store::changed_since`]) and handles
//! them as if announced, and cuts open connections of users and devices revoked meanwhile. A
//! device never depends on an announcement for correctness anyway (it syncs everything on
//! reconnect); announcements make it prompt.
//!
//! What keeps two nodes from merging one document inconsistently is not here but in the
//! append: each append names the `last_seq` it was vetted against and the database refuses a
//! stale one (`storage::SeqConflict`), so a document's changes are serialized in the database.
//!
//! [`Node`] is this process's identity and state for the load balancer: its ID (in every log
//! line, in `lianxin_node_info` and as the `application_name` of its database connections),
//! whether it hears announcements, and whether it is draining; `/readyz` answers 503 when it is draining, when it does not hear announcements,
//! or when the database does not answer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::hub::DocHub;
use crate::metrics::Metrics;
use crate::storage::{Heard, Revoked, Store};

/// How long a horizon must have been followed by an unbroken connection before it becomes the
/// catch-up point: by then every announcement of a transaction before it has been read.
const SETTLE: Duration = Duration::from_secs(10);

/// How often the listening connection is checked (and a horizon sampled).
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// How long a check may take before the connection counts as lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Wait between attempts to listen again.
const RETRY: Duration = Duration::from_millis(500);

/// This process as the cluster and its load balancer see it.
#[derive(Debug)]
pub struct Node {
    /// The node ID (settings `cluster.node_id`, else host name and port).
    pub id: String,
    listening: AtomicBool,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
}

impl Node {
    /// A node that hears announcements from the start when `alone` (SQLite: no other process
    /// to hear).
    pub fn new(id: String, alone: bool, metrics: Arc<Metrics>) -> Self {
        let node = Self {
            id,
            listening: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            metrics,
        };
        node.set_listening(alone);
        node
    }

    /// Whether this process hears the other processes' changes.
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Relaxed);
        self.metrics.listening.set(i64::from(on));
    }

    /// Whether this process is moving its connections away before it stops.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// From now on `/readyz` says 503 and new websocket connections are refused.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        self.metrics.draining.set(1);
    }
}

/// The default node ID: this host's name and the port it listens on.
pub fn default_node_id(port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "lianxin".to_owned());
    format!("{host}:{port}")
}

/// What the listener works with.
#[derive(Debug, Clone)]
pub struct Listener {
    pub store: Store,
    pub hub: DocHub,
    pub node: Arc<Node>,
    pub metrics: Arc<Metrics>,
    /// Woken for the changes feed's waiters.
    pub changes: Arc<tokio::sync::Notify>,
    /// This node's open connections, cut when another node revokes their user or device.
    pub live: crate::live::LiveConnections,
    pub shutdown: CancellationToken,
}

/// Hears other processes' announcements until shutdown, reconnecting and catching up after
/// every loss. Returns at once on SQLite.
pub async fn run_listener(ctx: Listener) {
    if !matches!(ctx.store, Store::Postgres(_)) {
        return;
    }
    // Taken before the first connection listens: documents loaded before then are covered.
    let mut caught_up_to: Option<i64> = ctx.store.area_horizon().await.ok();
    while !ctx.shutdown.is_cancelled() {
        match listen_once(&ctx, &mut caught_up_to).await {
            Ok(Stop::Shutdown) => return,
            Ok(Stop::Lost(reason)) | Err(reason) => {
                if ctx.node.listening() {
                    ctx.metrics.listener_reconnects.inc();
                    tracing::warn!(%reason, "not hearing other nodes' changes; not ready until listening again");
                } else {
                    tracing::debug!(%reason, "still not listening");
                }
                ctx.node.set_listening(false);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
    }
}

enum Stop {
    Shutdown,
    Lost(String),
}

/// One listening connection: listen, catch up on what may have been missed, then follow the
/// announcements until the connection is lost.
async fn listen_once(ctx: &Listener, caught_up_to: &mut Option<i64>) -> Result<Stop, String> {
    let mut listener = match ctx.store.listen().await {
        Ok(Some(listener)) => listener,
        Ok(None) => return Err("this database cannot announce changes".into()),
        Err(e) => return Err(e.to_string()),
    };
    let start = listener.horizon().await.map_err(|e| e.to_string())?;
    if let Some(since) = *caught_up_to {
        let missed = ctx
            .store
            .changed_since(since)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(
            documents = missed.len(),
            "listening again; caught up with what changed meanwhile"
        );
        for doc in &missed {
            ctx.hub.announced(doc);
        }
        ctx.changes.notify_waiters();
        cut_revoked(ctx).await.map_err(|e| e.to_string())?;
    }
    *caught_up_to = Some(start);
    ctx.node.set_listening(true);
    tracing::info!("hearing other nodes' changes");

    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut next_check = Instant::now() + CHECK_EVERY;
    loop {
        // Checked even while announcements keep coming (a receive that always has something
        // would never time out).
        let wait = next_check.saturating_duration_since(Instant::now());
        let heard = if wait.is_zero() {
            None
        } else {
            tokio::select! {
                heard = tokio::time::timeout(wait, listener.recv()) => heard.ok(),
                _ = ctx.shutdown.cancelled() => return Ok(Stop::Shutdown),
            }
        };
        match heard {
            Some(Ok(Heard::Announcement(announcement))) => {
                if announcement.origin == ctx.store.instance() {
                    continue;
                }
                ctx.metrics.announcements.inc();
                for doc in &announcement.docs {
                    ctx.hub.announced(doc);
                }
                ctx.changes.notify_waiters();
            }
            Some(Ok(Heard::Revocation(revoked))) => {
                let cut = match &revoked {
                    Revoked::User(id) => ctx.live.revoke_user(id),
                    Revoked::Device(id) => ctx.live.revoke_device(id),
                };
                if cut > 0 {
                    tracing::info!(?revoked, connections_cut = cut, "revoked on another node");
                }
            }
            Some(Ok(Heard::Unreadable(bad))) => tracing::warn!(%bad, "skipping an announcement"),
            Some(Err(e)) => return Ok(Stop::Lost(e.to_string())),
            None => {
                // Time to check the connection, and to move the catch-up point.
                let horizon = match tokio::time::timeout(CHECK_TIMEOUT, listener.horizon()).await {
                    Ok(Ok(horizon)) => horizon,
                    Ok(Err(e)) => return Ok(Stop::Lost(e.to_string())),
                    Err(_) => return Ok(Stop::Lost("the database did not answer".into())),
                };
                let now = Instant::now();
                samples.push_back((now, horizon));
                while let Some(&(at, horizon)) = samples.front() {
                    if now.duration_since(at) < SETTLE {
                        break;
                    }
                    *caught_up_to = Some(horizon);
                    samples.pop_front();
                }
                next_check = now + CHECK_EVERY;
            }
        }
    }
}

/// Cuts this node's open connections of users and devices revoked while it was not listening
/// (their announcements were lost with the connection).
async fn cut_revoked(ctx: &Listener) -> Result<(), crate::storage::StorageError> {
    if ctx.live.is_empty() {
        return Ok(());
    }
    let users = ctx.store.list_users("/").await?;
    let devices = ctx.store.list_devices("/").await?;
    let mut cut = 0;
    for user in users.iter().filter(|u| u.revoked) {
        cut += ctx.live.revoke_user(&user.id);
    }
    for device in devices.iter().filter(|d| d.revoked) {
        cut += ctx.live.revoke_device(&device.id);
    }
    if cut > 0 {
        tracing::info!(
            connections_cut = cut,
            "cut connections revoked while not listening"
        );
    }
    Ok(())
}
