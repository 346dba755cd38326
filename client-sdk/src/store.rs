//! The device's local store: one SQLite file (through sqlx) holding every document, the sync
//! state shared with the server for each, and a few settings.
//!
//! Every write is committed with `synchronous = FULL` before the call that made it returns, so
//! an edit the app was told about survives a crash, a kill or a dead battery. Documents are
//! stored as chunks (incremental saves) and compacted into one full save every
//! [`COMPACT_AFTER`] chunks. Loading applies chunks with `load_incremental`, which waits for
//! missing dependencies, so the order chunks were written in does not matter.
//!
//! This module is the only one in the SDK that knows sqlx.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use lianxin_protocol::DocumentId;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreError;

/// Chunks after which a document is rewritten as one full save.
pub const COMPACT_AFTER: usize = 64;

/// The statements written more than once below, kept in one place so their copies cannot drift.
const ADD_DOCUMENT: &str = "INSERT INTO documents (id) VALUES ($1) ON CONFLICT (id) DO NOTHING";
const ADD_CHUNK: &str = "INSERT INTO chunks (document_id, seq, data) VALUES ($1, \
     (SELECT COALESCE(MAX(seq), 0) + 1 FROM chunks WHERE document_id = $1), $2) RETURNING seq";
const SET_SYNC_STATE: &str = "INSERT INTO sync_states (document_id, state) VALUES ($1, $2) \
     ON CONFLICT (document_id) DO UPDATE SET state = excluded.state";
const SET_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// A document as stored: its chunks and its sync state.
#[derive(Debug, Clone)]
pub struct StoredDoc {
    pub id: DocumentId,
    pub chunks: Vec<Vec<u8>>,
    pub sync_state: Option<Vec<u8>>,
}

/// The local store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: String,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/client");

