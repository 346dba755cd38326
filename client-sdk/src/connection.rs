//! One websocket connection to the server: handshake, deciding what to offer, then applying
//! what arrives and sending what changes until the connection ends.
//!
//! What moves on a connection: documents with local changes the server has not acknowledged,
//! documents the app fetches, and (when the server offers the changed-docs extension and knows
//! this store) only the documents the server names as changed since this store last synced
//! them, at connect time and live afterwards. Against any other server every document is
//! offered. Received changes are committed to the store before the reply that acknowledges
//! them is sent.
//!
//! With the area-sync extension, the documents of the user's area that changed since the
//! stored cursor (all of them on a fresh device) arrive in batches without being asked for one
//! by one, and later changes are pushed; each batch is stored with its cursor in one
//! transaction. At most [`WINDOW`] documents are in conversation at a time; the rest queue.
//!
//! When the connection ends, each session is reset to its persisted part (the shared heads),
//! as automerge's sync protocol requires, so the next connection exchanges only what is new.
//!
//! A conversation can stall: automerge's sync sends nothing more while it waits for an answer,
//! and an answer can be lost (a server that refused a message for a passing reason, a race
//! between a connection ending and the next one starting). When documents wait and nothing
//! has arrived from the server for [`STALL`], their sessions are reset the same way and offered
//! again. Sync messages are idempotent, so a needless retry costs only bytes.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use automerge::Automerge;
use futures_util::{SinkExt, StreamExt};
use lianxin_protocol::{
    DocSession, DocumentId, EXT_AREA_SYNC, EXT_CHANGED_DOCS, Message, PeerId, PeerMetadata,
    handshake,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::client::{Availability, LocalDoc, Shared};
use crate::error::ClientError;
use crate::event::{ClientEvent, Origin, SyncState};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long documents may wait for the server, with nothing arriving, before they are offered
/// again with fresh sessions.
const STALL: std::time::Duration = std::time::Duration::from_secs(3);

/// Most documents in conversation with the server at once. A device with ten thousand
/// documents to upload offers them this many at a time: sending all at once would leave it
/// writing while the server's answers pile up unread, and would make the server load them all.
const WINDOW: usize = 128;

/// Where the store keeps the area-sync cursor of the last batch it stored.
const AREA_CURSOR: &str = "area_cursor";

/// What one sync message from the server may cost once decoded. The server sends documents as
/// it stores them, so this only keeps a hostile or broken server from exhausting the device's
/// memory with a compressed or run-length bomb.
const FROM_SERVER: lianxin_protocol::chunk::Budget = lianxin_protocol::chunk::Budget {
    max_inflated_bytes: 512 * 1024 * 1024,
    max_ops: 50_000_000,
};

/// A connection that completed its handshake.
pub(crate) struct OpenConnection {
    socket: Socket,
    server: PeerId,
    server_meta: PeerMetadata,
}

/// Connects and performs the handshake.
pub(crate) async fn open(shared: &Shared, url: &str) -> Result<OpenConnection, ClientError> {
    let connect_err = |reason: String| ClientError::Connect {
        url: url.to_string(),
        reason,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| connect_err(e.to_string()))?;
    let token = shared.token.borrow().clone();
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ClientError::Unauthorized("token is not a valid header value".into()))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(if status.as_u16() == 401 {
                ClientError::Unauthorized(body)
            } else {
                connect_err(format!("HTTP {status}: {body}"))
            });
        }
        Err(e) => return Err(connect_err(e.to_string())),
    };
    let join = handshake::join(
        &shared.peer_id,
        PeerMetadata {
            storage_id: Some(shared.store_id.clone()),
            is_ephemeral: false,
            ..PeerMetadata::default()
        },
    );
    send(shared, &mut socket, &join)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let answer = tokio::time::timeout(shared.config.handshake_timeout, async {
        while let Some(frame) = socket.next().await {
            let frame = frame.map_err(|e| ClientError::Handshake(e.to_string()))?;
            let WsMessage::Binary(bytes) = frame else {
                continue;
            };
            count_in(shared, bytes.len());
            let message =
                Message::decode(&bytes).map_err(|e| ClientError::Handshake(e.to_string()))?;
            return handshake::accept_answer(&message)
                .map_err(|e| ClientError::Handshake(e.to_string()));
        }
        Err(ClientError::Handshake(
            "connection closed during handshake".into(),
        ))
    })
    .await
    .map_err(|_| ClientError::Handshake("no answer to join".into()))??;
    shared.counters.connections.fetch_add(1, Ordering::Relaxed);
    Ok(OpenConnection {
        socket,
        server: answer.peer_id,
        server_meta: answer.metadata.unwrap_or_default(),
    })
}

