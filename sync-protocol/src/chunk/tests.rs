use std::io::Write;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ROOT};
use proptest::prelude::*;

use super::*;

const MIB: usize = 1024 * 1024;

/// A chunk of `chunk_type` around `data`, with a checksum nobody checks before inflating.
fn chunk(chunk_type: u8, data: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend([0; 4]);
    out.push(chunk_type);
    write_uleb(&mut out, data.len() as u64);
    out.extend(data);
    out
}

fn write_uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// `len` zero bytes, compressed (about a thousandth of `len`).
fn zeros_deflated(len: usize) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; MIB];
    for _ in 0..len / MIB {
        encoder.write_all(&block).unwrap();
    }
    encoder.finish().unwrap()
}

/// A document with enough repetitive text that `save` compresses its columns.
fn wordy_doc() -> AutoCommit {
    let mut doc = AutoCommit::new();
    let text = "楼道灯坏了，需要维修。".repeat(400);
    doc.put(ROOT, "heard", text).unwrap();
    for i in 0..200 {
        doc.put(ROOT, format!("k{i}"), i as i64).unwrap();
    }
    doc
}

#[test]
fn a_saved_document_with_compressed_columns_passes_and_counts_inflated() {
    let mut doc = wordy_doc();
    let saved = doc.save();
    let plain = doc.save_nocompress();
    assert!(
        saved.len() < plain.len(),
        "the test needs compressed columns"
    );
    let found = inspect(&saved, 10 * MIB).unwrap();
    assert_eq!(found.chunks, 1);
    assert!(
        found.inflated_bytes.abs_diff(plain.len()) <= 8,
        "counted {} bytes, the uncompressed save is {}",
        found.inflated_bytes,
        plain.len()
    );
    // The budget is a hard limit.
    assert_eq!(
        inspect(&saved, plain.len() / 2),
        Err(ChunkError::TooLarge {
            limit: plain.len() / 2
        })
    );
}

#[test]
fn change_chunks_pass_and_count_their_length() {
    let mut doc = wordy_doc();
    let mut bytes = Vec::new();
    for change in doc.get_changes(&[]) {
        bytes.extend(change.raw_bytes());
    }
    let found = inspect(&bytes, 10 * MIB).unwrap();
    assert_eq!(found.chunks, doc.get_changes(&[]).len());
    assert_eq!(found.inflated_bytes, bytes.len());
}

#[test]
fn a_compressed_change_chunk_that_automerge_loads_passes() {
    let mut doc = wordy_doc();
    let change = doc.get_changes(&[])[0].raw_bytes().to_vec();
    let (_, data, _) = header(&change).unwrap();
    let mut compressed = chunk(COMPRESSED_CHANGE, &deflate(data));
    // Same checksum as the uncompressed chunk: automerge checks it after inflating.
    compressed[4..8].copy_from_slice(&change[4..8]);
    let found = inspect(&compressed, 10 * MIB).unwrap();
    assert!(found.inflated_bytes.abs_diff(change.len()) <= 4);
    let mut loaded = Automerge::new();
    loaded.load_incremental(&compressed).unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
}

#[test]
fn a_compressed_change_bomb_is_refused_without_inflating_it() {
    let bomb = chunk(COMPRESSED_CHANGE, &zeros_deflated(64 * MIB));
    assert!(bomb.len() < MIB / 8);
    assert_eq!(
        inspect(&bomb, 8 * MIB),
        Err(ChunkError::TooLarge { limit: 8 * MIB })
    );
}

#[test]
fn a_document_with_a_deflated_column_bomb_is_refused() {
    let bomb = zeros_deflated(64 * MIB);
    let mut data = Vec::new();
    write_uleb(&mut data, 1); // one actor
    write_uleb(&mut data, 16);
    data.extend([7u8; 16]);
    write_uleb(&mut data, 0); // no heads
    write_uleb(&mut data, 0); // no change columns
    write_uleb(&mut data, 1); // one op column, compressed
    write_uleb(&mut data, (4 << 4) | DEFLATE_BIT | 2);
    write_uleb(&mut data, bomb.len() as u64);
    data.extend(&bomb);
    let doc = chunk(DOCUMENT, &data);
    assert_eq!(
        inspect(&doc, 8 * MIB),
        Err(ChunkError::TooLarge { limit: 8 * MIB })
    );
    // Several small bombs share one budget.
    let small = zeros_deflated(3 * MIB);
    let mut many = Vec::new();
    for _ in 0..4 {
        many.extend(chunk(COMPRESSED_CHANGE, &small));
    }
    assert_eq!(
        inspect(&many, 8 * MIB),
        Err(ChunkError::TooLarge { limit: 8 * MIB })
    );
}

#[test]
fn bundles_unknown_types_and_corrupt_data_are_refused() {
    assert_eq!(inspect(&chunk(3, b"x"), MIB), Err(ChunkError::Type(3)));
    assert_eq!(inspect(&chunk(9, b"x"), MIB), Err(ChunkError::Type(9)));
    assert_eq!(
        inspect(&chunk(COMPRESSED_CHANGE, b"\xff\xff\xff"), MIB),
        Err(ChunkError::Deflate)
    );
    let mut truncated = chunk(CHANGE, b"abc");
    truncated.pop();
    assert!(matches!(
        inspect(&truncated, MIB),
        Err(ChunkError::Malformed(_))
    ));
    assert!(matches!(
        inspect(b"not a chunk", MIB),
        Err(ChunkError::Malformed(_))
    ));
    assert_eq!(inspect(&[], MIB), Ok(Inspection::default()));
}

proptest! {
    #[test]
    fn never_panics_and_never_passes_the_budget(bytes in proptest::collection::vec(any::<u8>(), 0..512), budget in 0usize..4096) {
        if let Ok(found) = inspect(&bytes, budget) {
            prop_assert!(found.inflated_bytes <= budget);
        }
        // Behind a valid header too, where the parser goes deeper.
        for chunk_type in [DOCUMENT, CHANGE, COMPRESSED_CHANGE] {
            if let Ok(found) = inspect(&chunk(chunk_type, &bytes), budget) {
                prop_assert!(found.inflated_bytes <= budget);
            }
        }
    }
}
