//! `GET /v1/sync`: authenticates, takes a slot under the connection limit, and upgrades to the
//! websocket served by `connection::run`. Refusals happen here, before the upgrade, as plain
//! HTTP errors with a JSON body (401 for tokens, 503 when full).

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::Response;

use crate::auth::Authenticated;
use crate::connection;
use crate::error::ApiError;
use crate::state::AppState;

/// Frames and messages above the configured limit are read up to this multiple of it, so that
/// a slightly oversized message gets a clear `error` message rather than a dropped socket.
const HARD_LIMIT_FACTOR: usize = 4;

/// Initial read buffer of a websocket connection.
const READ_BUFFER: usize = 4 * 1024;

/// The sync websocket: the automerge-repo protocol (CBOR messages), authenticated by
/// `Authorization: Bearer` or `?token=`.
#[utoipa::path(get, path = "/v1/sync", tag = "sync", security(("bearer" = [])),
    responses((status = 101, description = "Switching to the websocket"),
              (status = 401, description = "Missing or rejected token"),
              (status = 503, description = "Too many connections, or the server is draining")))]
pub async fn upgrade(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(|e| ApiError::Invalid(format!("expected a websocket upgrade: {e}")))?;
    if state.node.draining() {
        // The load balancer has been told (`/readyz`); a device that still got here retries.
        return Err(ApiError::Unavailable(
            "this server is shutting down; reconnect to another".into(),
        ));
    }
    let permit = state
        .connection_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            state.metrics.connections_rejected.inc();
            ApiError::Unavailable("too many connections; retry later".into())
        })?;
    let hard_limit = state
        .settings
        .limits
        .max_message_bytes
        .saturating_mul(HARD_LIMIT_FACTOR);
    let tracker = state.tracker.clone();
    Ok(ws
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        // tungstenite reads into a 128 KiB buffer per connection by default, which an idle
        // phone never needs: most messages are a few hundred bytes, and a larger one is read
        // in several chunks. With 9,000 idle connections this took the process from 1,270 MiB
        // to 180 MiB (bench W6).
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| {
            tracker.track_future(connection::run(socket, state, identity, permit))
        }))
}