fn count_in(shared: &Shared, bytes: usize) {
    shared
        .counters
        .messages_received
        .fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .bytes_received
        .fetch_add(bytes as u64, Ordering::Relaxed);
}

async fn send(
    shared: &Shared,
    socket: &mut Socket,
    message: &Message,
) -> Result<(), tungstenite::Error> {
    let bytes = message.encode();
    shared
        .counters
        .messages_sent
        .fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .bytes_sent
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    socket.send(WsMessage::Binary(bytes.into())).await
}

impl OpenConnection {
    /// Syncs until the connection drops or `stop` is cancelled.
    pub(crate) async fn run(mut self, shared: &Arc<Shared>, stop: &CancellationToken) {
        let mut session = ConnectionState {
            server: self.server.clone(),
            active: HashSet::new(),
            awaiting_catch_up: false,
            awaiting_area: false,
            window: HashSet::new(),
            backlog: std::collections::VecDeque::new(),
            queued: HashSet::new(),
            no_progress: std::collections::HashMap::new(),
        };
        let (catch_up, hear_changes, area) = match session.prepare(shared, &self.server_meta).await
        {
            Ok(modes) => modes,
            Err(e) => {
                tracing::error!(error = %e, "local store failed; closing the connection");
                return self.finish(shared, true).await;
            }
        };
        // Offer what needs offering; with catch-up, ask the server which documents changed.
        let mut initial: Vec<DocumentId> = {
            let docs = shared.docs();
            docs.iter()
                .filter(|(_, l)| {
                    !catch_up || l.unsent > 0 || l.availability == Availability::Requested
                })
                .map(|(id, _)| *id)
                .collect()
        };
        initial.extend(shared.take_dirty());
        let mut outgoing = session.offer(shared, initial);
        // Area sync first: the server then leaves typed documents out of changed-docs.
        if area {
            match session.area_request(shared).await {
                Ok(request) => outgoing.push(request),
                Err(e) => {
                    tracing::error!(error = %e, "local store failed; closing the connection");
                    return self.finish(shared, true).await;
                }
            }
        }
        // Asked even of a server this store has not met: the answer is then empty, but the
        // server learns that this client hears changed-docs notices.
        if hear_changes {
            session.awaiting_catch_up = true;
            outgoing.push(Message::ChangedDocsRequest {
                sender_id: shared.peer_id.clone(),
                target_id: self.server.clone(),
            });
        }
        shared.publish_status(SyncState::Syncing, true);
        loop {
            for message in outgoing.drain(..) {
                if send(shared, &mut self.socket, &message).await.is_err() {
                    return self.finish(shared, false).await;
                }
            }
            let in_flight = session.in_flight(shared);
            shared.publish_status(SyncState::Syncing, in_flight);
            let waiting = in_flight || shared.docs().values().any(|l| l.unsent > 0);
            tokio::select! {
                frame = self.socket.next() => {
                    let bytes = match frame {
                        Some(Ok(WsMessage::Binary(bytes))) => bytes,
                        Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                            return self.finish(shared, false).await;
                        }
                        Some(Ok(_)) => continue,
                    };
                    count_in(shared, bytes.len());
                    let handled = match Message::decode(&bytes) {
                        Ok(message) => session.handle(shared, message).await,
                        Err(e) => {
                            tracing::warn!(error = %e, "undecodable message from server");
                            Ok(Vec::new())
                        }
                    };
                    shared.bump_progress();
                    match handled {
                        Ok(messages) => outgoing = messages,
                        Err(e) => {
                            tracing::error!(error = %e, "local store failed; closing the connection");
                            return self.finish(shared, true).await;
                        }
                    }
                }
                _ = shared.local_change.notified() => {
                    let dirty = shared.take_dirty();
                    outgoing = session.offer(shared, dirty);
                }
                _ = tokio::time::sleep(STALL), if waiting => {
                    outgoing = session.retry_stalled(shared);
                    match session.retry_area(shared).await {
                        Ok(request) => outgoing.extend(request),
                        Err(e) => {
                            tracing::error!(error = %e, "local store failed; closing the connection");
                            return self.finish(shared, true).await;
                        }
                    }
                }
                _ = stop.cancelled() => {
                    return self.finish(shared, true).await;
                }
            }
        }
    }

    async fn finish(mut self, shared: &Shared, close: bool) {
        if close {
            let _ = self.socket.close(None).await;
        }
        {
            let mut docs = shared.docs();
            for local in docs.values_mut() {
                local.session.restart();
                if local.availability == Availability::Requested {
                    local.availability = Availability::Unavailable;
                }
            }
        }
        shared.bump_progress();
        shared.publish_status(SyncState::Offline, false);
    }
}

