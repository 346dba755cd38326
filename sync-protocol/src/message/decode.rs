//! Reads a [`Message`] from untrusted bytes, and [`DecodeError`], which says what was wrong.
//!
//! Decoding reads CBOR headers straight off the byte slice and never builds a generic CBOR tree,
//! because a tree costs about 32 bytes per item: a frame of one-byte items would take some thirty
//! times its size in memory, and nested maps over a hundred. Instead the bytes are walked twice:
//!
//! 1. [`Cbor::check`] walks the whole frame and checks that it is one well-formed CBOR item
//!    within [`MAX_DEPTH`], allocating nothing. It accepts exactly what ciborium's
//!    `ciborium::Value` parser accepts (this module used that parser before, and the tests compare
//!    the two), and returns the same [`DecodeError`] for the first problem in stream order. So a
//!    malformed frame is reported as malformed wherever the problem is, before anything about its
//!    fields. Recursion is bounded by the depth limit, and every declared length is compared with
//!    the bytes that remain before anything is read, so a header claiming billions of items or
//!    bytes fails as truncated input at once.
//! 2. [`Fields`] walks the entries of a map once and notes where the value of each key we read
//!    starts. Each field is then read from there directly into its Rust type. Values under other
//!    keys are only stepped over.
//!
//! So decoding allocates the message and nothing else: byte and text strings cost their own
//! length, unknown entries nothing. Lists cost what their Rust form costs, which for a list of
//! empty strings is many times its wire size; the list limits below bound some of them, so that
//! what a message may carry does not depend on the caller's frame limit.
//!
//! Reading fields by hand keeps the rules that matter for interoperability in one readable place:
//! any key order, the last of duplicate keys winning (as in cbor-x, which builds an object by
//! assigning each entry in turn), unknown keys ignored, `null` and `undefined` meaning "absent",
//! numbers accepted as integers or floats (JavaScript has only the one number type), byte
//! strings accepted with or without tag 64.
//!
//! This module must not panic on any input, and its error messages are sent to clients, so they
//! describe the problem without echoing large or unprintable input back.

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

/// What the `documents` of a `lianxin-area-batch` should have been.
const EXPECTED_DOCUMENTS: &str = "an array of byte strings, one for each entry of `documentIds`";

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
    let cbor = Cbor(bytes);
    let end = cbor.check(0, MAX_DEPTH)?;
    if end < bytes.len() {
        return Err(DecodeError::TrailingBytes {
            count: bytes.len() - end,
        });
    }
    let fields = Fields::new(cbor, 0, &MESSAGE_KEYS)?.ok_or(DecodeError::NotAMap)?;
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
        "lianxin-area-sync" => Message::AreaSync {
            sender_id: fields.peer_id("senderId")?,
            target_id: fields.peer_id("targetId")?,
            cursor: fields.optional_text("cursor")?,
        },
        "lianxin-area-batch" => {
            let ids = fields.document_id_list("documentIds")?;
            let data = fields.data_list("documents")?;
            if ids.len() != data.len() {
                return Err(invalid("documents", EXPECTED_DOCUMENTS));
            }
            Message::AreaBatch {
                sender_id: fields.peer_id("senderId")?,
                target_id: fields.peer_id("targetId")?,
                documents: ids.into_iter().zip(data).collect(),
                cursor: fields.text("cursor")?,
                complete: fields.flag("complete")?,
            }
        }
        _ => return Err(DecodeError::UnknownType(truncate(type_name))),
    };
    Ok(message)
}

/// Every key a message map may have that [`decode`] reads.
const MESSAGE_KEYS: [&str; 18] = [
    "type",
    "documents",
    "cursor",
    "complete",
    "senderId",
    "targetId",
    "documentId",
    "documentIds",
    "data",
    "peerMetadata",
    "supportedProtocolVersions",
    "selectedProtocolVersion",
    "sessionId",
    "count",
    "message",
    "add",
    "remove",
    "newHeads",
];

/// The keys of a `peerMetadata` map that we read.
const METADATA_KEYS: [&str; 3] = ["storageId", "isEphemeral", "lianxinExtensions"];

