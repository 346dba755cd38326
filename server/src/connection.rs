//! One websocket connection speaking the automerge-repo protocol.
//!
//! The connection first waits (bounded by `handshake_timeout_secs`) for the client's `join`
//! and answers `peer`. After that it routes each `request`/`sync`/`ephemeral` message to the
//! actor of its document through a [`DocLease`], and writes whatever the actors queue in its
//! bounded outbox. It never touches a document itself. A `lianxin-area-sync` request starts
//! the connection's area-sync task (`crate::area_sync`), whose batches it writes too. For a
//! client that hears changed-docs notices, it keeps at most `keep_open_documents_per_connection`
//! documents open, closing and watching the least recently used.
//!
//! Bad input never ends in a panic: undecodable bytes get an `error` message naming the
//! problem and the connection carries on; a message over `max_message_bytes` gets an `error`
//! and the connection is closed with code 1009; text frames get an `error`. Only this
//! connection is affected.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, close_code};
use lianxin_protocol::{
    DocumentId, EXT_AREA_SYNC, EXT_CHANGED_DOCS, Message, PeerId, PeerMetadata, StorageId,
    handshake,
};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::area_sync;
use crate::auth::Identity;
use crate::hub::{ConnId, DocCommand, DocLease, Peer, Strikes};
use crate::outbox::{Outbox, OutboxRx};
use crate::state::AppState;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// How long a goodbye (error notice, close frame) to a departing client may take.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Why a connection ended, for the log (its fields are read through `Debug` there).
#[derive(Debug)]
#[allow(dead_code)]
enum End {
    ClientClosed,
    Shutdown,
    SlowClient,
    TooLarge,
    /// Nothing heard for three keepalive intervals.
    Dead,
    Handshake(String),
    Socket(String),
    /// The user or device was revoked while connected.
    Revoked,
    /// The malformed-message budget was spent.
    Malformed,
}

/// Runs one upgraded connection to its end. `_permit` holds its place under the connection
/// limit until it returns.
pub async fn run(
    socket: WebSocket,
    state: AppState,
    identity: Identity,
    _permit: OwnedSemaphorePermit,
) {
    let conn: ConnId = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", conn, sub = %identity.claims.sub);
    let _ = tracing::Instrument::instrument(
        async move {
            state.metrics.connections_total.inc();
            state.metrics.connections_open.inc();
            tracing::info!("connected");
            let mut connection = Connection::new(conn, state.clone(), identity);
            let end = connection.serve(socket).await;
            connection.close_documents().await;
            state.live.unregister(conn);
            state.metrics.connections_open.dec();
            tracing::info!(?end, "disconnected");
        },
        span,
    )
    .await;
}

struct Connection {
    conn: ConnId,
    state: AppState,
    identity: Identity,
    leases: HashMap<DocumentId, DocLease>,
    /// When each open document was last used (a tick of `lease_clock`), to close the least
    /// recently used ones (see [`Connection::close_least_used`]).
    lease_use: HashMap<DocumentId, u64>,
    lease_clock: u64,
    /// Documents this connection watches for changed-docs notifications.
    watched: std::collections::HashSet<DocumentId>,
    /// The client asked for changed-docs, so it understands the notifications: documents it
    /// has not used for a while can be closed and watched instead of kept open.
    hears_changed_docs: bool,
    peer: Option<Arc<Peer>>,
    kill: CancellationToken,
    /// Cancelled when this connection's user or device is revoked, or the server drains.
    cut: crate::live::Cut,
    /// Where the area-sync task puts its batches (see `crate::area_sync`), and the task.
    area_out: Option<mpsc::Sender<area_sync::Batch>>,
    area_task: Option<tokio::task::JoinHandle<()>>,
    /// Malformed messages so far, against `limits.max_malformed_messages`.
    strikes: Arc<Strikes>,
    /// Ephemeral messages this connection may still send (`limits.ephemeral_per_second`).
    ephemeral_rate: governor::DefaultDirectRateLimiter,
}

impl Connection {
    fn new(conn: ConnId, state: AppState, identity: Identity) -> Self {
        let cut = state
            .live
            .register(conn, &identity.user.id, &identity.device.id);
        Self {
            cut,
            conn,
            identity,
            leases: HashMap::new(),
            lease_use: HashMap::new(),
            lease_clock: 0,
            watched: std::collections::HashSet::new(),
            hears_changed_docs: false,
            peer: None,
            kill: CancellationToken::new(),
            area_out: None,
            area_task: None,
            strikes: Arc::new(Strikes::new(state.settings.limits.max_malformed_messages)),
            ephemeral_rate: ephemeral_rate(&state.settings.limits),
            state,
        }
    }

