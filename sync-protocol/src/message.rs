//! [`Message`]: the automerge-repo v1 wire messages, and their CBOR encoding.
//!
//! Each websocket frame carries one message: a CBOR map with text keys whose `type` entry says
//! which message it is. The shapes follow `packages/automerge-repo/src/network/messages.ts`
//! (`sync`, `request`, `doc-unavailable`, `ephemeral`, `remote-subscription-change`,
//! `remote-heads-changed`) and `packages/automerge-repo-network-websocket/src/messages.ts`
//! (`join`, `peer`, `error`, plus `leave` from older adapters), with the wire field names
//! spelled exactly as there. Messages whose type starts with `lianxin-` belong to Lianxin's own
//! extensions (see [`crate::extension`]) and go only to peers that advertised the extension.
//!
//! [`Message::encode`] writes the bytes the JavaScript repo would write for the same message (see
//! `message/encode.rs` for the cbor-x rules it follows), so captures from either side compare
//! byte for byte. [`Message::decode`] is lenient where JavaScript is (field order, extra keys,
//! integer or float numbers, `null` or `undefined` for an absent optional field, tagged or plain
//! byte strings) and strict about everything else; it never panics, whatever the input.
//!
//! This module must not interpret the `data` of a sync message (that is [`crate::session`]'s
//! job) or decide who may send what (that is the server's).

mod decode;
mod encode;

pub use decode::{DecodeError, MAX_CHANGED_DOCS, MAX_DEPTH, MAX_EXTENSION_LEN, MAX_EXTENSIONS};

use crate::{DocumentId, PeerId, StorageId};