/// The keys of one entry of a `newHeads` map.
const HEADS_KEYS: [&str; 2] = ["heads", "timestamp"];

/// The longest key we ever look for, with room to spare; longer keys are never ours.
const MAX_KEY_LEN: usize = 32;

/// How many bytes ciborium reads a text string in at a time; see [`Cbor::check_utf8`].
const CIBORIUM_BUFFER: usize = 4096;

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

fn syntax_error(at: usize) -> DecodeError {
    DecodeError::Malformed(format!("syntax error at byte {at}"))
}

/// One CBOR header: a major type with its argument, as `ciborium_ll::Header` has it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Header {
    Positive(u64),
    /// The argument `n` of the negative integer `-1 - n`.
    Negative(u64),
    /// A byte string of this length, or `None` for one in chunks.
    Bytes(Option<usize>),
    /// A text string of this length, or `None` for one in chunks.
    Text(Option<usize>),
    Array(Option<usize>),
    Map(Option<usize>),
    Tag(u64),
    Simple(u8),
    /// A float of any width, widened.
    Float(f64),
    /// The end of an indefinite-length item.
    Break,
}

/// The simple values ciborium knows; any other is an error.
mod simple {
    pub const FALSE: u8 = 20;
    pub const TRUE: u8 = 21;
    pub const NULL: u8 = 22;
    pub const UNDEFINED: u8 = 23;
}

/// Tags 2 and 3, positive and negative bignums, which ciborium reads as integers when the byte
/// string after them is short enough.
const TAG_BIGNUM: u64 = 2;
const TAG_NEGATIVE_BIGNUM: u64 = 3;

/// The value of an IEEE 754 half-precision float, exactly.
pub(super) fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f64::from(bits & 0x3ff);
    sign * match exponent {
        0 => mantissa * 2f64.powi(-24),
        31 if mantissa == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1024.0 + mantissa) * 2f64.powi(exponent - 25),
    }
}

/// The whole frame, read at byte offsets.
///
/// Every method takes the offset of a CBOR item and reads from there, so nothing holds a cursor
/// that could fall out of step; the walks return the offset just past what they read.
#[derive(Clone, Copy)]
struct Cbor<'a>(&'a [u8]);

impl<'a> Cbor<'a> {
    /// The header at `at` and the offset just past it.
    ///
    /// This reads a header as `ciborium_ll::Decoder::pull` does: the argument bytes must all be
    /// there (else the input is truncated), additional information 28 to 30 is a syntax error, as
    /// is an indefinite length on an integer or a tag, or a length that does not fit a `usize`.
    fn head(self, at: usize) -> Result<(Header, usize), DecodeError> {
        let &initial = self.0.get(at).ok_or(DecodeError::Truncated)?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        let width = match info {
            0..=23 | 31 => 0,
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(syntax_error(at)),
        };
        let after = at + 1 + width;
        let argument = match info {
            0..=23 => Some(u64::from(info)),
            31 => None,
            // At most eight bytes, so the cast is exact.
            _ => Some(big_endian(self.slice(at + 1, width)?) as u64),
        };
        let length = |argument: Option<u64>| match argument {
            Some(len) => usize::try_from(len).map(Some).map_err(|_| syntax_error(at)),
            None => Ok(None),
        };
        let header = match (major, argument) {
            (0, Some(n)) => Header::Positive(n),
            (1, Some(n)) => Header::Negative(n),
            (2, argument) => Header::Bytes(length(argument)?),
            (3, argument) => Header::Text(length(argument)?),
            (4, argument) => Header::Array(length(argument)?),
            (5, argument) => Header::Map(length(argument)?),
            (6, Some(n)) => Header::Tag(n),
            (7, None) => Header::Break,
            // The casts keep exactly the argument's `width` bytes.
            (7, Some(n)) => match width {
                0 | 1 => Header::Simple(n as u8),
                2 => Header::Float(f16_to_f64(n as u16)),
                4 => Header::Float(f64::from(f32::from_bits(n as u32))),
                _ => Header::Float(f64::from_bits(n)),
            },
            _ => return Err(syntax_error(at)),
        };
        Ok((header, after))
    }

