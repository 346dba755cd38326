//! [`SchemaLimits`]: how long each string and list of a document may be, and how many operations
//! one change may hold.
//!
//! A device could otherwise store a visit whose `heard` is 60 MiB, which every reader of the
//! area then downloads, and which every page of the read model then carries. The limits bound
//! what one field costs everyone after it is accepted; the message size limit (the server's)
//! bounds what one message costs the server before.
//!
//! Strings are measured in bytes of UTF-8, the form they are stored and sent in, whether they
//! are scalar strings or Text objects (a Chinese character is 3 bytes, so 8 KiB of free text is
//! about 2,700 characters). This module holds numbers only; the checks are in `schema` and
//! `schema/ops`.

use serde::{Deserialize, Serialize};

/// How long strings and lists may be. Every kind, households included, is held to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SchemaLimits {
    /// Free text, in bytes: a visit's `heard`, a request's `description`, an event's `note`, an
    /// order's `place`, a household's `address`. Also the most one change may insert into one
    /// of them.
    pub max_text_bytes: usize,
    /// Every other string, in bytes: identifiers, codes, dates, residents' names and numbers.
    /// (`area` is held to the area path's own limit.)
    pub max_short_bytes: usize,
    /// Items of any list: `residents`, `visitors`, a visit's `requests`, `timeline`, `claims`,
    /// `entries`.
    pub max_list_items: usize,
    /// Operations in one change. Judging a change walks its operations one by one; a field
    /// client's change holds one per character typed and a few per field, so this is far above
    /// what any of them writes, and bounds the work and memory one change can cost.
    pub max_change_ops: usize,
}

impl Default for SchemaLimits {
    fn default() -> Self {
        Self {
            max_text_bytes: 8 * 1024,
            max_short_bytes: 256,
            max_list_items: 1_000,
            max_change_ops: 100_000,
        }
    }
}
