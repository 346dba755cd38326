//! One document in memory: an actor task that owns the Automerge document and one sync
//! session per connection that has it open.
//!
//! The path of a change: a connection sends [`DocCommand::Sync`]; the actor applies it to the
//! document through that connection's `DocSession`; if it brought new changes they are
//! appended to the store and, only once that transaction has committed, the actor replies to
//! the sender and generates a sync message for every other session (live fan-out). The
//! changes are vetted on a fork, and the document in memory changes only after the commit, so
//! memory never holds what the database does not. An append refused because another process
//! appended first makes the actor read what it lacks and vet the message again; if there is
//! nothing to read (the database is behind memory, say after a failover), the document is
//! loaded again from the store.
//!
//! Messages to connections go through their bounded outboxes with `try_send`: a full outbox
//! means a client too slow to keep up, and it is disconnected (it resumes by syncing again).
//! This actor never blocks on a slow client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::{Automerge, ReadDoc};
use lianxin_protocol::domain::{self, Actor, DocInfo, Outcome, Projected, access, schema};
use lianxin_protocol::{DocSession, DocumentId, Message, SessionError, chunk};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{ConnId, DocContext, DocHub, Peer};
use crate::committer::{Append, CommitError, OwnedChangeRecord};
use crate::outbox::PushError;
use crate::storage::ChunksAfter;

/// How often an idle actor checks whether it may leave memory.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Times one message is vetted again after another process changed the document first,
/// before the device is told to try again later.
const MAX_ATTEMPTS: usize = 8;

/// Work for a document actor.
#[derive(Debug)]
pub enum DocCommand {
    /// A `request` or `sync` message from a connection.
    Sync {
        peer: Arc<Peer>,
        /// `true` for a `request`: the peer does not have the document and asks for it.
        request: bool,
        data: Vec<u8>,
        received_at: Instant,
    },
    /// An ephemeral message to relay to the other connections that have the document open.
    Ephemeral { from: ConnId, message: Message },
    /// The connection closed the document or went away. With `watch`, the connection wants
    /// to hear (as a changed-docs notice) when the document changes from now on: granted only
    /// if it had a session here, that is, if it may read the document.
    Detach {
        conn: ConnId,
        watch: Option<Arc<Peer>>,
    },
    /// Too many documents are loaded: drop the Automerge document (sessions stay; it is
    /// loaded again from the store with the next message). Sent by the hub.
    Unload,
    /// Another process stored the document up to sequence number `seq` (heard from its
    /// announcement): take in what it stored and tell the sessions here.
    Refresh { seq: i64 },
}

/// Spawns the actor of `doc`, owned by the context's task tracker.
pub(super) fn spawn(
    doc: DocumentId,
    generation: u64,
    hub: DocHub,
    ctx: Arc<DocContext>,
    rx: mpsc::Receiver<DocCommand>,
) {
    ctx.metrics.documents_in_memory.inc();
    let actor = DocActor {
        id: doc,
        generation,
        hub,
        ctx: ctx.clone(),
        loaded: None,
        sessions: HashMap::new(),
        missed: None,
    };
    let span = tracing::info_span!("doc", doc_id = %doc);
    ctx.tracker.spawn(actor.run(rx).instrument(span));
}

/// The document as loaded from the store, plus what is known about its stored form.
struct Loaded {
    doc: Automerge,
    /// Sequence number of the last stored chunk contained in `doc`.
    last_seq: i64,
    size_bytes: i64,
    chunks_since_snapshot: usize,
    /// Whether the document exists in the store at all.
    stored: bool,
    /// Its kind, area, creator (`None` for an untyped or not yet stored document).
    info: Option<DocInfo>,
    /// Its projection for the read model (`None` for an untyped or not yet stored document),
    /// kept to describe the next change.
    projected: Option<Projected>,
}

/// The kind, area and creator of `doc`, and its projection for the read model (both `None`
/// for an untyped document).
fn read_typed(
    doc: &Automerge,
    projection: &domain::ProjectionConfig,
) -> (Option<DocInfo>, Option<Projected>) {
    let info = schema::read_info(doc).ok();
    let projected = info
        .as_ref()
        .and_then(|_| domain::project(doc, projection).ok());
    (info, projected)
}

impl Loaded {
    /// Whether `actor` may see this document. A document that is not stored yet is visible
    /// (there is nothing to see; creating it is judged by the write rules), an untyped one only
    /// where untyped documents are allowed.
    fn readable_by(&self, actor: &Actor, allow_untyped: bool) -> bool {
        match &self.info {
            Some(info) => access::check_read(actor, info, &self.doc).is_ok(),
            None => !self.stored || allow_untyped,
        }
    }

    /// What a change that leads to `after` does to this document, in words.
    fn describe(&self, after: &Projected) -> String {
        domain::describe(self.projected.as_ref().map(|p| &p.record), &after.record)
    }
}

struct SessionSlot {
    peer: Arc<Peer>,
    session: DocSession,
    /// Change chunks this peer sent that could not be applied yet (a dependency was in none
    /// of its messages so far). Each message is applied to a fork, so without this a change
    /// whose dependency comes in a later message would be dropped with its fork, and two
    /// messages that each lack what the other carries would be refused in turn forever.
    pending: Vec<Held>,
    /// Whether the store has a `sync_states` row for this device and document.
    recorded: bool,
}

struct DocActor {
    id: DocumentId,
    generation: u64,
    hub: DocHub,
    ctx: Arc<DocContext>,
    loaded: Option<Loaded>,
    sessions: HashMap<ConnId, SessionSlot>,
    /// An announced sequence number this actor failed to take in (the store did not
    /// answer): tried again at the next idle check.
    missed: Option<i64>,
}

/// Why a sync message was not applied. The text goes to the client in an `error` message.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("document {doc}: storage unavailable, try again later")]
    Storage { doc: DocumentId },
    #[error(
        "document {doc}: changed on other servers faster than it could be merged here, try again later"
    )]
    Busy { doc: DocumentId },
    #[error("document {doc}: malformed sync message: {reason}")]
    Malformed { doc: DocumentId, reason: String },
    #[error("document {doc}: sync message refused: {reason}")]
    OverLimit { doc: DocumentId, reason: String },
    #[error("document {doc}: would grow to {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        doc: DocumentId,
        size: u64,
        limit: u64,
    },
    /// A change that may not be accepted. The text names the document, the change and the
    /// reason, so the device can set the change aside.
    #[error("document {doc}: change {change} rejected: {reason}")]
    Rejected {
        doc: DocumentId,
        change: automerge::ChangeHash,
        reason: String,
    },
}

