//! `/v1/admin/*`: the area tree, users and devices, for administrators. An administrator
//! manages only what lies inside their own area. Revoking a user or device also cuts their
//! open connections in this process at once.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::{Authenticated, Identity};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::registry::{Area, Device, RegistryError, User};

/// Roles a user may have.
pub const ROLES: [&str; 7] = [
    "secretary",
    "grid_worker",
    "volunteer",
    "station_staff",
    "department_handler",
    "supervisor",
    "admin",
];

/// Levels of the area tree, top down.
pub const LEVELS: [&str; 7] = [
    "city",
    "district",
    "street",
    "community",
    "compound",
    "grid",
    "building",
];

/// Whether `inner` is `outer` or lies below it (whole path segments).
pub fn area_within(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner == outer
        || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
}

/// Checks the shape of an area path: `/seg/seg…`, segments of lowercase ASCII letters, digits
/// and `-`, or other (non-ASCII) letters; no wildcards of SQL `LIKE` can appear.
pub fn valid_area_path(path: &str) -> bool {
    path.len() <= 512
        && path.starts_with('/')
        && path[1..].split('/').count() <= 8
        && path[1..].split('/').all(|seg| {
            !seg.is_empty()
                && seg.chars().all(|c| {
                    c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '-'
                        || (!c.is_ascii() && c.is_alphanumeric())
                })
        })
}

fn require_admin(identity: &Identity) -> Result<(), ApiError> {
    if identity.user.role == "admin" {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only administrators manage areas, users and devices".into(),
        ))
    }
}

fn require_within(identity: &Identity, area: &str) -> Result<(), ApiError> {
    if area_within(&identity.user.area, area) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "{area} is outside your area {}",
            identity.user.area
        )))
    }
}

/// The one answer to creating a user or device under an ID that cannot be had: taken by a
/// user or device inside the administrator's area or outside it, revoked or not, or reserved
/// (`server`).
///
/// User and device IDs are global (a token names them, whatever the area), so whoever may
/// create one learns whether an ID is free: that much cannot be hidden from a creator. What
/// must not leak is anything about an entry outside the administrator's area. Answering "user
/// … already exists" for it confirmed that a user by that ID is registered somewhere, and any
/// answer that differed between "taken outside" and some other case would be an oracle too
/// (even one fixed 409 body for "exists", since the administrator can list their own area and
/// so tell "exists elsewhere" apart). So one answer covers every reason an ID is refused, and
/// it says neither where nor what holds the ID (user or device, active or revoked), nor that a
/// reserved ID is reserved: from the answer alone, "taken outside my area" cannot be told
/// from "reserved". Reserved IDs belong to the same answer for that reason, though they never
/// exist in the registry. Probing IDs one by one is slowed by the per-user HTTP rate limit
/// and each refusal is logged with the administrator's ID.
fn unavailable(identity: &Identity, id: &str) -> ApiError {
    tracing::info!(%id, by = %identity.user.id, "creation refused: ID not available");
    ApiError::Conflict(format!("the ID {id:?} is not available; choose another"))
}

/// `RegistryError::Exists` of a user or device creation as [`unavailable`].
fn taken(identity: &Identity, id: &str) -> impl FnOnce(RegistryError) -> ApiError {
    move |e| match e {
        RegistryError::Exists(_) => unavailable(identity, id),
        other => other.into(),
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Exists(what) => ApiError::Conflict(format!("{what} already exists")),
            RegistryError::Missing(what) => ApiError::Invalid(format!("{what} does not exist")),
            RegistryError::Storage(e) => ApiError::Unexpected(e.into()),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewArea {
    pub path: String,
    pub name: String,
    pub level: String,
}

#[utoipa::path(post, path = "/v1/admin/areas", tag = "admin", security(("bearer" = [])),
    request_body = NewArea,
    responses((status = 201, description = "Created", body = Area),
              (status = 403, description = "Not an administrator of that area"),
              (status = 409, description = "It exists")))]
pub async fn create_area(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Json(new): Json<NewArea>,
) -> Result<(StatusCode, Json<Area>), ApiError> {
    require_admin(&identity)?;
    if !valid_area_path(&new.path) {
        return Err(ApiError::Invalid(format!(
            "{:?} is not an area path",
            new.path
        )));
    }
    if !LEVELS.contains(&new.level.as_str()) {
        return Err(ApiError::Invalid(format!("unknown level {:?}", new.level)));
    }
    require_within(&identity, &new.path)?;
    let area = Area {
        path: new.path,
        name: new.name,
        level: new.level,
    };
    state.store.create_area(&area).await?;
    Ok((StatusCode::CREATED, Json(area)))
}

