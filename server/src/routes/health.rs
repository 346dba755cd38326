//! Liveness and readiness. `/readyz` checks the database; it is what a load balancer asks.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The process can serve: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"), (status = 503, description = "The database does not answer")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.ping().await.map_err(|e| {
        state.metrics.storage_errors.inc();
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::Unavailable("database unavailable".into())
    })?;
    Ok(Json(
        json!({ "status": "ready", "storage": state.store.backend() }),
    ))
}
