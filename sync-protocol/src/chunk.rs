//! [`inspect`]: reads the headers of Automerge storage chunks a peer sent, and bounds what
//! they inflate to, before any of it reaches Automerge.
//!
//! A sync message carries changes as Automerge chunks. Two kinds are DEFLATE-compressed: a
//! compressed change chunk (type 2), and a document chunk (type 0) whose columns carry the
//! deflate bit. Automerge 0.12 inflates both into a `Vec` without any limit, so a one-megabyte
//! message can ask for gigabytes before a single rule has looked at it. Refusing compression
//! outright is not an option: `automerge::sync` itself sends a whole document with its columns
//! compressed (`Automerge::save`) to a peer that has nothing yet, which is how a stock client
//! uploads every new document.
//!
//! So every chunk is walked here first: its header and column metadata are parsed, each
//! compressed part is inflated into a counting sink that stops at the budget, and uncompressed
//! parts count their own length. DEFLATE is deterministic, so what Automerge later inflates is
//! exactly what was counted. Chunk types are allowed by list: document, change and compressed
//! change; bundles (type 3, never sent by `automerge::sync`) and unknown types are refused.
//!
//! This bounds bytes, not Automerge's own work on them; that is proportional to the bytes for
//! every column encoding but run-length ones, see `docs/design/hostile-input.md`.
//!
//! This module must not allocate in proportion to anything the peer declares (only to what it
//! actually sent), and must not panic on any input.

use std::io::{self, Read};

/// The four bytes every Automerge chunk starts with.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The bit of a column specification that says the column is DEFLATE-compressed.
const DEFLATE_BIT: u64 = 0b1000;

/// Chunk types, as the byte after the checksum.
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;

/// Why a peer's Automerge bytes were refused before Automerge saw them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The bytes are not a sequence of well-formed chunk headers.
    #[error("malformed Automerge chunk: {0}")]
    Malformed(&'static str),
    /// A chunk type this server does not take from peers.
    #[error("Automerge chunk type {0} is not accepted")]
    Type(u8),
    /// Compressed data that does not inflate.
    #[error("Automerge chunk has corrupt compressed data")]
    Deflate,
    /// The chunks would take more than the budget once inflated.
    #[error("Automerge changes inflate to more than {limit} bytes")]
    TooLarge { limit: usize },
}

/// What [`inspect`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inspection {
    /// How many chunks the bytes hold.
    pub chunks: usize,
    /// Their size once every compressed part is inflated.
    pub inflated_bytes: usize,
}

/// Checks that `bytes` is a sequence of accepted Automerge chunks (as `load_incremental` takes
/// them) that inflates to at most `budget` bytes, and says how much it inflates to.
pub fn inspect(bytes: &[u8], budget: usize) -> Result<Inspection, ChunkError> {
    let mut found = Inspection::default();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk_type, data, after) = header(rest)?;
        let left = budget.saturating_sub(found.inflated_bytes);
        // The header counts too; it is at most a few bytes more than the data.
        let header_len = rest.len() - after.len() - data.len();
        let data_size = match chunk_type {
            CHANGE => Ok(data.len()),
            DOCUMENT => document(data, left),
            COMPRESSED_CHANGE => inflated(data, left),
            other => Err(ChunkError::Type(other)),
        };
        // Inner parts stop at what is left of the budget; the peer hears the whole budget.
        let data_size = data_size.map_err(|e| match e {
            ChunkError::TooLarge { .. } => ChunkError::TooLarge { limit: budget },
            other => other,
        })?;
        let size = header_len + data_size;
        found.inflated_bytes = found.inflated_bytes.saturating_add(size);
        if found.inflated_bytes > budget {
            return Err(ChunkError::TooLarge { limit: budget });
        }
        found.chunks += 1;
        rest = after;
    }
    Ok(found)
}

