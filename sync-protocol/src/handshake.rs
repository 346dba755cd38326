//! The websocket handshake of automerge-repo: the client's `join`, and the server's `peer` or
//! `error` answer.
//!
//! What `@automerge/automerge-repo-network-websocket` does, read from `WebSocketServerAdapter.ts`
//! and `WebSocketClientAdapter.ts`, and what follows for us:
//!
//! - The client sends `join` as soon as the socket opens (and again on every reconnect), naming
//!   itself in `senderId` and offering `supportedProtocolVersions: ["1"]`.
//! - The server picks version `"1"` if offered, or if the list is missing entirely; otherwise it
//!   sends `error` with the message `unsupported protocol version` and closes the socket.
//! - The server's `peer` reply carries the server's own peer ID in `senderId` and the client's
//!   claimed `senderId` back in `targetId`. The client reads only `senderId` and
//!   `peerMetadata` from it; it ignores `targetId` and keeps sending as the peer ID it chose. So
//!   a server that overrides the client's ID (see [`answer_join`]) must keep routing by
//!   connection, not by the `senderId` the client keeps writing.
//! - A client receiving `error` only logs `message`; it neither stops nor backs off. The server
//!   closing the socket is what ends the connection, and the client then reconnects after its
//!   retry interval (5 s by default) and joins again. An `error` is a courtesy; closing is what
//!   counts.
//! - A second `join` with a peer ID that already has a socket makes the JavaScript server close
//!   the older socket: the newest connection for a peer ID wins. Messages arriving on a socket
//!   whose peer ID has since joined elsewhere are dropped.
//! - Lianxin peers also list the extensions they speak in `peerMetadata` (see
//!   [`crate::extension`]). A client learns the server's from [`RemotePeer::supports`] and uses
//!   an extension only if the server listed it; a stock server lists none.
//!
//! This module builds and checks handshake messages. It must not authenticate anyone or track
//! connections; the server does both.

use crate::{Message, PeerId, PeerMetadata};

/// Version 1 of the websocket protocol, the only one there is.
pub const PROTOCOL_V1: &str = "1";

/// Why a handshake cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// A different message arrived where a handshake message was due.
    #[error("expected a `{expected}` message, got `{got}`")]
    UnexpectedMessage {
        expected: &'static str,
        got: &'static str,
    },
    /// The other side offered or chose no version we speak. The text matches what the
    /// JavaScript server sends, so it fits in an `error` message as is.
    #[error("unsupported protocol version")]
    UnsupportedVersion { offered: Vec<String> },
    /// The server answered our `join` with an `error`.
    #[error("server refused the connection: {message}")]
    Rejected { message: String },
}

impl HandshakeError {
    /// The `error` message that tells the other side why we are closing the connection.
    pub fn to_message(&self, sender: &PeerId, target: Option<PeerId>) -> Message {
        Message::Error {
            sender_id: sender.clone(),
            target_id: target,
            message: self.to_string(),
        }
    }
}

/// The server's identity, as a client learns it from the `peer` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePeer {
    pub peer_id: PeerId,
    pub metadata: Option<PeerMetadata>,
}

impl RemotePeer {
    /// Whether the server listed the extension `ext` (for example
    /// [`EXT_CHANGED_DOCS`](crate::EXT_CHANGED_DOCS)) in its `peer` metadata. A server that
    /// sent no metadata speaks no extension.
    pub fn supports(&self, ext: &str) -> bool {
        self.metadata
            .as_ref()
            .is_some_and(|meta| meta.supports(ext))
    }
}

/// The `join` a client sends when its socket opens.
pub fn join(client: &PeerId, meta: PeerMetadata) -> Message {
    Message::Join {
        sender_id: client.clone(),
        supported_protocol_versions: vec![PROTOCOL_V1.to_owned()],
        peer_metadata: Some(meta),
    }
}

/// The server's `peer` answer to a client's `join`.
///
/// `targetId` is the client's claimed peer ID, unless the server decided on another one for it
/// (`client_peer_override`, for example an ID derived from its credentials). Note that the
/// JavaScript client ignores `targetId`, as the module documentation explains.
pub fn answer_join(
    join: &Message,
    server_peer: &PeerId,
    server_meta: PeerMetadata,
    client_peer_override: Option<PeerId>,
) -> Result<Message, HandshakeError> {
    let Message::Join {
        sender_id,
        supported_protocol_versions,
        ..
    } = join
    else {
        return Err(HandshakeError::UnexpectedMessage {
            expected: "join",
            got: join.type_name(),
        });
    };
    if !supported_protocol_versions.iter().any(|v| v == PROTOCOL_V1) {
        return Err(HandshakeError::UnsupportedVersion {
            offered: supported_protocol_versions.clone(),
        });
    }
    Ok(Message::Peer {
        sender_id: server_peer.clone(),
        target_id: client_peer_override.unwrap_or_else(|| sender_id.clone()),
        selected_protocol_version: PROTOCOL_V1.to_owned(),
        peer_metadata: Some(server_meta),
    })
}

