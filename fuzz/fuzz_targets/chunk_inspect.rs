//! `chunk::inspect(bytes, budget)` on arbitrary bytes and budgets (the first six input bytes:
//! `max_inflated_bytes` and `max_ops`, three bytes each, little-endian, so up to 16 Mi each):
//! never panics, and what it accepts stays within the budget (inflated bytes and operations). What it accepts is then given to `Automerge::load_incremental`, as the server does,
//! with the chunk checksums repaired so Automerge parses it (see `lianxin_fuzz::chunks`).
//!
//! Automerge panics on some chunks it accepts; the server runs it under `catch_unwind` when it
//! applies a sync message (`DocSession`), so a panic in `load_incremental` is caught and counted
//! here, not a crash (`LIANXIN_FUZZ_STRICT_PANICS=1` makes it one, see `lianxin_fuzz::panics`).
//!
//! Automerge's memory there is bounded by `-rss_limit_mb` and the single-allocation limit of the
//! counting allocator (`lianxin_fuzz::alloc`). Set `LIANXIN_FUZZ_LOAD_FACTOR=N` to also fail when
//! loading takes more than 32 MiB + N x (inflated bytes + declared operations). It is off by
//! default because no factor has been calibrated against what Automerge really spends per
//! operation.
#![no_main]

use std::sync::OnceLock;

use automerge::{ActorId, Automerge};
use lianxin_fuzz::{alloc, chunks, panics};
use lianxin_protocol::chunk;
use libfuzzer_sys::fuzz_target;

fn load_factor() -> Option<usize> {
    static FACTOR: OnceLock<Option<usize>> = OnceLock::new();
    *FACTOR.get_or_init(|| {
        std::env::var("LIANXIN_FUZZ_LOAD_FACTOR")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

fuzz_target!(
    init: lianxin_fuzz::init(),
    |data: &[u8]| {
    panics::allow_caught_panics();
    panics::guard(|| check(data));
});

fn check(data: &[u8]) {
    if data.len() < 6 {
        return;
    }
    let le24 = |b: &[u8]| usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16;
    let budget = chunk::Budget {
        max_inflated_bytes: le24(&data[0..3]),
        max_ops: le24(&data[3..6]) as u64,
    };
    let bytes = &data[6..];
    let Ok(found) = chunk::inspect(bytes, &budget) else {
        return;
    };
    assert!(
        found.inflated_bytes <= budget.max_inflated_bytes && found.ops <= budget.max_ops,
        "inspect accepted {found:?} over {budget:?}"
    );
    assert!(found.chunks > 0 || bytes.is_empty(), "chunks counted wrong");
    if bytes.is_empty() {
        return;
    }
    let fixed = chunks::fix_checksums(bytes);
    let base = alloc::reset_peak();
    let _ = std::panic::catch_unwind(|| {
        let mut doc = Automerge::new().with_actor(ActorId::from([9u8; 16]));
        let _ = doc.load_incremental(&fixed);
    });
    if let Some(factor) = load_factor() {
        let peak = alloc::peak_since(base);
        let work = found.inflated_bytes.saturating_add(found.ops as usize);
        let bound = (32usize << 20).saturating_add(factor.saturating_mul(work));
        assert!(
            peak <= bound,
            "loading {} bytes ({found:?}) took {peak} bytes of memory, over {bound}",
            bytes.len()
        );
    }
}
