//! [`Outbox`]: a connection's send queue, bounded in messages and in bytes.
//!
//! Document actors, the area-sync task and the connection itself queue messages for one client
//! without waiting (`try_send`), and the connection writes them to the socket. A count alone
//! does not bound memory: a thousand queued messages may be a thousand acknowledgements or a
//! thousand 8 MiB documents. So every queued message also counts its size, and a message that
//! would take the queue past `limits.max_outbox_bytes` is refused like one that finds the queue
//! full: the caller applies the slow-client policy (disconnect; the client resyncs when it
//! comes back, nothing is lost). One message is always let into an empty queue, whatever its
//! size, so a client that reads can always receive the largest message there is.
//!
//! This module only counts; it must not decide what a full queue means.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use lianxin_protocol::Message;
use tokio::sync::mpsc;

/// The sending side, cloned by whoever talks to the connection.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<AtomicUsize>,
    max_bytes: usize,
}

/// The connection's receiving side.
#[derive(Debug)]
pub struct OutboxRx {
    rx: mpsc::Receiver<Queued>,
    bytes: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct Queued {
    message: Message,
    size: usize,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue holds `max_messages` messages, or this one would take it past `max_bytes`.
    Full,
    /// The connection is gone.
    Closed,
}

impl Outbox {
    /// A queue of at most `max_messages` messages and (but for one message alone)
    /// `max_bytes` bytes.
    pub fn channel(max_messages: usize, max_bytes: usize) -> (Outbox, OutboxRx) {
        let (tx, rx) = mpsc::channel(max_messages.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        (
            Outbox {
                tx,
                bytes: bytes.clone(),
                max_bytes,
            },
            OutboxRx { rx, bytes },
        )
    }

    /// Queues `message` without waiting.
    pub fn try_send(&self, message: Message) -> Result<(), PushError> {
        // Checked first: bytes left in a dropped queue must not make it look full.
        if self.tx.is_closed() {
            return Err(PushError::Closed);
        }
        let size = size_of(&message);
        let before = self.bytes.fetch_add(size, Ordering::AcqRel);
        if before > 0 && before.saturating_add(size) > self.max_bytes {
            self.bytes.fetch_sub(size, Ordering::AcqRel);
            return Err(PushError::Full);
        }
        match self.tx.try_send(Queued { message, size }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.bytes.fetch_sub(size, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => PushError::Full,
                    mpsc::error::TrySendError::Closed(_) => PushError::Closed,
                })
            }
        }
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Bytes queued and not yet taken by the connection.
    pub fn queued_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }
}

impl OutboxRx {
    /// The next message to write, once there is one.
    pub async fn recv(&mut self) -> Option<Message> {
        let queued = self.rx.recv().await?;
        self.bytes.fetch_sub(queued.size, Ordering::AcqRel);
        Some(queued.message)
    }
}

/// What a message costs in the queue: its payloads plus a small allowance for the rest
/// (identifiers, framing), which is bounded by the decoder's limits on them.
fn size_of(message: &Message) -> usize {
    const OVERHEAD: usize = 128;
    OVERHEAD
        + match message {
            Message::Request { data, .. }
            | Message::Sync { data, .. }
            | Message::Ephemeral { data, .. } => data.len(),
            Message::Error { message, .. } => message.len(),
            Message::ChangedDocs { document_ids, .. } => document_ids.len() * 40,
            Message::AreaBatch {
                documents, cursor, ..
            } => cursor.len() + documents.iter().map(|(_, d)| d.len() + 40).sum::<usize>(),
            _ => 0,
        }
}

#[cfg(test)]
mod tests {
    use lianxin_protocol::{DocumentId, PeerId};

    use super::*;

    fn sync(len: usize) -> Message {
        Message::Sync {
            sender_id: PeerId::new("server").unwrap(),
            target_id: PeerId::new("device").unwrap(),
            document_id: DocumentId::random(),
            data: vec![0; len],
        }
    }

    #[tokio::test]
    async fn bytes_bound_the_queue_as_well_as_messages() {
        let (outbox, mut rx) = Outbox::channel(100, 10_000);
        // One message alone always fits, however large.
        outbox.try_send(sync(50_000)).unwrap();
        assert_eq!(outbox.try_send(sync(10)), Err(PushError::Full));
        assert!(rx.recv().await.is_some());
        assert_eq!(outbox.queued_bytes(), 0);
        for _ in 0..4 {
            outbox.try_send(sync(2_000)).unwrap();
        }
        assert_eq!(outbox.try_send(sync(2_000)), Err(PushError::Full));
        // A refused message leaves the count as it was.
        assert!(outbox.queued_bytes() <= 10_000);
        rx.recv().await.unwrap();
        outbox.try_send(sync(2_000)).unwrap();
    }

    #[tokio::test]
    async fn the_message_count_still_bounds_it() {
        let (outbox, rx) = Outbox::channel(2, usize::MAX);
        outbox.try_send(sync(1)).unwrap();
        outbox.try_send(sync(1)).unwrap();
        assert_eq!(outbox.try_send(sync(1)), Err(PushError::Full));
        drop(rx);
        assert_eq!(outbox.try_send(sync(1)), Err(PushError::Closed));
    }
}
