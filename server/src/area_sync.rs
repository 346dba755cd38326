//! Area sync (extension [`EXT_AREA_SYNC`](lianxin_protocol::EXT_AREA_SYNC)): a device learns
//! every document of its area it may read that changed since its cursor, as stored, in batches,
//! and then hears of each change as it happens.
//!
//! A pass lists `documents` rows with `changed_tx >= since` (every row for a device without a
//! cursor) page by page in ID order from storage ([`crate::storage::area`]), keeps those the
//! user may read (the same rule as for a single document, from the row's columns), and hands
//! them to the connection in batches of about `limits.area_batch_bytes`. Each batch carries a cursor
//! that says where the pass stands, so a device that stores a batch and then loses the
//! connection resumes after it. The cursor of the last batch of a pass starts the next pass at
//! the horizon taken before this one began: anything committed during the pass is sent again
//! rather than missed.
//!
//! Before the pass, the connection subscribes to its area in the hub. From then on, the actor
//! of a document that changes pushes the whole document (one save for all subscribers) to
//! every subscriber that may read it and does not have it open (those hear through their
//! sessions), as a batch without a cursor. The number of messages grows with what changed,
//! never with what the device holds, and the catch-up loads no document into memory.
//!
//! Changes committed by other server processes on the same database reach a subscriber not as
//! pushes but as passes: the process hears their announcement (`crate::cluster`) and wakes the
//! task, which runs a pass from its cursor (sending only what changed, with a new cursor).
//!
//! The stored cursor moves only with catch-up passes: a device connected for a day catches up
//! on reconnecting from where its last catch-up ended, and gets again what was pushed to it
//! live meanwhile. Moving it with live pushes would need the pushes and the cursor in one
//! order, which they are not (they travel different queues).
//!
//! A cursor names the scope it was made for (role, area, department): a device whose user
//! moved to another area or role starts over rather than trusting a cursor of another scope.

use std::sync::Arc;

use lianxin_protocol::DocumentId;
use lianxin_protocol::domain::{Actor, AreaPath, Kind, check_read_where, may_read};
use tokio::sync::mpsc;

use crate::hub::Peer;
use crate::state::AppState;
use crate::storage::area::{AreaDoc, AreaScope};

/// Rows read per page.
const PAGE_ROWS: i64 = 1_000;

/// How long a woken task waits for more wakes before its pass.
const WAKE_COALESCE: std::time::Duration = std::time::Duration::from_millis(50);

/// Where a device stands in area sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The scope the cursor was made for (see [`scope_of`]).
    scope: u64,
    /// The pass lists documents with `changed_tx >= since`.
    since: i64,
    /// The horizon taken when the pass began, while one is under way: the next pass starts
    /// there. `None` between passes.
    horizon: Option<i64>,
    /// The last document ID the pass has handed out.
    after: String,
}

/// A cursor the server did not write.
#[derive(Debug, thiserror::Error)]
#[error("malformed area-sync cursor")]
pub struct BadCursor;

impl Cursor {
    /// A cursor for a device that has nothing yet: the first pass sends everything.
    pub fn beginning(scope: u64) -> Self {
        Self {
            scope,
            since: 0,
            horizon: None,
            after: String::new(),
        }
    }

