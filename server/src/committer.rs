//! Group commit: changes accepted by many document actors at once are written to the database
//! in shared transactions, without weakening "acknowledged means committed".
//!
//! An actor hands its chunk to [`Committer::append`] and waits. The committer task takes
//! whatever appends are queued (up to [`MAX_BATCH`]), writes them all in one transaction
//! ([`Store::append_batch`]), and answers each actor only after that transaction committed, so
//! an actor still acknowledges a device only once its change is durable. Under load, batches
//! grow by themselves (everything that queued during one commit goes into the next), so one
//! commit's cost is shared by many changes; a lone change waits for nobody.
//!
//! A batch that fails is retried one append at a time, so one bad append (or a passing
//! conflict) fails only its own actor.

use std::sync::Arc;

use lianxin_protocol::DocumentId;
use lianxin_protocol::domain::Projected;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::storage::read_model::{Author, ChangeRecord};
use crate::storage::{AppendItem, Appended, SeqConflict, StorageError, Store};

/// Most appends in one transaction.
pub const MAX_BATCH: usize = 256;

/// Appends waiting for the committer; actors beyond it wait for room.
const QUEUE: usize = 4 * MAX_BATCH;

/// A [`ChangeRecord`] that owns its parts, so it can wait in the committer's queue.
#[derive(Debug, Clone)]
pub struct OwnedChangeRecord {
    pub projected: Option<Projected>,
    pub user: String,
    pub device: Option<String>,
    pub role: String,
    pub changes: i32,
    pub client_time: Option<i64>,
    pub summary: String,
}

impl OwnedChangeRecord {
    fn borrowed(&self) -> ChangeRecord<'_> {
        ChangeRecord {
            projected: self.projected.as_ref(),
            author: Author {
                user: &self.user,
                device: self.device.as_deref(),
                role: &self.role,
            },
            changes: self.changes,
            client_time: self.client_time,
            summary: self.summary.clone(),
        }
    }
}

/// Why an append was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the committer has stopped (the server is shutting down)")]
    Stopped,
    /// Another process appended to the document since the state the chunk was vetted
    /// against: nothing was stored; catch up and vet again.
    #[error(transparent)]
    Conflict(#[from] SeqConflict),
}

/// One chunk for the committer to append, owning its parts (see [`AppendItem`] for each).
#[derive(Debug)]
pub struct Append {
    pub doc: DocumentId,
    pub data: Vec<u8>,
    pub peer_key: Option<String>,
    /// A sync state: records (if not recorded yet) that the device of `peer_key` holds the
    /// document, in the same transaction.
    pub holder: Option<Vec<u8>>,
    pub record: OwnedChangeRecord,
    /// Volunteers whose claims on the order arrive with this chunk.
    pub claims: Vec<String>,
    /// The document's `last_seq` the chunk was vetted against.
    pub expected_seq: i64,
}

struct Pending {
    append: Append,
    reply: oneshot::Sender<Result<Appended, CommitError>>,
}

/// The handle actors append through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Pending>,
}

impl Pending {
    /// The append as the store takes it, with `record` borrowed from `self.record`.
    fn item<'a>(&'a self, record: &'a ChangeRecord<'a>) -> AppendItem<'a> {
        let append = &self.append;
        AppendItem {
            doc: &append.doc,
            data: &append.data,
            peer_key: append.peer_key.as_deref(),
            holder: append.holder.as_deref(),
            record,
            claims: &append.claims,
            expected_seq: Some(append.expected_seq),
        }
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("doc", &self.append.doc)
            .finish()
    }
}

impl Committer {
    /// Starts the committer task on `tracker`. It stops when `shutdown` is cancelled, after
    /// committing what is queued.
    pub fn start(
        store: Store,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(run(store, metrics, rx, shutdown));
        Self { tx }
    }

    /// Appends the chunk and returns once it is committed, in a transaction shared with
    /// whatever other appends were waiting. If another process appended to the document since
    /// `expected_seq`, nothing is stored and the answer is [`CommitError::Conflict`].
    pub async fn append(&self, append: Append) -> Result<Appended, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { append, reply })
            .await
            .map_err(|_| CommitError::Stopped)?;
        answer.await.map_err(|_| CommitError::Stopped)?
    }
}

async fn run(
    store: Store,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            _ = shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        commit(&store, &metrics, batch).await;
    }
    // Shutting down: commit what is already queued, refuse the rest.
    rx.close();
    let mut rest = Vec::new();
    while let Some(next) = rx.recv().await {
        rest.push(next);
    }
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(MAX_BATCH));
        commit(&store, &metrics, std::mem::replace(&mut rest, tail)).await;
    }
}

async fn commit(store: &Store, metrics: &Metrics, batch: Vec<Pending>) {
    metrics.commit_batches.inc();
    metrics.commit_appends.add(batch.len() as u64);
    let outcome = {
        let records: Vec<ChangeRecord<'_>> =
            batch.iter().map(|p| p.append.record.borrowed()).collect();
        let items: Vec<AppendItem<'_>> = batch
            .iter()
            .zip(&records)
            .map(|(p, record)| p.item(record))
            .collect();
        store.append_batch(&items).await
    };
    match outcome {
        Ok(appended) => {
            for (pending, appended) in batch.into_iter().zip(appended) {
                let _ = pending.reply.send(appended.map_err(CommitError::from));
            }
        }
        Err(e) if batch.len() == 1 => {
            if let Some(pending) = batch.into_iter().next() {
                let _ = pending.reply.send(Err(e.into()));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, appends = batch.len(), "group commit failed; committing one by one");
            for pending in batch {
                let one = {
                    let record = pending.append.record.borrowed();
                    store
                        .append_batch(&[pending.item(&record)])
                        .await
                        .map_err(CommitError::from)
                        .and_then(|mut appended| appended.remove(0).map_err(CommitError::from))
                };
                let _ = pending.reply.send(one);
            }
        }
    }
}
