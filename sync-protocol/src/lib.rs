//! The sans-IO core of Lianxin: the identifiers, wire messages and per-document sync sessions
//! that the server and the client SDK share.
//!
//! Everything here is compatible with `@automerge/automerge-repo` 2.x and its websocket adapter,
//! so a stock JavaScript repo can talk to a Lianxin server. The crate turns bytes into values and
//! values into bytes, and tells its caller what to persist and what to send. It never touches a
//! socket, a file, a clock or a database, and it never spawns anything: that is the job of
//! `server` and `client-sdk`, which makes every rule in here testable with plain `#[test]`s over
//! an in-memory loop.
//!
//! # Layout
//!
//! - [`chunk`]: [`chunk::inspect`], which bounds what a peer's Automerge chunks inflate to
//!   before Automerge sees them.
//! - [`document_id`]: [`DocumentId`], the 16-byte document identifier, with its bs58check string
//!   form and its `automerge:` URL form.
//! - [`peer_id`]: [`PeerId`] and [`StorageId`], the string identifiers peers announce.
//! - [`message`]: [`Message`], the automerge-repo v1 wire messages plus Lianxin's `lianxin-`
//!   extension messages, and their CBOR encoding, byte-compatible with what `cbor-x` produces in
//!   the JavaScript repo.
//! - [`extension`]: the names of Lianxin's extensions to the protocol, such as
//!   [`EXT_CHANGED_DOCS`], which peers advertise in [`PeerMetadata`] and stock automerge-repo
//!   peers never see.
//! - [`session`]: [`DocSession`], one sync conversation about one document with one peer, on top
//!   of `automerge::sync`, returning [`Effects`] (what to persist, what to send).
//! - [`handshake`]: the `join` / `peer` / `error` exchange that opens a websocket connection.
//! - [`domain`]: the field's document kinds and their rules: area tree, roles and the permission
//!   matrix, versioned schemas, write validation, the request state machine, due times,
//!   listening days, order arbitration, and builders for well-formed documents.

#![forbid(unsafe_code)]

pub mod chunk;
pub mod document_id;
pub mod domain;
pub mod extension;
pub mod handshake;
pub mod message;
pub mod peer_id;
pub mod session;

pub use document_id::{DocumentId, DocumentIdError};
pub use extension::{EXT_AREA_SYNC, EXT_CHANGED_DOCS};
pub use handshake::{HandshakeError, PROTOCOL_V1, RemotePeer};
pub use message::{DecodeError, Message, PeerMetadata, RemoteHeads};
pub use peer_id::{PeerId, PeerIdError, StorageId};
pub use session::{DocSession, Effects, SessionError};
