//! Checksum repair for Automerge storage chunks.
//!
//! Automerge refuses a chunk whose 4-byte checksum (the start of the SHA-256 of its type, length
//! and data) does not match, so a mutated chunk almost never gets past that check, and the
//! fuzzer would spend its time on the checksum instead of the parsers behind it. Targets that
//! feed chunks to Automerge repair the checksums first; the code under test (`chunk::inspect`)
//! does not read them, so nothing it sees is lost.

use std::io::Read;

use sha2::{Digest, Sha256};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// The most a compressed change is inflated to in order to compute its checksum.
const MAX_INFLATE: u64 = 8 << 20;

/// A copy of `bytes` with the checksum of every chunk fixed, as far as the chunk headers parse.
pub fn fix_checksums(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut pos = 0;
    while out.len() >= pos + 9 && out[pos..pos + 4] == MAGIC {
        let chunk_type = out[pos + 8];
        let Some((len, n)) = uleb(&out[pos + 9..]) else {
            break;
        };
        let start = pos + 9 + n;
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| start.checked_add(len))
        else {
            break;
        };
        if end > out.len() {
            break;
        }
        let data = &out[start..end];
        let sum = if chunk_type == 2 {
            // A compressed change carries the checksum of the change it inflates to.
            let mut inflated = Vec::new();
            let ok = flate2::read::DeflateDecoder::new(data)
                .take(MAX_INFLATE)
                .read_to_end(&mut inflated)
                .is_ok();
            if !ok {
                pos = end;
                continue;
            }
            checksum(1, &inflated)
        } else {
            checksum(chunk_type, data)
        };
        out[pos + 4..pos + 8].copy_from_slice(&sum);
        pos = end;
    }
    out
}

/// The checksum Automerge expects for a chunk of `chunk_type` with `data`.
pub fn checksum(chunk_type: u8, data: &[u8]) -> [u8; 4] {
    let mut header = vec![chunk_type];
    let mut len = data.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            header.push(byte);
            break;
        }
        header.push(byte | 0x80);
    }
    let mut hasher = Sha256::new();
    hasher.update(&header);
    hasher.update(data);
    let hash = hasher.finalize();
    [hash[0], hash[1], hash[2], hash[3]]
}

/// An unsigned LEB128 number and how many bytes it took.
fn uleb(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// `data`, a sync message, with the checksums of the chunks it carries repaired and its hash
/// lists sorted (Automerge's encoder asserts that in debug builds); `None` if it does not decode
/// or nothing changed.
pub fn fix_sync_message(data: &[u8]) -> Option<Vec<u8>> {
    let mut message = automerge::sync::Message::decode(data).ok()?;
    if message.changes.is_empty() {
        return None;
    }
    let fixed: Vec<Vec<u8>> = message.changes.iter().map(fix_checksums).collect();
    if fixed
        .iter()
        .zip(message.changes.iter())
        .all(|(a, b)| a == b)
    {
        return None;
    }
    message.changes = fixed.into();
    message.heads.sort_unstable();
    message.heads.dedup();
    message.need.sort_unstable();
    message.need.dedup();
    for have in &mut message.have {
        have.last_sync.sort_unstable();
    }
    Some(message.encode())
}
