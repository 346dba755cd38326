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
//! Bytes alone do not bound Automerge's work: a run-length encoded column declares a million
//! operations in three bytes, and Automerge builds every one. So the rows every column
//! declares are counted too (runs are summed without being expanded), and the largest count
//! of a chunk's columns is held to an operation budget; in a document chunk its changes count
//! as well. See `docs/design/hostile-input.md`.
//!
//! This module must not allocate in proportion to anything the peer declares (only to what it
//! actually sent), and must not panic on any input.

use std::io::Read;

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
    /// The bytes are not a sequence of well-formed chunk headers and columns.
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
    /// The chunks declare more operations (or changes) than the budget allows.
    #[error("Automerge changes hold more than {limit} operations")]
    TooManyOps { limit: u64 },
}

impl ChunkError {
    /// Whether the bytes are broken (rather than well-formed but over a limit).
    pub fn is_malformed(&self) -> bool {
        !matches!(self, Self::TooLarge { .. } | Self::TooManyOps { .. })
    }
}

/// What the chunks of one message may cost once decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes, once every compressed part is inflated.
    pub max_inflated_bytes: usize,
    /// Rows of every column: operations, and the changes of a document chunk. Automerge
    /// builds each operation a column declares, and run-length encoding declares a million of
    /// them in three bytes, so bytes alone do not bound its work.
    pub max_ops: u64,
}

/// What [`inspect`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inspection {
    /// How many chunks the bytes hold.
    pub chunks: usize,
    /// Their size once every compressed part is inflated.
    pub inflated_bytes: usize,
    /// The operations (and, in documents, changes) their columns declare.
    pub ops: u64,
}

/// Checks that `bytes` is a sequence of accepted Automerge chunks (as `load_incremental` takes
/// them) within `budget`, and says what it costs.
pub fn inspect(bytes: &[u8], budget: &Budget) -> Result<Inspection, ChunkError> {
    // Inner parts stop at what is left of the budget; the peer hears the whole budget.
    walk_chunks(bytes, budget).map_err(|e| match e {
        ChunkError::TooManyOps { .. } => ChunkError::TooManyOps {
            limit: budget.max_ops,
        },
        other => other,
    })
}

fn walk_chunks(bytes: &[u8], budget: &Budget) -> Result<Inspection, ChunkError> {
    let mut walk = Walk {
        budget: *budget,
        found: Inspection::default(),
    };
    let mut rest = bytes;
    while !rest.is_empty() {
        let (chunk_type, data, after) = header(rest)?;
        // The header counts too; it is a few bytes more than the data.
        walk.add_bytes(rest.len() - after.len() - data.len())?;
        match chunk_type {
            CHANGE => walk.change(data)?,
            DOCUMENT => walk.document(data)?,
            COMPRESSED_CHANGE => {
                let inflated = walk.inflate(data)?;
                walk.change_columns(&inflated)?;
            }
            other => return Err(ChunkError::Type(other)),
        }
        walk.found.chunks += 1;
        rest = after;
    }
    Ok(walk.found)
}

/// The state of one inspection: what was found so far against the budget.
struct Walk {
    budget: Budget,
    found: Inspection,
}

impl Walk {
    fn add_bytes(&mut self, n: usize) -> Result<(), ChunkError> {
        self.found.inflated_bytes = self.found.inflated_bytes.saturating_add(n);
        if self.found.inflated_bytes > self.budget.max_inflated_bytes {
            return Err(ChunkError::TooLarge {
                limit: self.budget.max_inflated_bytes,
            });
        }
        Ok(())
    }

    fn ops_left(&self) -> u64 {
        self.budget.max_ops.saturating_sub(self.found.ops)
    }

    fn add_ops(&mut self, n: u64) -> Result<(), ChunkError> {
        self.found.ops = self.found.ops.saturating_add(n);
        if self.found.ops > self.budget.max_ops {
            return Err(ChunkError::TooManyOps {
                limit: self.budget.max_ops,
            });
        }
        Ok(())
    }

    /// Inflates `compressed` into memory, stopping as soon as it passes the budget (so it
    /// never holds more than a message's worth), and counts it.
    fn inflate(&mut self, compressed: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let left = self
            .budget
            .max_inflated_bytes
            .saturating_sub(self.found.inflated_bytes);
        let cap = u64::try_from(left).unwrap_or(u64::MAX).saturating_add(1);
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(compressed)
            .take(cap)
            .read_to_end(&mut out)
            .map_err(|_| ChunkError::Deflate)?;
        self.add_bytes(out.len())?;
        Ok(out)
    }

    /// An uncompressed change chunk's data.
    fn change(&mut self, data: &[u8]) -> Result<(), ChunkError> {
        self.add_bytes(data.len())?;
        self.change_columns(data)
    }

