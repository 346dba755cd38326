//! The errors of the client SDK.

use lianxin_protocol::DocumentId;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
    #[error("the server reported: {0}")]
    Server(String),
}
