//! A global allocator that counts live bytes and aborts on an allocation past a limit.
//!
//! Without a sanitizer (this machine's stable toolchain has none), libFuzzer's `-malloc_limit_mb`
//! does nothing; only `-rss_limit_mb` works, and it notices a blowup only after the pages are
//! touched. This allocator catches the request itself: one allocation larger than
//! [`single_limit`] (256 MiB unless set with [`set_single_limit`]) aborts the process with a
//! message, which libFuzzer reports as a crash and saves the input for. A fuzz input is a few
//! kilobytes, so a request that large is an amplification bug.
//!
//! Zeroed allocations (`vec![0; n]`, calloc) may be up to 1 GiB, or the limit if that is higher:
//! their pages cost nothing until written, and Automerge makes one such allocation of whatever
//! length (up to its own cap of 10^9 bytes) a string in a change declares, before it reads the
//! string (`columnar/encoding/decodable_impls.rs`). That is virtual memory only (RSS does not
//! move); `-rss_limit_mb` catches it if the pages are ever written.
//!
//! It also tracks the peak of live bytes, so a target can bound what one call costs
//! ([`reset_peak`] / [`peak_since`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The allocator; every target gets it through this library.
pub struct Counting;

#[global_allocator]
static GLOBAL: Counting = Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static SINGLE_LIMIT: AtomicUsize = AtomicUsize::new(256 << 20);

/// Sets the largest single allocation allowed, in bytes.
pub fn set_single_limit(bytes: usize) {
    SINGLE_LIMIT.store(bytes, Relaxed);
}

/// The largest single allocation allowed, in bytes.
pub fn single_limit() -> usize {
    SINGLE_LIMIT.load(Relaxed)
}

/// Bytes allocated and not yet freed.
pub fn live() -> usize {
    LIVE.load(Relaxed)
}

/// Starts measuring a peak: returns the live bytes now, to pass to [`peak_since`].
pub fn reset_peak() -> usize {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    live
}

/// How far the live bytes rose above `base` (from [`reset_peak`]) since then.
pub fn peak_since(base: usize) -> usize {
    PEAK.load(Relaxed).saturating_sub(base)
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
}

fn check(size: usize) {
    if size > SINGLE_LIMIT.load(Relaxed) {
        too_large(size);
    }
}

fn check_zeroed(size: usize) {
    if size > SINGLE_LIMIT.load(Relaxed).max(ZEROED_LIMIT) {
        too_large(size);
    }
}

/// The least limit for zeroed allocations, see the module documentation.
const ZEROED_LIMIT: usize = 1 << 30;

#[cold]
fn too_large(size: usize) -> ! {
    // No allocation from here on: format into a stack buffer.
    let mut buf = [0u8; 20];
    let mut n = size;
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\n==lianxin-fuzz== allocation of ");
    let _ = err.write_all(&buf[i..]);
    let _ = err.write_all(b" bytes exceeds the single-allocation limit; aborting\n");
    std::process::abort();
}

// SAFETY: every method forwards to `System` with the caller's arguments; the counters are only
// bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check_zeroed(layout.size());
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}