    /// Counts the operations a change's data declares (its bytes are counted by the caller).
    fn change_columns(&mut self, data: &[u8]) -> Result<(), ChunkError> {
        let mut rest = data;
        let deps = uleb(&mut rest)?;
        skip(&mut rest, deps.saturating_mul(32))?;
        let actor = uleb(&mut rest)?;
        skip(&mut rest, actor)?;
        let _seq = uleb(&mut rest)?;
        let _start_op = uleb(&mut rest)?;
        let _time = sleb(&mut rest)?;
        let message = uleb(&mut rest)?;
        skip(&mut rest, message)?;
        let others = uleb(&mut rest)?;
        for _ in 0..others {
            let len = uleb(&mut rest)?;
            skip(&mut rest, len)?;
        }
        let columns = columns(&mut rest)?;
        let mut rows = 0;
        for (spec, len) in columns {
            let data = take_u64(&mut rest, len)?;
            if spec & DEFLATE_BIT != 0 {
                // Automerge refuses compressed columns in change chunks.
                return Err(ChunkError::Malformed("compressed column in a change"));
            }
            rows = rows.max(column_rows(spec, data, self.ops_left())?);
        }
        self.add_ops(rows)
    }

    /// A document chunk's data: the prefix (actors, heads, column metadata) and suffix as
    /// they are, each column inflated if it is compressed; the rows of its change columns
    /// and of its operation columns both count.
    fn document(&mut self, data: &[u8]) -> Result<(), ChunkError> {
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
        self.add_bytes(data.len() - rest.len())?;
        for group in [change_columns, op_columns] {
            let mut rows = 0;
            for (spec, len) in group {
                let column = take_u64(&mut rest, len)?;
                let rows_here = if spec & DEFLATE_BIT != 0 {
                    let inflated = self.inflate(column)?;
                    column_rows(spec, &inflated, self.ops_left())?
                } else {
                    self.add_bytes(column.len())?;
                    column_rows(spec, column, self.ops_left())?
                };
                rows = rows.max(rows_here);
            }
            self.add_ops(rows)?;
        }
        // The suffix (head indexes) is read by Automerge as it is.
        self.add_bytes(rest.len())
    }
}

/// How many rows (values, including nulls) one column declares, failing as soon as that
/// passes `cap`. The encodings are automerge's: run-length encoding (a signed count, then one
/// value for a run, that many values for a literal list, or a null count), boolean runs
/// (alternating lengths), and raw bytes (no rows of their own). A group column's values are
/// row counts of the columns it groups, so they are held to `cap` too.
fn column_rows(spec: u64, data: &[u8], cap: u64) -> Result<u64, ChunkError> {
    const GROUP: u64 = 0;
    const ACTOR: u64 = 1;
    const INTEGER: u64 = 2;
    const DELTA: u64 = 3;
    const BOOLEAN: u64 = 4;
    const STRING: u64 = 5;
    const VALUE_METADATA: u64 = 6;
    let too_many = ChunkError::TooManyOps { limit: cap };
    let mut rest = data;
    let mut rows: u64 = 0;
    let mut grouped: u64 = 0;
    let column_type = spec & 0b111;
    let value = |rest: &mut &[u8]| -> Result<u64, ChunkError> {
        match column_type {
            DELTA => sleb(rest).map(|_| 0),
            STRING => {
                let len = uleb(rest)?;
                skip(rest, len).map(|()| 0)
            }
            _ => uleb(rest),
        }
    };
    match column_type {
        BOOLEAN => {
            while !rest.is_empty() {
                rows = rows.saturating_add(uleb(&mut rest)?);
                if rows > cap {
                    return Err(too_many);
                }
            }
        }
        GROUP | ACTOR | INTEGER | DELTA | STRING | VALUE_METADATA => {
            while !rest.is_empty() {
                let count = sleb(&mut rest)?;
                if count > 0 {
                    let v = value(&mut rest)?;
                    rows = rows.saturating_add(count.unsigned_abs());
                    grouped = grouped.saturating_add(v.saturating_mul(count.unsigned_abs()));
                } else if count < 0 {
                    // Each literal value takes at least a byte, so this loop is bounded by
                    // the bytes sent, whatever the count claims.
                    for _ in 0..count.unsigned_abs() {
                        let v = value(&mut rest)?;
                        grouped = grouped.saturating_add(v);
                        rows += 1;
                    }
                } else {
                    rows = rows.saturating_add(uleb(&mut rest)?);
                }
                if rows > cap || (column_type == GROUP && grouped > cap) {
                    return Err(too_many);
                }
            }
        }
        // Raw values: their metadata column declares the rows.
        _ => {}
    }
    Ok(rows)
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
    let data = take_u64(&mut rest, len)?;
    Ok((chunk_type, data, rest))
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

fn take_u64<'a>(rest: &mut &'a [u8], len: u64) -> Result<&'a [u8], ChunkError> {
    let len = usize::try_from(len).map_err(|_| ChunkError::Malformed("truncated"))?;
    take(rest, len)
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
    take_u64(rest, len).map(|_| ())
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

/// Reads one signed LEB128 number.
fn sleb(rest: &mut &[u8]) -> Result<i64, ChunkError> {
    let mut value: i64 = 0;
    let mut shift = 0u32;
    loop {
        let (&byte, tail) = rest
            .split_first()
            .ok_or(ChunkError::Malformed("truncated number"))?;
        *rest = tail;
        if shift >= 64 {
            return Err(ChunkError::Malformed("number too large"));
        }
        value |= i64::from(byte & 0x7f).wrapping_shl(shift);
        shift += 7;
        if byte & 0x80 == 0 {
            if shift < 64 && byte & 0x40 != 0 {
                value |= -1i64 << shift;
            }
            return Ok(value);
        }
    }
}

#[cfg(test)]
mod tests;