/// Why one attempt at a sync message did not finish.
#[derive(Debug)]
enum Step {
    Refused(Refusal),
    /// An append was refused as stale: another process stored changes since the document
    /// was loaded. Catch up and try the message again; if the store has nothing newer, the
    /// database is behind memory and the document is loaded again.
    Stale,
    /// The message builds on changes this process has not seen (missing dependencies, or
    /// changes by others): another process may have stored them. Catch up and try again once;
    /// if the store has nothing newer, the changes wait in the session's pending set. Never a
    /// reload: a peer can send such a message for free, as often as it likes.
    Behind,
}

impl From<Refusal> for Step {
    fn from(refusal: Refusal) -> Self {
        Step::Refused(refusal)
    }
}

impl DocActor {
    async fn run(mut self, mut rx: mpsc::Receiver<DocCommand>) {
        let mut idle_since: Option<Instant> = None;
        loop {
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    if let Some(seq) = self.missed.take() {
                        Box::pin(self.on_announced(seq)).await;
                    }
                    if self.sessions.is_empty() {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        // A document that is not stored has nothing worth keeping in memory
                        // (requests for unknown IDs must not pile up actors).
                        let worth_keeping = self.loaded.as_ref().is_some_and(|l| l.stored);
                        if (!worth_keeping || since.elapsed() >= self.ctx.limits.document_idle())
                            && self.hub.try_evict(&self.id, self.generation)
                        {
                            self.ctx.metrics.documents_evicted.inc();
                            break;
                        }
                    } else {
                        idle_since = None;
                    }
                    continue;
                }
                _ = self.ctx.shutdown.cancelled() => None,
            };
            let Some(cmd) = cmd else { break };
            // Other processes' changes do not count as use: a document nobody here has open
            // still leaves memory.
            if !matches!(cmd, DocCommand::Refresh { .. }) {
                idle_since = None;
            }
            // Boxed: the future of handling a command (sqlx queries, vetting) is tens of
            // kilobytes, and inlined it would make every idle actor's task that large.
            // A panic we did not foresee (automerge on a peer's data, say) must not take the
            // document down for everyone: the actor drops its copy (the store has everything)
            // and every session starts its conversation afresh.
            let handled = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                Box::pin(self.handle(cmd)),
            ))
            .await;
            if handled.is_err() {
                tracing::error!("document actor recovered from a panic; reloading from the store");
                self.unload();
                for slot in self.sessions.values_mut() {
                    slot.session.restart();
                    slot.pending.clear();
                }
            }
        }
        // Whatever is still queued (detaches from connections closing at the same time) is
        // handled so their sync states are saved.
        rx.close();
        while let Some(cmd) = rx.recv().await {
            match cmd {
                DocCommand::Detach { conn, watch } => Box::pin(self.detach(conn, watch)).await,
                // Sent because this actor was found in the hub: the watchers are told here,
                // as the hub would have told them had the actor already gone.
                DocCommand::Refresh { .. } => self.tell_watchers(),
                _ => {}
            }
        }
        let conns: Vec<ConnId> = self.sessions.keys().copied().collect();
        for conn in conns {
            Box::pin(self.detach(conn, None)).await;
        }
        self.unload();
        self.ctx.metrics.documents_in_memory.dec();
        tracing::debug!("document left memory");
    }

    async fn handle(&mut self, cmd: DocCommand) {
        match cmd {
            DocCommand::Sync {
                peer,
                request,
                data,
                received_at,
            } => {
                if let Err(refusal) = self
                    .sync_with_retries(&peer, request, &data, received_at)
                    .await
                {
                    tracing::warn!(conn = peer.conn, %refusal, "sync message refused");
                    self.push(
                        &peer,
                        Message::Error {
                            sender_id: self.ctx.server_peer.clone(),
                            target_id: Some(peer.remote.clone()),
                            message: refusal.to_string(),
                        },
                    );
                }
            }
            DocCommand::Ephemeral { from, message } => self.relay_ephemeral(from, message),
            DocCommand::Detach { conn, watch } => self.detach(conn, watch).await,
            DocCommand::Refresh { seq } => self.on_announced(seq).await,
            DocCommand::Unload => {
                if self.loaded.is_some() {
                    self.ctx.metrics.documents_unloaded.inc();
                }
                self.unload();
            }
        }
    }

    /// Relays an ephemeral message (presence, cursors) from one session to the others. Only
    /// between sessions that may read the document as it is now: a session exists only after
    /// a read check, but access can change (a request transferred away from a department), so
    /// both ends are checked again. The sender is named by its server-assigned ID, never by
    /// what it claims. A document not in memory relays nothing: loading it for an ephemeral
    /// message would let anyone make the server do that work for free.
    fn relay_ephemeral(&self, from: ConnId, message: Message) {
        let (Some(loaded), Some(sender)) = (self.loaded.as_ref(), self.sessions.get(&from)) else {
            return;
        };
        let may_read =
            |peer: &Peer| loaded.stored && loaded.readable_by(&peer.actor, self.ctx.allow_untyped);
        if !may_read(&sender.peer) {
            return;
        }
        for (conn, slot) in &self.sessions {
            if *conn == from || !may_read(&slot.peer) {
                continue;
            }
            let mut message = message.clone();
            if let Message::Ephemeral {
                sender_id,
                target_id,
                ..
            } = &mut message
            {
                *sender_id = sender.peer.ephemeral_id.clone();
                *target_id = slot.peer.remote.clone();
            }
            push(&self.ctx, &slot.peer, message);
        }
    }

    /// Applies a sync message, vetting it again on the store's latest state each time another
    /// process turns out to have changed the document first.
    async fn sync_with_retries(
        &mut self,
        peer: &Arc<Peer>,
        request: bool,
        data: &[u8],
        received_at: Instant,
    ) -> Result<(), Refusal> {
        // Checked once, before the document is loaded: the chunks it carries must inflate to
        // at most a message's worth of bytes (see `lianxin_protocol::chunk`).
        let message = match DocSession::decode(data, &self.ctx.limits.chunk_budget()) {
            Ok(message) => message,
            // Well-formed but over a limit: refused, but not counted against the connection's
            // malformed-message budget (an honest client may hold a document this large).
            Err(SessionError::Chunks(e)) if !e.is_malformed() => {
                return Err(Refusal::OverLimit {
                    doc: self.id,
                    reason: e.to_string(),
                });
            }
            Err(e) => return Err(malformed(&self.ctx, peer, self.id, e)),
        };
        let mut refreshed = false;
        let mut caught_up = false;
        let result = 'attempts: {
            for _ in 0..MAX_ATTEMPTS {
                match self
                    .on_sync(peer, request, message.clone(), received_at, caught_up)
                    .await
                {
                    Ok(()) => break 'attempts Ok(()),
                    Err(Step::Refused(refusal)) => break 'attempts Err(refusal),
                    Err(Step::Stale) => match self.after_stale().await {
                        Ok(changed) => {
                            refreshed |= changed;
                            caught_up = true;
                        }
                        Err(refusal) => break 'attempts Err(refusal),
                    },
                    Err(Step::Behind) => match self.refresh().await {
                        Ok(changed) => {
                            refreshed |= changed;
                            caught_up = true;
                        }
                        Err(refusal) => break 'attempts Err(refusal),
                    },
                }
            }
            Err(Refusal::Busy { doc: self.id })
        };
        if refreshed {
            self.tell_of_refresh();
        }
        result
    }

    /// Another process stored the document up to `seq`: take it in and tell the sessions and
    /// watchers here. Without sessions nothing is read: the document is dropped from memory
    /// (it is loaded fresh when next used) and watchers are told. A document unloaded to save
    /// memory is loaded again for its sessions. A failure is tried again at the next idle
    /// check.
    async fn on_announced(&mut self, seq: i64) {
        if self.sessions.is_empty() {
            if self.loaded.as_ref().is_some_and(|l| l.last_seq < seq) {
                self.unload();
            }
            self.tell_watchers();
            return;
        }
        let outcome = match &self.loaded {
            Some(loaded) if loaded.last_seq >= seq => return,
            Some(_) => self.refresh().await,
            None => self.ensure_loaded().await.map(|()| true),
        };
        match outcome {
            Ok(true) => {
                self.hub.resident(&self.id, self.generation);
                self.tell_of_refresh();
            }
            Ok(false) => {}
            Err(refusal) => {
                tracing::warn!(%refusal, "catching up failed; trying again shortly");
                self.missed = Some(self.missed.map_or(seq, |m| m.max(seq)));
            }
        }
    }

    /// Takes in the chunks other processes stored since the document was loaded (the whole
    /// document again if one of them compacted it). Returns whether anything was new.
    async fn refresh(&mut self) -> Result<bool, Refusal> {
        let Some(loaded) = self.loaded.as_mut() else {
            return Ok(false);
        };
        let doc_id = self.id;
        let chunks = match self.ctx.store.chunks_after(&doc_id, loaded.last_seq).await {
            Ok(ChunksAfter::Chunks(chunks)) => chunks,
            Ok(ChunksAfter::Compacted) => {
                self.unload();
                self.ensure_loaded().await?;
                return Ok(true);
            }
            Err(e) => {
                self.ctx.metrics.storage_errors.inc();
                tracing::warn!(error = %e, "reading other processes' changes failed");
                self.unload();
                return Err(Refusal::Storage { doc: doc_id });
            }
        };
        if chunks.is_empty() {
            return Ok(false);
        }
        for (seq, chunk) in chunks {
            if let Err(e) = loaded.doc.load_incremental(&chunk) {
                tracing::error!(error = %e, seq, "a stored chunk does not load");
                self.unload();
                return Err(Refusal::Storage { doc: doc_id });
            }
            loaded.last_seq = seq;
            loaded.size_bytes += chunk.len() as i64;
            loaded.chunks_since_snapshot += 1;
        }
        loaded.stored = true;
        (loaded.info, loaded.projected) = read_typed(&loaded.doc, &self.ctx.projection);
        Ok(true)
    }

    /// After an append was refused as stale: takes in what other processes stored. Returns
    /// whether anything was new. Refused as stale with nothing newer stored means the database
    /// is behind memory (a failover lost commits): the document is dropped, to be loaded again
    /// from what the database has.
    async fn after_stale(&mut self) -> Result<bool, Refusal> {
        self.ctx.metrics.stale_merges.inc();
        let changed = self.refresh().await?;
        if !changed {
            self.unload();
        }
        Ok(changed)
    }

    /// After taking in other processes' changes: every session here hears what it lacks, and
    /// devices that hold the document without having it open hear that it changed. (Area
    /// subscribers hear from their own catch-up, see `crate::cluster`.)
    fn tell_of_refresh(&mut self) {
        let Some(loaded) = self.loaded.as_ref() else {
            return;
        };
        fan_out(&self.ctx, &self.id, loaded, &mut self.sessions, None);
        self.tell_watchers();
    }

    /// Devices that hold the document without having it open hear that it changed.
    fn tell_watchers(&self) {
        let sessions = &self.sessions;
        let mut watchers = self
            .hub
            .watchers_of(&self.id, |conn| sessions.contains_key(&conn));
        // Access can change after a watch began (a request transferred to another
        // department): only those who may read the document now hear of it.
        if let Some(loaded) = &self.loaded {
            watchers.retain(|w| loaded.readable_by(&w.actor, self.ctx.allow_untyped));
        }
        tell_changed(&self.ctx, &watchers, self.id);
    }

    /// Drops the Automerge document from memory; the store has all of it.
    fn unload(&mut self) {
        if self.loaded.take().is_some() {
            self.ctx.metrics.documents_loaded.dec();
            self.hub.unresident(&self.id, self.generation);
        }
    }

    /// Loads the document from the store if it is not in memory.
    async fn ensure_loaded(&mut self) -> Result<(), Refusal> {
        if self.loaded.is_some() {
            return Ok(());
        }
        let stored = self.ctx.store.load(&self.id).await.map_err(|e| {
            self.ctx.metrics.storage_errors.inc();
            tracing::error!(error = %e, "loading document failed");
            Refusal::Storage { doc: self.id }
        })?;
        let doc_id = self.id;
        let loaded = match stored {
            None => Loaded {
                doc: Automerge::new(),
                last_seq: 0,
                size_bytes: 0,
                chunks_since_snapshot: 0,
                stored: false,
                info: None,
                projected: None,
            },
            Some(stored) => {
                // Loading a large document is CPU work: keep it off the async workers.
                let chunks = stored.chunks_since_snapshot();
                let doc = tokio::task::spawn_blocking(move || {
                    let doc = stored.to_automerge()?;
                    Ok::<_, automerge::AutomergeError>((doc, stored.last_seq, stored.size_bytes))
                })
                .await
                .map_err(|e| Refusal::Malformed {
                    doc: doc_id,
                    reason: e.to_string(),
                })?;
                let (doc, last_seq, size_bytes) = doc.map_err(|e| {
                    self.ctx.metrics.storage_errors.inc();
                    tracing::error!(error = %e, "stored document does not load");
                    Refusal::Storage { doc: doc_id }
                })?;
                let (info, projected) = read_typed(&doc, &self.ctx.projection);
                Loaded {
                    doc,
                    last_seq,
                    size_bytes,
                    chunks_since_snapshot: chunks,
                    stored: true,
                    info,
                    projected,
                }
            }
        };
        self.loaded = Some(loaded);
        self.ctx.metrics.documents_loaded.inc();
        Ok(())
    }

    /// Creates the session of `peer` if it has none, resuming saved sync state.
    async fn ensure_session(&mut self, peer: &Arc<Peer>) {
        if self.sessions.contains_key(&peer.conn) {
            return;
        }
        let mut session = DocSession::new();
        let mut recorded = false;
        if let Some(key) = &peer.peer_key {
            match self.ctx.store.load_sync_state(key, &self.id).await {
                Ok(Some(saved)) => {
                    recorded = true;
                    match DocSession::resume(&saved) {
                        Ok(resumed) => session = resumed,
                        Err(e) => tracing::warn!(error = %e, "discarding unreadable sync state"),
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.ctx.metrics.storage_errors.inc();
                    tracing::warn!(error = %e, "loading sync state failed; starting afresh");
                }
            }
        }
        let stored = self.loaded.as_ref().is_some_and(|l| l.stored);
        let mut slot = SessionSlot {
            peer: peer.clone(),
            session,
            pending: Vec::new(),
            recorded,
        };
        if stored {
            self.record_holder(&mut slot).await;
        }
        self.sessions.insert(peer.conn, slot);
    }

    /// Records that this device holds the document, with nothing known to be synced, unless
    /// that is recorded already. If this process dies before the session ends, the device's
    /// next changed-docs catch-up still names the document: over-reporting costs one sync,
    /// forgetting would hide other devices' changes from it.
    async fn record_holder(&self, slot: &mut SessionSlot) {
        let Some(key) = &slot.peer.peer_key else {
            return;
        };
        if slot.recorded {
            return;
        }
        let state = slot.session.persisted_state();
        match self
            .ctx
            .store
            .save_sync_state(key, &self.id, &state, 0)
            .await
        {
            Ok(()) => slot.recorded = true,
            Err(e) => {
                self.ctx.metrics.storage_errors.inc();
                tracing::warn!(error = %e, "recording the device's document failed");
            }
        }
    }

    /// One attempt at a sync message. `fresh`: this process has just caught up with the
    /// store, so a message that builds on unknown changes is not a reason to catch up again.
    async fn on_sync(
        &mut self,
        peer: &Arc<Peer>,
        request: bool,
        message: automerge::sync::Message,
        received_at: Instant,
        fresh: bool,
    ) -> Result<(), Step> {
        self.ensure_loaded().await?;
        self.hub.resident(&self.id, self.generation);
        let doc_id = self.id;
        // A document this peer may not see is answered exactly like one that does not exist.
        let readable = self
            .loaded
            .as_ref()
            .is_some_and(|l| l.readable_by(&peer.actor, self.ctx.allow_untyped));
        if !readable {
            self.sessions.remove(&peer.conn);
            return self.answer_as_missing(peer, request, message);
        }
        self.ensure_session(peer).await;
        let (Some(loaded), Some(slot)) = (self.loaded.as_mut(), self.sessions.get_mut(&peer.conn))
        else {
            return Ok(());
        };
        // A message that carries changes is applied to a fork of the document and a copy of
        // the session, and vetted there; the document and session change only once the
        // changes are accepted and committed. Most messages (acknowledgements, have/need)
        // carry none and are applied in place.
        let mut incoming: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
        // Changes that all build on changes nobody here has cannot apply. Learning that on a
        // fork of a large document costs far more than the peer paid for the message, so
        // they are recognised from their dependencies and held without forking; the rest of
        // the message (heads, have, need) is applied in place.
        let mut message = message;
        let held = orphans_only(&loaded.doc, &message, &slot.pending);
        if held {
            if !fresh {
                // Another process may have stored the dependencies: read what it stored.
                return Err(Step::Behind);
            }
            message.changes = Vec::<Vec<u8>>::new().into();
            hold(
                &mut slot.pending,
                std::mem::take(&mut incoming),
                &self.ctx.limits.chunk_budget(),
            );
        }
        let mut candidate = if message.changes.is_empty() {
            None
        } else {
            let mut fork = loaded.doc.fork();
            // Queued by Automerge until their dependencies arrive. Automerge can panic on
            // changes it accepted into its queue: then they are forgotten, on a fresh fork.
            let took_held = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                for held in &slot.pending {
                    let _ = fork.load_incremental(&held.bytes);
                }
            }));
            if took_held.is_err() {
                tracing::warn!("held changes made automerge panic; dropping them");
                slot.pending.clear();
                fork = loaded.doc.fork();
            }
            Some((fork, slot.session.clone()))
        };
        let applied = match &mut candidate {
            Some((doc, session)) => session.apply_message(doc, message),
            None => slot.session.apply_message(&mut loaded.doc, message),
        };
        let mut effects = match applied {
            Ok(effects) => effects,
            Err(e) => {
                slot.session = DocSession::new();
                return Err(malformed(&self.ctx, peer, doc_id, e).into());
            }
        };
        if held {
            // Automerge asks only for what it knows is missing, and the held changes are not
            // in the document: without this, a peer whose earlier message was lost would be
            // asked for the held changes again and again, never for what they depend on.
            effects.send = Some(ask_for_missing(
                &loaded.doc,
                &slot.pending,
                effects.send.take(),
            ));
        }
        // The changes new to the stored document, once the fork has any.
        let mut new_changes = Vec::new();
        if let Some((fork, _)) = &candidate {
            let before = loaded.doc.get_heads();
            if fork.get_heads() != before {
                // Counted from the stored document, so changes this peer sent earlier and that
                // applied only now are stored too.
                effects.heads_changed = true;
                match lianxin_protocol::session::save_after_checked(fork, &before) {
                    Ok((bytes, changes)) => {
                        effects.persist = Some(bytes);
                        new_changes = changes;
                    }
                    Err(e) => {
                        slot.pending.clear();
                        return Err(malformed(&self.ctx, peer, doc_id, e).into());
                    }
                }
            } else if !fresh && !fork.get_missing_deps(&[]).is_empty() {
                // The changes build on changes this process has not seen: another process
                // may have stored them (the device synced with it before).
                return Err(Step::Behind);
            } else {
                hold(&mut slot.pending, incoming, &self.ctx.limits.chunk_budget());
            }
        }
        let mut outcome = None;
        let mut record = None;
        if effects.heads_changed
            && let Some((candidate_doc, _)) = &candidate
        {
            let client_time = new_changes
                .iter()
                .map(|c| c.timestamp())
                .filter(|t| *t > 0)
                .max()
                .map(|secs| secs.saturating_mul(1000));
            let count = i32::try_from(new_changes.len()).unwrap_or(i32::MAX);
            match vet(&self.ctx, peer, &doc_id, &new_changes).await {
                Ok(()) => {}
                // Someone else's changes: the device may be relaying what it got from another
                // process, which this one has not taken in yet.
                Err(Refusal::Rejected { .. }) if !fresh => return Err(Step::Behind),
                Err(refusal) => {
                    if matches!(refusal, Refusal::Rejected { .. }) {
                        self.ctx.metrics.rejected_changes.inc();
                    }
                    return Err(refusal.into());
                }
            }
            outcome = check_field_rules(
                &self.ctx,
                peer,
                &doc_id,
                loaded,
                candidate_doc,
                &new_changes,
            )?;
            let projected = match &outcome {
                Some(_) => match domain::project(candidate_doc, &self.ctx.projection) {
                    Ok(projected) => Some(projected),
                    Err(e) => {
                        // The rules accepted the document, so it projects; if it does not,
                        // the change is kept and only the read model misses it.
                        tracing::error!(error = %e, "an accepted document does not project");
                        None
                    }
                },
                None => None,
            };
            let summary = match &projected {
                Some(after) => loaded.describe(after),
                None => format!("{count} changes to an untyped document"),
            };
            record = Some((projected, count, client_time, summary));
        }

        let mut appended_seq = None;
        if let Some(bytes) = &effects.persist {
            let limit = self.ctx.limits.max_document_bytes;
            let size = loaded.size_bytes.max(0) as u64 + bytes.len() as u64;
            if size > limit {
                return Err(Refusal::TooLarge {
                    doc: doc_id,
                    size,
                    limit,
                }
                .into());
            }
            let (projected, changes, client_time, summary) = record
                .take()
                .unwrap_or_else(|| (None, 0, None, "no new changes".to_owned()));
            let change_record = OwnedChangeRecord {
                projected: projected.clone(),
                user: peer.user.id.clone(),
                device: Some(peer.device_id.clone()),
                role: peer.actor.role.as_str().to_owned(),
                changes,
                client_time,
                summary,
            };
            // The device holds this document from now on: recorded in the same transaction,
            // unless its row exists already.
            let holder =
                (!slot.recorded && peer.peer_key.is_some()).then(|| slot.session.persisted_state());
            let holding = holder.is_some();
            let claims = outcome
                .as_ref()
                .map(|o| o.new_claims.clone())
                .unwrap_or_default();
            match self
                .ctx
                .committer
                .append(Append {
                    doc: doc_id,
                    data: bytes.clone(),
                    peer_key: peer.peer_key.clone(),
                    holder,
                    record: change_record,
                    claims,
                    expected_seq: loaded.last_seq,
                })
                .await
            {
                Ok(appended) => {
                    if holding {
                        slot.recorded = true;
                    }
                    self.ctx.changes.notify_waiters();
                    self.ctx.metrics.merges.inc();
                    self.ctx
                        .metrics
                        .merge_latency
                        .observe(received_at.elapsed());
                    // Committed: the vetted fork and session become the real ones.
                    if let Some((doc, session)) = candidate.take() {
                        loaded.doc = doc;
                        slot.session = session;
                        slot.pending.clear();
                    }
                    if let Some(outcome) = &outcome {
                        loaded.info = Some(outcome.info.clone());
                    }
                    if projected.is_some() {
                        loaded.projected = projected;
                    }
                    debug_assert_eq!(
                        appended.seq,
                        loaded.last_seq + 1,
                        "appends build on the last"
                    );
                    appended_seq = Some(appended.seq);
                    loaded.last_seq = appended.seq;
                    loaded.size_bytes = appended.size_bytes;
                    loaded.chunks_since_snapshot += 1;
                    loaded.stored = true;
                }
                // Another process stored changes first; nothing was applied here.
                Err(CommitError::Conflict(_)) => return Err(Step::Stale),
                Err(e) => {
                    // Nothing was applied: the document and session are as before.
                    self.ctx.metrics.storage_errors.inc();
                    tracing::error!(error = %e, "appending changes failed");
                    return Err(Refusal::Storage { doc: doc_id }.into());
                }
            }
        } else if let Some((_, session)) = candidate.take() {
            // The message carried only changes this document already has (a device resending
            // after a reconnect): nothing to store, but the session must still learn what the
            // message said (the peer's heads, what it has and needs). Keeping the old session
            // would answer every resend the same way, and the two sides would talk forever.
            slot.session = session;
        }

        let Some(loaded) = self.loaded.as_mut() else {
            return Ok(());
        };

        // Committed (or nothing new): now answer the sender…
        if !loaded.stored {
            // Nothing stored: the peer keeps no session here (see `answer_as_missing`), and an
            // unreadable document is answered the same way.
            self.sessions.remove(&peer.conn);
        }
        let reply = if request && !loaded.stored {
            Some(unavailable(&self.ctx, peer, doc_id))
        } else {
            effects
                .send
                .map(|data| sync_message(&self.ctx, peer, doc_id, data))
        };
        if let Some(reply) = reply {
            push(&self.ctx, peer, reply);
        }

        // …and everyone else who has the document open.
        if effects.heads_changed {
            fan_out(
                &self.ctx,
                &doc_id,
                loaded,
                &mut self.sessions,
                Some(peer.conn),
            );
            // Devices subscribed to the area hear of it, and devices that hold the document
            // without having it open hear that it changed.
            push_to_area(&self.ctx, &self.hub, &doc_id, loaded, &self.sessions);
            self.tell_watchers();
        }

        if let (Some(outcome), Some(seq)) = (&outcome, appended_seq) {
            self.record_flags(outcome, seq, &peer.user.id).await;
            self.arbitrate(outcome).await;
        }
        let compact = self
            .loaded
            .as_ref()
            .is_some_and(|l| l.chunks_since_snapshot >= self.ctx.limits.compact_after_chunks);
        if compact {
            self.compact().await;
        }
        Ok(())
    }

    /// Answers a message about a document `peer` may not read exactly as it would be answered
    /// if the document did not exist: `doc-unavailable` to a `request`; to a `sync`, what a
    /// fresh session on an empty document says; changes are judged as the creation of a new
    /// document and refused with the reason that would give. Nothing is kept: no session, no
    /// pending changes.
    ///
    /// One difference remains, and cannot be removed: a peer that sends a *valid* creation
    /// under the ID of an existing document it may not read is refused, where under an unused
    /// ID it would succeed. Learning that needs the ID already; it reveals nothing of the
    /// document.
    fn answer_as_missing(
        &self,
        peer: &Arc<Peer>,
        request: bool,
        message: automerge::sync::Message,
    ) -> Result<(), Step> {
        let doc_id = self.id;
        if request {
            push(&self.ctx, peer, unavailable(&self.ctx, peer, doc_id));
            return Ok(());
        }
        let mut empty = Automerge::new();
        let mut session = DocSession::new();
        let carries_changes = !message.changes.is_empty();
        let effects = session
            .apply_message(&mut empty, message)
            .map_err(|e| malformed(&self.ctx, peer, doc_id, e))?;
        if carries_changes && effects.heads_changed {
            let changes = empty.get_changes(&[]);
            let change = changes.first().map(|c| c.hash()).expect("heads changed");
            let reason = match domain::check_change_with(
                &self.ctx.rules,
                &peer.actor,
                None,
                &Automerge::new(),
                &empty,
            ) {
                Err(forbidden) => forbidden.to_string(),
                Ok(_) => "a document with this ID cannot be created".to_owned(),
            };
            self.ctx.metrics.rejected_changes.inc();
            return Err(Refusal::Rejected {
                doc: doc_id,
                change,
                reason,
            }
            .into());
        }
        if let Some(data) = effects.send {
            push(&self.ctx, peer, sync_message(&self.ctx, peer, doc_id, data));
        }
        Ok(())
    }

    /// Records what the rules noticed without refusing (visits off listening days, ignored
    /// timeline events), for supervisors and audits.
    async fn record_flags(&self, outcome: &Outcome, seq: i64, user: &str) {
        let flags: Vec<(String, String)> = outcome
            .flags
            .iter()
            .filter_map(|flag| match flag {
                domain::Flag::OffListeningDay { date } => {
                    Some(("off_listening_day".to_owned(), date.to_string()))
                }
                domain::Flag::IgnoredEvents { indices } => {
                    Some(("ignored_events".to_owned(), format!("{indices:?}")))
                }
                domain::Flag::ArbitrateOrder => None,
            })
            .collect();
        if flags.is_empty() {
            return;
        }
        if let Err(e) = self
            .ctx
            .store
            .record_flags(&self.id, seq, user, &flags)
            .await
        {
            self.ctx.metrics.storage_errors.inc();
            tracing::warn!(error = %e, "recording flags failed");
        }
    }

    /// Order arbitration: if the order is open and unassigned, writes the winner (of the claims
    /// in the document, the one whose chunk the database stored first; claims are recorded in
    /// the append's own transaction) as the server's own change, stored and sent to every
    /// reader. The losing volunteer's device learns it from the document's `assignee`.
    ///
    /// Several processes may arbitrate one order at once: the assignment is appended on top of
    /// the state it was decided on, and a process that finds the document changed first
    /// catches up and decides again, so there is one assignment, to the first claim.
    async fn arbitrate(&mut self, outcome: &Outcome) {
        if !outcome.flags.contains(&domain::Flag::ArbitrateOrder) {
            return;
        }
        for _ in 0..MAX_ATTEMPTS {
            match self.try_assign(outcome).await {
                Ok(()) => return,
                Err(Step::Stale | Step::Behind) => match self.after_stale().await {
                    Ok(true) => self.tell_of_refresh(),
                    Ok(false) => {}
                    Err(refusal) => {
                        tracing::warn!(%refusal, "arbitration waits for the next change");
                        return;
                    }
                },
                Err(Step::Refused(refusal)) => {
                    tracing::error!(%refusal, "arbitration waits for the next change");
                    return;
                }
            }
        }
        tracing::warn!("the order changed too often to arbitrate; waits for the next change");
    }

    /// One attempt at [`DocActor::arbitrate`] on the document as it is here.
    async fn try_assign(&mut self, outcome: &Outcome) -> Result<(), Step> {
        let doc_id = self.id;
        let received = self.ctx.store.claim_arrivals(&doc_id).await.map_err(|e| {
            self.ctx.metrics.storage_errors.inc();
            tracing::error!(error = %e, "reading claims failed");
            Refusal::Storage { doc: doc_id }
        })?;
        self.ensure_loaded().await?;
        let Some(loaded) = self.loaded.as_mut() else {
            return Ok(());
        };
        if !matches!(domain::order_flow::read_assignee(&loaded.doc), Ok(None)) {
            return Ok(());
        }
        let Ok(claims) = domain::read_claims(&loaded.doc) else {
            return Ok(());
        };
        let Some(winner) = domain::winning_claim(&claims, &received) else {
            return Ok(());
        };
        let before = loaded.doc.get_heads();
        let mut assigned = loaded.doc.fork();
        assigned.set_actor(self.ctx.server_actor.clone());
        if let Err(e) =
            assigned.transact(|tx| domain::builders::assign_order(tx, &winner.volunteer))
        {
            tracing::error!(error = ?e.error, "writing the assignee failed");
            return Ok(());
        }
        let server = Actor::server(outcome.info.area.clone());
        if let Err(e) = domain::check_change(&server, Some(&outcome.info), &loaded.doc, &assigned) {
            // Another process's change may have closed or cancelled the order meanwhile.
            tracing::info!(reason = %e, "the order no longer takes an assignee");
            return Ok(());
        }
        let bytes = assigned.save_after(&before);
        let projected = domain::project(&assigned, &self.ctx.projection).ok();
        let summary = match &projected {
            Some(after) => loaded.describe(after),
            None => format!("assigned to {}", winner.volunteer),
        };
        let change_record = OwnedChangeRecord {
            projected: projected.clone(),
            user: domain::SERVER_USER.to_owned(),
            device: None,
            role: "server".to_owned(),
            changes: 1,
            client_time: None,
            summary,
        };
        let appended = match self
            .ctx
            .committer
            .append(Append {
                doc: doc_id,
                data: bytes,
                peer_key: Some("server".to_owned()),
                holder: None,
                record: change_record,
                claims: Vec::new(),
                expected_seq: loaded.last_seq,
            })
            .await
        {
            Ok(appended) => appended,
            Err(CommitError::Conflict(_)) => return Err(Step::Stale),
            Err(e) => {
                self.ctx.metrics.storage_errors.inc();
                tracing::error!(error = %e, "storing the assignment failed; it is retried with the next claim");
                return Err(Refusal::Storage { doc: doc_id }.into());
            }
        };
        self.ctx.changes.notify_waiters();
        loaded.doc.merge(&mut assigned).ok();
        loaded.projected = projected;
        loaded.last_seq = appended.seq;
        loaded.size_bytes = appended.size_bytes;
        loaded.chunks_since_snapshot += 1;
        tracing::info!(volunteer = %winner.volunteer, "order assigned");
        fan_out(&self.ctx, &doc_id, loaded, &mut self.sessions, None);
        push_to_area(&self.ctx, &self.hub, &doc_id, loaded, &self.sessions);
        self.tell_watchers();
        Ok(())
    }

    /// Writes a fresh snapshot and drops the chunks it contains.
    async fn compact(&mut self) {
        let Some(loaded) = self.loaded.as_mut() else {
            return;
        };
        // The snapshot replaces the chunks, so it must load to the same document: Automerge
        // can hold changes it cannot write as a document (see `saved_whole`). Then the chunks
        // stay, and compaction is tried again after as many more.
        let Some(snapshot) = lianxin_protocol::session::saved_whole(&loaded.doc) else {
            tracing::warn!("the document does not save as a snapshot that loads; not compacted");
            loaded.chunks_since_snapshot = 0;
            return;
        };
        match self
            .ctx
            .store
            .compact(&self.id, &snapshot, loaded.last_seq)
            .await
        {
            Ok(()) => {
                self.ctx.metrics.compactions.inc();
                loaded.chunks_since_snapshot = 0;
                loaded.size_bytes = snapshot.len() as i64;
            }
            Err(e) => {
                self.ctx.metrics.storage_errors.inc();
                tracing::warn!(error = %e, "compaction failed; will retry after more changes");
            }
        }
    }

    /// Removes a connection's session, saving its sync state for the device's next visit.
    async fn detach(&mut self, conn: ConnId, watch: Option<Arc<Peer>>) {
        let Some(slot) = self.sessions.remove(&conn) else {
            return;
        };
        // Registered here, between two changes this actor handles, so none is missed; not for
        // a connection that is gone (its watches were removed as it closed).
        if let Some(peer) = watch.filter(|peer| !peer.outbox.is_closed()) {
            self.hub.watch(&peer, &[self.id]);
        }
        if let Some(key) = &slot.peer.peer_key {
            let state = slot.session.persisted_state();
            // The device holds everything stored up to `last_seq` only if the heads it shares
            // with us are all of the document's heads.
            let synced_seq = match &self.loaded {
                Some(loaded) if loaded.stored => {
                    let mut shared = slot.session.shared_heads();
                    shared.sort();
                    let mut heads = loaded.doc.get_heads();
                    heads.sort();
                    if shared == heads { loaded.last_seq } else { 0 }
                }
                Some(_) => 0,
                // Unloaded to save memory: what was recorded stays (see `save_sync_state`).
                None => -1,
            };
            if let Err(e) = self
                .ctx
                .store
                .save_sync_state(key, &self.id, &state, synced_seq)
                .await
            {
                self.ctx.metrics.storage_errors.inc();
                tracing::warn!(error = %e, "saving sync state failed");
            }
        }
    }

    fn push(&self, peer: &Peer, message: Message) {
        push(&self.ctx, peer, message);
    }
}

