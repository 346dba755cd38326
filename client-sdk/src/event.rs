//! What the client tells the app: sync status, document changes with their patches, and errors
//! the server reported for this device's changes.
//!
//! Events go out on a bounded broadcast channel ([`EVENT_CAPACITY`]): an app that does not keep
//! up loses the oldest events (its receiver reports how many), never blocks syncing. The current
//! status is also always readable with `Client::status`.

use automerge::Patch;
use lianxin_protocol::DocumentId;

/// Capacity of the event channel.
pub const EVENT_CAPACITY: usize = 1024;

/// Where the client stands with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Not connected (no server configured, network down, or waiting to retry).
    Offline,
    /// Opening a connection.
    Connecting,
    /// Connected, with documents still being exchanged.
    Syncing,
    /// Connected, and the server has every local change.
    UpToDate,
}

/// The sync state plus how much is waiting to go up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStatus {
    pub state: SyncState,
    /// Local changes the server has not acknowledged yet.
    pub unsent_changes: usize,
}

/// Whose change a [`ClientEvent::DocumentChanged`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Made on this device.
    Local,
    /// Arrived from the server.
    Remote,
}

/// Something the app may want to react to.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// The sync status changed.
    Status(SyncStatus),
    /// A document changed; `patches` say how.
    DocumentChanged {
        id: DocumentId,
        origin: Origin,
        patches: Vec<Patch>,
    },
    /// The server refused something this device sent.
    ServerError {
        document: Option<DocumentId>,
        message: String,
    },
    /// The server refused a change of this device. It was removed from the document, with the
    /// changes that depend on it, and set aside (`Client::rejected_changes`).
    ChangeRejected {
        document: DocumentId,
        change: String,
        reason: String,
        /// How many changes were removed in all (the refused one and its dependents).
        removed: usize,
    },
    /// The server refused the token: supply a fresh one with `Client::set_token`.
    TokenRejected { reason: String },
}