impl Store {
    /// Opens (creating if needed) the store at `path`.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().display().to_string();
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        Self::connect(options, path).await
    }

    /// A store that lives in memory only (for tests, demos and throwaway devices).
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| {
            StoreError::Database {
                path: ":memory:".into(),
                source: e,
            }
        })?;
        Self::connect(options, ":memory:".into()).await
    }

    async fn connect(options: SqliteConnectOptions, path: String) -> Result<Self, StoreError> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // One connection: a device has one writer, and an in-memory database exists only
        // within its connection.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| classify(&path, e))?;
        let store = Self { pool, path };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        match MIGRATOR.run(&self.pool).await {
            Ok(()) => Ok(()),
            Err(sqlx::migrate::MigrateError::VersionMissing(version)) => {
                Err(StoreError::NewerSchema {
                    path: self.path.clone(),
                    version,
                })
            }
            Err(sqlx::migrate::MigrateError::Execute(e)) => Err(classify(&self.path, e)),
            Err(e) => Err(StoreError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// The file this store lives in (or `:memory:`).
    pub fn path(&self) -> &str {
        &self.path
    }

    fn db_err(&self, e: sqlx::Error) -> StoreError {
        classify(&self.path, e)
    }

    /// Every document with its chunks (in write order) and sync state.
    pub async fn load_all(&self) -> Result<Vec<StoredDoc>, StoreError> {
        let ids: Vec<(String,)> = sqlx::query_as("SELECT id FROM documents ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        let chunks: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT document_id, data FROM chunks ORDER BY document_id, seq")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(e))?;
        let states: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT document_id, state FROM sync_states")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.db_err(e))?;
        let mut docs = std::collections::BTreeMap::new();
        for (id,) in ids {
            let parsed = id.parse().map_err(|e: lianxin_protocol::DocumentIdError| {
                StoreError::BadDocument {
                    path: self.path.clone(),
                    document: id.clone(),
                    reason: e.to_string(),
                }
            })?;
            docs.insert(
                id,
                StoredDoc {
                    id: parsed,
                    chunks: Vec::new(),
                    sync_state: None,
                },
            );
        }
        for (id, data) in chunks {
            if let Some(doc) = docs.get_mut(&id) {
                doc.chunks.push(data);
            }
        }
        for (id, state) in states {
            if let Some(doc) = docs.get_mut(&id) {
                doc.sync_state = Some(state);
            }
        }
        Ok(docs.into_values().collect())
    }

    /// Appends a chunk to a document, creating the document if needed. Returns the chunk's
    /// sequence number and the number of chunks the document now has.
    pub async fn append(&self, id: &DocumentId, data: &[u8]) -> Result<(i64, usize), StoreError> {
        let id = id.to_string();
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        sqlx::query(ADD_DOCUMENT)
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        let seq: i64 = sqlx::query_scalar(ADD_CHUNK)
            .bind(&id)
            .bind(data)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks WHERE document_id = $1")
            .bind(&id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))?;
        Ok((seq, count as usize))
    }

    /// Stores what one area-sync batch brought, in one transaction: for each document a chunk
    /// and the sync state shared with the server, then the batch's cursor under `cursor_key`
    /// (unless it is empty: a live push moves no cursor). After a crash either all of it is
    /// there or none, so the cursor never runs ahead of the documents.
    pub async fn store_batch(
        &self,
        documents: &[(DocumentId, Vec<u8>, Vec<u8>)],
        cursor_key: &str,
        cursor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        for (id, chunk, state) in documents {
            let id = id.to_string();
            sqlx::query(ADD_DOCUMENT)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(e))?;
            if !chunk.is_empty() {
                sqlx::query(ADD_CHUNK)
                    .bind(&id)
                    .bind(chunk)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db_err(e))?;
            }
            sqlx::query(SET_SYNC_STATE)
                .bind(&id)
                .bind(state)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(e))?;
        }
        if !cursor.is_empty() {
            sqlx::query(SET_META)
                .bind(cursor_key)
                .bind(cursor)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(e))?;
        }
        tx.commit().await.map_err(|e| self.db_err(e))
    }

    /// Forgets a setting.
    pub async fn delete_meta(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM meta WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Replaces the chunks up to `up_to_seq` with `full`, a save that contains all of them.
    /// Chunks written after `up_to_seq` (by a concurrent edit) stay.
    pub async fn compact(
        &self,
        id: &DocumentId,
        full: &[u8],
        up_to_seq: i64,
    ) -> Result<(), StoreError> {
        let id = id.to_string();
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1 AND seq <= $2")
            .bind(&id)
            .bind(up_to_seq)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        sqlx::query("INSERT INTO chunks (document_id, seq, data) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(up_to_seq)
            .bind(full)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }

    /// Replaces every chunk of a document with one full save (after changes were removed).
    pub async fn replace(&self, id: &DocumentId, full: &[u8]) -> Result<(), StoreError> {
        let id = id.to_string();
        let mut tx = self.pool.begin().await.map_err(|e| self.db_err(e))?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        sqlx::query("INSERT INTO chunks (document_id, seq, data) VALUES ($1, 1, $2)")
            .bind(&id)
            .bind(full)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(e))?;
        tx.commit().await.map_err(|e| self.db_err(e))
    }

    /// Sets a refused change aside, with the server's reason.
    pub async fn set_aside(
        &self,
        id: &DocumentId,
        hash: &str,
        reason: &str,
        data: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO rejected_changes (document_id, hash, reason, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (document_id, hash) DO NOTHING",
        )
        .bind(id.to_string())
        .bind(hash)
        .bind(reason)
        .bind(data)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Every change set aside: (document, change hash, reason, change bytes).
    pub async fn rejected(&self) -> Result<Vec<(String, String, String, Vec<u8>)>, StoreError> {
        sqlx::query_as(
            "SELECT document_id, hash, reason, data FROM rejected_changes ORDER BY rejected_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err(e))
    }

    /// Records the sync state shared with the server for a document.
    pub async fn save_sync_state(&self, id: &DocumentId, state: &[u8]) -> Result<(), StoreError> {
        sqlx::query(SET_SYNC_STATE)
            .bind(id.to_string())
            .bind(state)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// Forgets every sync state (when the store meets a different server).
    pub async fn clear_sync_states(&self) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sync_states")
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    /// A setting, if set.
    pub async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err(e))
    }

    /// Sets a setting.
    pub async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(SET_META)
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }
}

/// Turns a database error into a store error, recognising files that are not SQLite databases
/// or are damaged.
fn classify(path: &str, e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), possibly extended.
        let code = db.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0) & 0xff;
        if code == 11 || code == 26 {
            return StoreError::Corrupt {
                path: path.to_string(),
                reason: db.message().to_string(),
            };
        }
    }
    StoreError::Database {
        path: path.to_string(),
        source: e,
    }
}
