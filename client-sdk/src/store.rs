//! Where a client keeps its documents and what it shares with the server about each.
//!
//! [`DocStore`] is the seam for the offline-first durable store: the client calls it after
//! every local edit and every applied sync message, before acknowledging anything to the app.
//! [`MemoryStore`] keeps nothing across restarts; it is what the client uses until a durable
//! store is configured.

use std::collections::HashMap;
use std::sync::Mutex;

use lianxin_protocol::DocumentId;

/// Persistence for a client's documents. Implementations must make a call's effect durable
/// before returning.
pub trait DocStore: Send + Sync + 'static {
    /// Records new bytes of a document (an incremental save or a full save).
    fn append(&self, doc: &DocumentId, bytes: &[u8]);
    /// Records the sync state shared with the server for a document.
    fn save_sync_state(&self, doc: &DocumentId, state: &[u8]);
    /// Every stored document: its saved chunks concatenated, and its sync state if any.
    fn load_all(&self) -> Vec<(DocumentId, Vec<u8>, Option<Vec<u8>>)>;
}

/// A document's saved bytes and its sync state.
type Entry = (Vec<u8>, Option<Vec<u8>>);

/// A store that lives and dies with the process.
#[derive(Debug, Default)]
pub struct MemoryStore {
    docs: Mutex<HashMap<DocumentId, Entry>>,
}

impl DocStore for MemoryStore {
    fn append(&self, doc: &DocumentId, bytes: &[u8]) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.entry(*doc).or_default().0.extend_from_slice(bytes);
    }

    fn save_sync_state(&self, doc: &DocumentId, state: &[u8]) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.entry(*doc).or_default().1 = Some(state.to_vec());
    }

    fn load_all(&self) -> Vec<(DocumentId, Vec<u8>, Option<Vec<u8>>)> {
        let docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.iter()
            .map(|(id, (bytes, state))| (*id, bytes.clone(), state.clone()))
            .collect()
    }
}
