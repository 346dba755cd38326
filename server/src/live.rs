//! The connections open in this process, by user and device, so that revoking a user or a
//! device cuts their open connections at once rather than at their next reconnect.
//!
//! Only this process's connections are known here; a revocation is announced to the other
//! nodes on the same Postgres (`crate::cluster`), and each cuts its own.
//!
//! Draining (SIGTERM) closes every connection through here too, spread over a period, so the
//! devices reconnect to other nodes gradually.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::hub::ConnId;

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
    inner: Arc<Mutex<HashMap<ConnId, Entry>>>,
}

impl LiveConnections {
    fn map(&self) -> MutexGuard<'_, HashMap<ConnId, Entry>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a connection; the returned tokens are cancelled if its user or device is
    /// revoked, or when the server drains.
    pub fn register(&self, conn: ConnId, user: &str, device: &str) -> Cut {
        let cut = Cut {
            revoked: CancellationToken::new(),
            drained: CancellationToken::new(),
        };
        self.map().insert(
            conn,
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

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    pub fn unregister(&self, conn: ConnId) {
        self.map().remove(&conn);
    }

    /// Cuts every connection of `user`; returns how many.
    pub fn revoke_user(&self, user: &str) -> usize {
        self.revoke(|e| e.user == user)
    }

    /// Cuts every connection of `device`; returns how many.
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