    /// The `len` bytes at `at`, if the input has them. This is the only place content is
    /// taken from the input, so no length is trusted before it is checked against what remains.
    fn slice(self, at: usize, len: usize) -> Result<&'a [u8], DecodeError> {
        at.checked_add(len)
            .and_then(|end| self.0.get(at..end))
            .ok_or(DecodeError::Truncated)
    }

    /// Checks the item at `at`, nested at most `depth` levels deep, and returns the offset
    /// just past it.
    ///
    /// This follows what `ciborium::de::from_reader_with_recursion_limit` accepted when reading a
    /// `ciborium::Value`: arrays, maps and tags each take a level, except tags 2 and 3 around
    /// byte strings of at most 16 bytes, which it reads as integers; the simple values are only
    /// `false`, `true`, `null` and `undefined`, in either of their encodings; text must be UTF-8
    /// chunk by chunk; indefinite-length strings may nest. It returns the error ciborium
    /// returned for the first problem, except that a syntax error reports the true offset.
    fn check(self, at: usize, depth: usize) -> Result<usize, DecodeError> {
        let (header, after) = self.head(at)?;
        self.check_item(header, at, after, depth)
    }

    /// [`Cbor::check`] for the item at `at`, whose header `header` ends at `after`.
    fn check_item(
        self,
        header: Header,
        at: usize,
        after: usize,
        depth: usize,
    ) -> Result<usize, DecodeError> {
        match header {
            Header::Positive(_) | Header::Negative(_) | Header::Float(_) => Ok(after),
            Header::Simple(simple::FALSE | simple::TRUE | simple::NULL | simple::UNDEFINED) => {
                Ok(after)
            }
            Header::Simple(_) => Err(DecodeError::Malformed(format!(
                "unknown simple value at byte {at}"
            ))),
            Header::Break => Err(DecodeError::Malformed(format!(
                "unexpected break at byte {at}"
            ))),
            Header::Bytes(_) => self.check_string(at, false),
            Header::Text(_) => self.check_string(at, true),
            Header::Array(len) => {
                let depth = depth.checked_sub(1).ok_or(DecodeError::TooDeep)?;
                self.check_items(after, len, 1, depth)
            }
            Header::Map(len) => {
                let depth = depth.checked_sub(1).ok_or(DecodeError::TooDeep)?;
                self.check_items(after, len, 2, depth)
            }
            Header::Tag(number) => {
                // ciborium looks at the tagged item before it counts the tag as a level.
                let (inner, inner_after) = self.head(after)?;
                if let (TAG_BIGNUM | TAG_NEGATIVE_BIGNUM, Header::Bytes(Some(len))) =
                    (number, inner)
                    && len <= 16
                {
                    let digits = self.slice(inner_after, len)?;
                    if number == TAG_NEGATIVE_BIGNUM && big_endian(digits) > i128::MAX as u128 {
                        return Err(DecodeError::Malformed(format!(
                            "integer too large at byte {at}"
                        )));
                    }
                    return Ok(inner_after + len);
                }
                let depth = depth.checked_sub(1).ok_or(DecodeError::TooDeep)?;
                self.check_item(inner, after, inner_after, depth)
            }
        }
    }

    /// Checks the items of an array (`per_entry` 1) or map (2) whose header ends at `at`, and
    /// returns the offset past the last one (or past the break, if `len` is indefinite).
    ///
    /// The loop never trusts `len`: each item takes at least one byte, so a header claiming more
    /// items than there are bytes runs out of input, and fails, within the input's length.
    fn check_items(
        self,
        mut at: usize,
        len: Option<usize>,
        per_entry: usize,
        depth: usize,
    ) -> Result<usize, DecodeError> {
        let mut left = len;
        loop {
            match left {
                Some(0) => return Ok(at),
                Some(n) => left = Some(n - 1),
                None => {
                    if let (Header::Break, after) = self.head(at)? {
                        return Ok(after);
                    }
                }
            }
            for _ in 0..per_entry {
                at = self.check(at, depth)?;
            }
        }
    }

    /// Checks the byte string (or, if `text`, text string) at `at` and returns the offset past
    /// it.
    fn check_string(self, at: usize, text: bool) -> Result<usize, DecodeError> {
        let mut chunks = self.chunks(at, text);
        for chunk in chunks.by_ref() {
            let chunk = chunk?;
            if text {
                self.check_utf8(chunk)?;
            } else {
                self.slice(chunk.start, chunk.len)?;
            }
        }
        Ok(chunks.at)
    }

    /// Checks that a text chunk is UTF-8, failing where ciborium failed.
    ///
    /// ciborium reads a chunk through a 4 KiB buffer and checks each bufferful as it arrives,
    /// carrying over up to three bytes of a character split at the edge. So bad UTF-8 early in
    /// a long chunk is a syntax error even when the input ends before the chunk does. This steps
    /// through the input in the same windows, without copying.
    fn check_utf8(self, chunk: Chunk) -> Result<(), DecodeError> {
        let mut read = 0;
        let mut carried = 0;
        while read < chunk.len {
            let size = (chunk.len - read)
                .saturating_add(carried)
                .min(CIBORIUM_BUFFER);
            let window = self.slice(chunk.start + read - carried, size)?;
            read += size - carried;
            carried = match std::str::from_utf8(window) {
                Ok(_) => 0,
                Err(e) if size - e.valid_up_to() <= 3 => size - e.valid_up_to(),
                Err(_) => return Err(syntax_error(chunk.head_at)),
            };
        }
        if carried == 0 {
            Ok(())
        } else {
            Err(syntax_error(chunk.head_at))
        }
    }

    /// The chunks of the byte string (or, if `text`, text string) at `at`.
    fn chunks(self, at: usize, text: bool) -> Chunks<'a> {
        Chunks {
            cbor: self,
            at,
            text,
            nested: 0,
            finished: false,
        }
    }

    /// The offset just past the item at `at`, which [`Cbor::check`] has accepted as part of the
    /// frame. (Checking again is the simplest correct way to step over it; it cannot fail.)
    fn skip(self, at: usize) -> Result<usize, DecodeError> {
        self.check(at, MAX_DEPTH)
    }

    /// Whether the item at `at` is `null` or `undefined`.
    fn is_null(self, at: usize) -> Result<bool, DecodeError> {
        Ok(matches!(
            self.head(at)?.0,
            Header::Simple(simple::NULL | simple::UNDEFINED)
        ))
    }

    /// The entries of the map at `at`, or `None` if there is no map there.
    fn map(self, at: usize) -> Result<Option<Entries<'a>>, DecodeError> {
        Ok(match self.head(at)? {
            (Header::Map(len), after) => Some(Entries {
                cbor: self,
                at: after,
                left: len,
            }),
            _ => None,
        })
    }

    /// The items of the array at `at`, or `None` if there is no array there.
    fn array(self, at: usize) -> Result<Option<Items<'a>>, DecodeError> {
        Ok(match self.head(at)? {
            (Header::Array(len), after) => Some(Items {
                cbor: self,
                at: after,
                left: len,
            }),
            _ => None,
        })
    }

    /// The content of the checked byte or text string at `at`, with its chunks joined.
    fn string_bytes(self, at: usize, text: bool) -> Result<Vec<u8>, DecodeError> {
        // Two passes over the chunks, so the buffer is allocated once at its final size.
        let mut len = 0usize;
        for chunk in self.chunks(at, text) {
            len = len.saturating_add(chunk?.len);
        }
        // A checked string's chunks fit in the input; this keeps a bug from becoming a huge
        // allocation.
        if len > self.0.len() {
            return Err(DecodeError::Truncated);
        }
        let mut out = Vec::with_capacity(len);
        for chunk in self.chunks(at, text) {
            let chunk = chunk?;
            out.extend_from_slice(self.slice(chunk.start, chunk.len)?);
        }
        Ok(out)
    }

    /// The text at `at`.
    fn text(self, at: usize, field: &'static str) -> Result<String, DecodeError> {
        let Header::Text(_) = self.head(at)?.0 else {
            return Err(invalid(field, "a text string"));
        };
        // Each chunk was checked to be UTF-8, so this cannot fail.
        String::from_utf8(self.string_bytes(at, true)?)
            .map_err(|_| DecodeError::Malformed(format!("invalid UTF-8 at byte {at}")))
    }

    /// The text at `at`, if it is a text string short enough to be a key we look for, copied
    /// into `buffer` when it comes in chunks.
    fn key<'b>(
        self,
        at: usize,
        buffer: &'b mut [u8; MAX_KEY_LEN],
    ) -> Result<Option<&'b [u8]>, DecodeError>
    where
        'a: 'b,
    {
        match self.head(at)? {
            (Header::Text(Some(len)), after) if len <= MAX_KEY_LEN => {
                Ok(Some(self.slice(after, len)?))
            }
            (Header::Text(None), _) => {
                let mut len = 0usize;
                for chunk in self.chunks(at, true) {
                    let chunk = chunk?;
                    let end = len.saturating_add(chunk.len);
                    let Some(into) = buffer.get_mut(len..end) else {
                        return Ok(None);
                    };
                    into.copy_from_slice(self.slice(chunk.start, chunk.len)?);
                    len = end;
                }
                Ok(Some(&buffer[..len]))
            }
            _ => Ok(None),
        }
    }

    /// A byte string, plain or wrapped in tag 64 (what cbor-x writes when `tagUint8Array` is on,
    /// so a peer with a different encoder configuration still gets through).
    fn data(self, at: usize, field: &'static str) -> Result<Vec<u8>, DecodeError> {
        let bytes_at = match self.head(at)? {
            (Header::Bytes(_), _) => at,
            (Header::Tag(TAG_UINT8_ARRAY), after)
                if matches!(self.head(after)?.0, Header::Bytes(_)) =>
            {
                after
            }
            _ => return Err(invalid(field, "a byte string")),
        };
        self.string_bytes(bytes_at, false)
    }

    /// A JavaScript number that must be a whole, non-negative, safe integer: CBOR integers
    /// (including tag 2 bignums, which ciborium read as integers), and floats with no fractional
    /// part (cbor-x writes whole numbers of 2^32 and up as float64).
    ///
    /// Values above `Number.MAX_SAFE_INTEGER` are refused because JavaScript cannot hold them
    /// exactly, so no honest peer sends one and we could not write it back unchanged.
    fn whole_number(self, at: usize, field: &'static str) -> Result<u64, DecodeError> {
        const EXPECTED: &str = "a whole number from 0 to 2^53 - 1";
        let n = match self.head(at)? {
            (Header::Positive(n), _) => Some(n),
            // The range check comes first, so the cast below is exact.
            (Header::Float(x), _)
                if (0.0..=MAX_SAFE_INTEGER as f64).contains(&x) && x.fract() == 0.0 =>
            {
                Some(x as u64)
            }
            (Header::Tag(TAG_BIGNUM), after) => match self.head(after)? {
                (Header::Bytes(Some(len)), digits_at) if len <= 16 => {
                    u64::try_from(big_endian(self.slice(digits_at, len)?)).ok()
                }
                _ => None,
            },
            _ => None,
        };
        n.filter(|n| *n <= MAX_SAFE_INTEGER)
            .ok_or(invalid(field, EXPECTED))
    }

    fn boolean(self, at: usize) -> Result<Option<bool>, DecodeError> {
        Ok(match self.head(at)?.0 {
            Header::Simple(simple::FALSE) => Some(false),
            Header::Simple(simple::TRUE) => Some(true),
            _ => None,
        })
    }

    /// An array of text strings.
    fn text_list(self, at: usize, field: &'static str) -> Result<Vec<String>, DecodeError> {
        self.array(at)?
            .ok_or(invalid(field, "an array"))?
            .map(|item| self.text(item?, field))
            .collect()
    }

    fn peer_id(self, at: usize, field: &'static str) -> Result<PeerId, DecodeError> {
        PeerId::new(self.text(at, field)?)
            .map_err(|source| DecodeError::InvalidId { field, source })
    }

    fn storage_id(self, at: usize, field: &'static str) -> Result<StorageId, DecodeError> {
        StorageId::new(self.text(at, field)?)
            .map_err(|source| DecodeError::InvalidId { field, source })
    }

    fn document_id(self, at: usize, field: &'static str) -> Result<DocumentId, DecodeError> {
        self.text(at, field)?
            .parse()
            .map_err(|source| DecodeError::InvalidDocumentId { field, source })
    }

    /// The `lianxinExtensions` list of a `peerMetadata`, within [`MAX_EXTENSIONS`] and
    /// [`MAX_EXTENSION_LEN`].
    fn extensions(self, at: usize) -> Result<Vec<String>, DecodeError> {
        const FIELD: &str = "peerMetadata.lianxinExtensions";
        let items = match self.array(at)? {
            Some(items) if items.item_count()? <= MAX_EXTENSIONS => items,
            _ => return Err(invalid(FIELD, EXPECTED_EXTENSIONS)),
        };
        items
            .map(|item| {
                let item = item?;
                let Header::Text(_) = self.head(item)?.0 else {
                    return Err(invalid(FIELD, EXPECTED_EXTENSIONS));
                };
                let name = self.text(item, FIELD)?;
                if name.len() <= MAX_EXTENSION_LEN {
                    Ok(name)
                } else {
                    Err(invalid(FIELD, EXPECTED_EXTENSIONS))
                }
            })
            .collect()
    }
}

