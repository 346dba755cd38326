//! [`Client`]: the handle an app holds on one device's documents.
//!
//! Every edit applies to the in-memory document and is committed to the local [`Store`] before
//! the call returns, whether or not a server is reachable. [`Client::connect`] (or
//! [`Client::start_sync`] when the server may be down) runs a background task that keeps a
//! connection up, reconnecting with backoff, and syncs what changed.
//!
//! State shared with the sync task sits behind std `Mutex`es taken only in short synchronous
//! sections, never across an `.await`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use automerge::transaction::Transaction;
use automerge::{Automerge, AutomergeError, ChangeHash};
use lianxin_protocol::{DocSession, DocumentId, PeerId, StorageId};
use tokio::sync::{Notify, broadcast, watch};

use crate::backoff::BackoffConfig;
use crate::error::{ClientError, StoreError};
use crate::event::{ClientEvent, EVENT_CAPACITY, Origin, SyncState, SyncStatus};
use crate::store::{COMPACT_AFTER, Store};
use crate::sync;

/// How a client behaves.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The peer ID announced in `join`; random when `None`. The server addresses replies with
    /// it but takes the device's identity from its token.
    pub peer_id: Option<PeerId>,
    /// How long a connection attempt waits for the server's `peer` answer.
    pub handshake_timeout: Duration,
    /// Reconnect delays.
    pub backoff: BackoffConfig,
    /// Use the server's changed-docs catch-up when it offers it (otherwise every document is
    /// offered on every connection).
    pub catch_up: bool,
    /// Use the server's area sync when it offers it: on every connection, receive every
    /// document of the user's area that changed since the last one (all of them, the first
    /// time) in large batches, and then each change as it happens.
    pub area_sync: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            peer_id: None,
            handshake_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            catch_up: true,
            area_sync: true,
        }
    }
}

/// Counters of what moved over the network, for diagnostics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub connections: u64,
}

impl std::ops::Sub for ClientStats {
    type Output = ClientStats;
    fn sub(self, rhs: Self) -> Self {
        ClientStats {
            messages_sent: self.messages_sent - rhs.messages_sent,
            messages_received: self.messages_received - rhs.messages_received,
            bytes_sent: self.bytes_sent - rhs.bytes_sent,
            bytes_received: self.bytes_received - rhs.bytes_received,
            connections: self.connections - rhs.connections,
        }
    }
}

/// Whether a document's content is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Ready,
    /// Asked the server for it; nothing received yet.
    Requested,
    Unavailable,
}

pub(crate) struct LocalDoc {
    pub(crate) doc: Automerge,
    pub(crate) session: DocSession,
    pub(crate) availability: Availability,
    /// Heads already written to the store, so each write carries only what is new.
    pub(crate) saved_heads: Vec<ChangeHash>,
    /// Shared heads last written to the store.
    pub(crate) saved_shared: Vec<ChangeHash>,
    /// Local changes the server has not acknowledged (cached; see `refresh_unsent`).
    pub(crate) unsent: usize,
}

impl LocalDoc {
    pub(crate) fn new(doc: Automerge, session: DocSession, availability: Availability) -> Self {
        let mut local = Self {
            doc,
            session,
            availability,
            saved_heads: Vec::new(),
            saved_shared: Vec::new(),
            unsent: 0,
        };
        local.refresh_unsent();
        local
    }

    /// What the store lacks of this document (everything, if it has nothing yet), marking it
    /// as written; `None` if the store is up to date.
    pub(crate) fn take_unsaved(&mut self) -> Option<Vec<u8>> {
        let heads = self.doc.get_heads();
        if heads == self.saved_heads {
            return None;
        }
        let bytes = if self.saved_heads.is_empty() {
            self.doc.save()
        } else {
            self.doc.save_after(&self.saved_heads)
        };
        self.saved_heads = heads;
        Some(bytes)
    }

