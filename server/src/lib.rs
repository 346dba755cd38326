//! Lianxin sync server: merges Automerge documents edited offline on field devices durably
//! into Postgres (or the embedded SQLite default) and pushes them to every connected device
//! that has them open. Speaks the automerge-repo websocket protocol, so stock automerge-repo
//! clients work alongside our SDK.
//!
//! # Layout
//! - [`startup`]: `Application::build` and `run_until`; the shutdown signal.
//! - [`settings`]: typed settings from defaults, a file and `LIANXIN_*` variables.
//! - [`cli`]: the `lianxin-server` command line (`serve`, `migrate`, `token`).
//! - [`state`]: the one `AppState`.
//! - [`auth`]: token verification and signing; the `Authenticated` extractor.
//! - [`routes`]: HTTP routes: `/v1/sync`, `/healthz`, `/readyz`, `/metrics`.
//! - [`connection`]: one websocket connection: handshake, routing, outbox.
//! - [`hub`]: documents in use, one actor each, with leases, idle eviction, the cap on loaded
//!   documents and the area subscriptions.
//! - [`outbox`]: a connection's send queue, bounded in messages and bytes.
//! - [`committer`]: group commit of accepted changes.
//! - [`cluster`]: several nodes on one Postgres: hearing the others' changes, readiness,
//!   the node ID.
//! - [`area_sync`]: catch-up and bootstrap by area for one connection.
//! - [`live`]: open connections and changes-feed streams by user and device, so revocation
//!   cuts them at once.
//! - [`rate_limit`]: the per-user rate limit of the HTTP API.
//! - [`storage`]: the `Store` with its Postgres and SQLite backends (the only sqlx user),
//!   including the registry of areas, users and devices.
//! - [`metrics`]: Prometheus counters, gauges and the merge latency histogram.
//! - [`error`]: `ApiError`, the one error type of the HTTP surface.
//! - [`telemetry`]: log set-up.

#![forbid(unsafe_code)]

pub mod area_sync;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod committer;
pub mod connection;
pub mod error;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod outbox;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;

pub use settings::Settings;
pub use startup::Application;
