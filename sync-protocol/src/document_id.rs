//! [`DocumentId`]: the identifier of one Automerge document, as automerge-repo spells it.
//!
//! automerge-repo names a document by 16 random bytes (a UUID v4). Its string form is the
//! bs58check encoding of those bytes: base58 over the 16 bytes followed by the first 4 bytes of
//! their double SHA-256, so a mistyped ID is caught by the checksum rather than silently naming
//! another document. Its URL form prefixes `automerge:`, and may carry a `#heads` fragment that
//! names a version of the document.
//!
//! This module parses and prints those forms. It must not know where documents are stored or who
//! may read them, and it does not accept the legacy hex UUID form that automerge-repo 1.x still
//! understood: no Lianxin client ever produced it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The prefix of an Automerge URL.
pub const URL_PREFIX: &str = "automerge:";

/// The number of bytes in a document ID.
const ID_LEN: usize = 16;

/// The number of checksum bytes bs58check appends.
const CHECKSUM_LEN: usize = 4;

/// The longest string we try to decode.
///
/// Sixteen bytes plus a four-byte checksum never need more than 28 base58 digits. The cap also
/// matters for safety: base58 decoding is quadratic in the input length, and document IDs arrive
/// in messages from untrusted peers.
const MAX_ENCODED_LEN: usize = 64;

/// The identifier of one Automerge document: 16 bytes, shown as bs58check.
///
/// It orders and hashes by its bytes, so it can key a `BTreeMap` or a `HashMap` directly.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocumentId([u8; ID_LEN]);

/// Why a string is not a document ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentIdError {
    /// The string, or the part after `automerge:`, is empty.
    #[error("document ID is empty")]
    Empty,
    /// The string is far longer than any document ID; we refuse to decode it at all.
    #[error("document ID is {len} characters long, at most {MAX_ENCODED_LEN} are allowed")]
    TooLong { len: usize },
    /// A character is not in the base58 alphabet (which leaves out `0`, `O`, `I` and `l`).
    #[error("document ID has the character {character:?} at byte {index}, which is not base58")]
    InvalidCharacter { character: char, index: usize },
    /// The base58 decoded, but the last four bytes are not the checksum of the rest.
    #[error("document ID has a bad checksum (mistyped or truncated?)")]
    BadChecksum,
    /// The string does not decode to 20 bytes (16 bytes of ID and 4 of checksum). `len` counts
    /// all decoded bytes, checksum included.
    #[error("document ID decodes to {len} bytes, expected {} (16 and a 4-byte checksum)", ID_LEN + CHECKSUM_LEN)]
    WrongLength { len: usize },
}