/// The number whose big-endian digits are `digits`, at most 16 of them.
fn big_endian(digits: &[u8]) -> u128 {
    digits
        .iter()
        .fold(0, |n, digit| (n << 8) | u128::from(*digit))
}

/// One chunk of a byte or text string: a definite-length string is one chunk, an
/// indefinite-length one any number. `len` is as declared, not yet checked against the input.
#[derive(Clone, Copy)]
struct Chunk {
    /// Where the chunk's header starts, for error messages.
    head_at: usize,
    start: usize,
    len: usize,
}

/// The chunks of one string, as `ciborium_ll::Segments` yields them: after an
/// indefinite-length header, definite-length chunks of the same major type until a break, where
/// a chunk may itself be an indefinite-length string (which ciborium accepts and flattens).
struct Chunks<'a> {
    cbor: Cbor<'a>,
    /// Where the next header starts; once the iterator is done, the offset past the string.
    at: usize,
    text: bool,
    /// How many indefinite-length headers are open.
    nested: usize,
    finished: bool,
}

impl Iterator for Chunks<'_> {
    type Item = Result<Chunk, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let head_at = self.at;
            let (header, after) = match self.cbor.head(head_at) {
                Ok(head) => head,
                Err(e) => {
                    self.finished = true;
                    return Some(Err(e));
                }
            };
            self.at = after;
            let len = match (header, self.text) {
                (Header::Break, _) if self.nested == 1 => {
                    self.finished = true;
                    return None;
                }
                (Header::Break, _) if self.nested > 1 => {
                    self.nested -= 1;
                    continue;
                }
                (Header::Bytes(len), false) | (Header::Text(len), true) => len,
                _ => {
                    self.finished = true;
                    return Some(Err(syntax_error(head_at)));
                }
            };
            match len {
                None => self.nested += 1,
                Some(len) => {
                    self.finished = self.nested == 0;
                    // The caller checks the chunk against the input before it asks for more.
                    self.at = after.saturating_add(len);
                    return Some(Ok(Chunk {
                        head_at,
                        start: after,
                        len,
                    }));
                }
            }
        }
        None
    }
}

