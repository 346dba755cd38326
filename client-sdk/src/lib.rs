//! The Lianxin client SDK: what a field app embeds so that a worker never waits for the network
//! and nothing recorded on the phone is lost. Documents are Automerge documents in a local
//! SQLite store; every edit is durable before the call returns; a background task syncs with a
//! Lianxin server (or any automerge-repo websocket server) whenever one is reachable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lianxin_client::ClientError> {
//! use std::time::Duration;
//! use automerge::{ROOT, transaction::Transactable};
//! use lianxin_client::{Client, ClientConfig};
//!
//! let client = Client::open("visits.db", ClientConfig::default()).await?;
//! // Works offline: the visit is stored at once.
//! let visit = client
//!     .create(|tx| tx.put(ROOT, "household", "3-2-401").map(|_| ()))
//!     .await?;
//! // Sync in the background whenever the server is reachable.
//! client.start_sync("ws://127.0.0.1:8080/v1/sync", "<token>").await;
//! client.wait_synced(visit, Duration::from_secs(30)).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`][]: [`Client`], the handle an app holds: create, change, read, fetch, sync.
//! - [`store`][]: [`Store`], the SQLite file with documents, sync states and settings.
//! - `sync`: the background task that reconnects with [`backoff`][].
//! - `connection`: one websocket connection: handshake, catch-up, applying and sending.
//! - [`event`][]: [`ClientEvent`] and [`SyncStatus`] for the app.
//! - [`cli`][]: the `lianxin` command line, one device over a store file.
//! - [`workflows`][]: the typed field operations (visits, requests, orders, station logs).
//! - [`error`][]: [`ClientError`], [`StoreError`].
//!
//! The protocol itself (messages, sync sessions) is `lianxin-protocol`'s; this crate adds IO.

#![forbid(unsafe_code)]

pub mod backoff;
pub mod cli;
pub mod client;
mod connection;
pub mod error;
pub mod event;
pub mod store;
mod sync;
pub mod workflows;

pub use client::{Client, ClientConfig, ClientStats};
pub use error::{ClientError, StoreError};
pub use event::{ClientEvent, Origin, SyncState, SyncStatus};
pub use lianxin_protocol::DocumentId;
pub use store::Store;
pub use workflows::{Author, OrderOutcome, Workflows};