#[utoipa::path(get, path = "/v1/admin/areas", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Areas within the administrator's area", body = Vec<Area>)))]
pub async fn list_areas(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
) -> Result<Json<Vec<Area>>, ApiError> {
    require_admin(&identity)?;
    Ok(Json(
        state
            .store
            .list_areas(&identity.user.area)
            .await
            .map_err(anyhow::Error::from)?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewUser {
    pub id: String,
    pub name: String,
    pub role: String,
    pub area: String,
    pub department: Option<String>,
}

#[utoipa::path(post, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])),
    request_body = NewUser,
    responses((status = 201, description = "Created", body = User),
              (status = 403, description = "Not an administrator of that area"),
              (status = 409, description = "The ID is not available (taken anywhere, or reserved); \
                the answer is the same whatever holds it, so it says nothing about other areas")))]
pub async fn create_user(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Json(new): Json<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    require_admin(&identity)?;
    if !ROLES.contains(&new.role.as_str()) {
        return Err(ApiError::Invalid(format!("unknown role {:?}", new.role)));
    }
    require_within(&identity, &new.area)?;
    if new.id == lianxin_protocol::domain::SERVER_USER {
        return Err(unavailable(&identity, &new.id));
    }
    let user = User {
        id: new.id,
        name: new.name,
        role: new.role,
        area: new.area,
        department: new.department,
        revoked: false,
    };
    state
        .store
        .create_user(&user)
        .await
        .map_err(taken(&identity, &user.id))?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Users within the administrator's area", body = Vec<User>)))]
pub async fn list_users(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
) -> Result<Json<Vec<User>>, ApiError> {
    require_admin(&identity)?;
    Ok(Json(
        state
            .store
            .list_users(&identity.user.area)
            .await
            .map_err(anyhow::Error::from)?,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewDevice {
    pub id: String,
    pub user: String,
    #[serde(default)]
    pub label: String,
}

/// The user `id`, if it exists inside the administrator's area (else the same "not found" as
/// for a missing one: no existence leak).
async fn user_in_scope(state: &AppState, identity: &Identity, id: &str) -> Result<User, ApiError> {
    match state
        .store
        .get_user(id)
        .await
        .map_err(anyhow::Error::from)?
    {
        Some(user) if area_within(&identity.user.area, &user.area) => Ok(user),
        _ => Err(ApiError::NotFound(format!("user {id} not found"))),
    }
}

#[utoipa::path(post, path = "/v1/admin/devices", tag = "admin", security(("bearer" = [])),
    request_body = NewDevice,
    responses((status = 201, description = "Created", body = Device),
              (status = 403, description = "Not an administrator of that area"),
              (status = 404, description = "No such user in the administrator's area"),
              (status = 409, description = "The ID is not available (taken anywhere); the answer \
                is the same whatever holds it, so it says nothing about other areas")))]
pub async fn create_device(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Json(new): Json<NewDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    require_admin(&identity)?;
    user_in_scope(&state, &identity, &new.user).await?;
    let device = Device {
        id: new.id,
        user_id: new.user,
        label: new.label,
        revoked: false,
    };
    state
        .store
        .create_device(&device)
        .await
        .map_err(taken(&identity, &device.id))?;
    Ok((StatusCode::CREATED, Json(device)))
}

#[utoipa::path(get, path = "/v1/admin/devices", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Devices of users within the administrator's area", body = Vec<Device>)))]
pub async fn list_devices(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
) -> Result<Json<Vec<Device>>, ApiError> {
    require_admin(&identity)?;
    Ok(Json(
        state
            .store
            .list_devices(&identity.user.area)
            .await
            .map_err(anyhow::Error::from)?,
    ))
}

#[utoipa::path(post, path = "/v1/admin/users/{id}/revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "User ID")),
    responses((status = 204, description = "Revoked; open connections are cut"),
              (status = 404, description = "No such user in the administrator's area")))]
pub async fn revoke_user(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&identity)?;
    user_in_scope(&state, &identity, &id).await?;
    state
        .store
        .revoke_user(&id)
        .await
        .map_err(anyhow::Error::from)?;
    let cut = state.live.revoke_user(&id);
    tracing::info!(user = %id, connections_cut = cut, by = %identity.user.id, "user revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/admin/devices/{id}/revoke", tag = "admin", security(("bearer" = [])),
    params(("id" = String, Path, description = "Device ID")),
    responses((status = 204, description = "Revoked; open connections are cut"),
              (status = 404, description = "No such device in the administrator's area")))]
pub async fn revoke_device(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_admin(&identity)?;
    let device = state
        .store
        .get_device(&id)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| ApiError::NotFound(format!("device {id} not found")))?;
    user_in_scope(&state, &identity, &device.user_id)
        .await
        .map_err(|_| ApiError::NotFound(format!("device {id} not found")))?;
    state
        .store
        .revoke_device(&id)
        .await
        .map_err(anyhow::Error::from)?;
    let cut = state.live.revoke_device(&id);
    tracing::info!(device = %id, connections_cut = cut, by = %identity.user.id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_containment_is_by_whole_segments() {
        assert!(area_within("/a/b", "/a/b"));
        assert!(area_within("/a/b", "/a/b/c"));
        assert!(!area_within("/a/b", "/a/bc"));
        assert!(!area_within("/a/b/c", "/a/b"));
        assert!(area_within("/", "/anything"));
    }

    #[test]
    fn area_paths_admit_no_sql_wildcards() {
        assert!(valid_area_path("/jining/rencheng/street-3"));
        assert!(valid_area_path("/济宁/任城"));
        assert!(!valid_area_path("/a/b_c"));
        assert!(!valid_area_path("/a/%"));
        assert!(!valid_area_path("/a//b"));
        assert!(!valid_area_path("a/b"));
        assert!(!valid_area_path("/a/b/"));
    }
}
