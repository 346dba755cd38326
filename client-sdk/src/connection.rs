//! The background task that syncs a client's documents over one websocket.
//!
//! On start it sends `join`, waits for `peer`, then offers every local document to the server.
//! Afterwards it wakes on two things: a message from the server (applied to its document,
//! answered if the sync session has something to say) and a local edit (every document whose
//! session has something to send sends it). When the connection ends, each session is reset to
//! its persisted part (the shared heads), as automerge's sync protocol requires, so the next
//! connection exchanges only what is new.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use lianxin_protocol::{DocSession, DocumentId, Message, PeerId, PeerMetadata, handshake};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::client::{Availability, Shared};
use crate::error::ClientError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running connection task.
pub struct ConnectionHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ConnectionHandle {
    /// Stops the task and waits for it.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Connects, performs the handshake and spawns the sync task.
pub(crate) async fn start(
    shared: Arc<Shared>,
    url: &str,
    token: &str,
) -> Result<ConnectionHandle, ClientError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Connect {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
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
                ClientError::Connect {
                    url: url.to_string(),
                    reason: format!("HTTP {status}: {body}"),
                }
            });
        }
        Err(e) => {
            return Err(ClientError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
    };

    let join = handshake::join(
        &shared.peer_id,
        PeerMetadata {
            storage_id: None,
            is_ephemeral: false,
        },
    );
    send(&shared, &mut socket, &join).await?;
    let server = tokio::time::timeout(
        shared.config.handshake_timeout,
        wait_for_peer(&shared, &mut socket),
    )
    .await
    .map_err(|_| ClientError::Handshake("no answer to join".into()))??;

    let stop = CancellationToken::new();
    let task = tokio::spawn(run(shared, socket, server, stop.clone()));
    Ok(ConnectionHandle { stop, task })
}

async fn wait_for_peer(shared: &Shared, socket: &mut Socket) -> Result<PeerId, ClientError> {
    while let Some(frame) = socket.next().await {
        let frame = frame.map_err(|e| ClientError::Handshake(e.to_string()))?;
        let WsMessage::Binary(bytes) = frame else {
            continue;
        };
        count_in(shared, bytes.len());
        match Message::decode(&bytes) {
            Ok(Message::Peer { sender_id, .. }) => return Ok(sender_id),
            Ok(Message::Error { message, .. }) => return Err(ClientError::Handshake(message)),
            Ok(_) => continue,
            Err(e) => return Err(ClientError::Handshake(e.to_string())),
        }
    }
    Err(ClientError::Handshake(
        "connection closed during handshake".into(),
    ))
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

async fn send(shared: &Shared, socket: &mut Socket, message: &Message) -> Result<(), ClientError> {
    let bytes = message.encode();
    shared
        .counters
        .messages_sent
        .fetch_add(1, Ordering::Relaxed);
    shared
        .counters
        .bytes_sent
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    socket
        .send(WsMessage::Binary(bytes.into()))
        .await
        .map_err(|e| ClientError::Connect {
            url: String::new(),
            reason: e.to_string(),
        })
}

async fn run(shared: Arc<Shared>, mut socket: Socket, server: PeerId, stop: CancellationToken) {
    // Offer every local document (and ask for requested ones) once connected.
    let mut outgoing = pending_messages(&shared, &server);
    loop {
        for message in outgoing.drain(..) {
            if send(&shared, &mut socket, &message).await.is_err() {
                return finish(&shared, None).await;
            }
        }
        tokio::select! {
            frame = socket.next() => {
                let bytes = match frame {
                    Some(Ok(WsMessage::Binary(bytes))) => bytes,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => {
                        return finish(&shared, None).await;
                    }
                    Some(Ok(_)) => continue,
                };
                count_in(&shared, bytes.len());
                match Message::decode(&bytes) {
                    Ok(message) => outgoing = handle(&shared, &server, message),
                    Err(e) => tracing::warn!(error = %e, "undecodable message from server"),
                }
                shared.bump_progress();
            }
            _ = shared.local_change.notified() => {
                outgoing = pending_messages(&shared, &server);
            }
            _ = stop.cancelled() => {
                return finish(&shared, Some(socket)).await;
            }
        }
    }
}

/// Resets sessions to their persisted part and closes the socket if it is still open.
async fn finish(shared: &Shared, socket: Option<Socket>) {
    if let Some(mut socket) = socket {
        let _ = socket.close(None).await;
    }
    {
        let mut docs = shared.docs();
        for (id, local) in docs.iter_mut() {
            let state = local.session.persisted_state();
            shared.store.save_sync_state(id, &state);
            local.session = DocSession::resume(&state).unwrap_or_default();
            if local.availability == Availability::Requested {
                local.availability = Availability::Unavailable;
            }
        }
    }
    shared.bump_progress();
}

/// Sync messages for every document whose session has something to say.
fn pending_messages(shared: &Shared, server: &PeerId) -> Vec<Message> {
    let mut docs = shared.docs();
    let mut out = Vec::new();
    for (id, local) in docs.iter_mut() {
        if local.availability == Availability::Unavailable {
            continue;
        }
        if let Some(data) = local.session.generate(&local.doc) {
            let request = local.availability == Availability::Requested;
            out.push(sync_message(shared, server, *id, data, request));
        }
    }
    out
}

fn sync_message(
    shared: &Shared,
    server: &PeerId,
    document_id: DocumentId,
    data: Vec<u8>,
    request: bool,
) -> Message {
    let sender_id = shared.peer_id.clone();
    let target_id = server.clone();
    if request {
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

/// Applies one message from the server; returns what to send back.
fn handle(shared: &Shared, server: &PeerId, message: Message) -> Vec<Message> {
    match message {
        Message::Sync {
            document_id, data, ..
        } => {
            let mut docs = shared.docs();
            let Some(local) = docs.get_mut(&document_id) else {
                return Vec::new();
            };
            let effects = match local.session.on_message(&mut local.doc, &data) {
                Ok(effects) => effects,
                Err(e) => {
                    tracing::warn!(doc_id = %document_id, error = %e, "bad sync message from server");
                    return Vec::new();
                }
            };
            if local.availability == Availability::Requested && !local.doc.get_heads().is_empty() {
                local.availability = Availability::Ready;
            }
            if effects.persist.is_some() {
                shared.persist(&document_id, local);
            }
            let request = local.availability == Availability::Requested;
            effects
                .send
                .map(|data| vec![sync_message(shared, server, document_id, data, request)])
                .unwrap_or_default()
        }
        Message::DocUnavailable { document_id, .. } => {
            let mut docs = shared.docs();
            if let Some(local) = docs.get_mut(&document_id)
                && local.availability == Availability::Requested
            {
                local.availability = Availability::Unavailable;
            }
            Vec::new()
        }
        Message::Error { message, .. } => {
            tracing::warn!(%message, "server reported an error");
            shared
                .server_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(message);
            Vec::new()
        }
        _ => Vec::new(),
    }
}
