//! The registry of the area tree, users and devices, in the same database as the documents.
//! Row types are converted by hand into the plain records below; like the rest of `storage`,
//! nothing outside knows sqlx.
//!
//! Area paths are materialized (`/city/district/street/…`); "inside an area" is a prefix test
//! on whole segments, done here in SQL with `path = $1 OR path LIKE $1 || '/%'`.

use serde::Serialize;

use super::{StorageError, Store};

/// A node of the area tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Area {
    pub path: String,
    pub name: String,
    pub level: String,
}

/// A person with a role in an area.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub name: String,
    pub role: String,
    pub area: String,
    pub department: Option<String>,
    pub revoked: bool,
}

/// A device bound to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Device {
    pub id: String,
    pub user_id: String,
    pub label: String,
    pub revoked: bool,
}

/// A `users` row as selected by the registry's queries.
pub(super) type UserRow = (String, String, String, String, Option<String>, bool);

impl From<UserRow> for User {
    fn from((id, name, role, area, department, revoked): UserRow) -> Self {
        User {
            id,
            name,
            role,
            area,
            department,
            revoked,
        }
    }
}

/// A `devices` row as selected by the registry's queries.
pub(super) type DeviceRow = (String, String, String, bool);

impl From<DeviceRow> for Device {
    fn from((id, user_id, label, revoked): DeviceRow) -> Self {
        Device {
            id,
            user_id,
            label,
            revoked,
        }
    }
}

/// Why a registry write was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    Missing(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Turns unique / foreign-key violations into registry errors.
pub(super) fn classify(e: sqlx::Error, what: &str, parent: &str) -> RegistryError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return RegistryError::Exists(what.to_string());
        }
        if db.is_foreign_key_violation() {
            return RegistryError::Missing(parent.to_string());
        }
    }
    RegistryError::Storage(StorageError::Database(e))
}

