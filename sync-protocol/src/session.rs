//! [`DocSession`]: one Automerge sync conversation about one document with one peer, sans IO.
//!
//! A session wraps an `automerge::sync::State`. It is fed the `data` of each `sync` or `request`
//! message the peer sends, applies it to the document, and answers with [`Effects`]: the bytes
//! that became new in the document (to store), and the next sync message for the peer (to send).
//! When the document changes for another reason (a local edit, or a change merged from another
//! peer's session), [`DocSession::on_doc_changed`] says what to tell this peer.
//!
//! # The rule for callers
//!
//! **Persist the `persist` bytes and wait for the commit before sending `send` or telling other
//! sessions about the change.** The message in `send` carries our new heads, and a peer that sees
//! them treats the change as acknowledged: it may stop offering it to us, or report it as saved to
//! its user. If we crashed after sending but before committing, the change would be lost although
//! every peer believes we have it. Acknowledged must mean committed.
//!
//! `persist` holds either a whole document (when the document was empty before) or a run of
//! change chunks (`Automerge::save_after`). Stored in order, the concatenation of all of them is a
//! valid input to `Automerge::load`.
//!
//! If [`DocSession::on_message`] fails with [`SessionError::ApplyFailed`] or
//! [`SessionError::NonCanonical`], the document may hold part of the message and none of it was
//! persisted: drop the in-memory document and this session, reload the document from storage,
//! and close the connection.
//!
//! # Hostile input
//!
//! Messages are checked before automerge sees them ([`DocSession::decode`]): automerge 0.12
//! divides by zero when it later consults a Bloom filter declaring zero bits per entry, reserves
//! room for the filter's declared probe count (up to 2^32, that is 16 GiB) on every lookup, and
//! (in debug builds) asserts that hashes arrive sorted. We refuse such filters, cap how many filters a message may carry, and
//! sort hash lists, so none of that is reachable from the network. As a second line of defence,
//! every call into automerge runs under `catch_unwind`, so a panic we have not foreseen becomes
//! an error (or a reset session) instead of taking the server down. That only helps with the
//! default `panic = "unwind"`.
//!
//! This module must not do IO, know about peers or document IDs, or decide who may sync what.

use std::panic::{self, AssertUnwindSafe};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

use crate::chunk::{self, ChunkError};

/// The most `have` entries (Bloom filters) a sync message may carry.
///
/// Automerge sends at most one; a few more leave room for other implementations without letting
/// a peer make us test every change against thousands of filters.
pub const MAX_HAVES: usize = 4;

/// The most hash functions a Bloom filter may declare. Automerge uses 7.
pub const MAX_BLOOM_PROBES: u32 = 64;

/// The most bits per entry a Bloom filter may declare. Automerge uses 10.
pub const MAX_BLOOM_BITS_PER_ENTRY: u32 = 64;

/// One sync conversation about one document with one peer.
#[derive(Debug, Clone, Default)]
pub struct DocSession {
    state: sync::State,
}

/// What the caller must do after an event, in this order: persist, then send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "persist the `persist` bytes, then send `send`"]
pub struct Effects {
    /// The changes that became part of the document, to store durably before anything else.
    /// `None` when nothing new arrived.
    pub persist: Option<Vec<u8>>,
    /// An encoded `automerge::sync::Message` for the peer, to send after `persist` committed.
    pub send: Option<Vec<u8>>,
    /// Whether the document's heads moved, so other sessions on it have something to send.
    pub heads_changed: bool,
}

/// Why a session could not take a message or a persisted state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The bytes are not an automerge sync message, or one we refuse to process.
    #[error("invalid sync message: {0}")]
    BadSyncMessage(String),
    /// The bytes are not a sync state written by [`DocSession::persisted_state`].
    #[error("invalid persisted sync state: {0}")]
    BadSyncState(String),
    /// The message's changes are chunks we do not take, or inflate past the limit
    /// ([`crate::chunk::inspect`]). Automerge has not seen them.
    #[error("refused sync message: {0}")]
    Chunks(#[from] ChunkError),
    /// A change that is not in Automerge's canonical encoding: stored, it would load as a
    /// change with another hash than the one the peer was told we have.
    #[error("refused sync message: a change is not in Automerge's canonical encoding")]
    NonCanonical,
    /// Automerge could not apply the message to the document. The document may hold part of it.
    #[error("could not apply sync message: {0}")]
    ApplyFailed(String),
}