/// One automerge-repo wire message.
///
/// `sender_id` is what the sender *claims*; a server should check it against the peer that joined
/// on the connection rather than trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client to server, first message on a connection: "I am `sender_id`, I speak these versions".
    Join {
        sender_id: PeerId,
        /// The websocket protocol versions the client speaks; today only `"1"` exists.
        ///
        /// A `join` without this field decodes as `["1"]`: clients from before protocol
        /// versioning spoke version 1, and the JavaScript server treats a missing list that way.
        supported_protocol_versions: Vec<String>,
        peer_metadata: Option<PeerMetadata>,
    },
    /// Server to client, the answer to `join`: "I am `sender_id`, we will speak this version".
    Peer {
        sender_id: PeerId,
        target_id: PeerId,
        selected_protocol_version: String,
        peer_metadata: Option<PeerMetadata>,
    },
    /// The sender is going away. Sent by older websocket adapters; current ones just close.
    Leave { sender_id: PeerId },
    /// Like [`Message::Sync`], but sent by a peer that does not have the document yet and hopes
    /// the recipient does.
    Request {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        /// An encoded `automerge::sync::Message`.
        data: Vec<u8>,
    },
    /// One step of the Automerge sync protocol for one document.
    Sync {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        /// An encoded `automerge::sync::Message`.
        data: Vec<u8>,
    },
    /// The answer to a `request` when the sender has no such document (or will not share it).
    DocUnavailable {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
    },
    /// Application data about a document that is relayed but never stored (cursors, presence).
    Ephemeral {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        /// A random ID the originating repo picks at start-up.
        session_id: String,
        /// Increases with each ephemeral message of one session, so relays can drop repeats.
        /// A JavaScript number on the wire, so decoding accepts 0 to 2^53 - 1.
        count: u64,
        /// Opaque to the repo; usually CBOR written by the application.
        data: Vec<u8>,
    },
    /// Something went wrong; the sender closes the connection after sending this.
    Error {
        sender_id: PeerId,
        /// The peer the error is about. The JavaScript type requires it, but a server may have
        /// to reject a connection before it knows who is on the other end.
        target_id: Option<PeerId>,
        /// A human-readable description.
        message: String,
    },
    /// Ask the recipient to start or stop telling us the heads it sees for these storage IDs.
    RemoteSubscriptionChange {
        sender_id: PeerId,
        target_id: PeerId,
        add: Vec<StorageId>,
        remove: Vec<StorageId>,
    },
    /// The heads of a document as last seen at some storage IDs.
    RemoteHeadsChanged {
        sender_id: PeerId,
        target_id: PeerId,
        document_id: DocumentId,
        /// On the wire a map from storage ID to heads; kept in wire order here.
        new_heads: Vec<(StorageId, RemoteHeads)>,
    },
    /// Client to server, Lianxin extension [`EXT_CHANGED_DOCS`](crate::EXT_CHANGED_DOCS): "which
    /// documents changed since this device last synced them?". Sent only to a server that
    /// advertised the extension.
    ChangedDocsRequest {
        sender_id: PeerId,
        target_id: PeerId,
    },
    /// Server to client, the answer to [`Message::ChangedDocsRequest`]: the documents that
    /// changed since this device last synced them, which the client should sync now.
    ChangedDocs {
        sender_id: PeerId,
        target_id: PeerId,
        /// On the wire an array of document ID strings; decoding accepts at most
        /// [`MAX_CHANGED_DOCS`] of them.
        document_ids: Vec<DocumentId>,
    },
    /// Client to server, Lianxin extension [`EXT_AREA_SYNC`](crate::EXT_AREA_SYNC): "send me
    /// every document of my area that changed since `cursor`" (everything, without a cursor),
    /// then keep sending what changes. Sent only to a server that advertised the extension.
    AreaSync {
        sender_id: PeerId,
        target_id: PeerId,
        /// The `cursor` of the last [`Message::AreaBatch`] the client stored, if any.
        cursor: Option<String>,
    },
    /// Server to client, the answer to [`Message::AreaSync`], in as many messages as needed:
    /// whole documents as the server stores them (a compacted snapshot and the chunks after
    /// it, which `Automerge::load` and `load_incremental` read), without a sync negotiation.
    AreaBatch {
        sender_id: PeerId,
        target_id: PeerId,
        /// The documents of this batch, each with its stored bytes. On the wire these are two
        /// arrays of equal length, `documentIds` and `documents`; decoding accepts at most
        /// [`MAX_CHANGED_DOCS`] of them.
        documents: Vec<(DocumentId, Vec<u8>)>,
        /// Where to resume: a client that has stored this batch's documents stores the cursor,
        /// and sends it in its next [`Message::AreaSync`]. Opaque to the client. Empty for a
        /// live push, which moves no cursor.
        cursor: String,
        /// Whether this batch ends the catch-up (later batches are live news).
        complete: bool,
    },
}

/// What a peer says about itself in `join` and `peer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerMetadata {
    /// The peer's durable storage, if it has one. Only peers with one get persisted sync state.
    pub storage_id: Option<StorageId>,
    /// An ephemeral peer asks others not to persist sync state for it.
    pub is_ephemeral: bool,
    /// The Lianxin extensions the peer speaks, such as
    /// [`EXT_CHANGED_DOCS`](crate::EXT_CHANGED_DOCS).
    ///
    /// On the wire this is `lianxinExtensions`, an array of text written only when the list is
    /// not empty, so without extensions the metadata is byte for byte what automerge-repo writes.
    /// A stock peer sends no such entry, which reads as an empty list. Decoding accepts at most
    /// [`MAX_EXTENSIONS`] names of at most [`MAX_EXTENSION_LEN`] bytes each.
    pub extensions: Vec<String>,
}

impl PeerMetadata {
    /// Whether the peer listed the extension `ext` (for example
    /// [`EXT_CHANGED_DOCS`](crate::EXT_CHANGED_DOCS)) in its metadata.
    pub fn supports(&self, ext: &str) -> bool {
        self.extensions.iter().any(|e| e == ext)
    }
}

