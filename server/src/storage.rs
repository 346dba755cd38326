//! Durable storage of documents: one [`Store`] with two real backends, Postgres for production
//! and SQLite as the embedded zero-set-up default.
//!
//! A document is an append-only log of change chunks (`document_changes`) plus a compacted
//! snapshot on its `documents` row. Appending bumps `documents.last_seq` under that row's lock,
//! so the chunks of one document are numbered densely in commit order even when several server
//! processes share one Postgres. Each append names the `last_seq` it was vetted against and is
//! refused ([`SeqConflict`]) if another process appended in between: the database serializes the
//! changes of one document, and the refused process catches up with [`Store::chunks_after`]
//! and vets again. On Postgres every append announces the changed documents with `NOTIFY` in
//! its own transaction ([`Store::listen`]), so other processes hear of it once it commits.
//!
//! This module owns every SQL statement and every row type; nothing outside it knows sqlx.
//! The statements are plain SQL that both Postgres and SQLite accept, so both backends share
//! one implementation, written once in the `store_impl!` macro of this file.

pub mod area;
mod postgres;
pub mod read_model;
pub mod registry;
mod sqlite;

use std::time::Duration;

use lianxin_protocol::DocumentId;
use secrecy::{ExposeSecret, SecretString};

pub use postgres::{Announcement, ChangeListener, Heard, PgStore};
pub use sqlite::SqliteStore;

/// Errors of the storage layer. They are logged by the caller and never sent to clients
/// verbatim: a client sees "storage unavailable".
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database url (expected postgres:// or sqlite:)")]
    UnsupportedUrl,
    #[error("stored document id {0:?} is invalid")]
    BadDocumentId(String),
    #[error("the connection listening for change announcements was lost")]
    ListenerLost,
}

/// Pool settings that apply to both backends.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Shown by Postgres in `pg_stat_activity.application_name` (the node ID), so an operator
    /// sees which node holds which connection.
    pub application_name: Option<String>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            application_name: None,
        }
    }
}

/// What is stored of one document: the latest snapshot (if any) and the chunks after it.
#[derive(Debug, Clone, Default)]
pub struct StoredDocument {
    pub snapshot: Option<Vec<u8>>,
    /// Chunks appended after the snapshot, in sequence order.
    pub chunks: Vec<Vec<u8>>,
    /// Sequence number of the last chunk included in `snapshot` + `chunks`.
    pub last_seq: i64,
    /// Sum of the stored bytes (snapshot and chunks), used for the document size limit.
    pub size_bytes: i64,
}

impl StoredDocument {
    /// Number of chunks stored after the snapshot: when it grows, it is time to compact.
    pub fn chunks_since_snapshot(&self) -> usize {
        self.chunks.len()
    }

    /// The document these bytes describe: the snapshot, then every chunk after it. CPU work
    /// proportional to the document: run it off the async workers for large documents.
    pub fn to_automerge(&self) -> Result<automerge::Automerge, automerge::AutomergeError> {
        let mut doc = match &self.snapshot {
            Some(snapshot) => automerge::Automerge::load(snapshot)?,
            None => automerge::Automerge::new(),
        };
        for chunk in &self.chunks {
            doc.load_incremental(chunk)?;
        }
        Ok(doc)
    }
}

/// A document a device is recorded as holding (`sync_states`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldDocument {
    pub id: DocumentId,
    /// Stored changes the device is not known to have.
    pub changed: bool,
    /// Typed documents have an area, so area sync covers them.
    pub typed: bool,
}