impl DocSession {
    /// A session with a peer we have no shared history with: the first exchange compares the
    /// whole document.
    pub fn new() -> Self {
        Self::default()
    }

    /// A session that continues from [`DocSession::persisted_state`].
    ///
    /// The persisted state holds the heads both sides were known to share, so a reconnecting peer
    /// exchanges only the changes made since.
    pub fn resume(persisted: &[u8]) -> Result<Self, SessionError> {
        let mut state = sync::State::decode(persisted)
            .map_err(|e| SessionError::BadSyncState(e.to_string()))?;
        normalize(&mut state.shared_heads);
        Ok(Self { state })
    }

    /// A session that knows the peer has exactly `heads` (and everything before them), as
    /// after loading the peer's stored document: the next exchange sends only what came after.
    pub fn sharing(mut heads: Vec<ChangeHash>) -> Self {
        normalize(&mut heads);
        let mut state = sync::State::new();
        state.their_heads = Some(heads.clone());
        state.shared_heads = heads;
        Self { state }
    }

    /// Starts the conversation afresh from what is known to be shared, as after a reconnect:
    /// the same as resuming from [`DocSession::persisted_state`].
    pub fn restart(&mut self) {
        let mut state = sync::State::new();
        state.shared_heads = std::mem::take(&mut self.state.shared_heads);
        normalize(&mut state.shared_heads);
        self.state = state;
    }

    /// The part of the state worth keeping across connections: the shared heads.
    ///
    /// Store it under the peer's storage ID (not its peer ID, which changes on every start) and
    /// only for non-ephemeral peers, as automerge-repo does.
    pub fn persisted_state(&self) -> Vec<u8> {
        // `State::encode` keeps only the shared heads anyway; building a clean state lets us
        // hand it sorted heads, which its encoder asserts in debug builds.
        let mut state = sync::State::new();
        state.shared_heads = self.state.shared_heads.clone();
        normalize(&mut state.shared_heads);
        state.encode()
    }

    /// The heads both sides are known to have.
    pub fn shared_heads(&self) -> Vec<ChangeHash> {
        self.state.shared_heads.clone()
    }

    /// The heads the peer last told us about, if it has spoken in this session.
    pub fn their_heads(&self) -> Option<&[ChangeHash]> {
        self.state.their_heads.as_deref()
    }

    /// Parses and checks a sync message without applying it, so a caller can vet it (for
    /// example, refuse one that carries changes from a read-only peer) before
    /// [`DocSession::apply_message`]. Its changes together must stay within `budget` (see
    /// [`crate::chunk`]).
    pub fn decode(data: &[u8], budget: &chunk::Budget) -> Result<sync::Message, SessionError> {
        let message =
            sync::Message::decode(data).map_err(|e| SessionError::BadSyncMessage(e.to_string()))?;
        let mut left = *budget;
        for chunks in message.changes.iter() {
            let found = chunk::inspect(chunks, &left)?;
            left.max_inflated_bytes -= found.inflated_bytes;
            left.max_ops -= found.ops;
        }
        vet(message)
    }

    /// Applies the `data` of a `sync` or `request` message from the peer, whose changes must
    /// stay within `budget`.
    ///
    /// On success, `persist` holds what became new in `doc`, and `send` the answer for the peer.
    /// See the module documentation for the order to act on them, and for what to do on error.
    pub fn on_message(
        &mut self,
        doc: &mut Automerge,
        data: &[u8],
        budget: &chunk::Budget,
    ) -> Result<Effects, SessionError> {
        let message = Self::decode(data, budget)?;
        self.apply_message(doc, message)
    }

