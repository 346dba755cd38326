//! [`Client`]: the handle an app holds. Every edit applies locally at once, whether or not a
//! server is connected; [`Client::connect`] starts a background connection that syncs every
//! local document and keeps syncing until [`Client::disconnect`].
//!
//! State shared with the connection task sits behind a std `Mutex` that is only taken inside
//! short synchronous sections, never across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use automerge::transaction::Transaction;
use automerge::{Automerge, AutomergeError, ChangeHash};
use lianxin_protocol::{DocSession, DocumentId, PeerId};
use tokio::sync::{Notify, watch};

use crate::connection::{self, ConnectionHandle};
use crate::error::ClientError;
use crate::store::{DocStore, MemoryStore};

/// How a client identifies itself.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The peer ID announced in `join`. The server addresses replies with it but derives the
    /// device's identity from its token, so it needs only be unique per connection.
    pub peer_id: Option<PeerId>,
    /// How long `connect` waits for the server's `peer` answer.
    pub handshake_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            peer_id: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of what moved over the network, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl std::ops::Sub for ClientStats {
    type Output = ClientStats;
    fn sub(self, rhs: Self) -> Self {
        ClientStats {
            messages_sent: self.messages_sent - rhs.messages_sent,
            messages_received: self.messages_received - rhs.messages_received,
            bytes_sent: self.bytes_sent - rhs.bytes_sent,
            bytes_received: self.bytes_received - rhs.bytes_received,
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
    /// Heads already written to the store, so each save writes only what is new.
    pub(crate) saved_heads: Vec<ChangeHash>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) messages_sent: AtomicU64,
    pub(crate) messages_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) peer_id: PeerId,
    pub(crate) config: ClientConfig,
    pub(crate) docs: Mutex<HashMap<DocumentId, LocalDoc>>,
    pub(crate) store: Arc<dyn DocStore>,
    /// Woken when a local edit needs to be sent.
    pub(crate) local_change: Notify,
    /// Bumped whenever a message from the server has been handled.
    pub(crate) progress: watch::Sender<u64>,
    pub(crate) counters: Counters,
    pub(crate) server_errors: Mutex<Vec<String>>,
}

impl Shared {
    pub(crate) fn docs(&self) -> MutexGuard<'_, HashMap<DocumentId, LocalDoc>> {
        self.docs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes what is new in `local` to the store.
    pub(crate) fn persist(&self, id: &DocumentId, local: &mut LocalDoc) {
        let heads = local.doc.get_heads();
        if heads != local.saved_heads {
            let bytes = local.doc.save_after(&local.saved_heads);
            self.store.append(id, &bytes);
            local.saved_heads = heads;
        }
    }

    pub(crate) fn bump_progress(&self) {
        self.progress.send_modify(|n| *n += 1);
    }
}

/// A device's handle on its documents and its connection to the server.
pub struct Client {
    shared: Arc<Shared>,
    connection: tokio::sync::Mutex<Option<ConnectionHandle>>,
}

impl Client {
    /// A client with documents in memory only.
    pub fn new(config: ClientConfig) -> Self {
        Self::with_store(config, Arc::new(MemoryStore::default()))
    }