    /// Reads a cursor a client sent back. A cursor of another scope starts over.
    pub fn parse(text: &str, scope: u64) -> Result<Self, BadCursor> {
        let mut parts = text.splitn(5, ':');
        let version = parts.next().ok_or(BadCursor)?;
        if version != "1" {
            return Err(BadCursor);
        }
        let mut next = || parts.next().ok_or(BadCursor);
        let scope_part = u64::from_str_radix(next()?, 16).map_err(|_| BadCursor)?;
        let since = next()?.parse().map_err(|_| BadCursor)?;
        let horizon = match next()? {
            "" => None,
            h => Some(h.parse().map_err(|_| BadCursor)?),
        };
        let after = next()?.to_string();
        if after.parse::<DocumentId>().is_err() && !after.is_empty() {
            return Err(BadCursor);
        }
        if scope_part != scope {
            return Ok(Self::beginning(scope));
        }
        Ok(Self {
            scope,
            since,
            horizon,
            after,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let horizon = self.horizon.map(|h| h.to_string()).unwrap_or_default();
        write!(
            f,
            "1:{:x}:{}:{}:{}",
            self.scope, self.since, horizon, self.after
        )
    }
}

/// A stable fingerprint (FNV-1a) of what a user may read: role, area and department.
pub fn scope_of(actor: &Actor) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let department = actor.department.as_deref().unwrap_or("");
    for part in [actor.role.as_str(), actor.area.as_str(), department] {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// What the task hands the connection: documents to send, and the cursor after them.
#[derive(Debug)]
pub struct Batch {
    pub documents: Vec<(DocumentId, Vec<u8>)>,
    pub cursor: String,
    /// The first pass (the catch-up the device asked for) is done.
    pub complete: bool,
}

/// Why the task stopped.
#[derive(Debug, thiserror::Error)]
pub enum AreaSyncError {
    #[error("area sync: storage unavailable, try again later")]
    Storage(#[from] crate::storage::StorageError),
    #[error("area sync: the connection is gone")]
    Closed,
}

/// Runs area sync for one connection: subscribes it to its area, then sends the catch-up from
/// `cursor`. The subscription lasts until the connection drops `out`'s receiver; while it
/// lasts, document actors push each change to the connection themselves.
pub async fn run(
    state: AppState,
    peer: Arc<Peer>,
    cursor: Cursor,
    out: mpsc::Sender<Batch>,
) -> Result<(), AreaSyncError> {
    let actor = &peer.actor;
    let scope = AreaScope {
        area: actor.area.as_str().to_owned(),
        kinds: Kind::ALL
            .iter()
            .filter(|k| may_read(actor.role, **k))
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(","),
        user: actor.user.clone(),
        peer_key: peer.peer_key.clone(),
    };
    // Subscribe before the horizon is taken: whatever commits after it is pushed.
    let wake = Arc::new(tokio::sync::Notify::new());
    let _subscription = Subscription::new(&state, &peer, wake.clone());
    // A cursor from the middle of a pass finishes that pass, whose horizon was taken before
    // this subscription; what committed since then is in the pass after it.
    let resumed = cursor.horizon.is_some();
    let mut next = pass(&state, actor, &scope, cursor, !resumed, &out).await?;
    if resumed {
        next = pass(&state, actor, &scope, next, true, &out).await?;
    }
    // Changes committed by this process are pushed by their actors; those of other processes
    // on the same database wake this task (`crate::cluster`) for a pass from the cursor. A
    // wake during a pass is kept, and wakes close together share one pass.
    loop {
        tokio::select! {
            _ = out.closed() => return Ok(()),
            _ = wake.notified() => {}
        }
        tokio::time::sleep(WAKE_COALESCE).await;
        next = pass(&state, actor, &scope, next, false, &out).await?;
    }
}

/// A catch-up pass from `cursor`; returns the cursor that starts the next pass, at the horizon
/// taken before this one began. With `complete`, it ends with a batch marked complete, even an
/// empty one.
async fn pass(
    state: &AppState,
    actor: &Actor,
    scope: &AreaScope,
    mut cursor: Cursor,
    complete: bool,
    out: &mpsc::Sender<Batch>,
) -> Result<Cursor, AreaSyncError> {
    let horizon = match cursor.horizon {
        Some(h) => h,
        None => state.store.area_horizon().await?,
    };
    cursor.horizon = Some(horizon);
    let finished = Cursor {
        scope: cursor.scope,
        since: horizon,
        horizon: None,
        after: String::new(),
    };
    loop {
        let page = state
            .store
            .area_page(scope, cursor.since, &cursor.after, PAGE_ROWS)
            .await?;
        let last_page = (page.len() as i64) < PAGE_ROWS;
        let page_end = page.last().map(|d| d.id.to_string());
        let readable: Vec<AreaDoc> = page
            .into_iter()
            .filter(|doc| readable_by(actor, doc))
            .collect();
        let mut batches = split(readable, state.settings.limits.area_batch_bytes);
        if last_page && complete && batches.is_empty() {
            batches.push(Vec::new());
        }
        let count = batches.len();
        for (i, documents) in batches.into_iter().enumerate() {
            let page_done = i + 1 == count;
            // A batch's cursor says "everything up to my last document": a device cut off
            // after storing it resumes right after.
            if let Some((id, _)) = documents.last() {
                cursor.after = id.to_string();
            }
            if page_done && let Some(end) = &page_end {
                cursor.after = end.clone();
            }
            let next = if page_done && last_page {
                &finished
            } else {
                &cursor
            };
            let batch = Batch {
                documents,
                cursor: next.to_string(),
                complete: complete && page_done && last_page,
            };
            out.send(batch).await.map_err(|_| AreaSyncError::Closed)?;
        }
        if let Some(end) = page_end {
            cursor.after = end;
        }
        if last_page {
            return Ok(finished);
        }
    }
}

/// Whether `actor` may read `doc`, by the rule for single documents.
fn readable_by(actor: &Actor, doc: &AreaDoc) -> bool {
    let (Ok(kind), Ok(area)) = (doc.kind.parse::<Kind>(), AreaPath::new(doc.area.clone())) else {
        return false;
    };
    check_read_where(actor, kind, &area, &doc.created_by, || {
        doc.transferred_to.clone()
    })
    .is_ok()
}

/// Groups documents into batches of about `budget` bytes.
fn split(docs: Vec<AreaDoc>, budget: usize) -> Vec<Vec<(DocumentId, Vec<u8>)>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for doc in docs {
        if !current.is_empty() && bytes + doc.data.len() > budget {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += doc.data.len();
        current.push((doc.id, doc.data));
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// A connection's area subscription, ended when dropped.
struct Subscription {
    state: AppState,
    peer: Arc<Peer>,
    key: u64,
}

impl Subscription {
    fn new(state: &AppState, peer: &Arc<Peer>, wake: Arc<tokio::sync::Notify>) -> Self {
        let key = state.hub.subscribe_area(peer, wake);
        Self {
            state: state.clone(),
            peer: peer.clone(),
            key,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // By key: an aborted task is dropped after the task that replaced it subscribed.
        self.state.hub.unsubscribe_area(&self.peer, self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let cursor = Cursor {
            scope: 0xabc,
            since: 17,
            horizon: Some(40),
            after: DocumentId::random().to_string(),
        };
        assert_eq!(Cursor::parse(&cursor.to_string(), 0xabc).unwrap(), cursor);
        let between = Cursor {
            horizon: None,
            after: String::new(),
            ..cursor.clone()
        };
        assert_eq!(Cursor::parse(&between.to_string(), 0xabc).unwrap(), between);
        // Another scope starts over.
        assert_eq!(
            Cursor::parse(&cursor.to_string(), 0xdef).unwrap(),
            Cursor::beginning(0xdef)
        );
        for bad in [
            "",
            "2:abc:1::",
            "1:abc:x::",
            "1:abc:1:y:",
            "1:abc:1::not-an-id",
            "1:zz:1::",
        ] {
            assert!(Cursor::parse(bad, 0xabc).is_err(), "{bad:?}");
        }
    }
}
