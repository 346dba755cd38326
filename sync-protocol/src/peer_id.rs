//! [`PeerId`] and [`StorageId`]: the string identifiers automerge-repo peers announce.
//!
//! A peer ID names one running repo for the length of a connection (automerge-repo makes a fresh
//! random one at start-up unless configured). A storage ID names one durable store, and outlives
//! connections: automerge-repo keys persisted sync states by it. On the wire both are plain
//! strings chosen by the peer, so this module only checks that they are sane to log, to use as
//! map keys and to echo back: non-empty, at most [`MAX_ID_LEN`] bytes, no control characters.
//!
//! The two live in one file because they are one concept, "a name a peer gives", validated by one
//! rule. This module must not decide whether a peer is who it claims to be: a peer ID is a claim,
//! and authentication belongs to the server.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest peer or storage ID accepted, in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Why a string is not a peer ID or storage ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerIdError {
    /// The ID is the empty string.
    #[error("ID is empty")]
    Empty,
    /// The ID is longer than [`MAX_ID_LEN`] bytes.
    #[error("ID is {len} bytes long, at most {MAX_ID_LEN} are allowed")]
    TooLong { len: usize },
    /// The ID contains a control character, which would corrupt logs and terminals.
    #[error("ID has a control character at byte {index}")]
    ControlCharacter { index: usize },
}

fn validate(s: &str) -> Result<(), PeerIdError> {
    if s.is_empty() {
        return Err(PeerIdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(PeerIdError::TooLong { len: s.len() });
    }
    if let Some((index, _)) = s.char_indices().find(|(_, c)| c.is_control()) {
        return Err(PeerIdError::ControlCharacter { index });
    }
    Ok(())
}

/// Defines a validated string identifier with the trait impls every identifier here needs.
///
/// A macro rather than a generic wrapper, because the two types must stay distinct names in
/// signatures and in serde, and a macro keeps the boilerplate in one place.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `id` and wraps it.
            pub fn new(id: impl Into<String>) -> Result<Self, PeerIdError> {
                let id = id.into();
                validate(&id)?;
                Ok(Self(id))
            }

            /// The ID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = PeerIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = PeerIdError;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

string_id! {
    /// The ID a peer announces for itself in `senderId`, and that others address it by in
    /// `targetId`.
    PeerId
}

string_id! {
    /// The ID of a peer's durable storage, announced in `peerMetadata.storageId`.
    ///
    /// Unlike a [`PeerId`] it survives restarts, so it is the right key for persisted sync state.
    StorageId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids() {
        let peer = PeerId::new("peer-3f2a").unwrap();
        assert_eq!(peer.as_str(), "peer-3f2a");
        assert_eq!(peer.to_string(), "peer-3f2a");
        assert_eq!("peer-3f2a".parse::<PeerId>().unwrap(), peer);
        assert!(StorageId::new("2a0b3c4d-1111-4222-8333-444455556666").is_ok());
        assert!(PeerId::new("対話-peer").is_ok());
        assert!(PeerId::new("x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn rejects_empty_long_and_control_characters() {
        assert_eq!(PeerId::new(""), Err(PeerIdError::Empty));
        assert_eq!(
            PeerId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(PeerIdError::TooLong {
                len: MAX_ID_LEN + 1
            })
        );
        assert_eq!(
            StorageId::new("ab\ncd"),
            Err(PeerIdError::ControlCharacter { index: 2 })
        );
        assert_eq!(
            PeerId::new("\u{1b}[31m"),
            Err(PeerIdError::ControlCharacter { index: 0 })
        );
    }

    #[test]
    fn serde_checks_on_the_way_in() {
        let mut cbor = Vec::new();
        ciborium::into_writer(&PeerId::new("alice").unwrap(), &mut cbor).unwrap();
        assert_eq!(
            ciborium::from_reader::<ciborium::Value, _>(cbor.as_slice()).unwrap(),
            ciborium::Value::Text("alice".into())
        );
        let mut bad = Vec::new();
        ciborium::into_writer("", &mut bad).unwrap();
        assert!(ciborium::from_reader::<PeerId, _>(bad.as_slice()).is_err());
    }
}
