//! The connections open in this process, by user and device, so that revoking a user or a
//! device cuts their open connections at once rather than at their next reconnect.
//!
//! Only this process's connections are known here; other server processes on the same
//! database refuse the revoked device at its next connection (cross-node revocation rides on
//! the scale-out work).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::hub::ConnId;

#[derive(Debug)]
struct Entry {
    user: String,
    device: String,
    revoked: CancellationToken,
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

    /// Registers a connection; the returned token is cancelled if its user or device is
    /// revoked.
    pub fn register(&self, conn: ConnId, user: &str, device: &str) -> CancellationToken {
        let revoked = CancellationToken::new();
        self.map().insert(
            conn,
            Entry {
                user: user.to_string(),
                device: device.to_string(),
                revoked: revoked.clone(),
            },
        );
        revoked
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
