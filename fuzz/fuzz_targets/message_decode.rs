//! `Message::decode` on arbitrary bytes (a websocket frame): never panics, never allocates far
//! beyond the input, and what decodes survives a round trip: decode(encode(m)) == m.
#![no_main]

use lianxin_fuzz::alloc;
use lianxin_protocol::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: lianxin_fuzz::init(),
    |data: &[u8]| {
    let base = alloc::reset_peak();
    let decoded = Message::decode(data);
    // decode.rs checks declared lengths against the bytes left before allocating, so what it
    // holds is proportional to the input (a generous factor for per-item overhead).
    let peak = alloc::peak_since(base);
    assert!(
        peak <= 256 * data.len() + (1 << 20),
        "decoding {} bytes took {peak} bytes of memory",
        data.len()
    );
    if let Ok(message) = decoded {
        let bytes = message.encode();
        let again = Message::decode(&bytes).expect("a re-encoded message must decode");
        assert_eq!(message, again, "decode(encode(m)) != m");
    }
});