/// Splits one chunk off `input`: its type, its data, and what follows it.
fn header(input: &[u8]) -> Result<(u8, &[u8], &[u8]), ChunkError> {
    let mut rest = input;
    let magic = take(&mut rest, 4)?;
    if magic != MAGIC {
        return Err(ChunkError::Malformed("bad magic bytes"));
    }
    let _checksum = take(&mut rest, 4)?;
    let chunk_type = take(&mut rest, 1)?[0];
    let len = uleb(&mut rest)?;
    let len = usize::try_from(len).map_err(|_| ChunkError::Malformed("chunk length"))?;
    let data = take(&mut rest, len)?;
    Ok((chunk_type, data, rest))
}

/// The inflated size of a document chunk's data: the prefix (actors, heads, column
/// metadata) and suffix as they are, each column inflated if it is compressed.
fn document(data: &[u8], budget: usize) -> Result<usize, ChunkError> {
    let mut rest = data;
    let actors = uleb(&mut rest)?;
    for _ in 0..actors {
        let len = uleb(&mut rest)?;
        skip(&mut rest, len)?;
    }
    let heads = uleb(&mut rest)?;
    skip(&mut rest, heads.saturating_mul(32))?;
    let change_columns = columns(&mut rest)?;
    let op_columns = columns(&mut rest)?;
    let prefix_len = data.len() - rest.len();
    let mut size = prefix_len;
    for (spec, len) in change_columns.into_iter().chain(op_columns) {
        let len = usize::try_from(len).map_err(|_| ChunkError::Malformed("column length"))?;
        let column = take(&mut rest, len)?;
        let column_size = if spec & DEFLATE_BIT != 0 {
            inflated(column, budget.saturating_sub(size))?
        } else {
            column.len()
        };
        size = size.saturating_add(column_size);
        if size > budget {
            return Err(ChunkError::TooLarge { limit: budget });
        }
    }
    // The suffix (head indexes) is read by Automerge as it is.
    Ok(size.saturating_add(rest.len()))
}

/// Reads column metadata: a count, then (specification, length) pairs. Each pair takes at
/// least two bytes of input, so the list is never longer than what the peer sent.
fn columns(rest: &mut &[u8]) -> Result<Vec<(u64, u64)>, ChunkError> {
    let count = uleb(rest)?;
    if count > rest.len() as u64 / 2 {
        return Err(ChunkError::Malformed("column count"));
    }
    let mut columns = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let spec = uleb(rest)?;
        let len = uleb(rest)?;
        columns.push((spec, len));
    }
    Ok(columns)
}

/// How many bytes `compressed` inflates to, stopping as soon as it passes `budget`.
fn inflated(compressed: &[u8], budget: usize) -> Result<usize, ChunkError> {
    let cap = u64::try_from(budget).unwrap_or(u64::MAX).saturating_add(1);
    let mut decoder = flate2::read::DeflateDecoder::new(compressed).take(cap);
    let n = io::copy(&mut decoder, &mut io::sink()).map_err(|_| ChunkError::Deflate)?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > budget {
        return Err(ChunkError::TooLarge { limit: budget });
    }
    Ok(n)
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], ChunkError> {
    if rest.len() < len {
        return Err(ChunkError::Malformed("truncated"));
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

fn skip(rest: &mut &[u8], len: u64) -> Result<(), ChunkError> {
    let len = usize::try_from(len).map_err(|_| ChunkError::Malformed("truncated"))?;
    take(rest, len).map(|_| ())
}

/// Reads one unsigned LEB128 number.
fn uleb(rest: &mut &[u8]) -> Result<u64, ChunkError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest
            .split_first()
            .ok_or(ChunkError::Malformed("truncated number"))?;
        *rest = tail;
        value |= u64::from(byte & 0x7f)
            .checked_shl(shift)
            .filter(|v| v >> shift == u64::from(byte & 0x7f))
            .ok_or(ChunkError::Malformed("number too large"))?;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(ChunkError::Malformed("number too large"))
}

#[cfg(test)]
mod tests;
