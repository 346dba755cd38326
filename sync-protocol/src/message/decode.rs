//! Reads a [`Message`] from untrusted bytes, and [`DecodeError`], which says what was wrong.
//!
//! The bytes are first parsed into a generic `ciborium::Value` with a nesting limit, so that
//! deeply nested input is an error instead of a stack overflow, and then converted by hand. Doing
//! the conversion by hand, rather than deriving serde impls, keeps the rules that matter for
//! interoperability in one readable place: any key order, unknown keys ignored, `null` and
//! `undefined` meaning "absent", numbers accepted as integers or floats (JavaScript has only the
//! one number type), byte strings accepted with or without tag 64.
//!
//! Memory stays proportional to the input: ciborium grows arrays, maps and byte strings as their
//! items actually arrive instead of reserving what a header declares, so a header claiming
//! billions of items fails as truncated input before much is allocated. The list limits below
//! come on top, so that what a message may carry does not depend on the caller's frame limit.
//!
//! This module must not panic on any input, and its error messages are sent to clients, so they
//! describe the problem without echoing large or unprintable input back.

use ciborium::Value;

use super::{Message, PeerMetadata, RemoteHeads};
use crate::{DocumentId, DocumentIdError, PeerId, PeerIdError, StorageId};

/// How deeply arrays, maps and tags may nest in a message.
///
/// The deepest legitimate message, `remote-heads-changed`, nests four levels (message, `newHeads`,
/// one entry, its `heads` array); the margin leaves room for future fields.
pub const MAX_DEPTH: usize = 16;

/// How many extension names a `peerMetadata.lianxinExtensions` list may hold.
pub const MAX_EXTENSIONS: usize = 32;

/// How long, in bytes, one name in `peerMetadata.lianxinExtensions` may be.
pub const MAX_EXTENSION_LEN: usize = 64;

/// How many document IDs one `lianxin-changed-docs` message may list.
///
/// A million IDs take about 30 MB of CBOR, far beyond any sensible frame limit, so this never
/// rejects what a caller's frame limit lets through; it bounds the list for callers with none.
pub const MAX_CHANGED_DOCS: usize = 1_000_000;

/// What a bad `lianxinExtensions` list should have been; the numbers are [`MAX_EXTENSIONS`] and
/// [`MAX_EXTENSION_LEN`], checked by a test.
pub(super) const EXPECTED_EXTENSIONS: &str =
    "an array of at most 32 text strings of at most 64 bytes each";

/// What a too-long `documentIds` list should have been; the number is [`MAX_CHANGED_DOCS`],
/// checked by a test.
pub(super) const EXPECTED_DOCUMENT_IDS: &str = "an array of at most 1000000 document IDs";

/// The CBOR tag cbor-x puts around a `Uint8Array` when `tagUint8Array` is on.
const TAG_UINT8_ARRAY: u64 = 64;

/// How much of an unknown `type` we repeat back in an error.
const MAX_ECHO_LEN: usize = 64;

/// Why bytes are not a valid message. The `Display` text is meant for the peer that sent them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end in the middle of a CBOR item.
    #[error("message is truncated")]
    Truncated,
    /// The bytes are not well-formed CBOR, or use CBOR this protocol never does.
    #[error("message is not valid CBOR: {0}")]
    Malformed(String),
    /// Arrays, maps or tags nest deeper than [`MAX_DEPTH`].
    #[error("message nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A complete CBOR item is followed by more bytes.
    #[error("message has {count} unexpected bytes after its end")]
    TrailingBytes { count: usize },
    /// The CBOR item is not a map.
    #[error("message is not a CBOR map")]
    NotAMap,
    /// The `type` field names no message this server knows.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A required field is absent (or `null`).
    #[error("message has no `{field}` field")]
    MissingField { field: &'static str },
    /// A field has the wrong CBOR type or an impossible value.
    #[error("field `{field}` is invalid: expected {expected}")]
    InvalidField {
        field: &'static str,
        expected: &'static str,
    },
    /// A document ID field does not hold a valid document ID.
    #[error("field `{field}` is not a valid document ID: {source}")]
    InvalidDocumentId {
        field: &'static str,
        #[source]
        source: DocumentIdError,
    },
    /// A peer ID or storage ID field does not hold a valid ID.
    #[error("field `{field}` is not a valid ID: {source}")]
    InvalidId {
        field: &'static str,
        #[source]
        source: PeerIdError,
    },
}