/// Sends the whole document, as saved, to the area subscribers that may read it and do not
/// have it open here (those hear through their sessions). One save serves them all. A
/// subscriber that cannot keep up is disconnected like any slow client, and catches up from its
/// cursor when it reconnects.
fn push_to_area(
    ctx: &DocContext,
    hub: &DocHub,
    doc_id: &DocumentId,
    loaded: &Loaded,
    sessions: &HashMap<ConnId, SessionSlot>,
) {
    let Some(info) = &loaded.info else {
        return;
    };
    let subscribers: Vec<_> = hub
        .area_subscribers(&info.area)
        .into_iter()
        .filter(|peer| {
            !sessions.contains_key(&peer.conn) && loaded.readable_by(&peer.actor, ctx.allow_untyped)
        })
        .collect();
    if subscribers.is_empty() {
        return;
    }
    let saved = loaded.doc.save();
    ctx.metrics.area_documents.add(subscribers.len() as u64);
    for peer in subscribers {
        push(
            ctx,
            &peer,
            Message::AreaBatch {
                sender_id: ctx.server_peer.clone(),
                target_id: peer.remote.clone(),
                documents: vec![(*doc_id, saved.clone())],
                cursor: String::new(),
                complete: false,
            },
        );
    }
}

/// Tells each of `watchers` (connections holding `doc` without having it open) that it
/// changed.
pub(super) fn tell_changed(ctx: &DocContext, watchers: &[Arc<Peer>], doc: DocumentId) {
    for watcher in watchers {
        push(
            ctx,
            watcher,
            Message::ChangedDocs {
                sender_id: ctx.server_peer.clone(),
                target_id: watcher.remote.clone(),
                document_ids: vec![doc],
            },
        );
    }
}

