//! Writes a [`Message`] as the bytes `@automerge/automerge-repo` would send for it.
//!
//! The JavaScript repo encodes with `new Encoder({ tagUint8Array: false, useRecords: false })`
//! from cbor-x (`packages/automerge-repo/src/helpers/cbor.ts`). Reading cbor-x's `encode.js`, that
//! configuration writes:
//!
//! - every plain object as a map with a two-byte length (`0xb9 nn nn`), even a small one, because
//!   it reserves the length before walking the keys and patches it afterwards;
//! - keys in the object's insertion order, which is the order the repo's object literals list
//!   them in, and `senderId` last for repo messages because `NetworkSubsystem` spreads the
//!   message and appends it;
//! - strings, byte strings and arrays with the shortest CBOR header;
//! - `Uint8Array` as a plain byte string (no tag 64, that is what `tagUint8Array: false` is for);
//! - a number as an integer when it is whole and fits 32 bits, and as a float64 otherwise;
//! - `true` and `false` as simple values.
//!
//! The `lianxin-` messages have no JavaScript original; they follow the same rules, with the key
//! order a repo message would get (`type`, `targetId`, the payload, then `senderId`), so that a
//! JavaScript Lianxin client sending them through `NetworkSubsystem` writes the same bytes.
//!
//! This module only writes. It must not reorder, drop or validate fields: the [`Message`] it is
//! given is already valid by construction.

use super::{Message, PeerMetadata, RemoteHeads};

pub(super) fn encode(message: &Message) -> Vec<u8> {
    let mut w = Writer::default();
    match message {
        Message::Join {
            sender_id,
            supported_protocol_versions,
            peer_metadata,
        } => {
            w.object(3 + usize::from(peer_metadata.is_some()));
            w.text_field("type", "join");
            w.text_field("senderId", sender_id.as_str());
            if let Some(meta) = peer_metadata {
                w.text("peerMetadata");
                w.peer_metadata(meta);
            }
            w.text("supportedProtocolVersions");
            w.array(supported_protocol_versions.len());
            for version in supported_protocol_versions {
                w.text(version);
            }
        }
        Message::Peer {
            sender_id,
            target_id,
            selected_protocol_version,
            peer_metadata,
        } => {
            w.object(4 + usize::from(peer_metadata.is_some()));
            w.text_field("type", "peer");
            w.text_field("senderId", sender_id.as_str());
            if let Some(meta) = peer_metadata {
                w.text("peerMetadata");
                w.peer_metadata(meta);
            }
            w.text_field("selectedProtocolVersion", selected_protocol_version);
            w.text_field("targetId", target_id.as_str());
        }
        Message::Leave { sender_id } => {
            w.object(2);
            w.text_field("type", "leave");
            w.text_field("senderId", sender_id.as_str());
        }
        Message::AreaSync {
            sender_id,
            target_id,
            cursor,
        } => {
            w.object(3 + usize::from(cursor.is_some()));
            w.text_field("type", "lianxin-area-sync");
            w.text_field("targetId", target_id.as_str());
            if let Some(cursor) = cursor {
                w.text_field("cursor", cursor);
            }
            w.text_field("senderId", sender_id.as_str());
        }
        Message::AreaBatch {
            sender_id,
            target_id,
            documents,
            cursor,
            complete,
        } => {
            w.object(7);
            w.text_field("type", "lianxin-area-batch");
            w.text_field("targetId", target_id.as_str());
            w.text("documentIds");
            w.array(documents.len());
            for (document_id, _) in documents {
                w.text(&document_id.to_string());
            }
            w.text("documents");
            w.array(documents.len());
            for (_, data) in documents {
                w.bytes(data);
            }
            w.text_field("cursor", cursor);
            w.text("complete");
            w.bool(*complete);
            w.text_field("senderId", sender_id.as_str());
        }
        Message::Request {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            w.object(5);
            w.text_field("type", "request");
            w.text_field("targetId", target_id.as_str());
            w.text_field("documentId", &document_id.to_string());
            w.text("data");
            w.bytes(data);
            w.text_field("senderId", sender_id.as_str());
        }
        Message::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        } => {
            // DocSynchronizer lists `data` before `documentId` here, unlike in `request`.
            w.object(5);
            w.text_field("type", "sync");
            w.text_field("targetId", target_id.as_str());
            w.text("data");
            w.bytes(data);
            w.text_field("documentId", &document_id.to_string());
            w.text_field("senderId", sender_id.as_str());
        }
        Message::DocUnavailable {
            sender_id,
            target_id,
            document_id,
        } => {
            w.object(4);
            w.text_field("type", "doc-unavailable");
            w.text_field("documentId", &document_id.to_string());
            w.text_field("targetId", target_id.as_str());
            w.text_field("senderId", sender_id.as_str());
        }
        Message::Ephemeral {
            sender_id,
            target_id,
            document_id,
            session_id,
            count,
            data,
        } => {
            w.object(7);
            w.text_field("type", "ephemeral");
            w.text_field("targetId", target_id.as_str());
            w.text_field("documentId", &document_id.to_string());
            w.text("data");
            w.bytes(data);
            w.text("count");
            w.js_number(*count);
            w.text_field("sessionId", session_id);
            w.text_field("senderId", sender_id.as_str());
        }
        Message::Error {
            sender_id,
            target_id,
            message,
        } => {
            w.object(3 + usize::from(target_id.is_some()));
            w.text_field("type", "error");
            w.text_field("senderId", sender_id.as_str());
            w.text_field("message", message);
            if let Some(target_id) = target_id {
                w.text_field("targetId", target_id.as_str());
            }
        }
        Message::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            // JavaScript leaves out `add` or `remove` when it has nothing to say (it writes
            // `undefined`). We always write both arrays: every reader treats an empty list and
            // an absent one alike, and a fixed shape is simpler to check.
            w.object(5);
            w.text_field("type", "remote-subscription-change");
            w.text_field("targetId", target_id.as_str());
            w.text("add");
            w.array(add.len());
            for storage_id in add {
                w.text(storage_id.as_str());
            }
            w.text("remove");
            w.array(remove.len());
            for storage_id in remove {
                w.text(storage_id.as_str());
            }
            w.text_field("senderId", sender_id.as_str());
        }
        Message::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            w.object(5);
            w.text_field("type", "remote-heads-changed");
            w.text_field("targetId", target_id.as_str());
            w.text_field("documentId", &document_id.to_string());
            w.text("newHeads");
            w.object(new_heads.len());
            for (storage_id, heads) in new_heads {
                w.text(storage_id.as_str());
                w.remote_heads(heads);
            }
            w.text_field("senderId", sender_id.as_str());
        }
        Message::ChangedDocsRequest {
            sender_id,
            target_id,
        } => {
            w.object(3);
            w.text_field("type", "lianxin-changed-docs-request");
            w.text_field("targetId", target_id.as_str());
            w.text_field("senderId", sender_id.as_str());
        }
        Message::ChangedDocs {
            sender_id,
            target_id,
            document_ids,
        } => {
            w.object(4);
            w.text_field("type", "lianxin-changed-docs");
            w.text_field("targetId", target_id.as_str());
            w.text("documentIds");
            w.array(document_ids.len());
            for document_id in document_ids {
                w.text(&document_id.to_string());
            }
            w.text_field("senderId", sender_id.as_str());
        }
    }
    w.buf
}