/// One chunk to append, with what it does to the read model.
#[derive(Debug, Clone, Copy)]
pub struct AppendItem<'a> {
    pub doc: &'a DocumentId,
    pub data: &'a [u8],
    pub peer_key: Option<&'a str>,
    /// A sync state: records (if not recorded yet) that the device of `peer_key` holds the
    /// document, with nothing known to be synced, in the same transaction.
    pub holder: Option<&'a [u8]>,
    pub record: &'a read_model::ChangeRecord<'a>,
    /// Volunteers whose claims on this order arrive with this chunk: recorded (a claim keeps
    /// its first arrival) in the same transaction, so the order in which claims arrived is the
    /// order in which the database stored them, whichever process took them.
    pub claims: &'a [String],
    /// The document's `last_seq` the chunk was vetted against (0: not stored yet). When the
    /// stored `last_seq` differs (another process appended in between), this item is not
    /// stored and comes back as [`SeqConflict`]: the caller catches up and vets again. `None`
    /// appends unconditionally. A document with no row at all is created whatever this says
    /// (rows are never deleted, so only expected 0 meets a missing row).
    pub expected_seq: Option<i64>,
}

/// An append refused because the document changed since the state it was vetted against.
/// This is how changes to one document are serialized in the database, whichever process
/// merges them: the row lock orders the appends, the check makes each one build on the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the document changed since sequence number {expected}")]
pub struct SeqConflict {
    pub expected: i64,
}

/// What a catch-up read found after a given sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunksAfter {
    /// The chunks after it, in order (empty: nothing new).
    Chunks(Vec<(i64, Vec<u8>)>),
    /// Another process compacted past it: the chunks are gone into the snapshot, so the
    /// document must be loaded again in full.
    Compacted,
}

/// A revocation, as announced to every node so each cuts the open connections it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    User(String),
    Device(String),
}

/// A document that changed, as the change announcements (and their catch-up) name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedDocument {
    pub id: DocumentId,
    /// Its `last_seq` after the change.
    pub seq: i64,
    /// Its area, for typed documents: who is subscribed to hear of it.
    pub area: Option<String>,
}

/// A chunk appended to a document's log, as [`Store::append`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: i64,
    pub size_bytes: i64,
}

/// The durable store. Cheap to clone: each variant wraps a connection pool.
#[derive(Clone, Debug)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

/// Dispatches one method call to the backend behind the enum.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            Store::Postgres($s) => $call,
            Store::Sqlite($s) => $call,
        }
    };
}
use dispatch;

