//! HTTP routes, grouped by resource: health checks, metrics, administration of areas, users
//! and devices, and the sync websocket.

pub mod admin;
pub mod health;
pub mod metrics;
pub mod sync;

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::Request;
use axum::routing::{get, post};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

/// The whole router.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.limits.http_timeout_secs);
    let plain = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route(
            "/v1/admin/areas",
            get(admin::list_areas).post(admin::create_area),
        )
        .route(
            "/v1/admin/users",
            get(admin::list_users).post(admin::create_user),
        )
        .route("/v1/admin/users/{id}/revoke", post(admin::revoke_user))
        .route(
            "/v1/admin/devices",
            get(admin::list_devices).post(admin::create_device),
        )
        .route("/v1/admin/devices/{id}/revoke", post(admin::revoke_device))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    Router::new()
        .route("/v1/sync", get(sync::upgrade))
        .merge(plain)
        .layer(
            // Spans are keyed on the matched route, not the raw URI: low cardinality, and the
            // `?token=` query never reaches a log line.
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let route = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("unmatched");
                tracing::info_span!("http", method = %request.method(), route)
            }),
        )
        .with_state(state)
}