    fn server_peer(&self) -> PeerId {
        self.state.server_peer.clone()
    }

    async fn send(&self, socket: &mut WebSocket, message: &Message) -> Result<(), End> {
        let bytes = message.encode();
        self.state.metrics.messages_out.inc();
        self.state.metrics.bytes_out.add(bytes.len() as u64);
        let timeout = self.state.settings.limits.send_timeout();
        // A send blocks while the client does not read. Being disconnected as a slow client,
        // or the server shutting down, must not wait for it.
        tokio::select! {
            sent = tokio::time::timeout(timeout, socket.send(WsMessage::Binary(bytes.into()))) => {
                match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(End::Socket(e.to_string())),
                    Err(_) => {
                        self.state.metrics.slow_client_disconnects.inc();
                        Err(End::SlowClient)
                    }
                }
            }
            _ = self.kill.cancelled() => Err(End::SlowClient),
            _ = self.state.shutdown.cancelled() => Err(End::Shutdown),
        }
    }

    async fn send_error(&self, socket: &mut WebSocket, target: Option<PeerId>, text: String) {
        let message = Message::Error {
            sender_id: self.server_peer(),
            target_id: target,
            message: text,
        };
        let _ = self.send(socket, &message).await;
    }

    /// Sends a close frame, giving up after [`CLOSE_TIMEOUT`]: a peer that does not read must
    /// not hold the connection (or shutdown) open.
    async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, socket.send(WsMessage::Close(Some(frame)))).await;
    }

    /// Checks size and counts an incoming frame; returns its bytes if it is a binary message.
    async fn receive_frame(
        &self,
        socket: &mut WebSocket,
        frame: WsMessage,
    ) -> Result<Option<Vec<u8>>, End> {
        match frame {
            WsMessage::Binary(bytes) => {
                self.state.metrics.messages_in.inc();
                self.state.metrics.bytes_in.add(bytes.len() as u64);
                let limit = self.state.settings.limits.max_message_bytes;
                if bytes.len() > limit {
                    self.state.metrics.oversized_messages.inc();
                    tracing::warn!(bytes = bytes.len(), limit, "message over the size limit");
                    self.send_error(
                        socket,
                        self.peer.as_ref().map(|p| p.remote.clone()),
                        format!(
                            "message too large: {} bytes, the limit is {limit} bytes",
                            bytes.len()
                        ),
                    )
                    .await;
                    Self::close(socket, close_code::SIZE, "message too large").await;
                    return Err(End::TooLarge);
                }
                Ok(Some(bytes.to_vec()))
            }
            WsMessage::Text(_) => {
                self.state.metrics.malformed_messages.inc();
                self.strikes.strike();
                tracing::warn!("text frame refused");
                self.send_error(
                    socket,
                    self.peer.as_ref().map(|p| p.remote.clone()),
                    "text frames are not supported: send CBOR in binary frames".into(),
                )
                .await;
                Ok(None)
            }
            WsMessage::Close(_) => Err(End::ClientClosed),
            WsMessage::Ping(_) | WsMessage::Pong(_) => Ok(None),
        }
    }

    /// Decodes a message, answering an `error` if it is malformed.
    async fn decode(&self, socket: &mut WebSocket, bytes: &[u8]) -> Option<Message> {
        match Message::decode(bytes) {
            Ok(message) => Some(message),
            Err(e) => {
                self.state.metrics.malformed_messages.inc();
                self.strikes.strike();
                tracing::warn!(error = %e, bytes = bytes.len(), "malformed message");
                self.send_error(
                    socket,
                    self.peer.as_ref().map(|p| p.remote.clone()),
                    format!("malformed message: {e}"),
                )
                .await;
                None
            }
        }
    }

    /// The message an incoming frame carries, if any (a malformed one is answered with an
    /// `error`). Ends the connection once its malformed-message budget is spent.
    async fn next_message(
        &self,
        socket: &mut WebSocket,
        frame: WsMessage,
    ) -> Result<Option<Message>, End> {
        let message = match self.receive_frame(socket, frame).await? {
            Some(bytes) => self.decode(socket, &bytes).await,
            None => None,
        };
        if self.strikes.spent.is_cancelled() {
            return Err(self.malformed_end(socket).await);
        }
        Ok(message)
    }

    /// Ends a connection that spent its malformed-message budget.
    async fn malformed_end(&self, socket: &mut WebSocket) -> End {
        tracing::warn!("too many malformed messages: closing the connection");
        self.send_error(
            socket,
            self.peer.as_ref().map(|p| p.remote.clone()),
            "too many malformed messages: closing the connection".into(),
        )
        .await;
        Self::close(socket, close_code::POLICY, "too many malformed messages").await;
        End::Malformed
    }

    /// Waits for `join` and answers `peer`; returns the client's outbox receiver.
    async fn handshake(&mut self, socket: &mut WebSocket) -> Result<OutboxRx, End> {
        let timeout = self.state.settings.limits.handshake_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::select! {
                frame = tokio::time::timeout_at(deadline, socket.recv()) => frame,
                _ = self.state.shutdown.cancelled() => return Err(End::Shutdown),
            };
            let frame = match frame {
                Err(_) => {
                    self.send_error(
                        socket,
                        None,
                        "no join message within the handshake timeout".into(),
                    )
                    .await;
                    return Err(End::Handshake("timeout".into()));
                }
                Ok(None) => return Err(End::ClientClosed),
                Ok(Some(Err(e))) => return Err(End::Socket(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Some(message) = self.next_message(socket, frame).await? else {
                continue;
            };
            // Server-side sync state is kept per device, and per local store of that device
            // when the client announces one: the store ID is the client's word, but it can
            // only separate that device's own records, never reach another user's.
            let peer_key = match (self.identity.peer_key(), client_storage_id(&message)) {
                (Some(key), Some(store)) => Some(format!("{key}/{store}")),
                (key, _) => key,
            };
            let storage_id = StorageId::new(self.state.storage_id.clone()).ok();
            let meta = PeerMetadata {
                storage_id,
                is_ephemeral: false,
                // Catch-up needs a stable device identity to remember what it holds.
                extensions: if peer_key.is_some() {
                    vec![EXT_CHANGED_DOCS.to_string(), EXT_AREA_SYNC.to_string()]
                } else {
                    vec![EXT_AREA_SYNC.to_string()]
                },
            };
            match handshake::answer_join(&message, &self.server_peer(), meta, None) {
                Ok(reply) => {
                    let remote = message.sender_id().clone();
                    self.send(socket, &reply).await?;
                    let limits = &self.state.settings.limits;
                    let (outbox, rx) = Outbox::channel(limits.send_queue, limits.max_outbox_bytes);
                    self.peer = Some(Arc::new(Peer {
                        conn: self.conn,
                        remote,
                        peer_key,
                        ephemeral_id: ephemeral_id(&self.identity),
                        user: self.identity.user.clone(),
                        device_id: self.identity.device.id.clone(),
                        actor: self.identity.actor.clone(),
                        outbox,
                        kill: self.kill.clone(),
                        strikes: self.strikes.clone(),
                    }));
                    return Ok(rx);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "handshake refused");
                    self.send_error(socket, Some(message.sender_id().clone()), e.to_string())
                        .await;
                    Self::close(socket, close_code::PROTOCOL, "handshake refused").await;
                    return Err(End::Handshake(e.to_string()));
                }
            }
        }
    }

    async fn serve(&mut self, mut socket: WebSocket) -> End {
        let mut outbox = match self.handshake(&mut socket).await {
            Ok(rx) => rx,
            Err(end) => return end,
        };
        // Two batches in flight: the task reads the next page while this one is written.
        let (area_out, mut area_in) = mpsc::channel(2);
        self.area_out = Some(area_out);
        let keepalive = self.state.settings.limits.keepalive();
        let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut last_heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                frame = socket.recv() => {
                    let frame = match frame {
                        None => return End::ClientClosed,
                        Some(Err(e)) => return End::Socket(e.to_string()),
                        Some(Ok(frame)) => frame,
                    };
                    last_heard = tokio::time::Instant::now();
                    let message = match self.next_message(&mut socket, frame).await {
                        Ok(Some(message)) => message,
                        Ok(None) => continue,
                        Err(end) => return end,
                    };
                    if let Err(end) = self.route(&mut socket, message).await {
                        return end;
                    }
                }
                Some(message) = outbox.recv() => {
                    if let Err(end) = self.send(&mut socket, &message).await {
                        return end;
                    }
                    // Nothing to hold the document open for: no lease for what is not there
                    // (or may not be read), so unknown IDs cost the server nothing.
                    if let Message::DocUnavailable { document_id, .. } = message {
                        self.lease_use.remove(&document_id);
                        if let Some(lease) = self.leases.remove(&document_id) {
                            lease.release().await;
                        }
                    }
                }
                _ = self.strikes.spent.cancelled() => {
                    return self.malformed_end(&mut socket).await;
                }
                Some(batch) = area_in.recv() => {
                    if let Some(message) = self.area_batch(batch)
                        && let Err(end) = self.send(&mut socket, &message).await
                    {
                        return end;
                    }
                }
                _ = ping.tick() => {
                    // Phones vanish without closing (tunnels, dead batteries); pings find out,
                    // and keep middleboxes from dropping a quiet connection.
                    if last_heard.elapsed() > keepalive * 3 {
                        return End::Dead;
                    }
                    if socket.send(WsMessage::Ping(Default::default())).await.is_err() {
                        return End::Dead;
                    }
                }
                _ = self.kill.cancelled() => {
                    // The client is not reading; tell it why if it happens to, but do not wait.
                    let notice = Message::Error {
                        sender_id: self.server_peer(),
                        target_id: self.peer.as_ref().map(|p| p.remote.clone()),
                        message: "too slow: the send queue overflowed; reconnect to resume".into(),
                    };
                    let frame = WsMessage::Binary(notice.encode().into());
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, socket.send(frame)).await;
                    Self::close(&mut socket, close_code::AGAIN, "slow client").await;
                    return End::SlowClient;
                }
                _ = self.cut.revoked.cancelled() => {
                    self.send_error(&mut socket, self.peer.as_ref().map(|p| p.remote.clone()),
                        "access revoked: this device or user may no longer connect".into()).await;
                    Self::close(&mut socket, close_code::POLICY, "revoked").await;
                    return End::Revoked;
                }
                _ = self.cut.drained.cancelled() => {
                    // The device reconnects, through the load balancer, to another node.
                    Self::close(&mut socket, close_code::RESTART, "server draining").await;
                    return End::Shutdown;
                }
                _ = self.state.shutdown.cancelled() => {
                    Self::close(&mut socket, close_code::RESTART, "server shutting down").await;
                    return End::Shutdown;
                }
            }
        }
    }

    /// Hands a decoded message to the right document actor.
    async fn route(&mut self, socket: &mut WebSocket, message: Message) -> Result<(), End> {
        let Some(peer) = self.peer.clone() else {
            return Ok(());
        };
        let (doc, cmd) = match message {
            Message::Request {
                document_id, data, ..
            } => (
                document_id,
                DocCommand::Sync {
                    peer: peer.clone(),
                    request: true,
                    data,
                    received_at: Instant::now(),
                },
            ),
            Message::Sync {
                document_id, data, ..
            } => (
                document_id,
                DocCommand::Sync {
                    peer: peer.clone(),
                    request: false,
                    data,
                    received_at: Instant::now(),
                },
            ),
            message @ Message::Ephemeral { document_id, .. } => {
                let Message::Ephemeral { data, .. } = &message else {
                    unreachable!("matched above")
                };
                let limit = self.state.settings.limits.max_ephemeral_bytes;
                if data.len() > limit {
                    self.send_error(
                        socket,
                        Some(peer.remote.clone()),
                        format!(
                            "document {document_id}: ephemeral message of {} bytes, the limit is {limit}",
                            data.len()
                        ),
                    )
                    .await;
                    return Ok(());
                }
                if self.ephemeral_rate.check().is_err() {
                    // Presence and cursors are best effort: the excess is dropped.
                    self.state.metrics.ephemeral_dropped.inc();
                    return Ok(());
                }
                if !self.leases.contains_key(&document_id) {
                    // Ephemeral messages only reach those who have the document open (the
                    // actor checks that both ends may read it).
                    return Ok(());
                }
                (
                    document_id,
                    DocCommand::Ephemeral {
                        from: self.conn,
                        message,
                    },
                )
            }
            Message::ChangedDocsRequest { .. } => {
                self.hears_changed_docs = true;
                self.changed_docs(socket, &peer).await;
                return Ok(());
            }
            Message::AreaSync { cursor, .. } => {
                self.start_area_sync(socket, &peer, cursor.as_deref()).await;
                return Ok(());
            }
            Message::Leave { .. } => return Err(End::ClientClosed),
            Message::Join { .. } => {
                self.send_error(socket, Some(peer.remote.clone()), "already joined".into())
                    .await;
                return Ok(());
            }
            // Nothing to do for the rest (doc-unavailable, error, peer, remote heads and
            // subscriptions): this server keeps no subscriptions between peers.
            other => {
                tracing::debug!(kind = other.type_name(), "ignored message");
                return Ok(());
            }
        };
        self.lease_clock += 1;
        if let Some(used) = self.lease_use.get_mut(&doc) {
            *used = self.lease_clock;
        } else {
            self.close_least_used(&peer).await;
            let limit = self.state.settings.limits.max_open_documents_per_connection;
            if self.leases.len() >= limit {
                self.send_error(
                    socket,
                    Some(peer.remote.clone()),
                    format!(
                        "document {doc}: too many open documents on one connection (limit {limit})"
                    ),
                )
                .await;
                return Ok(());
            }
            let lease = self.state.hub.lease(doc, self.conn);
            self.leases.insert(doc, lease);
            self.lease_use.insert(doc, self.lease_clock);
        }
        let lease = &self.leases[&doc];
        if lease.send(cmd).await.is_err() {
            return Err(End::Shutdown);
        }
        Ok(())
    }

    /// Keeps at most `keep_open_documents_per_connection` documents open for a client that
    /// hears changed-docs notifications: before one more opens, the least recently used is
    /// closed (its actor saves the sync state and may leave memory) and watched instead, so a
    /// change to it still reaches the device, as a notice it answers by syncing. A device that
    /// touched a hundred thousand documents then costs the server a watch entry for each, not
    /// an actor.
    async fn close_least_used(&mut self, peer: &Arc<Peer>) {
        let keep = self
            .state
            .settings
            .limits
            .keep_open_documents_per_connection
            .max(1);
        if !self.hears_changed_docs || peer.peer_key.is_none() || self.leases.len() < keep {
            return;
        }
        // Several at once, so the scan for the oldest runs once per many opens.
        let excess = self.leases.len() + 1 - keep + keep / 8;
        let mut by_use: Vec<(u64, DocumentId)> = self
            .lease_use
            .iter()
            .map(|(doc, used)| (*used, *doc))
            .collect();
        by_use.sort_unstable();
        let closing: Vec<DocumentId> = by_use.into_iter().take(excess).map(|(_, d)| d).collect();
        // The actor registers the watch as it detaches the session, between two of its
        // changes, so none is missed; and only if there was a session, so a document this
        // device may not read is never watched.
        for doc in closing {
            self.lease_use.remove(&doc);
            self.watched.insert(doc);
            if let Some(lease) = self.leases.remove(&doc) {
                lease.release_watching(peer.clone()).await;
            }
        }
    }

    /// Answers a changed-docs request: which of the documents this device synced before have
    /// changed since, and from now on, a notification whenever one of them changes.
    async fn changed_docs(&mut self, socket: &mut WebSocket, peer: &Arc<Peer>) {
        let Some(key) = &peer.peer_key else {
            self.send_error(
                socket,
                Some(peer.remote.clone()),
                "changed-docs needs a token that names a device".into(),
            )
            .await;
            return;
        };
        // Watch first, then answer: a change committed after the watch is in place is announced
        // by the watch, one committed before it is in the answer; at worst a document is named
        // twice. Watching needs the IDs, so the documents are read once to learn them and once
        // more, after the watch, for the answer: a change committed between the first read and
        // the watch would otherwise be in neither.
        let mut held = Vec::new();
        for pass in 0..2 {
            held = match self.state.store.device_documents(key).await {
                // With area sync on, it covers every typed document: changed-docs is left
                // with the untyped ones.
                Ok(held) if self.area_task.is_some() => {
                    held.into_iter().filter(|h| !h.typed).collect()
                }
                Ok(held) => held,
                Err(e) => {
                    self.state.metrics.storage_errors.inc();
                    tracing::error!(error = %e, "reading the device's documents failed");
                    self.send_error(
                        socket,
                        Some(peer.remote.clone()),
                        "storage unavailable, try again later".into(),
                    )
                    .await;
                    return;
                }
            };
            if pass == 0 {
                let ids: Vec<DocumentId> = held.iter().map(|h| h.id).collect();
                self.state.hub.watch(peer, &ids);
                self.watched.extend(ids.iter().copied());
            }
        }
        let changed = held
            .into_iter()
            .filter_map(|h| h.changed.then_some(h.id))
            .collect();
        let _ = peer.outbox.try_send(Message::ChangedDocs {
            sender_id: self.server_peer(),
            target_id: peer.remote.clone(),
            document_ids: changed,
        });
    }

    /// Starts (or restarts, from the client's new cursor) this connection's area sync.
    async fn start_area_sync(
        &mut self,
        socket: &mut WebSocket,
        peer: &Arc<Peer>,
        cursor: Option<&str>,
    ) {
        let scope = area_sync::scope_of(&peer.actor);
        let cursor = match cursor.map(|c| area_sync::Cursor::parse(c, scope)) {
            None => area_sync::Cursor::beginning(scope),
            Some(Ok(cursor)) => cursor,
            Some(Err(e)) => {
                self.state.metrics.malformed_messages.inc();
                tracing::warn!(error = %e, "area sync refused");
                self.send_error(socket, Some(peer.remote.clone()), e.to_string())
                    .await;
                return;
            }
        };
        let Some(out) = self.area_out.clone() else {
            return;
        };
        if let Some(task) = self.area_task.take() {
            task.abort();
        }
        let (state, peer) = (self.state.clone(), peer.clone());
        self.area_task = Some(tokio::spawn(async move {
            let remote = peer.remote.clone();
            let outbox = peer.outbox.clone();
            let server = state.server_peer.clone();
            match area_sync::run(state.clone(), peer, cursor, out).await {
                Ok(()) | Err(area_sync::AreaSyncError::Closed) => {}
                Err(e) => {
                    state.metrics.storage_errors.inc();
                    tracing::error!(error = %e, "area sync stopped");
                    let _ = outbox.try_send(Message::Error {
                        sender_id: server,
                        target_id: Some(remote),
                        message: e.to_string(),
                    });
                }
            }
        }));
    }

    /// The message for one area-sync batch, without the documents this connection has open:
    /// their sessions carry every change already.
    fn area_batch(&self, batch: area_sync::Batch) -> Option<Message> {
        let peer = self.peer.as_ref()?;
        let before = batch.documents.len();
        let documents: Vec<_> = batch
            .documents
            .into_iter()
            .filter(|(id, _)| !self.leases.contains_key(id))
            .collect();
        if documents.is_empty() && before > 0 && !batch.complete {
            return None;
        }
        self.state
            .metrics
            .area_documents
            .add(documents.len() as u64);
        Some(Message::AreaBatch {
            sender_id: self.server_peer(),
            target_id: peer.remote.clone(),
            documents,
            cursor: batch.cursor,
            complete: batch.complete,
        })
    }

    async fn close_documents(&mut self) {
        if let Some(task) = self.area_task.take() {
            task.abort();
        }
        let watched: Vec<DocumentId> = self.watched.drain().collect();
        self.state.hub.unwatch(self.conn, &watched);
        self.lease_use.clear();
        for (_, lease) in self.leases.drain() {
            lease.release().await;
        }
    }
}

/// The per-connection limiter of ephemeral messages.
fn ephemeral_rate(limits: &crate::settings::Limits) -> governor::DefaultDirectRateLimiter {
    use std::num::NonZeroU32;
    let per_second = NonZeroU32::new(limits.ephemeral_per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limits.ephemeral_burst).unwrap_or(per_second);
    governor::RateLimiter::direct(governor::Quota::per_second(per_second).allow_burst(burst))
}

/// The server-assigned name of a connection in the ephemeral messages it sends.
fn ephemeral_id(identity: &Identity) -> PeerId {
    PeerId::new(format!(
        "lianxin:{}:{}",
        identity.user.id, identity.device.id
    ))
    .unwrap_or_else(|_| PeerId::new("lianxin:peer").expect("a valid peer ID"))
}

/// The storage ID a client announced in its `join`, if any.
fn client_storage_id(join: &Message) -> Option<String> {
    match join {
        Message::Join {
            peer_metadata: Some(meta),
            ..
        } => meta.storage_id.as_ref().map(|s| s.as_str().to_string()),
        _ => None,
    }
}
