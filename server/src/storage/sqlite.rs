//! The SQLite backend: the embedded default, a single file under the data directory, so the
//! server runs with zero set-up. WAL mode lets readers proceed while one writer commits.
//! Only connection set-up lives here; the statements are shared with Postgres (`store_impl!`).

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{PoolConfig, StorageError};

/// Documents in one SQLite file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's name (announcements are for several processes on one Postgres; an
    /// SQLite file has one process).
    pub(super) instance: String,
}

impl SqliteStore {
    pub(super) async fn connect(url: &str, config: &PoolConfig) -> Result<Self, StorageError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(config.acquire_timeout);
        // SQLite has one writer at a time. With several pooled connections, writers fight for
        // its lock, wait out the busy timeout and fail ("database is locked"); under a burst
        // of uploads that collapsed (bench W1 at 3,000 documents did not finish in minutes).
        // One connection makes them queue in the pool instead: 7.7 s for the same upload.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            instance: "sqlite".to_owned(),
        })
    }

    /// One process per file: nobody else to tell.
    pub(super) async fn announce(
        &self,
        _tx: &mut sqlx::SqliteConnection,
        _docs: &[super::ChangedDocument],
    ) -> Result<(), StorageError> {
        Ok(())
    }
}

super::store_impl!(
    SqliteStore,
    sqlx::migrate!("../migrations/sqlite"),
    None,
    "(SELECT COALESCE(MAX(changed_tx), 0) + 1 FROM documents)"
);

super::area::area_impl!(
    SqliteStore,
    "(SELECT COALESCE(MAX(changed_tx), 0) + 1 FROM documents)",
    "SELECT 1"
);

super::registry::registry_impl!(SqliteStore);

super::read_model::read_model_impl!(SqliteStore, sqlx::SqliteConnection, "9223372036854775807");
