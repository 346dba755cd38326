//! How much heap [`Message::decode`] takes for hostile frames, counted by a global allocator.
//!
//! A frame full of tiny CBOR items must not cost many times its size to decode, or one client
//! could make the server allocate hundreds of megabytes per connection within the frame limit.
//! These tests decode such frames and assert that the heap in use during the call never grows by
//! more than [`MAX_FACTOR`] times the frame size.
//!
//! This is its own test binary, not a module of the unit tests, because a counting
//! `#[global_allocator]` replaces the allocator of the whole binary. The counts are kept per
//! thread, so tests running side by side do not see each other's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use lianxin_protocol::message::MAX_DEPTH;
use lianxin_protocol::{DecodeError, DocumentId, Message, PeerId};

/// How many times the frame size the heap may grow by while one frame is decoded.
const MAX_FACTOR: usize = 3;

/// About the size of the frames below: half the server's 8 MiB frame limit.
const FRAME_SIZE: usize = 4 << 20;

/// The system allocator, counting the bytes in use on the current thread while a measurement
/// runs.
struct Counting;

thread_local! {
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static IN_USE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Adds `delta` bytes to the current thread's count, if it is measuring.
fn count(delta: isize) {
    // `try_with`, because the allocator also runs while thread-locals are torn down.
    let _ = MEASURING.try_with(|measuring| {
        if measuring.get() {
            let now = IN_USE.get() + delta;
            IN_USE.set(now);
            PEAK.set(PEAK.get().max(now));
        }
    });
}

fn signed(size: usize) -> isize {
    isize::try_from(size).expect("allocation sizes fit in isize")
}

// SAFETY: every call is passed straight to `System`; the counting on the side touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are those `System.alloc` needs.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(signed(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, which is `System`, with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        count(-signed(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and the caller vouches for `new_size`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(signed(new_size) - signed(layout.size()));
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Decodes `frame` and returns the result with the most heap, in bytes, that was in use at once
/// during the call beyond what was in use before it (the decoded message included).
fn decode_measured(frame: &[u8]) -> (Result<Message, DecodeError>, usize) {
    IN_USE.set(0);
    PEAK.set(0);
    MEASURING.set(true);
    let result = Message::decode(frame);
    MEASURING.set(false);
    let peak = usize::try_from(PEAK.get()).expect("the peak is never below the start");
    (result, peak)
}

/// Asserts that decoding `frame` gives `expected` within [`MAX_FACTOR`] times its size.
#[track_caller]
fn assert_decodes_within_budget(what: &str, frame: &[u8], expected: Result<Message, DecodeError>) {
    let (result, peak) = decode_measured(frame);
    assert_eq!(result, expected, "{what}");
    println!(
        "{what}: frame {} bytes, peak heap {peak} bytes ({:.2}x)",
        frame.len(),
        peak as f64 / frame.len() as f64
    );
    assert!(
        peak <= MAX_FACTOR * frame.len(),
        "{what}: decoding a {}-byte frame took {peak} bytes of heap",
        frame.len()
    );
}

const DOC: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";

/// A CBOR head: major type and argument, in the shortest form.
fn head(major: u8, arg: u64) -> Vec<u8> {
    let major = major << 5;
    match arg {
        0..24 => vec![major | arg as u8],
        24..0x100 => vec![major | 24, arg as u8],
        0x100..0x1_0000 => [&[major | 25][..], &(arg as u16).to_be_bytes()].concat(),
        0x1_0000..0x1_0000_0000 => [&[major | 26][..], &(arg as u32).to_be_bytes()].concat(),
        _ => [&[major | 27][..], &arg.to_be_bytes()].concat(),
    }
}

fn text(s: &str) -> Vec<u8> {
    [head(3, s.len() as u64), s.as_bytes().to_vec()].concat()
}

fn bytes(b: &[u8]) -> Vec<u8> {
    [head(2, b.len() as u64), b.to_vec()].concat()
}

/// A `sync` message with `data`, with `extra` entries after `targetId`.
fn sync_frame(data: Vec<u8>, extra: Vec<(&str, Vec<u8>)>) -> Vec<u8> {
    let mut frame = head(5, 5 + extra.len() as u64);
    frame.extend(text("type"));
    frame.extend(text("sync"));
    frame.extend(text("senderId"));
    frame.extend(text("client"));
    frame.extend(text("targetId"));
    frame.extend(text("server"));
    for (key, value) in extra {
        frame.extend(text(key));
        frame.extend(value);
    }
    frame.extend(text("documentId"));
    frame.extend(text(DOC));
    frame.extend(text("data"));
    frame.extend(data);
    frame
}

fn sync_message(data: Vec<u8>) -> Message {
    Message::Sync {
        sender_id: PeerId::new("client").unwrap(),
        target_id: PeerId::new("server").unwrap(),
        document_id: DOC.parse::<DocumentId>().unwrap(),
        data,
    }
}

#[test]
fn unknown_keys_full_of_tiny_items_are_skipped_within_budget() {
    let data: Vec<u8> = (0..=255).cycle().take(64 << 10).collect();

    // About four million one-byte integers.
    let count = FRAME_SIZE as u64;
    let ints = [head(4, count), vec![0x01; FRAME_SIZE]].concat();

    // The same, as an indefinite-length array.
    let indefinite = [vec![0x9f], vec![0x17; FRAME_SIZE], vec![0xff]].concat();

    // Chains of one-entry maps nested as deep as the limit allows: the message is one level and
    // the array another, so each chain may nest `MAX_DEPTH - 2` maps.
    let chain_depth = MAX_DEPTH - 2;
    let chain: Vec<u8> = std::iter::repeat_n([0xa1, 0x00], chain_depth)
        .flatten()
        .chain([0x00])
        .collect();
    let chains = FRAME_SIZE / chain.len();
    let nested = [head(4, chains as u64), chain.repeat(chains)].concat();

    // One map of about two million entries from one-byte keys to one-byte values.
    let entries = FRAME_SIZE / 2;
    let map = [head(5, entries as u64), vec![0x00; 2 * entries]].concat();

    // Empty byte and text strings, and tags around small integers.
    let groups = FRAME_SIZE / 4;
    let small = [
        head(4, 3 * groups as u64),
        [0x40, 0x60, 0xc6, 0x00].repeat(groups),
    ]
    .concat();

    for (what, value) in [
        ("array of one-byte integers", ints),
        ("indefinite array of one-byte integers", indefinite),
        ("array of nested one-entry maps", nested),
        ("map of one-byte entries", map),
        ("array of empty strings and tagged integers", small),
    ] {
        let frame = sync_frame(bytes(&data), vec![("somethingNew", value)]);
        assert!(frame.len() >= FRAME_SIZE, "{what}: the frame is too small");
        assert_decodes_within_budget(what, &frame, Ok(sync_message(data.clone())));
    }
}

#[test]
fn large_data_and_text_cost_about_their_size() {
    let data: Vec<u8> = (0..=255).cycle().take(FRAME_SIZE).collect();

    let plain = sync_frame(bytes(&data), vec![]);
    assert_decodes_within_budget("plain data", &plain, Ok(sync_message(data.clone())));

    let tagged = sync_frame([vec![0xd8, 64], bytes(&data)].concat(), vec![]);
    assert_decodes_within_budget("tagged data", &tagged, Ok(sync_message(data.clone())));

    // An indefinite-length byte string in one-byte chunks, which takes twice its size on the wire.
    let half = &data[..FRAME_SIZE / 2];
    let chunked: Vec<u8> = std::iter::once(0x5f)
        .chain(half.iter().flat_map(|b| [0x41, *b]))
        .chain([0xff])
        .collect();
    let frame = sync_frame(chunked, vec![]);
    assert_decodes_within_budget("chunked data", &frame, Ok(sync_message(half.to_vec())));

    // The same field twice: only the last one counts.
    let frame = sync_frame(bytes(&data[..8]), vec![("data", bytes(&data))]);
    assert_decodes_within_budget(
        "repeated data",
        &frame,
        Ok(sync_message(data[..8].to_vec())),
    );

    let message = "x".repeat(FRAME_SIZE);
    let mut error = head(5, 3);
    error.extend(text("type"));
    error.extend(text("error"));
    error.extend(text("senderId"));
    error.extend(text("server"));
    error.extend(text("message"));
    error.extend(text(&message));
    assert_decodes_within_budget(
        "long error message",
        &error,
        Ok(Message::Error {
            sender_id: PeerId::new("server").unwrap(),
            target_id: None,
            message,
        }),
    );
}

#[test]
fn huge_declared_lengths_fail_without_allocating() {
    let huge = 1 << 63;
    for (what, value) in [
        ("array", head(4, huge)),
        ("map", head(5, huge)),
        ("byte string", head(2, huge)),
        ("text string", head(3, huge)),
        (
            "chunk of a byte string",
            [vec![0x5f], head(2, huge)].concat(),
        ),
        (
            "chunk of a text string",
            [vec![0x7f], head(3, huge)].concat(),
        ),
        (
            "tagged byte string",
            [vec![0xd8, 64], head(2, huge)].concat(),
        ),
        ("nested array", [head(4, 1), head(4, huge)].concat()),
    ] {
        // Under a key the decoder skips, and under one it reads, with a few bytes after.
        for key in ["somethingNew", "data"] {
            let mut frame = head(5, 5);
            frame.extend(text("type"));
            frame.extend(text("sync"));
            frame.extend(text("senderId"));
            frame.extend(text("client"));
            frame.extend(text(key));
            frame.extend(&value);
            frame.extend([0x01, 0x02, 0x03]);
            let (result, peak) = decode_measured(&frame);
            assert_eq!(result, Err(DecodeError::Truncated), "{what} under {key}");
            assert_eq!(peak, 0, "{what} under {key}: allocated before failing");
        }
    }
}
