//! HTTP routes, grouped by resource: health checks, metrics, administration of areas, users
//! and devices, the sync websocket, the supervisor read model and the audit trail.
//!
//! Every route is registered through `utoipa_axum`'s `routes!`, which adds the handler to the
//! router and its `#[utoipa::path]` description to the OpenAPI document served at
//! `/openapi.json`: a route cannot exist without being documented.

pub mod admin;
pub mod health;
pub mod history;
pub mod metrics;
pub mod read;
pub mod sync;

use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::Request;
use axum::routing::get;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The parts of the OpenAPI document that are not on a handler.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lianxin",
        description = "Offline-first sync server for neighbourhood governance teams: the sync \
                       websocket, administration, the supervisor read model and the audit trail."
    ),
    paths(openapi_json),
    modifiers(&BearerAuth),
    tags(
        (name = "read model", description = "Merged state of an area: lists, figures, CSV"),
        (name = "audit", description = "Who did what: document and area history, changes feed"),
        (name = "admin", description = "Areas, users and devices"),
        (name = "sync", description = "The sync websocket"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
struct ApiDoc;

/// Declares the bearer-token scheme the routes refer to.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// The OpenAPI document of every route, generated from the handlers' annotations. (This
/// function only carries the annotation; [`router`] serves the document.)
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This OpenAPI document")))]
#[allow(dead_code)]
async fn openapi_json() {}

/// Every route with its OpenAPI description; `/openapi.json` is filled in by [`router`].
pub fn documented() -> (Router<AppState>, utoipa::openapi::OpenApi, Router<AppState>) {
    let (plain, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(admin::list_areas, admin::create_area))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::revoke_user))
        .routes(routes!(admin::list_devices, admin::create_device))
        .routes(routes!(admin::revoke_device))
        .routes(routes!(read::households))
        .routes(routes!(read::visits))
        .routes(routes!(read::requests))
        .routes(routes!(read::orders))
        .routes(routes!(read::order_summary))
        .routes(routes!(read::station_summary))
        .routes(routes!(read::listening_days))
        .routes(routes!(read::stats))
        .routes(routes!(history::document_history))
        .routes(routes!(history::area_history))
        .split_for_parts();
    // Routes without the request timeout: the websocket and the long-lived changes feed.
    let (long, long_api) = OpenApiRouter::new()
        .routes(routes!(sync::upgrade))
        .routes(routes!(history::changes))
        .split_for_parts();
    let mut api = api;
    api.merge(long_api);
    (plain, api, long)
}

/// The whole router.
pub fn router(state: AppState) -> Router {
    let timeout = Duration::from_secs(state.settings.limits.http_timeout_secs);
    let (plain, api, long) = documented();
    let api = std::sync::Arc::new(api);
    let plain = plain
        .route(
            "/openapi.json",
            get(move || {
                let api = api.clone();
                async move { axum::Json(api.as_ref().clone()) }
            }),
        )
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    long.merge(plain)
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
