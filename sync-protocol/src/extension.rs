//! The names of the Lianxin extensions to the automerge-repo protocol, which only Lianxin peers
//! ever see.
//!
//! A peer lists the extensions it speaks in the `lianxinExtensions` entry of its
//! `peerMetadata` (see [`PeerMetadata::extensions`](crate::PeerMetadata::extensions)). A stock
//! automerge-repo peer ignores that entry, and the entry is written only when the list is not
//! empty, so a Lianxin peer that speaks no extension writes exactly what the JavaScript repo
//! writes. A peer sends an extension's messages only to a peer that listed the extension;
//! everyone else never sees them, which is what keeps the extensions compatible with
//! automerge-repo.
//!
//! This module only names extensions. The messages they add are [`Message`](crate::Message)
//! variants like any other, and deciding who gets to use an extension is the server's job.

/// The changed-documents extension, which makes a reconnect cheap.
///
/// A server that lists it in the metadata of its `peer` message answers a
/// `lianxin-changed-docs-request` ([`Message::ChangedDocsRequest`]) with one
/// `lianxin-changed-docs` ([`Message::ChangedDocs`]) listing the documents that changed since
/// this device last synced them. The client then syncs just those, so a reconnect costs a
/// handful of messages rather than one sync per stored document. A client sends the request only
/// to a server that advertised the extension; stock automerge-repo peers never see either
/// message.
///
/// [`Message::ChangedDocsRequest`]: crate::Message::ChangedDocsRequest
/// [`Message::ChangedDocs`]: crate::Message::ChangedDocs
pub const EXT_CHANGED_DOCS: &str = "lianxin/changed-docs/1";

/// The area-sync extension: catch-up and bootstrap by area, not by document.
///
/// A server that lists it answers a `lianxin-area-sync` ([`Message::AreaSync`]) with
/// `lianxin-area-batch` messages ([`Message::AreaBatch`]) carrying, as stored, every document
/// the user may read in their area that changed since the client's cursor (all of them, for a
/// client without one), the last batch marked `complete`. The number of messages grows with
/// what changed, not with what the device holds, and no document is negotiated one by one.
/// Afterwards the server keeps sending batches as documents of the area change. Each batch
/// carries a cursor; a client that stores it after storing the batch's documents resumes from
/// there, so a bootstrap cut halfway continues where it stopped.
///
/// [`Message::AreaSync`]: crate::Message::AreaSync
/// [`Message::AreaBatch`]: crate::Message::AreaBatch
pub const EXT_AREA_SYNC: &str = "lianxin/area-sync/1";