pub(super) fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH)
        .map_err(from_cbor_error)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes { count: rest.len() });
    }
    let Value::Map(entries) = value else {
        return Err(DecodeError::NotAMap);
    };
    let mut fields = Fields(entries);
    let type_name = fields.text("type")?;
    let message = match type_name.as_str() {
        "join" => Message::Join {
            sender_id: fields.peer_id("senderId")?,
            supported_protocol_versions: match fields
                .optional_text_list("supportedProtocolVersions")?
            {
                Some(versions) => versions,
                None => vec![crate::PROTOCOL_V1.to_owned()],
            },
            peer_metadata: fields.peer_metadata("peerMetadata")?,
        },
        "peer" => Message::Peer {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            selected_protocol_version: fields.text("selectedProtocolVersion")?,
            peer_metadata: fields.peer_metadata("peerMetadata")?,
        },
        "leave" => Message::Leave {
            sender_id: fields.peer_id("senderId")?,
        },
        "request" => Message::Request {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.document_id("documentId")?,
            data: fields.data("data")?,
        },
        "sync" => Message::Sync {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.document_id("documentId")?,
            data: fields.data("data")?,
        },
        "doc-unavailable" => Message::DocUnavailable {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.document_id("documentId")?,
        },
        "ephemeral" => Message::Ephemeral {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.document_id("documentId")?,
            session_id: fields.text("sessionId")?,
            count: fields.whole_number("count")?,
            data: fields.data("data")?,
        },
        "error" => Message::Error {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.optional_peer_id("targetId")?,
            message: fields.text("message")?,
        },
        "remote-subscription-change" => Message::RemoteSubscriptionChange {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            add: fields.storage_id_list("add")?,
            remove: fields.storage_id_list("remove")?,
        },
        "remote-heads-changed" => Message::RemoteHeadsChanged {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_id: fields.document_id("documentId")?,
            new_heads: fields.new_heads("newHeads")?,
        },
        "lianxin-changed-docs-request" => Message::ChangedDocsRequest {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
        },
        "lianxin-changed-docs" => Message::ChangedDocs {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            document_ids: fields.document_id_list("documentIds")?,
        },
        _ => return Err(DecodeError::UnknownType(truncate(type_name))),
    };
    Ok(message)
}

fn from_cbor_error(error: ciborium::de::Error<std::io::Error>) -> DecodeError {
    match error {
        ciborium::de::Error::Io(_) => DecodeError::Truncated,
        ciborium::de::Error::Syntax(offset) => {
            DecodeError::Malformed(format!("syntax error at byte {offset}"))
        }
        ciborium::de::Error::Semantic(_, reason) => DecodeError::Malformed(truncate(reason)),
        ciborium::de::Error::RecursionLimitExceeded => DecodeError::TooDeep,
    }
}