impl Store {
    /// Connects to `url` (`postgres://…` or `sqlite:…`). Does not run migrations.
    pub async fn connect(url: &SecretString, pool: &PoolConfig) -> Result<Self, StorageError> {
        let raw = url.expose_secret();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Ok(Store::Postgres(PgStore::connect(raw, pool).await?))
        } else if raw.starts_with("sqlite:") {
            Ok(Store::Sqlite(SqliteStore::connect(raw, pool).await?))
        } else {
            Err(StorageError::UnsupportedUrl)
        }
    }

    /// Which backend this is, for logs and metrics.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Postgres(_) => "postgres",
            Store::Sqlite(_) => "sqlite",
        }
    }

    /// Brings the schema up to date. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<(), StorageError> {
        dispatch!(self, s => s.migrate().await)
    }

    /// Checks that the database answers, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StorageError> {
        dispatch!(self, s => s.ping().await)
    }

    /// The storage ID shared by every server process on this database, created on first use.
    pub async fn storage_id(&self) -> Result<String, StorageError> {
        dispatch!(self, s => s.storage_id().await)
    }

    /// Loads a document, or `None` if it was never stored.
    pub async fn load(&self, doc: &DocumentId) -> Result<Option<StoredDocument>, StorageError> {
        dispatch!(self, s => s.load(doc).await)
    }

    /// Appends one chunk of changes, creating the document if needed, and writes what it does
    /// to the read model (projection rows, change log) in the same transaction. Returns once
    /// the transaction has committed: only then may the changes be acknowledged.
    pub async fn append(
        &self,
        doc: &DocumentId,
        data: &[u8],
        peer_key: Option<&str>,
        record: &read_model::ChangeRecord<'_>,
    ) -> Result<Appended, StorageError> {
        let item = AppendItem {
            doc,
            data,
            peer_key,
            holder: None,
            record,
            claims: &[],
            expected_seq: None,
        };
        let mut appended = self.append_batch(std::slice::from_ref(&item)).await?;
        Ok(appended
            .remove(0)
            .expect("an unconditional append never conflicts"))
    }

    /// Appends several chunks (of different documents) in one transaction: all are stored or
    /// none. Returns what [`Store::append`] would for each, in order, or [`SeqConflict`] for
    /// an item whose `expected_seq` no longer holds (it is skipped; the others are stored).
    /// This is what group commit (`crate::committer`) calls. On Postgres the same transaction
    /// announces the changed documents (`NOTIFY`, see [`Store::listen`]).
    pub async fn append_batch(
        &self,
        items: &[AppendItem<'_>],
    ) -> Result<Vec<Result<Appended, SeqConflict>>, StorageError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        dispatch!(self, s => s.append_batch(items).await)
    }

    /// Chunks with a sequence number above `seq` (appended by other processes), in order, or
    /// [`ChunksAfter::Compacted`] when a compaction has folded some of them into the snapshot.
    pub async fn chunks_after(
        &self,
        doc: &DocumentId,
        seq: i64,
    ) -> Result<ChunksAfter, StorageError> {
        dispatch!(self, s => s.chunks_after(doc, seq).await)
    }

    /// Documents changed by transactions at or after `horizon` (an
    /// [`area_horizon`](Store::area_horizon)): what a process that missed announcements while
    /// cut off from the database catches up with.
    pub async fn changed_since(&self, horizon: i64) -> Result<Vec<ChangedDocument>, StorageError> {
        dispatch!(self, s => s.changed_since(horizon).await)
    }

    /// Listens for the change announcements of every process on this database (Postgres);
    /// `None` on SQLite, which has one process.
    pub async fn listen(&self) -> Result<Option<ChangeListener>, StorageError> {
        match self {
            Store::Postgres(s) => s.listen().await.map(Some),
            Store::Sqlite(_) => Ok(None),
        }
    }

    /// This process's name in change announcements (random per process), so it can tell its
    /// own from those of other processes.
    pub fn instance(&self) -> &str {
        dispatch!(self, s => &s.instance)
    }

    /// Replaces the snapshot with `snapshot`, which contains every chunk up to `up_to_seq`,
    /// and deletes those chunks, in one transaction.
    pub async fn compact(
        &self,
        doc: &DocumentId,
        snapshot: &[u8],
        up_to_seq: i64,
    ) -> Result<(), StorageError> {
        dispatch!(self, s => s.compact(doc, snapshot, up_to_seq).await)
    }

    /// The sync state saved for (`peer_key`, `doc`), if any.
    pub async fn load_sync_state(
        &self,
        peer_key: &str,
        doc: &DocumentId,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        dispatch!(self, s => s.load_sync_state(peer_key, doc).await)
    }

    /// Saves the sync state for (`peer_key`, `doc`). `synced_seq` is the document's
    /// `last_seq` if the device holds every change up to it, 0 if not, and negative if unknown
    /// (the recorded value then stays; a new row counts as changed).
    pub async fn save_sync_state(
        &self,
        peer_key: &str,
        doc: &DocumentId,
        state: &[u8],
        synced_seq: i64,
    ) -> Result<(), StorageError> {
        dispatch!(self, s => s.save_sync_state(peer_key, doc, state, synced_seq).await)
    }

    /// Every document the device `peer_key` has synced before, and whether it changed since.
    pub async fn device_documents(
        &self,
        peer_key: &str,
    ) -> Result<Vec<HeldDocument>, StorageError> {
        dispatch!(self, s => s.device_documents(peer_key).await)
    }

    /// Binds each of `actors` that is not bound yet to (`user`, `device`), and returns the
    /// (user, device) every one of them is bound to, in order.
    pub async fn bind_actors(
        &self,
        actors: &[String],
        user: &str,
        device: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        dispatch!(self, s => s.bind_actors(actors, user, device).await)
    }

    /// Every volunteer who claimed order `doc`, in the order their claims were stored (claims
    /// are recorded by the append that brings them, see [`AppendItem::claims`]).
    pub async fn claim_arrivals(&self, doc: &DocumentId) -> Result<Vec<String>, StorageError> {
        dispatch!(self, s => s.claim_arrivals(doc).await)
    }

    /// Records what the field rules noticed about the change stored as chunk `seq`:
    /// (flag, detail) pairs, by `user`.
    pub async fn record_flags(
        &self,
        doc: &DocumentId,
        seq: i64,
        user: &str,
        flags: &[(String, String)],
    ) -> Result<(), StorageError> {
        dispatch!(self, s => s.record_flags(doc, seq, user, flags).await)
    }

    /// Flags recorded for a document: (flag, detail), oldest first.
    pub async fn document_flags(
        &self,
        doc: &DocumentId,
    ) -> Result<Vec<(String, String)>, StorageError> {
        dispatch!(self, s => s.document_flags(doc).await)
    }

    /// Number of stored documents (for tests and admin figures).
    pub async fn count_documents(&self) -> Result<i64, StorageError> {
        dispatch!(self, s => s.count_documents().await)
    }
}

