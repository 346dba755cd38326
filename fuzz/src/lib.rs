//! Shared pieces of Lianxin's fuzz targets (`fuzz_targets/`) and of the seed generator
//! (`seeds.rs`): [`init`] for the settings, a counting allocator that turns allocation blowups into crashes, checksum
//! repair for Automerge chunks, well-formed documents of every kind, and edits driven by fuzz
//! input.
//!
//! Everything here must be deterministic: the same input must take the same path, or libFuzzer
//! cannot reproduce or minimise what it finds. So every Automerge actor ID is fixed, and
//! nothing reads a clock (Automerge's commit time defaults to 0).

pub mod alloc;
pub mod chunks;
pub mod docs;
pub mod edits;
pub mod panics;

/// Reads the harness settings from the environment, once: `LIANXIN_FUZZ_MALLOC_LIMIT_MB` (the
/// largest single allocation, see [`alloc`]). Every target calls it from its `init:` block.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(mb) = std::env::var("LIANXIN_FUZZ_MALLOC_LIMIT_MB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|mb| *mb > 0)
        {
            alloc::set_single_limit(mb.saturating_mul(1 << 20));
        }
    });
}