    /// Recounts the changes not covered by the heads shared with the server.
    pub(crate) fn refresh_unsent(&mut self) {
        let mut shared = self.session.shared_heads();
        shared.sort();
        let mut heads = self.doc.get_heads();
        heads.sort();
        self.unsent = if self.availability != Availability::Ready || shared == heads {
            0
        } else {
            self.doc.get_changes(&shared).len()
        };
    }
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) messages_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) connections: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) peer_id: PeerId,
    /// This store's own ID, announced to servers so they keep sync state per store.
    pub(crate) store_id: StorageId,
    pub(crate) config: ClientConfig,
    pub(crate) docs: Mutex<HashMap<DocumentId, LocalDoc>>,
    pub(crate) store: Store,
    /// Documents edited (or requested) since the connection last offered them.
    pub(crate) dirty: Mutex<HashSet<DocumentId>>,
    /// Woken when `dirty` gained something.
    pub(crate) local_change: Notify,
    /// Bumped whenever a message from the server has been handled.
    pub(crate) progress: watch::Sender<u64>,
    pub(crate) counters: Counters,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    pub(crate) status: watch::Sender<SyncStatus>,
    pub(crate) token: watch::Sender<String>,
    pub(crate) server_errors: Mutex<Vec<String>>,
}

impl Shared {
    pub(crate) fn docs(&self) -> MutexGuard<'_, HashMap<DocumentId, LocalDoc>> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mark_dirty(&self, id: DocumentId) {
        self.dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.local_change.notify_one();
    }

    pub(crate) fn take_dirty(&self) -> HashSet<DocumentId> {
        std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Writes what is new in document `id` to the store; compacts when its log grew long.
    pub(crate) async fn persist(&self, id: DocumentId) -> Result<(), StoreError> {
        let bytes = {
            let mut docs = self.docs();
            let Some(local) = docs.get_mut(&id) else {
                return Ok(());
            };
            if local.availability != Availability::Ready {
                return Ok(());
            }
            match local.take_unsaved() {
                Some(bytes) => bytes,
                None => return Ok(()),
            }
        };
        match self.store.append(&id, &bytes).await {
            Ok((seq, chunks)) if chunks >= COMPACT_AFTER => {
                // Everything up to `seq` is in memory (memory is written first), so a full
                // save now contains it.
                let full = match self.docs().get(&id) {
                    Some(local) => local.doc.save(),
                    None => return Ok(()),
                };
                self.store.compact(&id, &full, seq).await
            }
            Ok(_) => Ok(()),
            Err(e) => {
                // The next write must then carry everything again.
                if let Some(local) = self.docs().get_mut(&id) {
                    local.saved_heads.clear();
                }
                Err(e)
            }
        }
    }

    /// Writes the heads shared with the server for `id` if they moved.
    pub(crate) async fn persist_sync_state(&self, id: DocumentId) -> Result<(), StoreError> {
        let state = {
            let mut docs = self.docs();
            let Some(local) = docs.get_mut(&id) else {
                return Ok(());
            };
            let shared = local.session.shared_heads();
            if shared == local.saved_shared {
                return Ok(());
            }
            local.saved_shared = shared;
            local.session.persisted_state()
        };
        self.store.save_sync_state(&id, &state).await
    }

    /// Removes a change the server refused, and every change that depends on it, from the
    /// document; sets them aside in the store; and restarts the document's sync session so the
    /// rest keeps syncing. The rebuilt document gets a fresh actor ID, so later changes never
    /// reuse the refused change's sequence number.
    pub(crate) async fn set_aside(
        &self,
        id: DocumentId,
        change: ChangeHash,
        reason: &str,
    ) -> Result<usize, StoreError> {
        let (removed, full) = {
            let mut docs = self.docs();
            let Some(local) = docs.get_mut(&id) else {
                return Ok(0);
            };
            let all = local.doc.get_changes(&[]);
            if !all.iter().any(|c| c.hash() == change) {
                return Ok(0);
            }
            // Changes come in causal order, so one pass finds every dependent.
            let mut dropped: std::collections::HashSet<ChangeHash> = [change].into();
            let mut kept = Vec::new();
            let mut removed = Vec::new();
            for c in all {
                if dropped.contains(&c.hash()) || c.deps().iter().any(|d| dropped.contains(d)) {
                    dropped.insert(c.hash());
                    removed.push(c);
                } else {
                    kept.push(c);
                }
            }
            let mut rebuilt = Automerge::new();
            if let Err(e) = rebuilt.apply_changes(kept) {
                tracing::error!(doc_id = %id, error = %e, "rebuilding without the refused change failed");
                return Ok(0);
            }
            local.doc = rebuilt;
            local.session.restart();
            local.saved_heads = local.doc.get_heads();
            local.refresh_unsent();
            (removed, local.doc.save())
        };
        self.store.replace(&id, &full).await?;
        for c in &removed {
            self.store
                .set_aside(&id, &c.hash().to_string(), reason, c.raw_bytes())
                .await?;
        }
        self.mark_dirty(id);
        Ok(removed.len())
    }

    pub(crate) fn bump_progress(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    pub(crate) fn emit(&self, event: ClientEvent) {
        // No receiver is fine: nobody is listening.
        let _ = self.events.send(event);
    }

    /// Recomputes the status from the documents and publishes it if it changed.
    pub(crate) fn publish_status(&self, state: SyncState, in_flight: bool) {
        let unsent = self.docs().values().map(|l| l.unsent).sum();
        let state = match state {
            SyncState::Syncing | SyncState::UpToDate if unsent > 0 || in_flight => {
                SyncState::Syncing
            }
            SyncState::Syncing | SyncState::UpToDate => SyncState::UpToDate,
            other => other,
        };
        let status = SyncStatus {
            state,
            unsent_changes: unsent,
        };
        let changed = self.status.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
        if changed {
            self.emit(ClientEvent::Status(status));
        }
    }
}

/// A device's handle on its documents and its connection to the server.
pub struct Client {
    shared: Arc<Shared>,
    sync: Mutex<Option<sync::SyncHandle>>,
}

impl Client {
    /// Opens the store at `path` (creating it if needed) and loads every document in it.
    ///
    /// A file that is not a store, or one written by a newer version, is refused with a
    /// [`StoreError`] naming it; nothing in it is changed.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), lianxin_client::ClientError> {
    /// use lianxin_client::{Client, ClientConfig};
    /// let client = Client::open("/data/lianxin/device.db", ClientConfig::default()).await?;
    /// println!("{} documents on this phone", client.documents().len());
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl AsRef<Path>, config: ClientConfig) -> Result<Self, ClientError> {
        let store = Store::open(path).await?;
        Self::with_store(store, config).await
    }

    /// A client whose store lives in memory only.
    pub async fn in_memory(config: ClientConfig) -> Result<Self, ClientError> {
        let store = Store::in_memory().await?;
        Self::with_store(store, config).await
    }

    /// A client over an opened store.
    pub async fn with_store(store: Store, config: ClientConfig) -> Result<Self, ClientError> {
        let peer_id = config.peer_id.clone().unwrap_or_else(|| {
            PeerId::new(format!("lianxin-client-{:016x}", rand::random::<u64>()))
                .expect("generated peer id is valid")
        });
        let store_id = match store.get_meta("store_id").await? {
            Some(id) => id,
            None => {
                let id = format!("lianxin-store-{}", DocumentId::random());
                store.set_meta("store_id", &id).await?;
                id
            }
        };
        let store_id = StorageId::new(store_id).map_err(|e| StoreError::Corrupt {
            path: store.path().to_string(),
            reason: format!("store id: {e}"),
        })?;
        let mut docs = HashMap::new();
        for stored in store.load_all().await? {
            let mut doc = Automerge::new();
            for chunk in &stored.chunks {
                doc.load_incremental(chunk)
                    .map_err(|e| StoreError::BadDocument {
                        path: store.path().to_string(),
                        document: stored.id.to_string(),
                        reason: e.to_string(),
                    })?;
            }
            let session = match &stored.sync_state {
                Some(state) => DocSession::resume(state).map_err(|e| StoreError::BadDocument {
                    path: store.path().to_string(),
                    document: stored.id.to_string(),
                    reason: e.to_string(),
                })?,
                None => DocSession::new(),
            };
            let mut local = LocalDoc::new(doc, session, Availability::Ready);
            local.saved_heads = local.doc.get_heads();
            local.saved_shared = local.session.shared_heads();
            docs.insert(stored.id, local);
        }
        let token = store.get_meta("token").await?.unwrap_or_default();
        let (progress, _) = watch::channel(0);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            peer_id,
            store_id,
            config,
            docs: Mutex::new(docs),
            store,
            dirty: Mutex::new(HashSet::new()),
            local_change: Notify::new(),
            progress,
            counters: Counters::default(),
            events,
            status: watch::channel(SyncStatus {
                state: SyncState::Offline,
                unsent_changes: 0,
            })
            .0,
            token: watch::channel(token).0,
            server_errors: Mutex::new(Vec::new()),
        });
        shared.publish_status(SyncState::Offline, false);
        Ok(Self {
            shared,
            sync: Mutex::new(None),
        })
    }

    /// This client's peer ID.
    pub fn peer_id(&self) -> &PeerId {
        &self.shared.peer_id
    }

    /// The local store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Creates a document initialised by `init`. Durable when this returns; works offline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lianxin_client::ClientError> {
    /// use automerge::{ROOT, ReadDoc, transaction::Transactable};
    /// use lianxin_client::{Client, ClientConfig};
    ///
    /// let client = Client::in_memory(ClientConfig::default()).await?;
    /// let visit = client
    ///     .create(|tx| {
    ///         tx.put(ROOT, "household", "3-2-401")?;
    ///         tx.put(ROOT, "people_received", 2)?;
    ///         Ok(())
    ///     })
    ///     .await?;
    /// let people = client.read(visit, |doc| {
    ///     doc.get(ROOT, "people_received").unwrap().map(|(value, _)| value.to_string())
    /// })?;
    /// assert_eq!(people.as_deref(), Some("2"));
    /// # Ok(()) }
    /// ```
    pub async fn create(
        &self,
        init: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
    ) -> Result<DocumentId, ClientError> {
        let id = DocumentId::random();
        let mut doc = Automerge::new();
        doc.transact_with(|_| stamped(), |tx| init(tx))
            .map_err(|f| f.error)?;
        let patches = doc.diff(&[], &doc.get_heads());
        self.shared.docs().insert(
            id,
            LocalDoc::new(doc, DocSession::new(), Availability::Ready),
        );
        self.shared.persist(id).await?;
        self.after_local_change(id, patches);
        Ok(id)
    }

    /// Edits a document. Durable when this returns; synced when connected; works offline.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), lianxin_client::ClientError> {
    /// use automerge::{ROOT, transaction::Transactable};
    /// use lianxin_client::{Client, ClientConfig};
    ///
    /// let client = Client::in_memory(ClientConfig::default()).await?;
    /// let request = client.create(|tx| tx.put(ROOT, "status", "collected").map(|_| ())).await?;
    /// client.change(request, |tx| tx.put(ROOT, "status", "triaged").map(|_| ())).await?;
    /// // Nothing reached a server yet: the change waits in the store.
    /// assert!(client.status().unsent_changes >= 2);
    /// # Ok(()) }
    /// ```
    pub async fn change<R>(
        &self,
        id: DocumentId,
        edit: impl FnOnce(&mut Transaction<'_>) -> Result<R, AutomergeError>,
    ) -> Result<R, ClientError> {
        let (result, patches) = {
            let mut docs = self.shared.docs();
            let local = docs
                .get_mut(&id)
                .filter(|l| l.availability == Availability::Ready)
                .ok_or(ClientError::UnknownDocument(id))?;
            let before = local.doc.get_heads();
            let result = local
                .doc
                .transact_with(|_| stamped(), |tx| edit(tx))
                .map_err(|f| f.error)?;
            let patches = local.doc.diff(&before, &local.doc.get_heads());
            local.refresh_unsent();
            (result.result, patches)
        };
        self.shared.persist(id).await?;
        self.after_local_change(id, patches);
        Ok(result)
    }

    fn after_local_change(&self, id: DocumentId, patches: Vec<automerge::Patch>) {
        self.shared.emit(ClientEvent::DocumentChanged {
            id,
            origin: Origin::Local,
            patches,
        });
        let state = self.shared.status.borrow().state;
        self.shared.publish_status(state, false);
        self.shared.mark_dirty(id);
    }

    /// Reads a document.
    pub fn read<R>(
        &self,
        id: DocumentId,
        read: impl FnOnce(&Automerge) -> R,
    ) -> Result<R, ClientError> {
        let docs = self.shared.docs();
        let local = docs
            .get(&id)
            .filter(|l| l.availability == Availability::Ready)
            .ok_or(ClientError::UnknownDocument(id))?;
        Ok(read(&local.doc))
    }

    /// The document's current heads.
    pub fn heads(&self, id: DocumentId) -> Result<Vec<ChangeHash>, ClientError> {
        self.read(id, |doc| doc.get_heads())
    }

    /// IDs of the documents held locally, sorted.
    pub fn documents(&self) -> Vec<DocumentId> {
        let docs = self.shared.docs();
        let mut ids: Vec<DocumentId> = docs
            .iter()
            .filter(|(_, l)| l.availability == Availability::Ready)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// Fetches a document this device does not hold yet from the server, waiting up to
    /// `timeout`. Returns at once if it is already here. Needs a running sync.
    pub async fn fetch(&self, id: DocumentId, timeout: Duration) -> Result<(), ClientError> {
        {
            let mut docs = self.shared.docs();
            match docs.get(&id).map(|l| l.availability) {
                Some(Availability::Ready) => return Ok(()),
                Some(Availability::Requested) => {}
                Some(Availability::Unavailable) | None => {
                    docs.insert(
                        id,
                        LocalDoc::new(Automerge::new(), DocSession::new(), Availability::Requested),
                    );
                }
            }
        }
        if !self.is_syncing() {
            return Err(ClientError::NotConnected);
        }
        self.shared.mark_dirty(id);
        self.wait_for(timeout, "the document", |docs| match docs.get(&id) {
            Some(l) if l.availability == Availability::Ready => Some(Ok(())),
            Some(l) if l.availability == Availability::Unavailable => {
                Some(Err(ClientError::Unavailable(id)))
            }
            _ => None,
        })
        .await?
    }

    /// Waits until the server has acknowledged every local change of `id` and this device has
    /// everything the server has for it.
    pub async fn wait_synced(&self, id: DocumentId, timeout: Duration) -> Result<(), ClientError> {
        // Make sure the document is part of the conversation even if nothing changed locally.
        self.shared.mark_dirty(id);
        self.wait_for(timeout, "sync", |docs| {
            let local = docs.get(&id)?;
            (local.availability == Availability::Ready && local.session.is_in_sync(&local.doc))
                .then_some(())
        })
        .await
    }

    /// Waits until the status is [`SyncState::UpToDate`].
    pub async fn wait_up_to_date(&self, timeout: Duration) -> Result<(), ClientError> {
        let mut status = self.shared.status.subscribe();
        let wait = status.wait_for(|s| s.state == SyncState::UpToDate);
        match tokio::time::timeout(timeout, wait).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(ClientError::Timeout("up to date")),
        }
    }

    /// Waits until `check` over the documents returns `Some`, re-checking after every message
    /// from the server.
    async fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &'static str,
        mut check: impl FnMut(&HashMap<DocumentId, LocalDoc>) -> Option<T>,
    ) -> Result<T, ClientError> {
        let mut progress = self.shared.progress.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(found) = check(&self.shared.docs()) {
                return Ok(found);
            }
            match tokio::time::timeout_at(deadline, progress.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Err(ClientError::Timeout(what)),
            }
        }
    }

    /// Connects to a server and keeps syncing in the background, reconnecting with backoff
    /// after a dropped connection. Returns once the first connection is up, or with the error
    /// of that first attempt (then nothing keeps running). `url` is the websocket URL of the
    /// sync endpoint (`ws://host:port/v1/sync`).
    pub async fn connect(&self, url: &str, token: &str) -> Result<(), ClientError> {
        self.disconnect().await;
        self.set_token(token);
        let first = sync::open(&self.shared, url).await?;
        self.install(sync::spawn(
            self.shared.clone(),
            url.to_string(),
            Some(first),
        ))
        .await;
        Ok(())
    }

    /// Starts background sync without waiting: for starting up while the server may be
    /// unreachable. The first attempt and every retry happen in the background.
    pub async fn start_sync(&self, url: &str, token: &str) {
        self.disconnect().await;
        self.set_token(token);
        self.install(sync::spawn(self.shared.clone(), url.to_string(), None))
            .await;
    }

    async fn install(&self, handle: sync::SyncHandle) {
        let old = self
            .sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(handle);
        if let Some(old) = old {
            old.stop().await;
        }
    }

    /// Stops syncing and closes the connection. Documents stay, edits keep working offline.
    pub async fn disconnect(&self) {
        let handle = self.sync.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            handle.stop().await;
        }
    }

    /// Supplies a fresh token, used from the next connection attempt on (a sync waiting
    /// because its token was rejected retries at once).
    pub fn set_token(&self, token: &str) {
        self.shared.token.send_replace(token.to_string());
    }

    /// Whether background sync is running (connected or retrying).
    pub fn is_syncing(&self) -> bool {
        self.sync
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }

    /// The current sync status.
    pub fn status(&self) -> SyncStatus {
        *self.shared.status.borrow()
    }

    /// Events: status changes, document changes with patches, server errors.
    ///
    /// ```no_run
    /// # async fn demo(client: lianxin_client::Client) {
    /// use lianxin_client::{ClientEvent, Origin};
    /// let mut events = client.subscribe();
    /// while let Ok(event) = events.recv().await {
    ///     match event {
    ///         ClientEvent::Status(status) => println!("{:?}, {} unsent", status.state, status.unsent_changes),
    ///         ClientEvent::DocumentChanged { id, origin: Origin::Remote, patches } => {
    ///             println!("{id} changed elsewhere: {} patches", patches.len())
    ///         }
    ///         ClientEvent::TokenRejected { .. } => client.set_token("<fresh token>"),
    ///         _ => {}
    ///     }
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.shared.events.subscribe()
    }

    /// What moved over the network so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            messages_sent: c.messages_sent.load(Ordering::Relaxed),
            messages_received: c.messages_received.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
            connections: c.connections.load(Ordering::Relaxed),
        }
    }

    /// Changes the server refused, set aside: (document, change hash, reason).
    pub async fn rejected_changes(&self) -> Result<Vec<(DocumentId, String, String)>, ClientError> {
        let rows = self.shared.store.rejected().await?;
        Ok(rows
            .into_iter()
            .filter_map(|(doc, hash, reason, _)| Some((doc.parse().ok()?, hash, reason)))
            .collect())
    }

    /// Errors the server reported to this device, oldest first.
    pub fn server_errors(&self) -> Vec<String> {
        self.shared
            .server_errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Stops background sync when the client is dropped.
impl Drop for Client {
    fn drop(&mut self) {
        if let Some(handle) = self.sync.lock().unwrap_or_else(|e| e.into_inner()).take() {
            handle.cancel();
        }
    }
}

/// Commit options that stamp a change with this device's clock (Unix seconds, as Automerge
/// records it): the audit trail shows it as the change's client time.
fn stamped() -> automerge::transaction::CommitOptions {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    automerge::transaction::CommitOptions::default().with_time(now)
}