/// The heads of a document as seen by one storage, in a `remote-heads-changed` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeads {
    /// The heads, each a bs58check-encoded change hash as automerge-repo 2.x writes them.
    pub heads: Vec<String>,
    /// When these heads were seen, in milliseconds since the Unix epoch.
    ///
    /// JavaScript sends `Date.now()`, which cbor-x writes as a float64 because it exceeds
    /// 32 bits; decoding accepts any whole number JavaScript can hold exactly (0 to 2^53 - 1).
    pub timestamp: u64,
}

impl Message {
    /// The CBOR bytes of this message, as `@automerge/automerge-repo` would write them.
    pub fn encode(&self) -> Vec<u8> {
        encode::encode(self)
    }

    /// Parses one message, never panicking on malformed input.
    ///
    /// Memory use is proportional to the input length, so callers must cap frame sizes before
    /// they get here.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        decode::decode(bytes)
    }

    /// The value of the `type` field for this message.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join { .. } => "join",
            Message::Peer { .. } => "peer",
            Message::Leave { .. } => "leave",
            Message::Request { .. } => "request",
            Message::Sync { .. } => "sync",
            Message::DocUnavailable { .. } => "doc-unavailable",
            Message::Ephemeral { .. } => "ephemeral",
            Message::Error { .. } => "error",
            Message::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Message::RemoteHeadsChanged { .. } => "remote-heads-changed",
            Message::ChangedDocsRequest { .. } => "lianxin-changed-docs-request",
            Message::ChangedDocs { .. } => "lianxin-changed-docs",
            Message::AreaSync { .. } => "lianxin-area-sync",
            Message::AreaBatch { .. } => "lianxin-area-batch",
        }
    }

    /// The document this message is about, if it is about one.
    pub fn document_id(&self) -> Option<DocumentId> {
        match self {
            Message::Request { document_id, .. }
            | Message::Sync { document_id, .. }
            | Message::DocUnavailable { document_id, .. }
            | Message::Ephemeral { document_id, .. }
            | Message::RemoteHeadsChanged { document_id, .. } => Some(*document_id),
            Message::Join { .. }
            | Message::Peer { .. }
            | Message::Leave { .. }
            | Message::Error { .. }
            | Message::RemoteSubscriptionChange { .. }
            | Message::ChangedDocsRequest { .. }
            | Message::ChangedDocs { .. }
            | Message::AreaSync { .. }
            | Message::AreaBatch { .. } => None,
        }
    }

    /// The peer that claims to have sent this message.
    pub fn sender_id(&self) -> &PeerId {
        match self {
            Message::Join { sender_id, .. }
            | Message::Peer { sender_id, .. }
            | Message::Leave { sender_id }
            | Message::Request { sender_id, .. }
            | Message::Sync { sender_id, .. }
            | Message::DocUnavailable { sender_id, .. }
            | Message::Ephemeral { sender_id, .. }
            | Message::Error { sender_id, .. }
            | Message::RemoteSubscriptionChange { sender_id, .. }
            | Message::RemoteHeadsChanged { sender_id, .. }
            | Message::ChangedDocsRequest { sender_id, .. }
            | Message::ChangedDocs { sender_id, .. }
            | Message::AreaSync { sender_id, .. }
            | Message::AreaBatch { sender_id, .. } => sender_id,
        }
    }

    /// The peer this message is addressed to, if it names one.
    pub fn target_id(&self) -> Option<&PeerId> {
        match self {
            Message::Peer { target_id, .. }
            | Message::Request { target_id, .. }
            | Message::Sync { target_id, .. }
            | Message::DocUnavailable { target_id, .. }
            | Message::Ephemeral { target_id, .. }
            | Message::RemoteSubscriptionChange { target_id, .. }
            | Message::RemoteHeadsChanged { target_id, .. }
            | Message::ChangedDocsRequest { target_id, .. }
            | Message::ChangedDocs { target_id, .. }
            | Message::AreaSync { target_id, .. }
            | Message::AreaBatch { target_id, .. } => Some(target_id),
            Message::Error { target_id, .. } => target_id.as_ref(),
            Message::Join { .. } | Message::Leave { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests;