/// The offsets of the items of a checked array.
struct Items<'a> {
    cbor: Cbor<'a>,
    at: usize,
    /// How many items remain, or `None` until the break of an indefinite-length array.
    left: Option<usize>,
}

impl Items<'_> {
    /// How many items there are, counting them if the array has an indefinite length. A checked
    /// array's declared length is its true length.
    fn item_count(&self) -> Result<usize, DecodeError> {
        match self.left {
            Some(len) => Ok(len),
            None => {
                let items = Items {
                    cbor: self.cbor,
                    at: self.at,
                    left: None,
                };
                let mut count = 0;
                for item in items {
                    item?;
                    count += 1;
                }
                Ok(count)
            }
        }
    }
}

impl Iterator for Items<'_> {
    type Item = Result<usize, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.left {
            Some(0) => return None,
            Some(n) => self.left = Some(n - 1),
            None => match self.cbor.head(self.at) {
                Ok((Header::Break, _)) => {
                    self.left = Some(0);
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.left = Some(0);
                    return Some(Err(e));
                }
            },
        }
        let item = self.at;
        match self.cbor.skip(item) {
            Ok(end) => {
                self.at = end;
                Some(Ok(item))
            }
            Err(e) => {
                self.left = Some(0);
                Some(Err(e))
            }
        }
    }
}

