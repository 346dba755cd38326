//! The storage side of area sync (see `crate::area_sync`): the documents of an area subtree
//! that changed since a cursor, read page by page as they are stored (snapshot and chunks), so
//! the server never loads them into Automerge to serve them.
//!
//! Who may read a document is decided from its `documents` row (`kind`, `area`, `created_by`,
//! `transferred_to`, written with every typed change). The SQL narrows by area and kind; the
//! caller applies the exact rule ([`lianxin_protocol::domain::check_read_where`]) to each row.
//!
//! Cursors are transaction horizons: [`Store::area_horizon`] is, on Postgres, the oldest
//! transaction still running (`pg_snapshot_xmin`), and every document committed after it was
//! taken has `changed_tx` at or above it; on SQLite, where writers are serialized, it is the
//! next value of a counter.

use lianxin_protocol::DocumentId;

use super::{StorageError, Store, dispatch};

/// Whose documents a page lists.
#[derive(Debug, Clone)]
pub struct AreaScope {
    /// The root of the area subtree.
    pub area: String,
    /// The kinds the role reads, as one comma-separated list of their names (documents of
    /// other kinds are listed only to their creator).
    pub kinds: String,
    /// The user: creators always read their own documents.
    pub user: String,
    /// The device's sync-state key: documents this device is known to hold in full are left
    /// out.
    pub peer_key: Option<String>,
}

/// What decides who may read a document, as its `documents` row records it: written by every
/// typed append (in the same upsert that bumps `last_seq`) and by `reproject`.
#[derive(Debug, Clone, Copy)]
pub struct Readers<'a> {
    pub kind: &'a str,
    pub area: &'a str,
    pub created_by: &'a str,
    /// The department a request is transferred to by its last valid triage.
    pub transferred_to: Option<&'a str>,
}

impl<'a> Readers<'a> {
    pub fn of(projected: &'a lianxin_protocol::domain::Projected) -> Self {
        use lianxin_protocol::domain::{Record, Track};
        let transferred_to = match &projected.record {
            Record::Request(r) if r.flow.track == Some(Track::Transfer) => {
                r.flow.department.as_deref()
            }
            _ => None,
        };
        Readers {
            kind: projected.info.kind.as_str(),
            area: projected.info.area.as_str(),
            created_by: &projected.info.created_by,
            transferred_to,
        }
    }
}

/// One document of a page, as stored.
#[derive(Debug, Clone)]
pub struct AreaDoc {
    pub id: DocumentId,
    pub kind: String,
    pub area: String,
    pub created_by: String,
    pub transferred_to: Option<String>,
    /// The snapshot followed by every chunk after it: what `Automerge::load_incremental` reads.
    pub data: Vec<u8>,
}

pub(super) type AreaRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<Vec<u8>>,
    i64,
    i64,
);

impl Store {
    /// The cursor a pass that starts now will hand out at its end.
    pub async fn area_horizon(&self) -> Result<i64, StorageError> {
        dispatch!(self, s => s.area_horizon().await)
    }

    /// Up to `limit` documents of `scope` with `changed_tx >= since` and an ID after `after`,
    /// in ID order, with their stored bytes.
    pub async fn area_page(
        &self,
        scope: &AreaScope,
        since: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<AreaDoc>, StorageError> {
        dispatch!(self, s => s.area_page(scope, since, after, limit).await)
    }
}

/// The SQL that lists one page. `$7` is the readable kinds as one comma-separated list
/// (Kind names, never user input).
pub(super) const PAGE_SQL: &str = concat!(
    "SELECT d.id, d.kind, d.area, d.created_by, d.transferred_to, d.snapshot, \
     d.snapshot_seq, d.last_seq FROM documents d \
     WHERE d.kind IS NOT NULL AND ",
    super::read_model::sql!(area 1 on "d.area"),
    " AND d.changed_tx >= $2 AND d.id > $3 \
     AND ((',' || $7 || ',') LIKE ('%,' || d.kind || ',%') OR d.created_by = $4) \
     AND NOT EXISTS (SELECT 1 FROM sync_states s WHERE s.peer_key = $5 \
     AND s.document_id = d.id AND s.synced_seq >= d.last_seq) \
     ORDER BY d.id LIMIT $6"
);

/// The chunks after the snapshot of the documents of one page (by area and ID range).
pub(super) const CHUNKS_SQL: &str = concat!(
    "SELECT c.document_id, c.data FROM document_changes c JOIN documents d ON d.id = c.document_id \
     WHERE ",
    super::read_model::sql!(area 1 on "d.area"),
    " AND d.id > $2 AND d.id <= $3 AND c.seq > d.snapshot_seq AND c.seq <= d.last_seq \
     ORDER BY c.document_id, c.seq"
);

/// Implements area paging for one backend. `$horizon` is the SQL expression of the cursor a
/// pass starting now hands out; `$snapshot_read` makes the page's two reads see one state.
macro_rules! area_impl {
    ($store:ty, $horizon:literal, $snapshot_read:literal) => {
        impl $store {
            pub(super) async fn area_horizon(&self) -> Result<i64, super::StorageError> {
                let horizon: i64 = sqlx::query_scalar(concat!("SELECT ", $horizon))
                    .fetch_one(&self.pool)
                    .await?;
                Ok(horizon)
            }

            pub(super) async fn area_page(
                &self,
                scope: &super::area::AreaScope,
                since: i64,
                after: &str,
                limit: i64,
            ) -> Result<Vec<super::area::AreaDoc>, super::StorageError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query($snapshot_read).execute(&mut *tx).await?;
                let rows: Vec<super::area::AreaRow> = sqlx::query_as(super::area::PAGE_SQL)
                    .bind(&scope.area)
                    .bind(since)
                    .bind(after)
                    .bind(&scope.user)
                    .bind(scope.peer_key.as_deref())
                    .bind(limit)
                    .bind(&scope.kinds)
                    .fetch_all(&mut *tx)
                    .await?;
                let Some(last) = rows.last().map(|r| r.0.clone()) else {
                    tx.commit().await?;
                    return Ok(Vec::new());
                };
                let chunks: Vec<(String, Vec<u8>)> = sqlx::query_as(super::area::CHUNKS_SQL)
                    .bind(&scope.area)
                    .bind(after)
                    .bind(&last)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                super::area::assemble(rows, chunks)
            }
        }
    };
}
pub(super) use area_impl;

/// Joins a page's rows with their chunks into documents.
pub(super) fn assemble(
    rows: Vec<AreaRow>,
    chunks: Vec<(String, Vec<u8>)>,
) -> Result<Vec<AreaDoc>, StorageError> {
    // Chunks arrive in sequence order within each document; the page may also bring chunks of
    // documents it left out (other kinds, held in full), which are never asked for.
    let mut by_doc: std::collections::HashMap<String, Vec<Vec<u8>>> =
        std::collections::HashMap::new();
    for (doc, chunk) in chunks {
        by_doc.entry(doc).or_default().push(chunk);
    }
    rows.into_iter()
        .map(
            |(id, kind, area, created_by, transferred_to, snapshot, _, _)| {
                let mut data = snapshot.unwrap_or_default();
                for chunk in by_doc.remove(&id).unwrap_or_default() {
                    data.extend_from_slice(&chunk);
                }
                let doc_id = id
                    .parse()
                    .map_err(|_| StorageError::BadDocumentId(id.clone()))?;
                Ok(AreaDoc {
                    id: doc_id,
                    kind,
                    area,
                    created_by,
                    transferred_to,
                    data,
                })
            },
        )
        .collect()
}