/// What one connection knows beyond the documents.
struct ConnectionState {
    server: PeerId,
    /// Documents offered on this connection: the server has a session for each.
    active: HashSet<DocumentId>,
    /// Asked the server which documents changed and have not heard back: not up to date yet.
    awaiting_catch_up: bool,
    /// Asked for area sync and the catch-up batches have not all arrived: not up to date yet.
    awaiting_area: bool,
    /// Documents in conversation with the server: at most [`WINDOW`].
    window: HashSet<DocumentId>,
    /// Documents waiting for room in the window, in order, and the same as a set.
    backlog: std::collections::VecDeque<DocumentId>,
    queued: HashSet<DocumentId>,
    /// Per document with unsent changes: how many messages in a row changed neither its heads
    /// nor what is unsent (see [`NO_PROGRESS`]).
    no_progress: std::collections::HashMap<DocumentId, u32>,
}

/// Messages about one document that may pass without progress before its session is restarted.
/// A healthy exchange needs a handful; a conversation that goes round in circles (both sides
/// answering, neither applying anything) is broken by starting afresh from the shared heads, as
/// a reconnect would.
const NO_PROGRESS: u32 = 64;

impl ConnectionState {
    /// Checks which server this is. A store that meets a different server (another database)
    /// forgets its sync states, since they describe what it shared with the old one. Returns
    /// whether changed-docs catch-up can replace offering every document, whether to ask for
    /// changed-docs at all, and whether area sync can be used.
    async fn prepare(
        &self,
        shared: &Shared,
        meta: &PeerMetadata,
    ) -> Result<(bool, bool, bool), crate::error::StoreError> {
        let server_store = meta.storage_id.as_ref().map(|s| s.as_str().to_string());
        let known = shared.store.get_meta("server_storage_id").await?;
        let same_server = server_store.is_some() && known == server_store;
        if !same_server {
            if known.is_some() {
                shared.store.clear_sync_states().await?;
                shared.store.delete_meta(AREA_CURSOR).await?;
                let mut docs = shared.docs();
                for local in docs.values_mut() {
                    local.session = DocSession::new();
                    local.saved_shared.clear();
                    local.refresh_unsent();
                }
            }
            if let Some(id) = &server_store {
                shared.store.set_meta("server_storage_id", id).await?;
            }
        }
        let changed_docs = shared.config.catch_up && meta.supports(EXT_CHANGED_DOCS);
        Ok((
            changed_docs && same_server,
            changed_docs,
            shared.config.area_sync && meta.supports(EXT_AREA_SYNC),
        ))
    }

    /// The `lianxin-area-sync` request, from the cursor of the last batch stored.
    async fn area_request(&mut self, shared: &Shared) -> Result<Message, crate::error::StoreError> {
        self.awaiting_area = true;
        Ok(Message::AreaSync {
            sender_id: shared.peer_id.clone(),
            target_id: self.server.clone(),
            cursor: shared.store.get_meta(AREA_CURSOR).await?,
        })
    }