impl DocumentId {
    /// A fresh random document ID.
    ///
    /// The bytes are shaped as a UUID v4, as automerge-repo's `generateAutomergeUrl` makes them,
    /// so tools that read the bytes as a UUID keep working.
    pub fn random() -> Self {
        let mut bytes: [u8; ID_LEN] = rand::random();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    /// The document ID with exactly these bytes.
    pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes of this ID.
    pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The `automerge:<id>` URL that automerge-repo uses to open this document.
    pub fn to_url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    fn parse_bare(s: &str) -> Result<Self, DocumentIdError> {
        if s.is_empty() {
            return Err(DocumentIdError::Empty);
        }
        if s.len() > MAX_ENCODED_LEN {
            return Err(DocumentIdError::TooLong { len: s.len() });
        }
        let payload = bs58::decode(s)
            .with_check(None)
            .into_vec()
            .map_err(|error| from_bs58_error(s, error))?;
        let bytes: [u8; ID_LEN] =
            payload
                .as_slice()
                .try_into()
                .map_err(|_| DocumentIdError::WrongLength {
                    len: payload.len() + CHECKSUM_LEN,
                })?;
        Ok(Self(bytes))
    }
}

fn from_bs58_error(input: &str, error: bs58::decode::Error) -> DocumentIdError {
    match error {
        bs58::decode::Error::InvalidCharacter { character, index } => {
            DocumentIdError::InvalidCharacter { character, index }
        }
        bs58::decode::Error::NonAsciiCharacter { index } => DocumentIdError::InvalidCharacter {
            character: input
                .get(index..)
                .and_then(|rest| rest.chars().next())
                .unwrap_or(char::REPLACEMENT_CHARACTER),
            index,
        },
        bs58::decode::Error::InvalidChecksum { .. } => DocumentIdError::BadChecksum,
        // Fewer than four bytes decoded: there is not even room for the checksum, let alone a
        // payload, so this is a length problem rather than a checksum one. The string already
        // decoded once, so decoding it again without the check cannot fail.
        bs58::decode::Error::NoChecksum => DocumentIdError::WrongLength {
            len: bs58::decode(input)
                .into_vec()
                .map_or(0, |bytes| bytes.len()),
        },
        // The remaining variants cannot come out of `with_check(None).into_vec()`; a checksum
        // error is the honest description if a future bs58 adds one.
        _ => DocumentIdError::BadChecksum,
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;

    /// Parses the bare bs58check form, or an Automerge URL.
    ///
    /// A URL may carry a `#heads` fragment naming a version of the document; the fragment is
    /// ignored, because a document ID names the whole document, every version of it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(URL_PREFIX) {
            Some(rest) => {
                let id = rest.split_once('#').map_or(rest, |(id, _heads)| id);
                Self::parse_bare(id)
            }
            None => Self::parse_bare(s),
        }
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl TryFrom<String> for DocumentId {
    type Error = DocumentIdError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DocumentId> for String {
    fn from(id: DocumentId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example ID in automerge-repo's `types.ts` documentation, decoded by hand (base58,
    /// then the last four bytes checked against the double SHA-256 of the first sixteen).
    const DOCS_EXAMPLE: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";
    const DOCS_EXAMPLE_BYTES: [u8; 16] = [
        0xf1, 0xc2, 0x9c, 0x84, 0x74, 0xc8, 0x4a, 0xde, 0xb8, 0x00, 0xbe, 0x47, 0x62, 0x7d, 0x33,
        0xbf,
    ];

    #[test]
    fn parses_the_automerge_repo_documentation_example() {
        let id: DocumentId = DOCS_EXAMPLE.parse().unwrap();
        assert_eq!(id.as_bytes(), &DOCS_EXAMPLE_BYTES);
        assert_eq!(id.to_string(), DOCS_EXAMPLE);
        assert_eq!(id.to_url(), format!("automerge:{DOCS_EXAMPLE}"));
    }

    #[test]
    fn encodes_known_byte_patterns() {
        // Computed independently with a short Python bs58check implementation.
        let counting: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            DocumentId::from_bytes(counting).to_string(),
            "1Bhh3pU9gLXZiNDL6PEa1Gs9fh"
        );
        assert_eq!(
            DocumentId::from_bytes([0; 16]).to_string(),
            "11111111111111114Ki9Gx"
        );
        assert_eq!(
            DocumentId::from_bytes([0xff; 16]).to_string(),
            "4ZrjxJnU1LA5xSyrWMNuXTozYEvA"
        );
    }

    #[test]
    fn accepts_the_url_form_with_and_without_heads() {
        let bare: DocumentId = DOCS_EXAMPLE.parse().unwrap();
        let url: DocumentId = format!("automerge:{DOCS_EXAMPLE}").parse().unwrap();
        let with_heads: DocumentId = format!("automerge:{DOCS_EXAMPLE}#abc|def").parse().unwrap();
        assert_eq!(url, bare);
        assert_eq!(with_heads, bare);
    }

    #[test]
    fn random_ids_round_trip_and_look_like_uuid_v4() {
        for _ in 0..100 {
            let id = DocumentId::random();
            assert_eq!(id.to_string().parse::<DocumentId>().unwrap(), id);
            assert_eq!(id.to_url().parse::<DocumentId>().unwrap(), id);
            assert_eq!(id.as_bytes()[6] >> 4, 4);
            assert_eq!(id.as_bytes()[8] >> 6, 0b10);
        }
    }

    #[test]
    fn rejects_a_bad_checksum() {
        // Change one digit: still base58, but the checksum no longer matches.
        let mut wrong = DOCS_EXAMPLE.to_owned();
        wrong.replace_range(5..6, "j");
        assert_eq!(
            wrong.parse::<DocumentId>(),
            Err(DocumentIdError::BadChecksum)
        );
    }

    #[test]
    fn rejects_bad_alphabet() {
        assert_eq!(
            "4NMNnkMhL8jXrdJ9jamS58PAVdX0".parse::<DocumentId>(),
            Err(DocumentIdError::InvalidCharacter {
                character: '0',
                index: 27
            })
        );
        assert!(matches!(
            "4NMNé".parse::<DocumentId>(),
            Err(DocumentIdError::InvalidCharacter { index: 4, .. })
        ));
    }

    #[test]
    fn rejects_wrong_length_with_a_valid_checksum() {
        let eight = bs58::encode([7u8; 8]).with_check().into_string();
        assert_eq!(
            eight.parse::<DocumentId>(),
            Err(DocumentIdError::WrongLength { len: 12 })
        );
        assert_eq!(
            "1".parse::<DocumentId>(),
            Err(DocumentIdError::WrongLength { len: 1 })
        );
    }

    #[test]
    fn rejects_empty_and_huge_input() {
        assert_eq!("".parse::<DocumentId>(), Err(DocumentIdError::Empty));
        assert_eq!(
            "automerge:".parse::<DocumentId>(),
            Err(DocumentIdError::Empty)
        );
        let huge = "2".repeat(10_000);
        assert_eq!(
            huge.parse::<DocumentId>(),
            Err(DocumentIdError::TooLong { len: 10_000 })
        );
    }

    #[test]
    fn serde_uses_the_string_form() {
        let id: DocumentId = DOCS_EXAMPLE.parse().unwrap();
        let mut cbor = Vec::new();
        ciborium::into_writer(&id, &mut cbor).unwrap();
        let text: ciborium::Value = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(text, ciborium::Value::Text(DOCS_EXAMPLE.into()));
        let back: DocumentId = ciborium::from_reader(cbor.as_slice()).unwrap();
        assert_eq!(back, id);

        let mut bad = Vec::new();
        ciborium::into_writer("not-an-id", &mut bad).unwrap();
        assert!(ciborium::from_reader::<DocumentId, _>(bad.as_slice()).is_err());
    }
}