macro_rules! registry_impl {
    ($store:ty) => {
        impl $store {
            pub(super) async fn create_area(
                &self,
                area: &super::registry::Area,
            ) -> Result<(), super::registry::RegistryError> {
                sqlx::query("INSERT INTO areas (path, name, level) VALUES ($1, $2, $3)")
                    .bind(&area.path)
                    .bind(&area.name)
                    .bind(&area.level)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| {
                        super::registry::classify(e, &format!("area {}", area.path), "parent area")
                    })?;
                Ok(())
            }

            pub(super) async fn list_areas(
                &self,
                within: &str,
            ) -> Result<Vec<super::registry::Area>, super::StorageError> {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT path, name, level FROM areas \
                     WHERE path = $1 OR path LIKE $1 || '/%' OR $1 = '/' ORDER BY path",
                )
                .bind(within)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(path, name, level)| super::registry::Area { path, name, level })
                    .collect())
            }

            pub(super) async fn create_user(
                &self,
                user: &super::registry::User,
            ) -> Result<(), super::registry::RegistryError> {
                sqlx::query(
                    "INSERT INTO users (id, name, role, area, department) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&user.id)
                .bind(&user.name)
                .bind(&user.role)
                .bind(&user.area)
                .bind(&user.department)
                .execute(&self.pool)
                .await
                .map_err(|e| {
                    super::registry::classify(
                        e,
                        &format!("user {}", user.id),
                        &format!("area {}", user.area),
                    )
                })?;
                Ok(())
            }

            pub(super) async fn list_users(
                &self,
                within: &str,
            ) -> Result<Vec<super::registry::User>, super::StorageError> {
                let rows: Vec<super::registry::UserRow> = sqlx::query_as(
                    "SELECT id, name, role, area, department, revoked FROM users \
                         WHERE area = $1 OR area LIKE $1 || '/%' OR $1 = '/' ORDER BY id",
                )
                .bind(within)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            pub(super) async fn get_user(
                &self,
                id: &str,
            ) -> Result<Option<super::registry::User>, super::StorageError> {
                let row: Option<super::registry::UserRow> = sqlx::query_as(
                    "SELECT id, name, role, area, department, revoked FROM users WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(Into::into))
            }

            pub(super) async fn create_device(
                &self,
                device: &super::registry::Device,
            ) -> Result<(), super::registry::RegistryError> {
                sqlx::query("INSERT INTO devices (id, user_id, label) VALUES ($1, $2, $3)")
                    .bind(&device.id)
                    .bind(&device.user_id)
                    .bind(&device.label)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| {
                        super::registry::classify(
                            e,
                            &format!("device {}", device.id),
                            &format!("user {}", device.user_id),
                        )
                    })?;
                Ok(())
            }

            pub(super) async fn list_devices(
                &self,
                within: &str,
            ) -> Result<Vec<super::registry::Device>, super::StorageError> {
                let rows: Vec<super::registry::DeviceRow> = sqlx::query_as(
                    "SELECT d.id, d.user_id, d.label, d.revoked FROM devices d \
                     JOIN users u ON u.id = d.user_id \
                     WHERE u.area = $1 OR u.area LIKE $1 || '/%' OR $1 = '/' ORDER BY d.id",
                )
                .bind(within)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            pub(super) async fn get_device(
                &self,
                id: &str,
            ) -> Result<Option<super::registry::Device>, super::StorageError> {
                let row: Option<super::registry::DeviceRow> =
                    sqlx::query_as("SELECT id, user_id, label, revoked FROM devices WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(Into::into))
            }

            pub(super) async fn revoke(
                &self,
                table_is_users: bool,
                id: &str,
            ) -> Result<bool, super::StorageError> {
                let sql = if table_is_users {
                    "UPDATE users SET revoked = TRUE WHERE id = $1"
                } else {
                    "UPDATE devices SET revoked = TRUE WHERE id = $1"
                };
                let done = sqlx::query(sql).bind(id).execute(&self.pool).await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}
pub(super) use registry_impl;

impl Store {
    /// Adds an area. Its parent must exist, except for a root (one segment).
    pub async fn create_area(&self, area: &Area) -> Result<(), RegistryError> {
        if let Some((parent, _)) = area.path.rsplit_once('/')
            && !parent.is_empty()
            && self
                .list_areas(parent)
                .await?
                .first()
                .map(|a| a.path.as_str())
                != Some(parent)
        {
            return Err(RegistryError::Missing(format!("parent area {parent}")));
        }
        super::dispatch!(self, s => s.create_area(area).await)
    }

    /// Areas at or below `within` (`/` for all).
    pub async fn list_areas(&self, within: &str) -> Result<Vec<Area>, StorageError> {
        super::dispatch!(self, s => s.list_areas(within).await)
    }

    /// Adds a user in an existing area.
    pub async fn create_user(&self, user: &User) -> Result<(), RegistryError> {
        super::dispatch!(self, s => s.create_user(user).await)
    }

    /// Users whose area is at or below `within`.
    pub async fn list_users(&self, within: &str) -> Result<Vec<User>, StorageError> {
        super::dispatch!(self, s => s.list_users(within).await)
    }

    pub async fn get_user(&self, id: &str) -> Result<Option<User>, StorageError> {
        super::dispatch!(self, s => s.get_user(id).await)
    }

    /// Binds a new device to an existing user.
    pub async fn create_device(&self, device: &Device) -> Result<(), RegistryError> {
        super::dispatch!(self, s => s.create_device(device).await)
    }

    /// Devices of users whose area is at or below `within`.
    pub async fn list_devices(&self, within: &str) -> Result<Vec<Device>, StorageError> {
        super::dispatch!(self, s => s.list_devices(within).await)
    }

    pub async fn get_device(&self, id: &str) -> Result<Option<Device>, StorageError> {
        super::dispatch!(self, s => s.get_device(id).await)
    }

    /// Revokes a user (all their devices with them). Returns whether the user existed. On
    /// Postgres the revocation is announced, so every listening node cuts the user's open
    /// connections; a node that was not listening cuts them when it listens again
    /// (`crate::cluster`), and every node refuses the user at the next connection.
    pub async fn revoke_user(&self, id: &str) -> Result<bool, StorageError> {
        let existed = super::dispatch!(self, s => s.revoke(true, id).await)?;
        if existed {
            self.announce_revocation(&super::Revoked::User(id.to_owned()))
                .await;
        }
        Ok(existed)
    }

    /// Revokes a device. Returns whether it existed (announced like [`Store::revoke_user`]).
    pub async fn revoke_device(&self, id: &str) -> Result<bool, StorageError> {
        let existed = super::dispatch!(self, s => s.revoke(false, id).await)?;
        if existed {
            self.announce_revocation(&super::Revoked::Device(id.to_owned()))
                .await;
        }
        Ok(existed)
    }

    /// Best effort: the revocation is stored either way, and the caller cuts its own
    /// connections whatever happens here.
    async fn announce_revocation(&self, revoked: &super::Revoked) {
        if let Store::Postgres(s) = self
            && let Err(e) = s.announce_revocation(revoked).await
        {
            tracing::warn!(error = %e, ?revoked, "announcing a revocation failed; other nodes cut the connections when they next listen or connect");
        }
    }
}
