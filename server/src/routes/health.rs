//! Liveness and readiness. `/readyz` is what a load balancer asks: ready when the database
//! answers, the node hears the other nodes' changes and it is not draining.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::error::ApiError;

/// How long `/readyz` waits for the database.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The process can serve: the database answers, it hears the other nodes' changes (see
/// `crate::cluster`), and it is not draining.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Ready"),
              (status = 503, description = "Draining, not hearing other nodes, or the database does not answer")))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    if state.node.draining() {
        return Err(ApiError::Unavailable("draining".into()));
    }
    // A load balancer waits a second or two for an answer: say "not ready" before it gives
    // up, rather than waiting out the pool's acquire timeout.
    let ping = tokio::time::timeout(PING_TIMEOUT, state.store.ping()).await;
    if let Err(e) = ping
        .map_err(|_| "no answer in time".to_owned())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        state.metrics.storage_errors.inc();
        tracing::warn!(error = %e, "readiness check failed");
        return Err(ApiError::Unavailable("database unavailable".into()));
    }
    if !state.node.listening() {
        return Err(ApiError::Unavailable(
            "not hearing other nodes' changes yet".into(),
        ));
    }
    Ok(Json(json!({
        "status": "ready",
        "storage": state.store.backend(),
        "node": state.node.id,
    })))
}