    /// Like [`DocSession::on_message`], for a message already parsed by [`DocSession::decode`].
    pub fn apply_message(
        &mut self,
        doc: &mut Automerge,
        message: sync::Message,
    ) -> Result<Effects, SessionError> {
        // Checked again because a caller may have built or altered the message itself.
        let message = vet(message)?;
        let heads_before = doc.get_heads();
        let state = &mut self.state;
        // A peer that names a change in `need` does not have it, whatever we sent before: it was
        // lost, or refused, or is waiting there for a dependency. Automerge never sends a change
        // twice in one session, so without this the two sides would ask and answer forever
        // without it moving.
        for hash in &message.need {
            state.sent_hashes.remove(hash);
        }
        // AssertUnwindSafe: if automerge panics half-way, `doc` and `state` may be inconsistent,
        // and we say so: ApplyFailed tells the caller to drop both and reload from storage.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            doc.receive_sync_message(state, message)
        }));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(SessionError::ApplyFailed(error.to_string())),
            Err(_) => {
                return Err(SessionError::ApplyFailed(
                    "automerge panicked while applying the message".to_owned(),
                ));
            }
        }
        let heads_changed = doc.get_heads() != heads_before;
        let persist = if heads_changed {
            // Checked first: a change that would not be stored as received is refused.
            let (changes, _) = save_after_checked(doc, &heads_before)?;
            Some(if heads_before.is_empty() {
                // The whole document is new; its compressed form is much smaller than the
                // individual changes, if it loads back to the same heads (Automerge can hold
                // changes it accepted but cannot write as a document).
                saved_whole(doc).unwrap_or(changes)
            } else {
                changes
            })
        } else {
            None
        };
        Ok(Effects {
            persist,
            send: self.generate(doc),
            heads_changed,
        })
    }

    /// The document changed outside this session (a local edit, or another peer's change that
    /// has been persisted): what to send this peer. Nothing is ever left to persist here,
    /// because whoever changed the document persisted it.
    pub fn on_doc_changed(&mut self, doc: &Automerge) -> Effects {
        Effects {
            persist: None,
            send: self.generate(doc),
            heads_changed: false,
        }
    }

    /// The next sync message for the peer, if there is anything to say.
    ///
    /// The side that opens the conversation (in automerge-repo, the client's first `request` or
    /// `sync`) calls it once to start; afterwards [`Effects::send`] carries the answers. It
    /// returns `None` while a message is in flight, and once both sides agree.
    ///
    /// Let only one side open. If both send a first message at once, automerge 0.12 sends a
    /// peer with an empty document the whole document twice: its whole-document shortcut does not
    /// look at what it already sent.
    pub fn generate(&mut self, doc: &Automerge) -> Option<Vec<u8>> {
        if let Some(outcome) = self.try_generate(doc) {
            return outcome;
        }
        // Generating only reads `doc`, so a panic cannot have damaged it; the cause must be
        // something the peer told us earlier, which lives in the state. Forgetting everything but
        // the shared heads (as a reconnect would) removes it, and costs at most a longer sync.
        let shared_heads = std::mem::take(&mut self.state.shared_heads);
        self.state = sync::State::new();
        self.state.shared_heads = shared_heads;
        self.try_generate(doc).flatten()
    }

    /// Generates under `catch_unwind`; `None` if automerge panicked.
    fn try_generate(&mut self, doc: &Automerge) -> Option<Option<Vec<u8>>> {
        let state = &mut self.state;
        panic::catch_unwind(AssertUnwindSafe(|| {
            doc.generate_sync_message(state).map(sync::Message::encode)
        }))
        .ok()
    }

    /// Whether the peer has told us it has exactly our heads, and we know we share them.
    ///
    /// This cannot tell whether our last message is still in flight: automerge keeps its
    /// in-flight flag set when the peer had nothing to answer, so the flag says nothing useful.
    pub fn is_in_sync(&self, doc: &Automerge) -> bool {
        let heads = doc.get_heads();
        self.state.shared_heads == heads && self.state.their_heads.as_ref() == Some(&heads)
    }
}

