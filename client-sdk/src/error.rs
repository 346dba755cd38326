//! The errors of the client SDK.

use lianxin_protocol::DocumentId;

/// Why the local store could not be opened or written. Each variant names the file, so an app
/// can tell the user which store is affected; nothing is ever silently dropped.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path} is not a Lianxin store or is damaged: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(
        "store {path} was written by a newer version of Lianxin (schema {version}); \
         update the app to open it"
    )]
    NewerSchema { path: String, version: i64 },
    #[error("store {path}: document {document} does not load: {reason}")]
    BadDocument {
        path: String,
        document: String,
        reason: String,
    },
    #[error("store {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: sqlx::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server refused the token: {0}")]
    Unauthorized(String),
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the connection handshake failed: {0}")]
    Handshake(String),
    #[error("not connected to a server")]
    NotConnected,
    #[error("document {0} is not in the local store")]
    UnknownDocument(DocumentId),
    #[error("document {0} is unavailable: the server does not have it or will not share it")]
    Unavailable(DocumentId),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    #[error("{0}")]
    Build(#[from] lianxin_protocol::domain::builders::BuildError),
    #[error("document {0} is not a well-formed field document: {1}")]
    Schema(DocumentId, lianxin_protocol::domain::SchemaError),
}
