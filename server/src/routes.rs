//! HTTP routes, grouped by resource: health checks, metrics, and the sync websocket.

pub mod health;
pub mod metrics;
pub mod sync;

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::Request;
use axum::routing::get;
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