/// The offsets of the keys and values of a checked map.
struct Entries<'a> {
    cbor: Cbor<'a>,
    at: usize,
    /// How many entries remain, or `None` until the break of an indefinite-length map.
    left: Option<usize>,
}

impl Entries<'_> {
    fn entry(&mut self) -> Result<(usize, usize), DecodeError> {
        let key = self.at;
        let value = self.cbor.skip(key)?;
        self.at = self.cbor.skip(value)?;
        Ok((key, value))
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(usize, usize), DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.left {
            Some(0) => return None,
            Some(n) => self.left = Some(n - 1),
            None => match self.cbor.head(self.at) {
                Ok((Header::Break, _)) => {
                    self.left = Some(0);
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.left = Some(0);
                    return Some(Err(e));
                }
            },
        }
        let entry = self.entry();
        if entry.is_err() {
            self.left = Some(0);
        }
        Some(entry)
    }
}

/// Where the values of the keys `names` start in one CBOR map, read field by field.
///
/// When a key appears twice the last one wins, as in cbor-x, which builds a JavaScript object by
/// assigning each entry in turn. A `null` or `undefined` value counts as absent, since JavaScript
/// writes `undefined` for an optional property that is not set.
struct Fields<'a, const N: usize> {
    cbor: Cbor<'a>,
    names: &'static [&'static str; N],
    values: [Option<usize>; N],
}