/// A change chunk held for a session until its dependencies arrive.
struct Held {
    hash: automerge::ChangeHash,
    deps: Vec<automerge::ChangeHash>,
    bytes: Vec<u8>,
    /// What it costs decoded (see `lianxin_protocol::chunk`).
    cost: chunk::Inspection,
}

/// Whether every change `message` carries depends on a change that neither the document, nor
/// the message, nor the changes held for the session (`pending`) contain: then none of them
/// can apply. Anything that does not parse as a single change (a whole document, several
/// chunks in one entry) counts as applicable, and is judged on a fork as usual.
fn orphans_only(doc: &Automerge, message: &automerge::sync::Message, pending: &[Held]) -> bool {
    if message.changes.is_empty() {
        return false;
    }
    let mut changes = Vec::new();
    for entry in message.changes.iter() {
        match automerge::Change::try_from(entry) {
            Ok(change) => changes.push(change),
            Err(_) => return false,
        }
    }
    let known = |dep: &automerge::ChangeHash| {
        changes.iter().any(|c| c.hash() == *dep) || pending.iter().any(|h| h.hash == *dep)
    };
    changes.iter().all(|change| {
        doc.get_missing_deps(change.deps())
            .iter()
            .any(|dep| !known(dep))
    })
}

/// The sync message `send` (or, if Automerge had nothing to say, a bare one with our heads)
/// with the dependencies of the held changes that neither the document nor the held changes
/// contain added to its `need`. With no `have`, the peer answers with exactly those changes.
fn ask_for_missing(doc: &Automerge, pending: &[Held], send: Option<Vec<u8>>) -> Vec<u8> {
    let mut missing: Vec<automerge::ChangeHash> = pending
        .iter()
        .flat_map(|held| doc.get_missing_deps(&held.deps))
        .filter(|dep| !pending.iter().any(|h| h.hash == *dep))
        .collect();
    let mut message = send
        .and_then(|bytes| automerge::sync::Message::decode(&bytes).ok())
        .unwrap_or_else(|| automerge::sync::Message {
            heads: doc.get_heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: Vec::<Vec<u8>>::new().into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        });
    message.need.append(&mut missing);
    message.need.sort_unstable();
    message.need.dedup();
    message.encode()
}