/// Cuts `s` to at most [`MAX_ECHO_LEN`] bytes on a character boundary.
fn truncate(mut s: String) -> String {
    if s.len() > MAX_ECHO_LEN {
        let mut end = MAX_ECHO_LEN;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

/// The entries of one CBOR map, consumed field by field.
///
/// Each accessor takes its field out of the map, so large byte strings move into the message
/// instead of being copied. When a key appears twice the last one wins, as in cbor-x, which
/// builds a JavaScript object by assigning each entry in turn.
struct Fields(Vec<(Value, Value)>);

impl Fields {
    /// Takes the value of `name`, treating `null` and `undefined` (both decode as `Null`) as
    /// absent, since JavaScript writes `undefined` for an optional property that is not set.
    fn take(&mut self, name: &str) -> Option<Value> {
        let (_, value) = self
            .0
            .iter_mut()
            .rev()
            .find(|(key, _)| matches!(key, Value::Text(key) if key == name))?;
        match std::mem::replace(value, Value::Null) {
            Value::Null => None,
            value => Some(value),
        }
    }

    fn required(&mut self, name: &'static str) -> Result<Value, DecodeError> {
        self.take(name)
            .ok_or(DecodeError::MissingField { field: name })
    }

    fn text(&mut self, name: &'static str) -> Result<String, DecodeError> {
        as_text(self.required(name)?, name)
    }

    fn peer_id(&mut self, name: &'static str) -> Result<PeerId, DecodeError> {
        to_peer_id(self.required(name)?, name)
    }

    fn optional_peer_id(&mut self, name: &'static str) -> Result<Option<PeerId>, DecodeError> {
        self.take(name).map(|v| to_peer_id(v, name)).transpose()
    }

    fn document_id(&mut self, name: &'static str) -> Result<DocumentId, DecodeError> {
        to_document_id(self.required(name)?, name)
    }

    /// An array of document IDs, each in the same string form as a `documentId` field.
    fn document_id_list(&mut self, name: &'static str) -> Result<Vec<DocumentId>, DecodeError> {
        let items = as_array(self.required(name)?, name)?;
        if items.len() > MAX_CHANGED_DOCS {
            return Err(invalid(name, EXPECTED_DOCUMENT_IDS));
        }
        items
            .into_iter()
            .map(|item| to_document_id(item, name))
            .collect()
    }

    /// A byte string, plain or wrapped in tag 64 (what cbor-x writes when `tagUint8Array` is on,
    /// so a peer with a different encoder configuration still gets through).
    fn data(&mut self, name: &'static str) -> Result<Vec<u8>, DecodeError> {
        match self.required(name)? {
            Value::Bytes(bytes) => Ok(bytes),
            Value::Tag(TAG_UINT8_ARRAY, inner) => match *inner {
                Value::Bytes(bytes) => Ok(bytes),
                _ => Err(invalid(name, "a byte string")),
            },
            _ => Err(invalid(name, "a byte string")),
        }
    }

    fn whole_number(&mut self, name: &'static str) -> Result<u64, DecodeError> {
        as_whole_number(self.required(name)?, name)
    }

    fn optional_text_list(
        &mut self,
        name: &'static str,
    ) -> Result<Option<Vec<String>>, DecodeError> {
        self.take(name)
            .map(|value| {
                as_array(value, name)?
                    .into_iter()
                    .map(|item| as_text(item, name))
                    .collect()
            })
            .transpose()
    }

    fn storage_id_list(&mut self, name: &'static str) -> Result<Vec<StorageId>, DecodeError> {
        let Some(value) = self.take(name) else {
            return Ok(Vec::new());
        };
        as_array(value, name)?
            .into_iter()
            .map(|item| to_storage_id(item, name))
            .collect()
    }

    fn peer_metadata(&mut self, name: &'static str) -> Result<Option<PeerMetadata>, DecodeError> {
        let Some(value) = self.take(name) else {
            return Ok(None);
        };
        let Value::Map(entries) = value else {
            return Err(invalid(name, "a map"));
        };
        let mut meta = Fields(entries);
        let storage_id = meta
            .take("storageId")
            .map(|v| to_storage_id(v, "peerMetadata.storageId"))
            .transpose()?;
        let is_ephemeral = match meta.take("isEphemeral") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(invalid("peerMetadata.isEphemeral", "a boolean")),
        };
        let extensions = match meta.take("lianxinExtensions") {
            None => Vec::new(),
            Some(value) => to_extensions(value)?,
        };
        Ok(Some(PeerMetadata {
            storage_id,
            is_ephemeral,
            extensions,
        }))
    }

    fn new_heads(
        &mut self,
        name: &'static str,
    ) -> Result<Vec<(StorageId, RemoteHeads)>, DecodeError> {
        let Value::Map(entries) = self.required(name)? else {
            return Err(invalid(name, "a map from storage ID to heads"));
        };
        entries
            .into_iter()
            .map(|(key, value)| {
                let storage_id = to_storage_id(key, name)?;
                let Value::Map(entries) = value else {
                    return Err(invalid(name, "a map from storage ID to heads"));
                };
                let mut entry = Fields(entries);
                let heads = as_array(entry.required("heads")?, "newHeads.heads")?
                    .into_iter()
                    .map(|head| as_text(head, "newHeads.heads"))
                    .collect::<Result<_, _>>()?;
                let timestamp = entry.whole_number("timestamp")?;
                Ok((storage_id, RemoteHeads { heads, timestamp }))
            })
            .collect()
    }
}

fn invalid(field: &'static str, expected: &'static str) -> DecodeError {
    DecodeError::InvalidField { field, expected }
}

fn as_text(value: Value, field: &'static str) -> Result<String, DecodeError> {
    match value {
        Value::Text(text) => Ok(text),
        _ => Err(invalid(field, "a text string")),
    }
}

fn as_array(value: Value, field: &'static str) -> Result<Vec<Value>, DecodeError> {
    match value {
        Value::Array(items) => Ok(items),
        _ => Err(invalid(field, "an array")),
    }
}

fn to_document_id(value: Value, field: &'static str) -> Result<DocumentId, DecodeError> {
    as_text(value, field)?
        .parse()
        .map_err(|source| DecodeError::InvalidDocumentId { field, source })
}

/// The `lianxinExtensions` list of a `peerMetadata`, within [`MAX_EXTENSIONS`] and
/// [`MAX_EXTENSION_LEN`].
fn to_extensions(value: Value) -> Result<Vec<String>, DecodeError> {
    const FIELD: &str = "peerMetadata.lianxinExtensions";
    let items = match value {
        Value::Array(items) if items.len() <= MAX_EXTENSIONS => items,
        _ => return Err(invalid(FIELD, EXPECTED_EXTENSIONS)),
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Text(name) if name.len() <= MAX_EXTENSION_LEN => Ok(name),
            _ => Err(invalid(FIELD, EXPECTED_EXTENSIONS)),
        })
        .collect()
}