    /// Takes in one area-sync batch: merges each document, records that the server has
    /// exactly what it sent, stores all of it with the batch's cursor in one transaction, and
    /// only then reports the changes.
    async fn handle_area_batch(
        &mut self,
        shared: &Shared,
        documents: Vec<(DocumentId, Vec<u8>)>,
        cursor: String,
        complete: bool,
    ) -> Result<Vec<Message>, crate::error::StoreError> {
        let listening = shared.events.receiver_count() > 0;
        let mut writes = Vec::with_capacity(documents.len());
        let mut events = Vec::new();
        {
            let mut docs = shared.docs();
            for (id, data) in documents {
                let mut incoming = Automerge::new();
                if let Err(e) = incoming.load_incremental(&data) {
                    tracing::warn!(doc_id = %id, error = %e, "unreadable document in an area batch");
                    continue;
                }
                let server_heads = incoming.get_heads();
                let active = self.active.contains(&id);
                let local = match docs.entry(id) {
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        let mut local = LocalDoc::new(
                            incoming,
                            DocSession::sharing(server_heads),
                            Availability::Ready,
                        );
                        local.saved_heads = local.doc.get_heads();
                        local.saved_shared = local.session.shared_heads();
                        if listening {
                            events.push((id, local.doc.diff(&[], &local.saved_heads)));
                        }
                        writes.push((id, data, local.session.persisted_state()));
                        slot.insert(local);
                        continue;
                    }
                    std::collections::hash_map::Entry::Occupied(slot) => slot.into_mut(),
                };
                let before = local.doc.get_heads();
                if let Err(e) = local.doc.merge(&mut incoming) {
                    tracing::warn!(doc_id = %id, error = %e, "merging an area batch failed");
                    continue;
                }
                if local.availability != Availability::Ready {
                    local.availability = Availability::Ready;
                }
                // A conversation under way keeps its session; any other learns that the server
                // has exactly what it sent.
                if !active {
                    local.session = DocSession::sharing(server_heads);
                }
                local.refresh_unsent();
                let after = local.doc.get_heads();
                let chunk = local.take_unsaved().unwrap_or_default();
                local.saved_shared = local.session.shared_heads();
                if listening && before != after {
                    events.push((id, local.doc.diff(&before, &after)));
                }
                writes.push((id, chunk, local.session.persisted_state()));
            }
        }
        // Durable first (documents and cursor together), reported after.
        shared
            .store
            .store_batch(&writes, AREA_CURSOR, &cursor)
            .await?;
        for (id, patches) in events {
            if !patches.is_empty() {
                shared.emit(ClientEvent::DocumentChanged {
                    id,
                    origin: Origin::Remote,
                    patches,
                });
            }
        }
        if complete {
            self.awaiting_area = false;
        }
        Ok(Vec::new())
    }

    /// Offers `ids` (those held or requested): documents already in conversation say what is
    /// new at once; the others queue, and at most [`WINDOW`] conversations run at a time.
    fn offer(
        &mut self,
        shared: &Shared,
        ids: impl IntoIterator<Item = DocumentId>,
    ) -> Vec<Message> {
        let mut now = Vec::new();
        for id in ids {
            if self.window.contains(&id) {
                now.push(id);
            } else if self.queued.insert(id) {
                self.backlog.push_back(id);
            }
        }
        let mut out = self.generate(shared, now);
        out.extend(self.pump(shared));
        out
    }

    /// Starts queued conversations while the window has room.
    fn pump(&mut self, shared: &Shared) -> Vec<Message> {
        let mut out = Vec::new();
        while self.window.len() < WINDOW {
            let Some(id) = self.backlog.pop_front() else {
                break;
            };
            self.queued.remove(&id);
            out.extend(self.generate(shared, [id]));
        }
        out
    }

    /// A conversation ended (or can go no further for now): room for the next.
    fn done(&mut self, shared: &Shared, id: &DocumentId) -> Vec<Message> {
        if self.window.remove(id) {
            self.pump(shared)
        } else {
            Vec::new()
        }
    }

    /// Sync messages for `ids`, marking them active; those with something to say enter the
    /// window.
    fn generate(
        &mut self,
        shared: &Shared,
        ids: impl IntoIterator<Item = DocumentId>,
    ) -> Vec<Message> {
        let mut docs = shared.docs();
        let mut out = Vec::new();
        for id in ids {
            let Some(local) = docs.get_mut(&id) else {
                continue;
            };
            if local.availability == Availability::Unavailable {
                continue;
            }
            self.active.insert(id);
            if let Some(data) = local.session.generate(&local.doc) {
                self.window.insert(id);
                out.push(self.sync_message(shared, id, data, local));
            }
        }
        out
    }

    fn sync_message(
        &self,
        shared: &Shared,
        document_id: DocumentId,
        data: Vec<u8>,
        local: &LocalDoc,
    ) -> Message {
        let sender_id = shared.peer_id.clone();
        let target_id = self.server.clone();
        if local.availability == Availability::Requested {
            Message::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
        } else {
            Message::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            }
        }
    }

    /// Resets the sessions of the documents that wait for the server (active and not in sync,
    /// or holding unacknowledged changes) and offers them again (see [`STALL`]).
    fn retry_stalled(&mut self, shared: &Shared) -> Vec<Message> {
        let stalled: Vec<DocumentId> = {
            let mut docs = shared.docs();
            docs.iter_mut()
                .filter(|(id, local)| {
                    let active = self.active.contains(id);
                    (active && local.availability == Availability::Requested)
                        || (local.availability == Availability::Ready
                            && ((active && !local.session.is_in_sync(&local.doc))
                                || local.unsent > 0))
                })
                .map(|(id, local)| {
                    local.session.restart();
                    *id
                })
                .collect()
        };
        let mut out = Vec::new();
        if !stalled.is_empty() {
            tracing::info!(
                documents = stalled.len(),
                "no answer from the server; offering again"
            );
            out = self.offer(shared, stalled);
        }
        if self.awaiting_catch_up {
            out.push(Message::ChangedDocsRequest {
                sender_id: shared.peer_id.clone(),
                target_id: self.server.clone(),
            });
        }
        out
    }

    /// Asks for area sync again from the stored cursor, if the catch-up stalled.
    async fn retry_area(
        &mut self,
        shared: &Shared,
    ) -> Result<Option<Message>, crate::error::StoreError> {
        if !self.awaiting_area {
            return Ok(None);
        }
        Ok(Some(self.area_request(shared).await?))
    }

    /// Whether some document in conversation still waits for the server.
    fn in_flight(&self, shared: &Shared) -> bool {
        if self.awaiting_catch_up || self.awaiting_area || !self.backlog.is_empty() {
            return true;
        }
        // Every conversation under way is in the window (see `handle_sync`), so this looks at
        // no more than the window, however many documents the device holds.
        let docs = shared.docs();
        self.window.iter().any(|id| {
            docs.get(id).is_some_and(|l| {
                l.availability == Availability::Requested
                    || (l.availability == Availability::Ready && !l.session.is_in_sync(&l.doc))
            })
        })
    }

    /// Applies one message from the server; returns what to send back.
    async fn handle(
        &mut self,
        shared: &Shared,
        message: Message,
    ) -> Result<Vec<Message>, crate::error::StoreError> {
        match message {
            Message::Sync {
                document_id, data, ..
            } => self.handle_sync(shared, document_id, &data).await,
            Message::ChangedDocs { document_ids, .. } => {
                self.awaiting_catch_up = false;
                // The server has news for these: start each conversation afresh from the shared
                // heads (a session that finished earlier on this connection would think there
                // is nothing to say; the server may have closed its side since).
                {
                    let mut docs = shared.docs();
                    for id in &document_ids {
                        if let Some(local) = docs.get_mut(id)
                            && !self.window.contains(id)
                        {
                            local.session.restart();
                        }
                    }
                }
                Ok(self.offer(shared, document_ids))
            }
            Message::AreaBatch {
                documents,
                cursor,
                complete,
                ..
            } => {
                self.handle_area_batch(shared, documents, cursor, complete)
                    .await
            }
            Message::DocUnavailable { document_id, .. } => {
                let mut docs = shared.docs();
                if let Some(local) = docs.get_mut(&document_id)
                    && local.availability == Availability::Requested
                {
                    local.availability = Availability::Unavailable;
                }
                drop(docs);
                Ok(self.done(shared, &document_id))
            }
            Message::Error { message, .. } => {
                tracing::warn!(%message, "server reported an error");
                let document = message
                    .strip_prefix("document ")
                    .and_then(|rest| rest.split(':').next())
                    .and_then(|id| id.parse().ok());
                shared
                    .server_errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(message.clone());
                if let (Some(document), Some((change, reason))) =
                    (document, rejected_change(&message))
                {
                    let removed = shared.set_aside(document, change, &reason).await?;
                    if removed > 0 {
                        shared.emit(ClientEvent::ChangeRejected {
                            document,
                            change: change.to_string(),
                            reason,
                            removed,
                        });
                        return Ok(self.offer(shared, [document]));
                    }
                }
                shared.emit(ClientEvent::ServerError { document, message });
                // The conversation stopped here; the stall timer offers the document again.
                Ok(match document {
                    Some(document) => self.done(shared, &document),
                    None => Vec::new(),
                })
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn handle_sync(
        &mut self,
        shared: &Shared,
        id: DocumentId,
        data: &[u8],
    ) -> Result<Vec<Message>, crate::error::StoreError> {
        let (reply_data, patches, changed) = {
            let mut docs = shared.docs();
            let Some(local) = docs.get_mut(&id) else {
                return Ok(Vec::new());
            };
            let before = local.doc.get_heads();
            let unsent_before = local.unsent;
            let effects = match local.session.on_message(&mut local.doc, data, &FROM_SERVER) {
                Ok(effects) => effects,
                Err(e) => {
                    tracing::warn!(doc_id = %id, error = %e, "bad sync message from server");
                    return Ok(Vec::new());
                }
            };
            if local.availability == Availability::Requested && !local.doc.get_heads().is_empty() {
                local.availability = Availability::Ready;
            }
            local.refresh_unsent();
            let stuck =
                if effects.heads_changed || local.unsent != unsent_before || local.unsent == 0 {
                    self.no_progress.remove(&id);
                    false
                } else {
                    let rounds = self.no_progress.entry(id).or_insert(0);
                    *rounds += 1;
                    *rounds >= NO_PROGRESS
                };
            if stuck {
                self.no_progress.remove(&id);
                tracing::warn!(doc_id = %id, "sync made no progress; restarting the conversation");
                local.session.restart();
                drop(docs);
                return Ok(self.offer(shared, [id]));
            }
            let patches = if effects.heads_changed && local.availability == Availability::Ready {
                local.doc.diff(&before, &local.doc.get_heads())
            } else {
                Vec::new()
            };
            (effects.send, patches, effects.heads_changed)
        };
        // Durable first, acknowledged after: the reply carries our new heads.
        if changed {
            shared.persist(id).await?;
        }
        shared.persist_sync_state(id).await?;
        if changed && !patches.is_empty() {
            shared.emit(ClientEvent::DocumentChanged {
                id,
                origin: Origin::Remote,
                patches,
            });
        }
        self.active.insert(id);
        let (reply, in_sync) = {
            let docs = shared.docs();
            match (reply_data, docs.get(&id)) {
                (Some(data), Some(local)) => (
                    Some(self.sync_message(shared, id, data, local)),
                    local.session.is_in_sync(&local.doc),
                ),
                _ => (None, true),
            }
        };
        // Nothing more to say, or both sides have the same heads (what is left is a courtesy
        // the server need not answer): the conversation no longer holds a place in the window.
        let answering = reply.is_some();
        let mut out: Vec<Message> = reply.into_iter().collect();
        if in_sync {
            out.extend(self.done(shared, &id));
        } else if answering {
            // A conversation the server started (a change another device made) is under way
            // too, and counts as such until it ends.
            self.window.insert(id);
        }
        Ok(out)
    }
}

/// The change hash and reason of a server error of the form
/// `document <id>: change <hash> rejected: <reason>`.
fn rejected_change(message: &str) -> Option<(automerge::ChangeHash, String)> {
    let (_, rest) = message.split_once(": change ")?;
    let (hash, reason) = rest.split_once(" rejected: ")?;
    Some((hash.parse().ok()?, reason.to_string()))
}
