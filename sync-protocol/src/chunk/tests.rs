use std::io::Write;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ROOT};
use proptest::prelude::*;

use super::*;

const MIB: usize = 1024 * 1024;

/// A budget of `n` bytes and any number of operations.
fn bytes(n: usize) -> Budget {
    Budget {
        max_inflated_bytes: n,
        max_ops: u64::MAX,
    }
}

/// A budget of `n` operations and any number of bytes.
fn ops(n: u64) -> Budget {
    Budget {
        max_inflated_bytes: usize::MAX,
        max_ops: n,
    }
}

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
    let found = inspect(&saved, &bytes(10 * MIB)).unwrap();
    assert_eq!(found.chunks, 1);
    assert!(
        found.inflated_bytes.abs_diff(plain.len()) <= 8,
        "counted {} bytes, the uncompressed save is {}",
        found.inflated_bytes,
        plain.len()
    );
    // The budget is a hard limit.
    assert_eq!(
        inspect(&saved, &bytes(plain.len() / 2)),
        Err(ChunkError::TooLarge {
            limit: plain.len() / 2
        })
    );
}

#[test]
fn change_chunks_pass_and_count_their_length() {
    let mut doc = wordy_doc();
    let mut raw = Vec::new();
    for change in doc.get_changes(&[]) {
        raw.extend(change.raw_bytes());
    }
    let found = inspect(&raw, &bytes(10 * MIB)).unwrap();
    assert_eq!(found.chunks, doc.get_changes(&[]).len());
    assert_eq!(found.inflated_bytes, raw.len());
}

#[test]
fn a_compressed_change_chunk_that_automerge_loads_passes() {
    let mut doc = wordy_doc();
    let change = doc.get_changes(&[])[0].raw_bytes().to_vec();
    let (_, data, _) = header(&change).unwrap();
    let mut compressed = chunk(COMPRESSED_CHANGE, &deflate(data));
    // Same checksum as the uncompressed chunk: automerge checks it after inflating.
    compressed[4..8].copy_from_slice(&change[4..8]);
    let found = inspect(&compressed, &bytes(10 * MIB)).unwrap();
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
        inspect(&bomb, &bytes(8 * MIB)),
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
        inspect(&doc, &bytes(8 * MIB)),
        Err(ChunkError::TooLarge { limit: 8 * MIB })
    );
    // Several small bombs share one budget.
    let small = zeros_deflated(3 * MIB);
    let mut many = Vec::new();
    for _ in 0..4 {
        many.extend(chunk(COMPRESSED_CHANGE, &small));
    }
    assert_eq!(
        inspect(&many, &bytes(8 * MIB)),
        Err(ChunkError::TooLarge { limit: 8 * MIB })
    );
}

#[test]
fn operations_are_counted_from_every_chunk_kind() {
    let mut doc = wordy_doc();
    // One scalar string and 200 integers: 201 operations in one change.
    let change = doc.get_changes(&[])[0].raw_bytes().to_vec();
    assert_eq!(inspect(&change, &ops(1_000)).unwrap().ops, 201);
    // The document adds its one change as a row of its change columns.
    assert_eq!(inspect(&doc.save(), &ops(1_000)).unwrap().ops, 202);
    assert_eq!(
        inspect(&doc.save_nocompress(), &ops(1_000)).unwrap().ops,
        202
    );
    assert_eq!(
        inspect(&change, &ops(200)),
        Err(ChunkError::TooManyOps { limit: 200 })
    );
}

#[test]
fn a_run_length_bomb_is_refused_by_its_declared_operations() {
    // 300,000 nulls inserted into a list: run-length encoding makes them a few dozen bytes.
    let mut doc = AutoCommit::new();
    let list = doc
        .put_object(ROOT, "list", automerge::ObjType::List)
        .unwrap();
    doc.splice(&list, 0, 0, vec![automerge::ScalarValue::Null; 300_000])
        .unwrap();
    doc.commit();
    let change = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    assert!(change.len() < 200, "{} bytes", change.len());
    let found = inspect(&change, &ops(u64::MAX)).unwrap();
    assert_eq!(found.ops, 300_001);
    assert_eq!(
        inspect(&change, &ops(250_000)),
        Err(ChunkError::TooManyOps { limit: 250_000 })
    );
    for saved in [doc.save(), doc.save_nocompress()] {
        assert_eq!(
            inspect(&saved, &ops(250_000)),
            Err(ChunkError::TooManyOps { limit: 250_000 })
        );
    }
    // Compressed as a whole (chunk type 2), it is counted after inflating.
    let (_, data, _) = header(&change).unwrap();
    let compressed = chunk(COMPRESSED_CHANGE, &deflate(data));
    assert_eq!(
        inspect(&compressed, &ops(250_000)),
        Err(ChunkError::TooManyOps { limit: 250_000 })
    );
}

#[test]
fn bundles_unknown_types_and_corrupt_data_are_refused() {
    assert_eq!(
        inspect(&chunk(3, b"x"), &bytes(MIB)),
        Err(ChunkError::Type(3))
    );
    assert_eq!(
        inspect(&chunk(9, b"x"), &bytes(MIB)),
        Err(ChunkError::Type(9))
    );
    assert_eq!(
        inspect(&chunk(COMPRESSED_CHANGE, b"\xff\xff\xff"), &bytes(MIB)),
        Err(ChunkError::Deflate)
    );
    let mut truncated = chunk(CHANGE, b"abc");
    truncated.pop();
    assert!(matches!(
        inspect(&truncated, &bytes(MIB)),
        Err(ChunkError::Malformed(_))
    ));
    assert!(matches!(
        inspect(b"not a chunk", &bytes(MIB)),
        Err(ChunkError::Malformed(_))
    ));
    assert_eq!(inspect(&[], &bytes(MIB)), Ok(Inspection::default()));
}

proptest! {
    #[test]
    fn never_panics_and_never_passes_the_budget(
        input in proptest::collection::vec(any::<u8>(), 0..512),
        max_bytes in 0usize..4096,
        max_ops in 0u64..1_000,
    ) {
        let budget = Budget { max_inflated_bytes: max_bytes, max_ops };
        let within = |found: Inspection| found.inflated_bytes <= max_bytes && found.ops <= max_ops;
        if let Ok(found) = inspect(&input, &budget) {
            prop_assert!(within(found));
        }
        // Behind a valid header too, where the parser goes deeper.
        for chunk_type in [DOCUMENT, CHANGE, COMPRESSED_CHANGE] {
            if let Ok(found) = inspect(&chunk(chunk_type, &input), &budget) {
                prop_assert!(within(found));
            }
        }
    }
}
