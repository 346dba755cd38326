//! The Lianxin client SDK: Automerge documents that a field device edits with or without a
//! network, synced with a Lianxin server (or any automerge-repo websocket server) when one is
//! reachable.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lianxin_client::ClientError> {
//! use lianxin_client::{Client, ClientConfig};
//! use automerge::{ROOT, transaction::Transactable};
//!
//! let client = Client::new(ClientConfig::default());
//! // Works offline: the document exists locally at once.
//! let id = client.create(|tx| tx.put(ROOT, "household", "3-2-401").map(|_| ()))?;
//! client.connect("ws://127.0.0.1:8080/v1/sync", "<token>").await?;
//! client.wait_synced(id, std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`client`][]: [`Client`], the handle an app holds: create, change, read, open, sync.
//! - [`connection`][]: the background task that speaks the protocol over one websocket.
//! - [`store`][]: where documents and their sync state live ([`DocStore`]); in memory for now,
//!   the durable SQLite store slots in behind the same trait.
//! - [`error`][]: [`ClientError`].
//!
//! The protocol itself (messages, sync sessions) is `lianxin-protocol`'s; this crate adds IO.

#![forbid(unsafe_code)]

pub mod client;
pub mod connection;
pub mod error;
pub mod store;

pub use client::{Client, ClientConfig, ClientStats};
pub use error::ClientError;
pub use lianxin_protocol::DocumentId;
pub use store::{DocStore, MemoryStore};