impl<'a, const N: usize> Fields<'a, N> {
    /// Walks the map at `at` once, or returns `None` if there is no map there.
    fn new(
        cbor: Cbor<'a>,
        at: usize,
        names: &'static [&'static str; N],
    ) -> Result<Option<Self>, DecodeError> {
        let Some(entries) = cbor.map(at)? else {
            return Ok(None);
        };
        let mut values = [None; N];
        for entry in entries {
            let (key, value) = entry?;
            let mut buffer = [0; MAX_KEY_LEN];
            let Some(key) = cbor.key(key, &mut buffer)? else {
                continue;
            };
            if let Some(i) = names.iter().position(|name| name.as_bytes() == key) {
                values[i] = if cbor.is_null(value)? {
                    None
                } else {
                    Some(value)
                };
            }
        }
        Ok(Some(Fields {
            cbor,
            names,
            values,
        }))
    }

    /// Where the value of `name` starts, if it is present and not `null`.
    fn take(&self, name: &str) -> Option<usize> {
        let i = self.names.iter().position(|n| *n == name);
        debug_assert!(i.is_some(), "`{name}` is missing from the keys to look for");
        self.values[i?]
    }

    fn required(&self, name: &'static str) -> Result<usize, DecodeError> {
        self.take(name)
            .ok_or(DecodeError::MissingField { field: name })
    }

    fn text(&self, name: &'static str) -> Result<String, DecodeError> {
        self.cbor.text(self.required(name)?, name)
    }

    fn peer_id(&self, name: &'static str) -> Result<PeerId, DecodeError> {
        self.cbor.peer_id(self.required(name)?, name)
    }

    fn optional_peer_id(&self, name: &'static str) -> Result<Option<PeerId>, DecodeError> {
        self.take(name)
            .map(|at| self.cbor.peer_id(at, name))
            .transpose()
    }

    fn document_id(&self, name: &'static str) -> Result<DocumentId, DecodeError> {
        self.cbor.document_id(self.required(name)?, name)
    }

    /// An array of document IDs, each in the same string form as a `documentId` field.
    fn document_id_list(&self, name: &'static str) -> Result<Vec<DocumentId>, DecodeError> {
        let items = self
            .cbor
            .array(self.required(name)?)?
            .ok_or(invalid(name, "an array"))?;
        if items.item_count()? > MAX_CHANGED_DOCS {
            return Err(invalid(name, EXPECTED_DOCUMENT_IDS));
        }
        items
            .map(|item| self.cbor.document_id(item?, name))
            .collect()
    }

    fn data(&self, name: &'static str) -> Result<Vec<u8>, DecodeError> {
        self.cbor.data(self.required(name)?, name)
    }

    /// An array of byte strings, each read like a `data` field.
    fn data_list(&self, name: &'static str) -> Result<Vec<Vec<u8>>, DecodeError> {
        let items = self
            .cbor
            .array(self.required(name)?)?
            .ok_or(invalid(name, EXPECTED_DOCUMENTS))?;
        if items.item_count()? > MAX_CHANGED_DOCS {
            return Err(invalid(name, EXPECTED_DOCUMENTS));
        }
        items.map(|item| self.cbor.data(item?, name)).collect()
    }

    fn optional_text(&self, name: &'static str) -> Result<Option<String>, DecodeError> {
        self.take(name)
            .map(|at| self.cbor.text(at, name))
            .transpose()
    }

    /// A boolean; absent reads as `false`.
    fn flag(&self, name: &'static str) -> Result<bool, DecodeError> {
        match self.take(name) {
            None => Ok(false),
            Some(at) => self.cbor.boolean(at)?.ok_or(invalid(name, "a boolean")),
        }
    }

    fn whole_number(&self, name: &'static str) -> Result<u64, DecodeError> {
        self.cbor.whole_number(self.required(name)?, name)
    }

    fn optional_text_list(&self, name: &'static str) -> Result<Option<Vec<String>>, DecodeError> {
        self.take(name)
            .map(|at| self.cbor.text_list(at, name))
            .transpose()
    }

    fn storage_id_list(&self, name: &'static str) -> Result<Vec<StorageId>, DecodeError> {
        let Some(at) = self.take(name) else {
            return Ok(Vec::new());
        };
        self.cbor
            .array(at)?
            .ok_or(invalid(name, "an array"))?
            .map(|item| self.cbor.storage_id(item?, name))
            .collect()
    }

    fn peer_metadata(&self, name: &'static str) -> Result<Option<PeerMetadata>, DecodeError> {
        let Some(at) = self.take(name) else {
            return Ok(None);
        };
        let meta = Fields::new(self.cbor, at, &METADATA_KEYS)?.ok_or(invalid(name, "a map"))?;
        let storage_id = meta
            .take("storageId")
            .map(|at| self.cbor.storage_id(at, "peerMetadata.storageId"))
            .transpose()?;
        let is_ephemeral = match meta.take("isEphemeral") {
            None => false,
            Some(at) => self
                .cbor
                .boolean(at)?
                .ok_or(invalid("peerMetadata.isEphemeral", "a boolean"))?,
        };
        let extensions = match meta.take("lianxinExtensions") {
            None => Vec::new(),
            Some(at) => self.cbor.extensions(at)?,
        };
        Ok(Some(PeerMetadata {
            storage_id,
            is_ephemeral,
            extensions,
        }))
    }

    fn new_heads(&self, name: &'static str) -> Result<Vec<(StorageId, RemoteHeads)>, DecodeError> {
        const EXPECTED: &str = "a map from storage ID to heads";
        self.cbor
            .map(self.required(name)?)?
            .ok_or(invalid(name, EXPECTED))?
            .map(|entry| {
                let (key, value) = entry?;
                let storage_id = self.cbor.storage_id(key, name)?;
                let entry =
                    Fields::new(self.cbor, value, &HEADS_KEYS)?.ok_or(invalid(name, EXPECTED))?;
                let heads = self
                    .cbor
                    .text_list(entry.required("heads")?, "newHeads.heads")?;
                let timestamp = entry.whole_number("timestamp")?;
                Ok((storage_id, RemoteHeads { heads, timestamp }))
            })
            .collect()
    }
}

fn invalid(field: &'static str, expected: &'static str) -> DecodeError {
    DecodeError::InvalidField { field, expected }
}

/// JavaScript's `Number.MAX_SAFE_INTEGER`.
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
