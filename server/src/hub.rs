//! The hub: which documents are in memory, and the lease that lets a connection talk to one.
//!
//! Each document in use has one actor task (see `hub/doc_actor.rs`) that owns its Automerge
//! document and the sync sessions of every connection that has it open; all work on a
//! document is serialized through that actor's bounded command queue, so no lock is ever held
//! across an `.await`. The hub's own map is behind a std `Mutex` taken only inside short
//! synchronous functions.
//!
//! Memory does not grow with the number of documents ever touched: a connection holds a
//! [`DocLease`] while it has a document open; when the last lease is gone and the document
//! has been idle for `document_idle_secs`, its actor removes itself from the map under the
//! lock (so no new lease can race with it) and exits. The database is the truth; a document in
//! memory is a cache of it.

mod doc_actor;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lianxin_protocol::domain::AreaPath;
use lianxin_protocol::{DocumentId, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::settings::Limits;
use crate::storage::Store;

pub use doc_actor::DocCommand;

/// Identifies one websocket connection within this process.
pub type ConnId = u64;

/// Capacity of each document actor's command queue. A connection whose command does not fit
/// waits (backpressure on that connection only).
const DOC_QUEUE: usize = 256;

/// What a document actor needs to know about a connection to talk to it.
#[derive(Debug)]
pub struct Peer {
    pub conn: ConnId,
    /// The peer ID the client declared. Used only to address replies (`targetId`); it grants
    /// nothing.
    pub remote: PeerId,
    /// Key for server-side sync state, from the verified token (see `Identity::peer_key`).
    pub peer_key: Option<String>,
    /// The registered user and device on the other end (from the token, checked against the
    /// registry at connection time).
    pub user: crate::storage::registry::User,
    pub device_id: String,
    /// The user as the field rules see them (role, area, department).
    pub actor: lianxin_protocol::domain::Actor,
    /// How this peer is named to others in the ephemeral messages it sends: assigned by the
    /// server from the verified user and device, so nobody can speak as someone else.
    pub ephemeral_id: PeerId,
    /// The connection's send queue, bounded in messages and bytes.
    pub outbox: crate::outbox::Outbox,
    /// Cancelled to disconnect a client that cannot keep up.
    pub kill: CancellationToken,
    /// The connection's budget of malformed messages.
    pub strikes: Arc<Strikes>,
}

/// A connection's budget of malformed messages: each one counts, and when the budget is
/// spent the token is cancelled and the connection closes itself (code 1008). Shared by the
/// connection (undecodable frames) and the document actors (undecodable sync messages).
#[derive(Debug)]
pub struct Strikes {
    count: std::sync::atomic::AtomicU32,
    limit: u32,
    /// Cancelled when the budget is spent.
    pub spent: CancellationToken,
}

impl Strikes {
    pub fn new(limit: u32) -> Self {
        Self {
            count: std::sync::atomic::AtomicU32::new(0),
            limit: limit.max(1),
            spent: CancellationToken::new(),
        }
    }

    /// Counts one malformed message.
    pub fn strike(&self) {
        let count = self
            .count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(1);
        if count >= self.limit {
            self.spent.cancel();
        }
    }
}

/// Everything a document actor shares with the rest of the server.
#[derive(Debug)]
pub struct DocContext {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub server_peer: PeerId,
    /// Whether documents without a `kind` are accepted (see `DocumentSettings`).
    pub allow_untyped: bool,
    /// Configuration of the field rules (listening days).
    pub rules: lianxin_protocol::domain::CheckConfig,
    /// Writes accepted changes, in transactions shared between documents.
    pub committer: crate::committer::Committer,
    /// Notified after every commit of changes (the changes feed waits on it).
    pub changes: Arc<tokio::sync::Notify>,
    /// Configuration of the read model's projections (due times, the local zone).
    pub projection: lianxin_protocol::domain::ProjectionConfig,
    /// The Automerge actor of the changes this process writes itself (order assignments).
    pub server_actor: automerge::ActorId,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// The actors whose Automerge document is loaded, by when they last used it.
#[derive(Debug, Default)]
struct Residency {
    /// Document → (last use, actor generation).
    by_doc: HashMap<DocumentId, (u64, u64)>,
    /// Last use → document, oldest first.
    by_use: std::collections::BTreeMap<u64, DocumentId>,
    clock: u64,
}

impl Residency {
    fn touch(&mut self, doc: DocumentId, generation: u64) {
        self.clock += 1;
        if let Some((used, _)) = self.by_doc.insert(doc, (self.clock, generation)) {
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.clock, doc);
    }

    fn remove(&mut self, doc: &DocumentId, generation: u64) {
        if let Some(&(used, held)) = self.by_doc.get(doc)
            && held == generation
        {
            self.by_doc.remove(doc);
            self.by_use.remove(&used);
        }
    }

    /// Takes the least recently used document, but never `keep`.
    fn oldest_but(&mut self, keep: &DocumentId) -> Option<(DocumentId, u64)> {
        let (&used, &doc) = self.by_use.iter().find(|(_, doc)| *doc != keep)?;
        self.by_use.remove(&used);
        let (_, generation) = self.by_doc.remove(&doc)?;
        Some((doc, generation))
    }
}

/// One connection's area subscription.
#[derive(Debug)]
struct AreaSubscriber {
    key: u64,
    peer: Arc<Peer>,
    /// Wakes the connection's area-sync task for a catch-up pass (after another process
    /// changed a document in the area).
    wake: Arc<tokio::sync::Notify>,
}

/// Area-sync subscribers by the root of their area.
type AreaSubscribers = HashMap<String, Vec<AreaSubscriber>>;

/// The registry of documents in memory. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DocHub {
    inner: Arc<HubInner>,
}

#[derive(Debug)]
struct HubInner {
    docs: Mutex<HashMap<DocumentId, Slot>>,
    /// Connections to tell when a document changes although they do not have it open: devices
    /// that hold the document and asked for changed-docs catch-up (see `watch`).
    watchers: Mutex<HashMap<DocumentId, Vec<Arc<Peer>>>>,
    /// Connections doing area sync, by the root of their area: each hears of every change to
    /// a document at or below it (see `crate::area_sync`).
    areas: Mutex<AreaSubscribers>,
    /// Which actors hold their document loaded, least recently used first.
    residency: Mutex<Residency>,
    ctx: Arc<DocContext>,
    next_generation: std::sync::atomic::AtomicU64,
}

#[derive(Debug)]
struct Slot {
    tx: mpsc::Sender<DocCommand>,
    leases: usize,
    generation: u64,
    /// The highest announced sequence number waiting for room in a busy actor's queue (0:
    /// none). One task at a time delivers it, whatever the number of announcements.
    refresh_waiting: Arc<std::sync::atomic::AtomicI64>,
}

impl DocHub {
    pub fn new(ctx: DocContext) -> Self {
        Self {
            inner: Arc::new(HubInner {
                docs: Mutex::new(HashMap::new()),
                watchers: Mutex::new(HashMap::new()),
                areas: Mutex::new(HashMap::new()),
                residency: Mutex::new(Residency::default()),
                ctx: Arc::new(ctx),
                next_generation: std::sync::atomic::AtomicU64::new(1),
            }),
        }
    }

    fn docs(&self) -> MutexGuard<'_, HashMap<DocumentId, Slot>> {
        // A panic while holding this lock would be a bug in a few lines of map code; the map
        // itself stays consistent, so keep serving rather than poisoning every connection.
        self.inner.docs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a lease on `doc` for connection `conn`, starting its actor if it is not in memory.
    pub fn lease(&self, doc: DocumentId, conn: ConnId) -> DocLease {
        let mut docs = self.docs();
        let slot = docs.entry(doc).or_insert_with(|| {
            let generation = self
                .inner
                .next_generation
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (tx, rx) = mpsc::channel(DOC_QUEUE);
            doc_actor::spawn(doc, generation, self.clone(), self.inner.ctx.clone(), rx);
            Slot {
                tx,
                leases: 0,
                generation,
                refresh_waiting: Arc::default(),
            }
        });
        slot.leases += 1;
        DocLease {
            hub: self.clone(),
            doc,
            conn,
            generation: slot.generation,
            tx: slot.tx.clone(),
            released: false,
        }
    }

    /// Registers `peer` to hear (as a `changed-docs` message) when any of `docs` changes, for
    /// documents the device holds but has not opened on this connection. Costs one entry per
    /// (connection, document) and no document in memory.
    pub fn watch(&self, peer: &Arc<Peer>, docs: &[DocumentId]) {
        let mut watchers = self.watchers();
        for doc in docs {
            let list = watchers.entry(*doc).or_default();
            if !list.iter().any(|p| p.conn == peer.conn) {
                list.push(peer.clone());
            }
        }
    }

    /// Removes `conn`'s watches on `docs` (when the connection closes).
    pub fn unwatch(&self, conn: ConnId, docs: &[DocumentId]) {
        let mut watchers = self.watchers();
        for doc in docs {
            if let Some(list) = watchers.get_mut(doc) {
                list.retain(|p| p.conn != conn);
                if list.is_empty() {
                    watchers.remove(doc);
                }
            }
        }
    }

    /// The watchers of `doc` for which `skip` is false.
    fn watchers_of(&self, doc: &DocumentId, skip: impl Fn(ConnId) -> bool) -> Vec<Arc<Peer>> {
        self.watchers()
            .get(doc)
            .map(|list| list.iter().filter(|p| !skip(p.conn)).cloned().collect())
            .unwrap_or_default()
    }

    fn watchers(&self) -> MutexGuard<'_, HashMap<DocumentId, Vec<Arc<Peer>>>> {
        self.inner
            .watchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes `peer` to its area: every change committed to a document at or below the
    /// area is pushed to it by the document's actor (see `crate::area_sync`). Costs one entry
    /// per connection; a change finds its subscribers by walking up its own area path, so it
    /// costs the depth of the tree, not the number of connections. Returns the subscription's
    /// key for [`DocHub::unsubscribe_area`]. `wake` is notified when another process changed
    /// a document in the area (see [`DocHub::announced`]).
    pub fn subscribe_area(&self, peer: &Arc<Peer>, wake: Arc<tokio::sync::Notify>) -> u64 {
        let key = self
            .inner
            .next_generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.areas()
            .entry(peer.actor.area.as_str().to_owned())
            .or_default()
            .push(AreaSubscriber {
                key,
                peer: peer.clone(),
                wake,
            });
        key
    }

    /// Ends the subscription `key` of `peer` (another subscription of the same connection,
    /// made since, stays).
    pub fn unsubscribe_area(&self, peer: &Peer, key: u64) {
        let mut areas = self.areas();
        let area = peer.actor.area.as_str();
        if let Some(list) = areas.get_mut(area) {
            list.retain(|s| s.key != key);
            if list.is_empty() {
                areas.remove(area);
            }
        }
    }

    /// The connections subscribed to `area` or to an area above it.
    pub(crate) fn area_subscribers(&self, area: &AreaPath) -> Vec<Arc<Peer>> {
        let mut found = Vec::new();
        self.each_subscriber(area, |s| found.push(s.peer.clone()));
        found
    }

    fn each_subscriber(&self, area: &AreaPath, mut f: impl FnMut(&AreaSubscriber)) {
        let areas = self.areas();
        if areas.is_empty() {
            return;
        }
        let mut node = Some(area.clone());
        while let Some(at) = node {
            if let Some(list) = areas.get(at.as_str()) {
                list.iter().for_each(&mut f);
            }
            node = at.parent();
        }
    }

    /// Another process stored `doc` (heard from its announcement, see `crate::cluster`): the
    /// document's actor here, if any, takes in the new chunks and syncs its sessions; devices
    /// that hold the document without having it open hear that it changed; area subscribers
    /// above it run a catch-up pass.
    pub fn announced(&self, doc: &crate::storage::ChangedDocument) {
        let actor = self
            .docs()
            .get(&doc.id)
            .map(|slot| (slot.tx.clone(), slot.refresh_waiting.clone()));
        match actor {
            Some((tx, waiting)) => {
                use std::sync::atomic::Ordering::SeqCst;
                let refresh = DocCommand::Refresh { seq: doc.seq };
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(refresh) {
                    // A busy actor: one task waits for room without holding up the listener,
                    // and delivers the highest sequence number announced by then.
                    if waiting.fetch_max(doc.seq, SeqCst) == 0 {
                        self.inner.ctx.tracker.spawn(async move {
                            if let Ok(permit) = tx.reserve().await {
                                let seq = waiting.swap(0, SeqCst);
                                permit.send(DocCommand::Refresh { seq });
                            }
                        });
                    }
                }
            }
            None => {
                let watchers = self.watchers_of(&doc.id, |_| false);
                doc_actor::tell_changed(&self.inner.ctx, &watchers, doc.id);
            }
        }
        if let Some(area) = doc
            .area
            .as_ref()
            .and_then(|a| AreaPath::new(a.clone()).ok())
        {
            self.each_subscriber(&area, |s| s.wake.notify_one());
        }
    }

    fn areas(&self) -> MutexGuard<'_, AreaSubscribers> {
        self.inner.areas.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Called by an actor that has its document loaded and is using it: marks it as the most
    /// recently used and, when more than `max_documents_in_memory` are loaded, tells the least
    /// recently used ones to unload. An actor too busy to take the command right away is
    /// skipped for now and asked again later.
    pub(crate) fn resident(&self, doc: &DocumentId, generation: u64) {
        let cap = self.inner.ctx.limits.max_documents_in_memory.max(1);
        let victims = {
            let mut residency = self.residency();
            residency.touch(*doc, generation);
            let mut victims = Vec::new();
            while residency.by_doc.len() > cap {
                match residency.oldest_but(doc) {
                    Some(victim) => victims.push(victim),
                    None => break,
                }
            }
            victims
        };
        if victims.is_empty() {
            return;
        }
        let mut busy = Vec::new();
        {
            let docs = self.docs();
            for (victim, generation) in victims {
                let Some(slot) = docs.get(&victim).filter(|s| s.generation == generation) else {
                    continue;
                };
                if slot.tx.try_send(DocCommand::Unload).is_err() {
                    busy.push((victim, generation));
                }
            }
        }
        let mut residency = self.residency();
        for (victim, generation) in busy {
            residency.touch(victim, generation);
        }
    }

    /// Called by an actor that dropped its document from memory (or is exiting).
    pub(crate) fn unresident(&self, doc: &DocumentId, generation: u64) {
        self.residency().remove(doc, generation);
    }

    fn residency(&self) -> MutexGuard<'_, Residency> {
        self.inner
            .residency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Number of documents in memory now.
    pub fn in_memory(&self) -> usize {
        self.docs().len()
    }

    fn release(&self, doc: &DocumentId, generation: u64) {
        let mut docs = self.docs();
        if let Some(slot) = docs.get_mut(doc)
            && slot.generation == generation
        {
            slot.leases = slot.leases.saturating_sub(1);
        }
    }

    /// Called by an idle actor: removes it from the map if nobody holds a lease. Returns
    /// whether it was removed (then the actor must exit).
    fn try_evict(&self, doc: &DocumentId, generation: u64) -> bool {
        let mut docs = self.docs();
        match docs.get(doc) {
            Some(slot) if slot.generation == generation && slot.leases == 0 => {
                docs.remove(doc);
                true
            }
            Some(slot) if slot.generation == generation => false,
            // Not ours (should not happen): nothing to remove, and we are not reachable.
            _ => true,
        }
    }
}

/// A connection's hold on one document in memory. Release it with [`DocLease::release`];
/// dropping it releases it too, best effort.
#[derive(Debug)]
pub struct DocLease {
    hub: DocHub,
    doc: DocumentId,
    conn: ConnId,
    generation: u64,
    tx: mpsc::Sender<DocCommand>,
    released: bool,
}

/// The document actor is gone (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("document is shutting down")]
pub struct DocGone;

impl DocLease {
    /// Sends a command to the document's actor, waiting for room in its queue.
    pub async fn send(&self, cmd: DocCommand) -> Result<(), DocGone> {
        self.tx.send(cmd).await.map_err(|_| DocGone)
    }

    /// Detaches the connection from the document (its sync state is saved) and gives the
    /// lease back.
    pub async fn release(self) {
        self.release_as(None).await;
    }

    /// Like [`DocLease::release`], and `peer` hears when the document changes from now on, if
    /// it may read it (the actor decides).
    pub async fn release_watching(self, peer: Arc<Peer>) {
        self.release_as(Some(peer)).await;
    }

    async fn release_as(mut self, watch: Option<Arc<Peer>>) {
        let _ = self
            .tx
            .send(DocCommand::Detach {
                conn: self.conn,
                watch,
            })
            .await;
        self.hub.release(&self.doc, self.generation);
        self.released = true;
    }
}

impl Drop for DocLease {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.tx.try_send(DocCommand::Detach {
                conn: self.conn,
                watch: None,
            });
            self.hub.release(&self.doc, self.generation);
        }
    }
}