/// The backend-independent implementation. Every statement here is accepted by both Postgres
/// and SQLite (`$n` parameters, `ON CONFLICT`, `RETURNING`, `CURRENT_TIMESTAMP`), so the two
/// backends differ only in how they connect and which migrations they embed.
///
/// `$snapshot_read` is the statement that makes a read transaction see one consistent snapshot
/// (Postgres defaults to READ COMMITTED, where two statements may see different data; a
/// SQLite transaction always reads one snapshot).
///
/// `$changed_tx` is the SQL expression stored in `documents.changed_tx` by each append (see
/// `migrations/*/0008_area_sync.sql`).
macro_rules! store_impl {
    ($store:ty, $migrator:expr, $snapshot_read:expr, $changed_tx:literal) => {
        impl $store {
            pub(super) async fn migrate(&self) -> Result<(), super::StorageError> {
                $migrator.run(&self.pool).await?;
                Ok(())
            }

            pub(super) async fn ping(&self) -> Result<(), super::StorageError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            pub(super) async fn storage_id(&self) -> Result<String, super::StorageError> {
                let fresh = format!("lianxin-{}", lianxin_protocol::DocumentId::random());
                sqlx::query(
                    "INSERT INTO server_meta (key, value) VALUES ('storage_id', $1) \
                     ON CONFLICT (key) DO NOTHING",
                )
                .bind(&fresh)
                .execute(&self.pool)
                .await?;
                let id: String =
                    sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'storage_id'")
                        .fetch_one(&self.pool)
                        .await?;
                Ok(id)
            }

            #[tracing::instrument(skip_all, fields(doc_id = %doc), err)]
            pub(super) async fn load(
                &self,
                doc: &lianxin_protocol::DocumentId,
            ) -> Result<Option<super::StoredDocument>, super::StorageError> {
                let id = doc.to_string();
                let mut tx = self.pool.begin().await?;
                // The snapshot and the chunks after it must come from one state of the
                // database: a compaction committed in between would delete chunks that the
                // snapshot read before it does not contain.
                let snapshot_read: Option<&'static str> = $snapshot_read;
                if let Some(statement) = snapshot_read {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                let row: Option<(Option<Vec<u8>>, i64, i64, i64)> = sqlx::query_as(
                    "SELECT snapshot, snapshot_seq, last_seq, size_bytes \
                     FROM documents WHERE id = $1",
                )
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((snapshot, snapshot_seq, last_seq, size_bytes)) = row else {
                    return Ok(None);
                };
                let chunks: Vec<(Vec<u8>,)> = sqlx::query_as(
                    "SELECT data FROM document_changes \
                     WHERE document_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                )
                .bind(&id)
                .bind(snapshot_seq)
                .bind(last_seq)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(super::StoredDocument {
                    snapshot,
                    chunks: chunks.into_iter().map(|(data,)| data).collect(),
                    last_seq,
                    size_bytes,
                }))
            }

            /// Appends each item's chunk in one transaction (see [`super::Store::append_batch`]).
            #[tracing::instrument(skip_all, fields(items = items.len()), err)]
            pub(super) async fn append_batch(
                &self,
                items: &[super::AppendItem<'_>],
            ) -> Result<Vec<Result<super::Appended, super::SeqConflict>>, super::StorageError> {
                // Rows are locked in one order (document ID) in every transaction, so batches
                // of several processes cannot deadlock on each other.
                let mut order: Vec<usize> = (0..items.len()).collect();
                order.sort_by(|a, b| items[*a].doc.as_bytes().cmp(items[*b].doc.as_bytes()));
                let mut appended = vec![Err(super::SeqConflict { expected: 0 }); items.len()];
                let mut announced = Vec::with_capacity(items.len());
                let mut tx = self.pool.begin().await?;
                for i in order {
                    let item = &items[i];
                    let id = item.doc.to_string();
                    // Who may read it (area sync) comes with a typed change; an untyped one
                    // leaves the columns as they are.
                    let readers = item.record.projected.map(super::area::Readers::of);
                    // The row lock of the upsert orders appends to one document; the WHERE
                    // makes each build on the state its caller vetted against.
                    let row: Option<(i64, i64, Option<String>)> = sqlx::query_as(concat!(
                        "INSERT INTO documents (id, last_seq, size_bytes, changed_tx, kind, area, \
                         created_by, transferred_to) VALUES ($1, 1, $2, ",
                        $changed_tx,
                        ", $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET \
                         last_seq = documents.last_seq + 1, \
                         size_bytes = documents.size_bytes + excluded.size_bytes, \
                         updated_at = CURRENT_TIMESTAMP, changed_tx = excluded.changed_tx, \
                         kind = COALESCE(excluded.kind, documents.kind), \
                         area = COALESCE(excluded.area, documents.area), \
                         created_by = COALESCE(excluded.created_by, documents.created_by), \
                         transferred_to = CASE WHEN excluded.kind IS NULL \
                         THEN documents.transferred_to ELSE excluded.transferred_to END \
                         WHERE $7 < 0 OR documents.last_seq = $7 \
                         RETURNING last_seq, size_bytes, area"
                    ))
                    .bind(&id)
                    .bind(item.data.len() as i64)
                    .bind(readers.map(|r| r.kind))
                    .bind(readers.map(|r| r.area))
                    .bind(readers.map(|r| r.created_by))
                    .bind(readers.and_then(|r| r.transferred_to))
                    .bind(item.expected_seq.unwrap_or(-1))
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((seq, size_bytes, area)) = row else {
                        appended[i] = Err(super::SeqConflict {
                            expected: item.expected_seq.unwrap_or(-1),
                        });
                        continue;
                    };
                    sqlx::query(
                        "INSERT INTO document_changes (document_id, seq, data, peer_key) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&id)
                    .bind(seq)
                    .bind(item.data)
                    .bind(item.peer_key)
                    .execute(&mut *tx)
                    .await?;
                    Self::write_change_record(&mut tx, &id, seq, item.record).await?;
                    if let (Some(state), Some(key)) = (item.holder, item.peer_key) {
                        sqlx::query(
                            "INSERT INTO sync_states (peer_key, document_id, state, synced_seq) \
                             VALUES ($1, $2, $3, 0) ON CONFLICT (peer_key, document_id) DO NOTHING",
                        )
                        .bind(key)
                        .bind(&id)
                        .bind(state)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for volunteer in item.claims {
                        sqlx::query(
                            "INSERT INTO order_claims (document_id, volunteer, received_seq) \
                             VALUES ($1, $2, $3) ON CONFLICT (document_id, volunteer) DO NOTHING",
                        )
                        .bind(&id)
                        .bind(volunteer)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    }
                    appended[i] = Ok(super::Appended { seq, size_bytes });
                    announced.push(super::ChangedDocument {
                        id: *item.doc,
                        seq,
                        area,
                    });
                }
                self.announce(&mut tx, &announced).await?;
                tx.commit().await?;
                Ok(appended)
            }

            pub(super) async fn changed_since(
                &self,
                horizon: i64,
            ) -> Result<Vec<super::ChangedDocument>, super::StorageError> {
                let rows: Vec<(String, i64, Option<String>)> = sqlx::query_as(
                    "SELECT id, last_seq, area FROM documents WHERE changed_tx >= $1",
                )
                .bind(horizon)
                .fetch_all(&self.pool)
                .await?;
                // One unreadable row must not keep the caller from catching up on the rest.
                Ok(rows
                    .into_iter()
                    .filter_map(|(id, seq, area)| match id.parse() {
                        Ok(id) => Some(super::ChangedDocument { id, seq, area }),
                        Err(_) => {
                            tracing::warn!(id, "skipping a stored document with an invalid id");
                            None
                        }
                    })
                    .collect())
            }

            pub(super) async fn chunks_after(
                &self,
                doc: &lianxin_protocol::DocumentId,
                seq: i64,
            ) -> Result<super::ChunksAfter, super::StorageError> {
                // One statement, so one snapshot: the snapshot position and the chunks agree
                // even if a compaction commits meanwhile. (Called for every change another
                // node announces, so one round trip matters.)
                let rows: Vec<(i64, Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT d.snapshot_seq, c.seq, c.data FROM documents d \
                     LEFT JOIN document_changes c ON c.document_id = d.id AND c.seq > $2 \
                     WHERE d.id = $1 ORDER BY c.seq",
                )
                .bind(doc.to_string())
                .bind(seq)
                .fetch_all(&self.pool)
                .await?;
                if rows.first().is_some_and(|(snapshot_seq, _, _)| *snapshot_seq > seq) {
                    return Ok(super::ChunksAfter::Compacted);
                }
                Ok(super::ChunksAfter::Chunks(
                    rows.into_iter()
                        .filter_map(|(_, seq, data)| Some((seq?, data?)))
                        .collect(),
                ))
            }

            #[tracing::instrument(skip_all, fields(doc_id = %doc, up_to_seq), err)]
            pub(super) async fn compact(
                &self,
                doc: &lianxin_protocol::DocumentId,
                snapshot: &[u8],
                up_to_seq: i64,
            ) -> Result<(), super::StorageError> {
                let id = doc.to_string();
                let mut tx = self.pool.begin().await?;
                // Only move the snapshot forward: a slower process must not replace a newer
                // snapshot with an older one.
                let updated = sqlx::query(
                    "UPDATE documents SET snapshot = $2, snapshot_seq = $3 \
                     WHERE id = $1 AND snapshot_seq < $3",
                )
                .bind(&id)
                .bind(snapshot)
                .bind(up_to_seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 1 {
                    sqlx::query(
                        "DELETE FROM document_changes WHERE document_id = $1 AND seq <= $2",
                    )
                    .bind(&id)
                    .bind(up_to_seq)
                    .execute(&mut *tx)
                    .await?;
                    // The stored size is now the snapshot plus what came after it.
                    sqlx::query(
                        "UPDATE documents SET size_bytes = $2 + COALESCE((SELECT SUM(LENGTH(data)) \
                         FROM document_changes WHERE document_id = $1), 0) WHERE id = $1",
                    )
                    .bind(&id)
                    .bind(snapshot.len() as i64)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn load_sync_state(
                &self,
                peer_key: &str,
                doc: &lianxin_protocol::DocumentId,
            ) -> Result<Option<Vec<u8>>, super::StorageError> {
                let state: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT state FROM sync_states WHERE peer_key = $1 AND document_id = $2",
                )
                .bind(peer_key)
                .bind(doc.to_string())
                .fetch_optional(&self.pool)
                .await?;
                Ok(state)
            }

            pub(super) async fn save_sync_state(
                &self,
                peer_key: &str,
                doc: &lianxin_protocol::DocumentId,
                state: &[u8],
                synced_seq: i64,
            ) -> Result<(), super::StorageError> {
                sqlx::query(
                    "INSERT INTO sync_states (peer_key, document_id, state, synced_seq) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (peer_key, document_id) \
                     DO UPDATE SET state = excluded.state, \
                     synced_seq = CASE WHEN excluded.synced_seq < 0 \
                     THEN sync_states.synced_seq ELSE excluded.synced_seq END, \
                     updated_at = CURRENT_TIMESTAMP",
                )
                .bind(peer_key)
                .bind(doc.to_string())
                .bind(state)
                .bind(synced_seq)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            pub(super) async fn device_documents(
                &self,
                peer_key: &str,
            ) -> Result<Vec<super::HeldDocument>, super::StorageError> {
                let rows: Vec<(String, bool, bool)> = sqlx::query_as(
                    "SELECT s.document_id, d.last_seq > s.synced_seq, d.kind IS NOT NULL \
                     FROM sync_states s JOIN documents d ON d.id = s.document_id \
                     WHERE s.peer_key = $1",
                )
                .bind(peer_key)
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, changed, typed)| {
                        id.parse()
                            .map(|id| super::HeldDocument { id, changed, typed })
                            .map_err(|_| super::StorageError::BadDocumentId(id))
                    })
                    .collect()
            }

            pub(super) async fn bind_actors(
                &self,
                actors: &[String],
                user: &str,
                device: &str,
            ) -> Result<Vec<(String, String)>, super::StorageError> {
                let mut bound = Vec::with_capacity(actors.len());
                for actor in actors {
                    // Insert-if-absent then read: two devices racing for one actor ID both
                    // read the single winner.
                    sqlx::query(
                        "INSERT INTO actors (actor_id, user_id, device_id) VALUES ($1, $2, $3) \
                         ON CONFLICT (actor_id) DO NOTHING",
                    )
                    .bind(actor)
                    .bind(user)
                    .bind(device)
                    .execute(&self.pool)
                    .await?;
                    let owner: (String, String) = sqlx::query_as(
                        "SELECT user_id, device_id FROM actors WHERE actor_id = $1",
                    )
                    .bind(actor)
                    .fetch_one(&self.pool)
                    .await?;
                    bound.push(owner);
                }
                Ok(bound)
            }

            pub(super) async fn claim_arrivals(
                &self,
                doc: &lianxin_protocol::DocumentId,
            ) -> Result<Vec<String>, super::StorageError> {
                let order: Vec<(String,)> = sqlx::query_as(
                    "SELECT volunteer FROM order_claims WHERE document_id = $1 \
                     ORDER BY received_seq, volunteer",
                )
                .bind(doc.to_string())
                .fetch_all(&self.pool)
                .await?;
                Ok(order.into_iter().map(|(v,)| v).collect())
            }

            pub(super) async fn record_flags(
                &self,
                doc: &lianxin_protocol::DocumentId,
                seq: i64,
                user: &str,
                flags: &[(String, String)],
            ) -> Result<(), super::StorageError> {
                for (flag, detail) in flags {
                    sqlx::query(
                        "INSERT INTO document_flags (document_id, seq, flag, detail, user_id) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    )
                    .bind(doc.to_string())
                    .bind(seq)
                    .bind(flag)
                    .bind(detail)
                    .bind(user)
                    .execute(&self.pool)
                    .await?;
                }
                Ok(())
            }

            pub(super) async fn document_flags(
                &self,
                doc: &lianxin_protocol::DocumentId,
            ) -> Result<Vec<(String, String)>, super::StorageError> {
                let rows: Vec<(String, String)> = sqlx::query_as(
                    "SELECT flag, detail FROM document_flags WHERE document_id = $1 \
                     ORDER BY seq, flag",
                )
                .bind(doc.to_string())
                .fetch_all(&self.pool)
                .await?;
                Ok(rows)
            }

            pub(super) async fn count_documents(&self) -> Result<i64, super::StorageError> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(n)
            }
        }
    };
}
use store_impl;
