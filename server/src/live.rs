//! The connections open in this process, by user and device, so that revoking a user or a
//! device cuts their open connections at once rather than at their next reconnect. Besides
//! websockets, the long-lived HTTP answers of the changes feed (server-sent-event streams and
//! long polls) are registered here too ([`LiveConnections::register_stream`]): a revoked
//! device must not go on reading the feed through a stream opened before.
//!
//! Only this process's connections are known here; a revocation is announced to the other
//! nodes on the same Postgres (`crate::cluster`), and each cuts its own.
//!
//! Draining (SIGTERM) closes every connection through here too, spread over a period, so the
//! devices reconnect to other nodes gradually.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::hub::ConnId;

/// What is registered: a websocket (by its hub connection ID) or a stream of the changes
/// feed (by an ID of its own, so the two never collide).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Conn(ConnId),
    Stream(u64),
}

#[derive(Debug)]
struct Entry {
    user: String,
    device: String,
    revoked: CancellationToken,
    drained: CancellationToken,
}

/// What may end a connection from outside it.
#[derive(Debug, Clone)]
pub struct Cut {
    /// Its user or device was revoked.
    pub revoked: CancellationToken,
    /// The server is draining: move to another node.
    pub drained: CancellationToken,
}

/// Registry of open connections. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LiveConnections {
    inner: Arc<Mutex<HashMap<Key, Entry>>>,
    next_stream: Arc<AtomicU64>,
}

/// A registered stream of the changes feed; unregisters itself when dropped (when the
/// answer ends, however it ends: the client went, the stream ended, the server stopped).
#[derive(Debug)]
pub struct StreamRegistration {
    live: LiveConnections,
    id: u64,
    /// Cancelled when the stream's user or device is revoked, or the server drains.
    pub cut: Cut,
}

impl Drop for StreamRegistration {
    fn drop(&mut self) {
        self.live.map().remove(&Key::Stream(self.id));
    }
}

impl LiveConnections {
    fn map(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; the returned tokens are cancelled if its user or device is
    /// revoked, or when the server drains.
    pub fn register(&self, conn: ConnId, user: &str, device: &str) -> Cut {
        self.insert(Key::Conn(conn), user, device)
    }

    /// Registers a stream of the changes feed (server-sent events or a long poll) of `user`
    /// on `device`, until the returned registration is dropped.
    pub fn register_stream(&self, user: &str, device: &str) -> StreamRegistration {
        let id = self.next_stream.fetch_add(1, Ordering::Relaxed);
        StreamRegistration {
            cut: self.insert(Key::Stream(id), user, device),
            live: self.clone(),
            id,
        }
    }

    fn insert(&self, key: Key, user: &str, device: &str) -> Cut {
        let cut = Cut {
            revoked: CancellationToken::new(),
            drained: CancellationToken::new(),
        };
        self.map().insert(
            key,
            Entry {
                user: user.to_string(),
                device: device.to_string(),
                revoked: cut.revoked.clone(),
                drained: cut.drained.clone(),
            },
        );
        cut
    }

    /// Closes every open connection, one at a time, evenly over `over`; returns how many.
    pub async fn drain(&self, over: std::time::Duration) -> usize {
        let tokens: Vec<CancellationToken> =
            self.map().values().map(|e| e.drained.clone()).collect();
        let n = tokens.len();
        if n == 0 {
            return 0;
        }
        let step = over / n as u32;
        for token in tokens {
            token.cancel();
            if !step.is_zero() {
                tokio::time::sleep(step).await;
            }
        }
        n
    }

    /// Whether no connection or stream is open.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// How many connections and streams are open.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn unregister(&self, conn: ConnId) {
        self.map().remove(&Key::Conn(conn));
    }

    /// Cuts every connection and stream of `user`; returns how many.
    pub fn revoke_user(&self, user: &str) -> usize {
        self.revoke(|e| e.user == user)
    }

    /// Cuts every connection and stream of `device`; returns how many.
    pub fn revoke_device(&self, device: &str) -> usize {
        self.revoke(|e| e.device == device)
    }

    fn revoke(&self, matches: impl Fn(&Entry) -> bool) -> usize {
        let map = self.map();
        let mut n = 0;
        for entry in map.values().filter(|e| matches(e)) {
            entry.revoked.cancel();
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_cuts_streams_as_well_as_connections_and_dropping_unregisters() {
        let live = LiveConnections::default();
        let conn = live.register(1, "zhao", "zhao-phone");
        let stream = live.register_stream("zhao", "zhao-phone");
        let other = live.register_stream("qian", "qian-phone");
        assert_eq!(live.revoke_device("zhao-phone"), 2);
        assert!(conn.revoked.is_cancelled());
        assert!(stream.cut.revoked.is_cancelled());
        assert!(!other.cut.revoked.is_cancelled());
        drop(stream);
        live.unregister(1);
        // The stream's ID space does not collide with connection IDs.
        let again = live.register_stream("zhao", "zhao-phone");
        live.unregister(again.id);
        assert_eq!(live.revoke_user("zhao"), 1);
        drop(again);
        drop(other);
        assert!(live.is_empty());
    }
}