/// Checks the server's answer to our `join`: who the server is, or why it refused us.
///
/// Unlike the JavaScript client, this also refuses a `peer` that selects a version we did not
/// offer, since nothing sensible can follow.
pub fn accept_answer(answer: &Message) -> Result<RemotePeer, HandshakeError> {
    match answer {
        Message::Peer {
            sender_id,
            selected_protocol_version,
            peer_metadata,
            ..
        } => {
            if selected_protocol_version != PROTOCOL_V1 {
                return Err(HandshakeError::UnsupportedVersion {
                    offered: vec![selected_protocol_version.clone()],
                });
            }
            Ok(RemotePeer {
                peer_id: sender_id.clone(),
                metadata: peer_metadata.clone(),
            })
        }
        Message::Error { message, .. } => Err(HandshakeError::Rejected {
            message: message.clone(),
        }),
        other => Err(HandshakeError::UnexpectedMessage {
            expected: "peer",
            got: other.type_name(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EXT_CHANGED_DOCS, StorageId};

    fn peer(s: &str) -> PeerId {
        PeerId::new(s).unwrap()
    }

    fn server_meta() -> PeerMetadata {
        PeerMetadata {
            storage_id: Some(StorageId::new("server-store").unwrap()),
            is_ephemeral: false,
            extensions: vec![EXT_CHANGED_DOCS.to_owned()],
        }
    }

    #[test]
    fn a_v1_join_is_answered_with_peer_addressed_to_the_client() {
        let client_meta = PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
            extensions: vec![],
        };
        let join = join(&peer("client"), client_meta);
        // The join survives the wire, as the server would receive it.
        let join = Message::decode(&join.encode()).unwrap();
        let answer = answer_join(&join, &peer("server"), server_meta(), None).unwrap();
        assert_eq!(
            answer,
            Message::Peer {
                sender_id: peer("server"),
                target_id: peer("client"),
                selected_protocol_version: "1".into(),
                peer_metadata: Some(server_meta()),
            }
        );
        let remote = accept_answer(&Message::decode(&answer.encode()).unwrap()).unwrap();
        assert_eq!(remote.peer_id, peer("server"));
        assert_eq!(remote.metadata, Some(server_meta()));
        // The extensions the server advertised reach the client through the wire.
        assert!(remote.supports(EXT_CHANGED_DOCS));
        assert!(!remote.supports("lianxin/something-else/1"));
    }

    #[test]
    fn a_server_without_extensions_supports_none() {
        let answer = |peer_metadata| Message::Peer {
            sender_id: peer("server"),
            target_id: peer("client"),
            selected_protocol_version: "1".into(),
            peer_metadata,
        };
        // A stock automerge-repo server: metadata without `lianxinExtensions`, or none at all.
        for metadata in [Some(PeerMetadata::default()), None] {
            let wire = Message::decode(&answer(metadata).encode()).unwrap();
            let remote = accept_answer(&wire).unwrap();
            assert!(!remote.supports(EXT_CHANGED_DOCS));
        }
    }

    #[test]
    fn the_server_may_override_the_client_peer_id() {
        let join = join(&peer("claimed"), PeerMetadata::default());
        let answer =
            answer_join(&join, &peer("server"), server_meta(), Some(peer("user-42"))).unwrap();
        assert_eq!(answer.target_id(), Some(&peer("user-42")));
    }

    #[test]
    fn v1_is_found_among_other_versions() {
        let join = Message::Join {
            sender_id: peer("client"),
            supported_protocol_versions: vec!["2".into(), "1".into()],
            peer_metadata: None,
        };
        assert!(answer_join(&join, &peer("server"), server_meta(), None).is_ok());
    }

    #[test]
    fn an_unsupported_version_becomes_an_error_message() {
        let join = Message::Join {
            sender_id: peer("client"),
            supported_protocol_versions: vec!["2".into()],
            peer_metadata: None,
        };
        let err = answer_join(&join, &peer("server"), server_meta(), None).unwrap_err();
        assert_eq!(
            err,
            HandshakeError::UnsupportedVersion {
                offered: vec!["2".into()]
            }
        );
        let reply = err.to_message(&peer("server"), Some(peer("client")));
        assert_eq!(
            reply,
            Message::Error {
                sender_id: peer("server"),
                target_id: Some(peer("client")),
                message: "unsupported protocol version".into(),
            }
        );
        assert_eq!(
            accept_answer(&reply),
            Err(HandshakeError::Rejected {
                message: "unsupported protocol version".into()
            })
        );
    }

    #[test]
    fn other_messages_are_not_a_handshake() {
        let leave = Message::Leave {
            sender_id: peer("client"),
        };
        assert_eq!(
            answer_join(&leave, &peer("server"), server_meta(), None),
            Err(HandshakeError::UnexpectedMessage {
                expected: "join",
                got: "leave"
            })
        );
        assert_eq!(
            accept_answer(&leave),
            Err(HandshakeError::UnexpectedMessage {
                expected: "peer",
                got: "leave"
            })
        );
    }

    #[test]
    fn a_peer_selecting_an_unknown_version_is_refused() {
        let answer = Message::Peer {
            sender_id: peer("server"),
            target_id: peer("client"),
            selected_protocol_version: "9".into(),
            peer_metadata: None,
        };
        assert!(matches!(
            accept_answer(&answer),
            Err(HandshakeError::UnsupportedVersion { .. })
        ));
    }
}
