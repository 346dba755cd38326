//! The Postgres backend: production storage, shareable by several server processes.
//! Only connection set-up lives here; the statements are shared with SQLite (`store_impl!`).

use sqlx::postgres::{PgPool, PgPoolOptions};

use super::{PoolConfig, StorageError};

/// Documents in Postgres.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub(super) async fn connect(url: &str, config: &PoolConfig) -> Result<Self, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect(url)
            .await?;
        Ok(Self { pool })
    }
}

super::store_impl!(
    PgStore,
    sqlx::migrate!("../migrations/postgres"),
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
    "pg_current_xact_id()::text::bigint"
);

super::registry::registry_impl!(PgStore);

super::area::area_impl!(
    PgStore,
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
);

super::read_model::read_model_impl!(
    PgStore,
    sqlx::PgConnection,
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
);