fn to_peer_id(value: Value, field: &'static str) -> Result<PeerId, DecodeError> {
    PeerId::new(as_text(value, field)?).map_err(|source| DecodeError::InvalidId { field, source })
}

fn to_storage_id(value: Value, field: &'static str) -> Result<StorageId, DecodeError> {
    StorageId::new(as_text(value, field)?)
        .map_err(|source| DecodeError::InvalidId { field, source })
}

/// A JavaScript number that must be a whole, non-negative, safe integer: CBOR integers, and
/// floats with no fractional part (cbor-x writes whole numbers of 2^32 and up as float64).
///
/// Values above `Number.MAX_SAFE_INTEGER` are refused because JavaScript cannot hold them
/// exactly, so no honest peer sends one and we could not write it back unchanged.
fn as_whole_number(value: Value, field: &'static str) -> Result<u64, DecodeError> {
    const EXPECTED: &str = "a whole number from 0 to 2^53 - 1";
    let n = match value {
        Value::Integer(n) => u64::try_from(n).ok(),
        // The range check comes first, so the cast below is exact.
        Value::Float(x) if (0.0..=MAX_SAFE_INTEGER as f64).contains(&x) && x.fract() == 0.0 => {
            Some(x as u64)
        }
        _ => None,
    };
    n.filter(|n| *n <= MAX_SAFE_INTEGER)
        .ok_or(invalid(field, EXPECTED))
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