/// Keeps `incoming` changes for a session until their dependencies arrive, within a quarter
/// of a message's budget in decoded bytes and in operations (what a fork pays to take them in
/// again with every message): past that the held ones are forgotten (the peer offers them
/// again once it learns we lack them). Entries that are not single changes are not held.
fn hold(pending: &mut Vec<Held>, incoming: Vec<Vec<u8>>, budget: &chunk::Budget) {
    let room = chunk::Budget {
        max_inflated_bytes: budget.max_inflated_bytes / 4,
        max_ops: budget.max_ops / 4,
    };
    let mut adding = Vec::new();
    for bytes in incoming {
        let Ok(change) = automerge::Change::try_from(bytes.as_slice()) else {
            continue;
        };
        let hash = change.hash();
        if pending.iter().chain(&adding).any(|h: &Held| h.hash == hash) {
            continue;
        }
        if let Ok(cost) = chunk::inspect(&bytes, &room) {
            let deps = change.deps().to_vec();
            adding.push(Held {
                hash,
                deps,
                bytes,
                cost,
            });
        }
    }
    let total = |held: &[Held]| {
        held.iter().fold((0usize, 0u64), |(b, o), h| {
            (b + h.cost.inflated_bytes, o + h.cost.ops)
        })
    };
    let (held_bytes, held_ops) = total(pending);
    let (new_bytes, new_ops) = total(&adding);
    if held_bytes + new_bytes > room.max_inflated_bytes || held_ops + new_ops > room.max_ops {
        pending.clear();
    }
    if new_bytes <= room.max_inflated_bytes && new_ops <= room.max_ops {
        pending.extend(adding);
    }
}

