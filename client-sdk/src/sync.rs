//! The background sync task: keeps one connection up, reconnecting with capped, jittered
//! exponential backoff; waits for a fresh token when the server rejects the current one.
//! Owned by a [`SyncHandle`] that stops it and waits for it.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::client::Shared;
use crate::connection::{self, OpenConnection};
use crate::error::ClientError;
use crate::event::{ClientEvent, SyncState};

/// The running sync task.
pub(crate) struct SyncHandle {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SyncHandle {
    /// Stops the task and waits until its connection is closed.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }

    /// Stops the task without waiting.
    pub(crate) fn cancel(&self) {
        self.stop.cancel();
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Opens one connection (for `Client::connect`'s first attempt).
pub(crate) async fn open(shared: &Arc<Shared>, url: &str) -> Result<OpenConnection, ClientError> {
    shared.publish_status(SyncState::Connecting, false);
    let result = connection::open(shared, url).await;
    if result.is_err() {
        shared.publish_status(SyncState::Offline, false);
    }
    result
}

/// Spawns the sync loop, starting with `first` if the caller already connected.
pub(crate) fn spawn(shared: Arc<Shared>, url: String, first: Option<OpenConnection>) -> SyncHandle {
    let stop = CancellationToken::new();
    let task = tokio::spawn(run(shared, url, first, stop.clone()));
    SyncHandle { stop, task }
}

async fn run(
    shared: Arc<Shared>,
    url: String,
    mut first: Option<OpenConnection>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(shared.config.backoff);
    let mut token = shared.token.subscribe();
    while !stop.is_cancelled() {
        let attempt = match first.take() {
            Some(open) => Ok(open),
            None => {
                token.mark_unchanged();
                open(&shared, &url).await
            }
        };
        match attempt {
            Ok(connection) => {
                backoff.reset();
                connection.run(&shared, &stop).await;
            }
            Err(ClientError::Unauthorized(reason)) => {
                tracing::warn!(%reason, "token rejected; waiting for a fresh one");
                shared.emit(ClientEvent::TokenRejected { reason });
                shared.publish_status(SyncState::Offline, false);
                tokio::select! {
                    _ = token.changed() => continue,
                    _ = stop.cancelled() => break,
                }
            }
            Err(e) => tracing::debug!(error = %e, "connection attempt failed"),
        }
        shared.publish_status(SyncState::Offline, false);
        let delay = backoff.next_delay(&mut rand::rng());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => break,
        }
    }
    shared.publish_status(SyncState::Offline, false);
}