/// A CBOR writer that makes cbor-x's choices (see the module documentation).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;

impl Writer {
    /// Writes a header with the shortest argument encoding.
    fn head(&mut self, major: u8, value: u64) {
        let major = major << 5;
        if value < 24 {
            self.buf.push(major | value as u8);
        } else if let Ok(value) = u8::try_from(value) {
            self.buf.extend_from_slice(&[major | 24, value]);
        } else if let Ok(value) = u16::try_from(value) {
            self.buf.push(major | 25);
            self.buf.extend_from_slice(&value.to_be_bytes());
        } else if let Ok(value) = u32::try_from(value) {
            self.buf.push(major | 26);
            self.buf.extend_from_slice(&value.to_be_bytes());
        } else {
            self.buf.push(major | 27);
            self.buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// Starts a JavaScript object with `len` entries: always a 16-bit map length, as cbor-x.
    fn object(&mut self, len: usize) {
        match u16::try_from(len) {
            Ok(len) => {
                self.buf.push(0xb9);
                self.buf.extend_from_slice(&len.to_be_bytes());
            }
            // cbor-x would silently truncate the length here; we write a correct 32-bit length
            // instead (64-bit lengths are unreachable in memory anyway).
            Err(_) => {
                self.buf.push(0xba);
                let len = u32::try_from(len).unwrap_or(u32::MAX);
                self.buf.extend_from_slice(&len.to_be_bytes());
            }
        }
    }

    fn array(&mut self, len: usize) {
        self.head(MAJOR_ARRAY, len as u64);
    }

    fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    fn text_field(&mut self, key: &str, value: &str) {
        self.text(key);
        self.text(value);
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.head(MAJOR_BYTES, bytes.len() as u64);
        self.buf.extend_from_slice(bytes);
    }

    fn bool(&mut self, value: bool) {
        self.buf.push(if value { 0xf5 } else { 0xf4 });
    }

    /// Writes a whole number the way cbor-x writes a JavaScript number holding it.
    ///
    /// Beyond 32 bits cbor-x switches to float64, which is exact up to 2^53; larger values lose
    /// precision exactly as they would in JavaScript.
    fn js_number(&mut self, value: u64) {
        if value <= u64::from(u32::MAX) {
            self.head(MAJOR_UNSIGNED, value);
        } else {
            self.buf.push(0xfb);
            self.buf.extend_from_slice(&(value as f64).to_be_bytes());
        }
    }

    /// Writes `peerMetadata`: `storageId` when there is one, then `isEphemeral`, as `Repo.ts`
    /// builds it, then `lianxinExtensions` only when there are any, so that a peer without
    /// extensions writes exactly what `Repo.ts` does.
    fn peer_metadata(&mut self, meta: &PeerMetadata) {
        let has_extensions = !meta.extensions.is_empty();
        self.object(1 + usize::from(meta.storage_id.is_some()) + usize::from(has_extensions));
        if let Some(storage_id) = &meta.storage_id {
            self.text_field("storageId", storage_id.as_str());
        }
        self.text("isEphemeral");
        self.bool(meta.is_ephemeral);
        if has_extensions {
            self.text("lianxinExtensions");
            self.array(meta.extensions.len());
            for extension in &meta.extensions {
                self.text(extension);
            }
        }
    }

    fn remote_heads(&mut self, heads: &RemoteHeads) {
        self.object(2);
        self.text("heads");
        self.array(heads.heads.len());
        for head in &heads.heads {
            self.text(head);
        }
        self.text("timestamp");
        self.js_number(heads.timestamp);
    }
}