/// A malformed message from `peer`: counted, and against the connection's malformed-message
/// budget.
fn malformed(
    ctx: &DocContext,
    peer: &Peer,
    doc: DocumentId,
    reason: impl std::fmt::Display,
) -> Refusal {
    ctx.metrics.malformed_messages.inc();
    peer.strikes.strike();
    Refusal::Malformed {
        doc,
        reason: reason.to_string(),
    }
}

/// A `sync` message from this server to `peer`.
fn sync_message(ctx: &DocContext, peer: &Peer, document_id: DocumentId, data: Vec<u8>) -> Message {
    Message::Sync {
        sender_id: ctx.server_peer.clone(),
        target_id: peer.remote.clone(),
        document_id,
        data,
    }
}

/// The answer to a peer asking for a document that is not there (or that it may not read).
/// The connection releases its lease when it sends this.
fn unavailable(ctx: &DocContext, peer: &Peer, document_id: DocumentId) -> Message {
    Message::DocUnavailable {
        sender_id: ctx.server_peer.clone(),
        target_id: peer.remote.clone(),
        document_id,
    }
}

/// Sends every session that may read the document (but `except`) what it now lacks.
fn fan_out(
    ctx: &DocContext,
    doc_id: &DocumentId,
    loaded: &Loaded,
    sessions: &mut HashMap<ConnId, SessionSlot>,
    except: Option<ConnId>,
) {
    for (conn, other) in sessions.iter_mut() {
        if Some(*conn) == except || !loaded.readable_by(&other.peer.actor, ctx.allow_untyped) {
            continue;
        }
        if let Some(data) = other.session.generate(&loaded.doc) {
            push(
                ctx,
                &other.peer,
                sync_message(ctx, &other.peer, *doc_id, data),
            );
        }
    }
}