/// The changes `doc` holds beyond `before`, encoded for storage as `Automerge::save_after`
/// encodes them (their bytes, one after the other), with the changes themselves; checked to be
/// stored under the hashes the document knows them by.
///
/// Automerge keeps a received change under the hash of the bytes it received, but hands it
/// out (`get_changes`, `save_after`) encoded anew, in its canonical form, under the hash of the
/// new bytes. For a change whose bytes were valid but not canonical, that is another hash: the
/// stored bytes would load to other heads than the ones acknowledged to the peer (and a debug
/// build of Automerge panics while encoding). So every change handed out must be one the
/// document knows by that hash; otherwise the caller refuses the message. Runs under
/// `catch_unwind`, like every call into automerge on a peer's data.
pub fn save_after_checked(
    doc: &Automerge,
    before: &[ChangeHash],
) -> Result<(Vec<u8>, Vec<automerge::Change>), SessionError> {
    let changes = panic::catch_unwind(AssertUnwindSafe(|| doc.get_changes(before)))
        .map_err(|_| SessionError::NonCanonical)?;
    let hashes: Vec<ChangeHash> = changes.iter().map(|c| c.hash()).collect();
    // Also names the dependencies of changes Automerge holds back; only our own hashes count.
    let unknown = automerge::ReadDoc::get_missing_deps(doc, &hashes);
    if hashes.iter().any(|hash| unknown.contains(hash)) {
        return Err(SessionError::NonCanonical);
    }
    let bytes = changes
        .iter()
        .flat_map(|c| c.raw_bytes())
        .copied()
        .collect();
    Ok((bytes, changes))
}

/// `doc` saved as one document chunk (`Automerge::save`), if that loads back to the same heads.
///
/// Automerge 0.12 accepts some changes (found by fuzzing) that it can store as change chunks
/// but not as a document: the saved document does not load (`MissingOps`). Whoever replaces
/// change chunks by a saved document (a compaction, a whole-document store) must check this,
/// or the document becomes unreadable.
pub fn saved_whole(doc: &Automerge) -> Option<Vec<u8>> {
    panic::catch_unwind(AssertUnwindSafe(|| {
        let saved = doc.save();
        let loaded = Automerge::load(&saved).ok()?;
        let mut want = doc.get_heads();
        let mut got = loaded.get_heads();
        want.sort_unstable();
        got.sort_unstable();
        (want == got).then_some(saved)
    }))
    .ok()
    .flatten()
}

/// Sorts and deduplicates a set of hashes, the form automerge's encoders expect.
fn normalize(hashes: &mut Vec<ChangeHash>) {
    hashes.sort_unstable();
    hashes.dedup();
}

/// Refuses what automerge cannot safely process (see "Hostile input" above) and puts hash
/// lists in the order automerge's encoders expect.
fn vet(mut message: sync::Message) -> Result<sync::Message, SessionError> {
    if message.have.len() > MAX_HAVES {
        return Err(SessionError::BadSyncMessage(format!(
            "{} Bloom filters, at most {MAX_HAVES} are allowed",
            message.have.len()
        )));
    }
    for have in &mut message.have {
        check_bloom(&have.bloom.to_bytes())?;
        normalize(&mut have.last_sync);
    }
    normalize(&mut message.heads);
    normalize(&mut message.need);
    Ok(message)
}

/// Checks the parameters of a Bloom filter in its wire form: three LEB128 numbers (entries, bits
/// per entry, probes) and the bits, or nothing at all for an empty filter.
///
/// automerge's `BloomFilter` keeps these fields private, so its own encoding is the only way to
/// read them.
fn check_bloom(bytes: &[u8]) -> Result<(), SessionError> {
    let mut rest = bytes;
    let Some(num_entries) = read_uleb128(&mut rest) else {
        return Ok(());
    };
    let bad = |why: &str| SessionError::BadSyncMessage(format!("Bloom filter {why}"));
    let bits_per_entry = read_uleb128(&mut rest).ok_or_else(|| bad("is truncated"))?;
    let probes = read_uleb128(&mut rest).ok_or_else(|| bad("is truncated"))?;
    if num_entries > 0 && bits_per_entry == 0 {
        // automerge would compute every probe modulo zero bits.
        return Err(bad("has entries but zero bits per entry"));
    }
    if bits_per_entry > u64::from(MAX_BLOOM_BITS_PER_ENTRY) {
        return Err(bad("has too many bits per entry"));
    }
    if probes > u64::from(MAX_BLOOM_PROBES) {
        // automerge allocates room for every probe on every lookup.
        return Err(bad("has too many probes"));
    }
    Ok(())
}

/// Reads one unsigned LEB128 number, or `None` at the end of input or on overflow.
fn read_uleb128(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first()?;
        *input = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests;
