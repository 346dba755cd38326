//! `DocSession` fed arbitrary bytes as the `data` of a peer's `sync` message, over a small fixed
//! document (a request with a triage event) and over an empty one (a new document, as the
//! server sees a client's first upload): never panics (errors are fine).
//!
//! Three ways in: `DocSession::decode` then `apply_message` on a clone with a session that
//! shares the document's heads; `on_message` on a clone with a fresh session; `on_message` on an
//! empty document. And the server's path for held changes (see `held`), which loads a vetted
//! message's chunks with `load_incremental` outside `DocSession`. When a call succeeds and has something to persist, the stored form must load
//! back to the same heads (the server stores `persist` and reloads from it).
//!
//! Automerge refuses chunks with a wrong checksum before parsing them, so each input is also
//! run once more with the checksums of the chunks it carries repaired (`chunks::fix_sync_message`).
//!
//! `DocSession` catches Automerge's panics on purpose and reports them as errors, so caught
//! panics are allowed here; a panic that escapes `DocSession` is a crash (see
//! `lianxin_fuzz::panics`; `LIANXIN_FUZZ_STRICT_PANICS=1` makes caught ones crashes too).
#![no_main]

use std::sync::OnceLock;

use automerge::{ActorId, Automerge};
use lianxin_fuzz::{chunks, docs, panics};
use lianxin_protocol::domain::Kind;
use lianxin_protocol::{DocSession, chunk};
use libfuzzer_sys::fuzz_target;

/// What the server passes by default (`limits.max_message_bytes`, `limits.max_message_ops`).
const BUDGET: chunk::Budget = chunk::Budget {
    max_inflated_bytes: 8 << 20,
    max_ops: 250_000,
};

fn fixture() -> &'static (Automerge, Vec<u8>) {
    static DOC: OnceLock<(Automerge, Vec<u8>)> = OnceLock::new();
    DOC.get_or_init(|| {
        let doc = docs::build(Kind::Request).document().clone();
        let saved = doc.save();
        (doc, saved)
    })
}

/// The document stored as `stored` followed by `persist` loads to `heads`.
fn check_persisted(stored: &[u8], persist: &[u8], doc: &Automerge) {
    let mut bytes = stored.to_vec();
    bytes.extend_from_slice(persist);
    let loaded = Automerge::load(&bytes).expect("persisted bytes must load");
    assert_eq!(
        loaded.get_heads(),
        doc.get_heads(),
        "persisted bytes load to other heads"
    );
}

/// The server's path for changes whose dependencies are missing (`server/src/hub/doc_actor.rs`:
/// a message whose chunks all parse as `automerge::Change` is held, and the held chunks are
/// later loaded into a fork with `load_incremental`). Automerge may panic there on chunks it
/// parsed; the server loads them under `catch_unwind` and drops them, and so does this model:
/// what must not happen is a panic that escapes.
fn held(doc: &Automerge, message: &automerge::sync::Message) {
    if message.changes.is_empty()
        || !message
            .changes
            .iter()
            .all(|chunk| automerge::Change::try_from(chunk).is_ok())
    {
        return;
    }
    let mut fork = doc.clone().with_actor(ActorId::from([7u8; 16]));
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for chunk in message.changes.iter() {
            let _ = fork.load_incremental(chunk);
        }
    }));
}

fn run(data: &[u8]) {
    let (doc, saved) = fixture();

    if let Ok(message) = DocSession::decode(data, &BUDGET) {
        held(doc, &message);
        let mut copy = doc.clone().with_actor(ActorId::from([7u8; 16]));
        let mut session = DocSession::sharing(doc.get_heads());
        if let Ok(effects) = session.apply_message(&mut copy, message) {
            if let Some(persist) = effects.persist {
                check_persisted(saved, &persist, &copy);
            }
            let _ = session.generate(&copy);
        }
    }

    let mut copy = doc.clone().with_actor(ActorId::from([7u8; 16]));
    let mut session = DocSession::new();
    if let Ok(effects) = session.on_message(&mut copy, data, &BUDGET)
        && let Some(persist) = effects.persist
    {
        check_persisted(saved, &persist, &copy);
    }

    let mut empty = Automerge::new().with_actor(ActorId::from([8u8; 16]));
    let mut session = DocSession::new();
    if let Ok(effects) = session.on_message(&mut empty, data, &BUDGET)
        && let Some(persist) = effects.persist
    {
        check_persisted(&[], &persist, &empty);
    }
}

fuzz_target!(
    init: lianxin_fuzz::init(),
    |data: &[u8]| {
    panics::allow_caught_panics();
    panics::guard(|| {
        run(data);
        if let Some(fixed) = chunks::fix_sync_message(data) {
            run(&fixed);
        }
    });
});