/// Queues a message for a connection without waiting. A full queue is the slow-client policy:
/// the connection is closed (the client resyncs on reconnect; nothing is lost).
fn push(ctx: &DocContext, peer: &Peer, message: Message) {
    match peer.outbox.try_send(message) {
        Ok(()) => {}
        Err(PushError::Full) => {
            if !peer.kill.is_cancelled() {
                ctx.metrics.slow_client_disconnects.inc();
                tracing::warn!(
                    conn = peer.conn,
                    "send queue full: disconnecting slow client"
                );
                peer.kill.cancel();
            }
        }
        // The connection is closing; its detach is on the way.
        Err(PushError::Closed) => {}
    }
}

/// Decides whether `changes` (new to the document) may be accepted from `peer`.
///
/// Today: every change must come from an Automerge actor bound to this user and device (bound
/// at its first accepted change). The field rules (document kinds, schemas, write rights) plug
/// in here.
async fn vet(
    ctx: &DocContext,
    peer: &Peer,
    doc: &DocumentId,
    changes: &[automerge::Change],
) -> Result<(), Refusal> {
    let mut actors: Vec<String> = changes
        .iter()
        .map(|c| c.actor_id().to_hex_string())
        .collect();
    actors.sort();
    actors.dedup();
    let owners = ctx
        .store
        .bind_actors(&actors, &peer.user.id, &peer.device_id)
        .await
        .map_err(|e| {
            ctx.metrics.storage_errors.inc();
            tracing::error!(error = %e, "binding actors failed");
            Refusal::Storage { doc: *doc }
        })?;
    for (actor, (user, device)) in actors.iter().zip(owners) {
        if user != peer.user.id || device != peer.device_id {
            let change = changes
                .iter()
                .find(|c| c.actor_id().to_hex_string() == *actor)
                .map(|c| c.hash())
                .expect("actor came from a change");
            return Err(Refusal::Rejected {
                doc: *doc,
                change,
                reason: format!(
                    "actor {actor} belongs to another user or device; a device may only upload its own changes"
                ),
            });
        }
    }
    Ok(())
}