    /// A client over `store`, loading every document it holds.
    pub fn with_store(config: ClientConfig, store: Arc<dyn DocStore>) -> Self {
        let peer_id = config.peer_id.clone().unwrap_or_else(|| {
            PeerId::new(format!("lianxin-client-{:016x}", rand::random::<u64>()))
                .expect("generated peer id is valid")
        });
        let mut docs = HashMap::new();
        for (id, bytes, state) in store.load_all() {
            let Ok(doc) = Automerge::load(&bytes) else {
                tracing::error!(doc_id = %id, "stored document does not load; skipped");
                continue;
            };
            let session = state
                .and_then(|s| DocSession::resume(&s).ok())
                .unwrap_or_default();
            let saved_heads = doc.get_heads();
            docs.insert(
                id,
                LocalDoc {
                    doc,
                    session,
                    availability: Availability::Ready,
                    saved_heads,
                },
            );
        }
        let (progress, _) = watch::channel(0);
        Self {
            shared: Arc::new(Shared {
                peer_id,
                config,
                docs: Mutex::new(docs),
                store,
                local_change: Notify::new(),
                progress,
                counters: Counters::default(),
                server_errors: Mutex::new(Vec::new()),
            }),
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// This client's peer ID.
    pub fn peer_id(&self) -> &PeerId {
        &self.shared.peer_id
    }

    /// Creates a document locally, initialised by `init`. Works offline.
    pub fn create(
        &self,
        init: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
    ) -> Result<DocumentId, ClientError> {
        let id = DocumentId::random();
        let mut doc = Automerge::new();
        doc.transact(|tx| init(tx)).map_err(|f| f.error)?;
        let mut local = LocalDoc {
            doc,
            session: DocSession::new(),
            availability: Availability::Ready,
            saved_heads: Vec::new(),
        };
        self.shared.persist(&id, &mut local);
        self.shared.docs().insert(id, local);
        self.shared.local_change.notify_one();
        Ok(id)
    }

    /// Edits a document locally; the change is synced when connected. Works offline.
    pub fn change<R>(
        &self,
        id: DocumentId,
        edit: impl FnOnce(&mut Transaction<'_>) -> Result<R, AutomergeError>,
    ) -> Result<R, ClientError> {
        let result = {
            let mut docs = self.shared.docs();
            let local = docs
                .get_mut(&id)
                .filter(|l| l.availability == Availability::Ready)
                .ok_or(ClientError::UnknownDocument(id))?;
            let result = local.doc.transact(|tx| edit(tx)).map_err(|f| f.error)?;
            self.shared.persist(&id, local);
            result.result
        };
        self.shared.local_change.notify_one();
        Ok(result)
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

    /// IDs of the documents held locally.
    pub fn documents(&self) -> Vec<DocumentId> {
        let docs = self.shared.docs();
        docs.iter()
            .filter(|(_, l)| l.availability == Availability::Ready)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Fetches a document this device does not hold yet from the server, waiting up to
    /// `timeout`. Returns at once if it is already here.
    pub async fn open(&self, id: DocumentId, timeout: Duration) -> Result<(), ClientError> {
        {
            let mut docs = self.shared.docs();
            match docs.get(&id).map(|l| l.availability) {
                Some(Availability::Ready) => return Ok(()),
                Some(Availability::Requested) => {}
                Some(Availability::Unavailable) | None => {
                    docs.insert(
                        id,
                        LocalDoc {
                            doc: Automerge::new(),
                            session: DocSession::new(),
                            availability: Availability::Requested,
                            saved_heads: Vec::new(),
                        },
                    );
                }
            }
        }
        if self.connection.lock().await.is_none() {
            return Err(ClientError::NotConnected);
        }
        self.shared.local_change.notify_one();
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
    /// everything the server had for it at that time.
    pub async fn wait_synced(&self, id: DocumentId, timeout: Duration) -> Result<(), ClientError> {
        self.wait_for(timeout, "sync", |docs| {
            let local = docs.get(&id)?;
            (local.availability == Availability::Ready && local.session.is_in_sync(&local.doc))
                .then_some(())
        })
        .await
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

    /// Connects to a server and starts syncing every local document. `url` is the websocket
    /// URL of the sync endpoint (`ws://host:port/v1/sync`).
    pub async fn connect(&self, url: &str, token: &str) -> Result<(), ClientError> {
        let mut connection = self.connection.lock().await;
        if let Some(old) = connection.take() {
            old.stop().await;
        }
        *connection = Some(connection::start(self.shared.clone(), url, token).await?);
        Ok(())
    }

    /// Closes the connection. Documents stay, and edits keep working offline.
    pub async fn disconnect(&self) {
        if let Some(connection) = self.connection.lock().await.take() {
            connection.stop().await;
        }
    }

    /// Whether a connection is up.
    pub async fn is_connected(&self) -> bool {
        match self.connection.lock().await.as_ref() {
            Some(c) => !c.is_finished(),
            None => false,
        }
    }

    /// What moved over the network so far.
    pub fn stats(&self) -> ClientStats {
        let c = &self.shared.counters;
        ClientStats {
            messages_sent: c.messages_sent.load(Ordering::Relaxed),
            messages_received: c.messages_received.load(Ordering::Relaxed),
            bytes_sent: c.bytes_sent.load(Ordering::Relaxed),
            bytes_received: c.bytes_received.load(Ordering::Relaxed),
        }
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