/// Judges the changes a peer sent by the field rules: the document's schema, the area tree and
/// the author's role (`lianxin_protocol::domain`). Untyped documents pass where they are
/// allowed. Returns what the rules found for the server to act on.
fn check_field_rules(
    ctx: &DocContext,
    peer: &Peer,
    doc_id: &DocumentId,
    loaded: &Loaded,
    candidate: &Automerge,
    changes: &[automerge::Change],
) -> Result<Option<Outcome>, Refusal> {
    let untyped_after = automerge::ReadDoc::get(candidate, automerge::ROOT, "kind")
        .ok()
        .flatten()
        .is_none();
    if ctx.allow_untyped && loaded.info.is_none() && untyped_after {
        return Ok(None);
    }
    let before = if loaded.stored {
        Some(&loaded.doc)
    } else {
        None
    };
    let empty = Automerge::new();
    match domain::check_change_with(
        &ctx.rules,
        &peer.actor,
        loaded.info.as_ref(),
        before.unwrap_or(&empty),
        candidate,
    ) {
        Ok(outcome) => Ok(Some(outcome)),
        Err(forbidden) => {
            ctx.metrics.rejected_changes.inc();
            Err(Refusal::Rejected {
                doc: *doc_id,
                change: changes.first().map(|c| c.hash()).expect("changes were new"),
                reason: forbidden.to_string(),
            })
        }
    }
}
