//! Tests for [`Message`] encoding and decoding: round trips, byte-exact agreement with what cbor-x
//! writes, leniency where JavaScript is lenient, the Lianxin extension messages and metadata, and
//! no panics on hostile input.

use proptest::prelude::*;

use super::*;
use crate::{DocumentIdError, EXT_CHANGED_DOCS};

const DOC: &str = "4NMNnkMhL8jXrdJ9jamS58PAVdXu";

fn peer(s: &str) -> PeerId {
    PeerId::new(s).unwrap()
}

fn storage(s: &str) -> StorageId {
    StorageId::new(s).unwrap()
}

fn doc() -> DocumentId {
    DOC.parse().unwrap()
}

fn other_doc() -> DocumentId {
    DocumentId::from_bytes([7; 16])
}

/// One message of every variant, with optional parts both present and absent.
fn samples() -> Vec<Message> {
    vec![
        Message::Join {
            sender_id: peer("client"),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: Some(storage("client-storage")),
                is_ephemeral: false,
                extensions: vec![],
            }),
        },
        Message::Join {
            sender_id: peer("client"),
            supported_protocol_versions: vec!["1".into(), "2".into()],
            peer_metadata: None,
        },
        Message::Peer {
            sender_id: peer("server"),
            target_id: peer("client"),
            selected_protocol_version: "1".into(),
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
                extensions: vec![],
            }),
        },
        Message::Leave {
            sender_id: peer("client"),
        },
        Message::Request {
            sender_id: peer("client"),
            target_id: peer("server"),
            document_id: doc(),
            data: vec![0x42, 1, 2, 3],
        },
        Message::Sync {
            sender_id: peer("server"),
            target_id: peer("client"),
            document_id: doc(),
            data: vec![7; 300],
        },
        Message::DocUnavailable {
            sender_id: peer("server"),
            target_id: peer("client"),
            document_id: doc(),
        },
        Message::Ephemeral {
            sender_id: peer("client"),
            target_id: peer("server"),
            document_id: doc(),
            session_id: "session-9".into(),
            count: 5_000_000_000,
            data: vec![0xa1, 0x61, 0x78, 0x01],
        },
        Message::Error {
            sender_id: peer("server"),
            target_id: Some(peer("client")),
            message: "unsupported protocol version".into(),
        },
        Message::Error {
            sender_id: peer("server"),
            target_id: None,
            message: "frame too large".into(),
        },
        Message::RemoteSubscriptionChange {
            sender_id: peer("client"),
            target_id: peer("server"),
            add: vec![storage("a"), storage("b")],
            remove: vec![],
        },
        Message::RemoteHeadsChanged {
            sender_id: peer("server"),
            target_id: peer("client"),
            document_id: doc(),
            new_heads: vec![
                (
                    storage("s1"),
                    RemoteHeads {
                        heads: vec!["2cRxq7o4yVJK3sUm8WpQhtA3W9ZNDiAjF6uU7nGBq9Na8".into()],
                        timestamp: 1_735_689_600_123,
                    },
                ),
                (
                    storage("s2"),
                    RemoteHeads {
                        heads: vec![],
                        timestamp: 17,
                    },
                ),
            ],
        },
        Message::Peer {
            sender_id: peer("server"),
            target_id: peer("client"),
            selected_protocol_version: "1".into(),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some(storage("server-storage")),
                is_ephemeral: false,
                extensions: vec![EXT_CHANGED_DOCS.into(), "lianxin/other/2".into()],
            }),
        },
        Message::ChangedDocsRequest {
            sender_id: peer("client"),
            target_id: peer("server"),
        },
        Message::ChangedDocs {
            sender_id: peer("server"),
            target_id: peer("client"),
            document_ids: vec![doc(), other_doc()],
        },
        Message::ChangedDocs {
            sender_id: peer("server"),
            target_id: peer("client"),
            document_ids: vec![],
        },
        Message::AreaSync {
            sender_id: peer("client"),
            target_id: peer("server"),
            cursor: None,
        },
        Message::AreaSync {
            sender_id: peer("client"),
            target_id: peer("server"),
            cursor: Some("1:0:17:".into()),
        },
        Message::AreaBatch {
            sender_id: peer("server"),
            target_id: peer("client"),
            documents: vec![(doc(), vec![0x85, 0x6f, 0x4a, 0x83]), (other_doc(), vec![])],
            cursor: "1:0:17:x".into(),
            complete: false,
        },
        Message::AreaBatch {
            sender_id: peer("server"),
            target_id: peer("client"),
            documents: vec![],
            cursor: "1:17:17:".into(),
            complete: true,
        },
    ]
}

#[test]
fn every_variant_round_trips() {
    let samples = samples();
    let names: std::collections::BTreeSet<_> = samples.iter().map(Message::type_name).collect();
    assert_eq!(names.len(), 14, "samples must cover every variant");
    for message in samples {
        let bytes = message.encode();
        assert_eq!(Message::decode(&bytes), Ok(message.clone()), "{message:?}");
    }
}

#[test]
fn accessors_report_ids() {
    let sync = &samples()[5];
    assert_eq!(sync.type_name(), "sync");
    assert_eq!(sync.sender_id(), &peer("server"));
    assert_eq!(sync.target_id(), Some(&peer("client")));
    assert_eq!(sync.document_id(), Some(doc()));
    let join = &samples()[0];
    assert_eq!(join.document_id(), None);
    assert_eq!(join.target_id(), None);

    let request = Message::ChangedDocsRequest {
        sender_id: peer("client"),
        target_id: peer("server"),
    };
    assert_eq!(request.type_name(), "lianxin-changed-docs-request");
    assert_eq!(request.sender_id(), &peer("client"));
    assert_eq!(request.target_id(), Some(&peer("server")));
    assert_eq!(request.document_id(), None);
    let answer = Message::ChangedDocs {
        sender_id: peer("server"),
        target_id: peer("client"),
        document_ids: vec![doc()],
    };
    assert_eq!(answer.type_name(), "lianxin-changed-docs");
    assert_eq!(answer.sender_id(), &peer("server"));
    assert_eq!(answer.target_id(), Some(&peer("client")));
    // A list of documents is not "the" document of the message: routing by document must not
    // pick one of them.
    assert_eq!(answer.document_id(), None);
}

/// CBOR pieces, spelled out so the expected bytes below read like the cbor-x output they copy.
fn text(s: &str) -> Vec<u8> {
    assert!(s.len() < 256);
    let mut out = if s.len() < 24 {
        vec![0x60 | s.len() as u8]
    } else {
        vec![0x78, s.len() as u8]
    };
    out.extend_from_slice(s.as_bytes());
    out
}

/// The bytes cbor-x writes for the object `DocSynchronizer` emits, after `NetworkSubsystem`
/// appends `senderId`: `{ type, targetId, data, documentId, senderId }`.
fn cbor_x_sync_bytes(data: &[u8]) -> Vec<u8> {
    let mut b = vec![0xb9, 0x00, 0x05]; // a plain object: map, 16-bit length 5
    b.extend(text("type"));
    b.extend(text("sync"));
    b.extend(text("targetId"));
    b.extend(text("server"));
    b.extend(text("data"));
    assert!((24..256).contains(&data.len()));
    b.extend([0x58, data.len() as u8]); // Uint8Array, untagged: byte string, 1-byte length
    b.extend(data);
    b.extend(text("documentId"));
    b.extend([0x78, 28]); // a 28-character document ID needs a 1-byte length
    b.extend(DOC.as_bytes());
    b.extend(text("senderId"));
    b.extend(text("client-1"));
    b
}

#[test]
fn sync_bytes_match_cbor_x_exactly() {
    let data: Vec<u8> = (0..30).collect();
    let expected = cbor_x_sync_bytes(&data);
    let message = Message::Sync {
        sender_id: peer("client-1"),
        target_id: peer("server"),
        document_id: doc(),
        data,
    };
    assert_eq!(Message::decode(&expected), Ok(message.clone()));
    assert_eq!(message.encode(), expected);
}

#[test]
fn peer_bytes_match_the_websocket_server_adapter() {
    // WebSocketServerAdapter sends { type, senderId, peerMetadata, selectedProtocolVersion,
    // targetId }, and Repo builds peerMetadata as { storageId, isEphemeral }.
    let mut expected = vec![0xb9, 0x00, 0x05];
    expected.extend(text("type"));
    expected.extend(text("peer"));
    expected.extend(text("senderId"));
    expected.extend(text("server"));
    expected.extend(text("peerMetadata"));
    expected.extend([0xb9, 0x00, 0x02]);
    expected.extend(text("storageId"));
    expected.extend(text("store-1"));
    expected.extend(text("isEphemeral"));
    expected.push(0xf4);
    expected.extend(text("selectedProtocolVersion"));
    expected.extend(text("1"));
    expected.extend(text("targetId"));
    expected.extend(text("client"));

    let message = Message::Peer {
        sender_id: peer("server"),
        target_id: peer("client"),
        selected_protocol_version: "1".into(),
        peer_metadata: Some(PeerMetadata {
            storage_id: Some(storage("store-1")),
            is_ephemeral: false,
            extensions: vec![],
        }),
    };
    assert_eq!(message.encode(), expected);
    assert_eq!(Message::decode(&expected), Ok(message));
}

/// The `peer` message of [`matches_bytes_captured_from_automerge_repo`], which other tests compare
/// against too.
const CAPTURED_PEER_HEX: &str = concat!(
    "b90005647479706564706565726873656e6465724964667365727665726c706565724d6574616461",
    "7461b900026973746f7261676549646773746f72652d316b6973457068656d6572616cf47773656c",
    "656374656450726f746f636f6c56657273696f6e613168746172676574496466636c69656e74",
);

/// Bytes written by `cbor.encode` of `@automerge/automerge-repo` 2.5.6 (cbor-x 1.6.9) under
/// Node, for objects built with the key order the JavaScript code uses (repo messages get
/// `senderId` appended last by `NetworkSubsystem`). Each must decode to the message beside it,
/// and our encoder must write it back byte for byte.
#[test]
fn matches_bytes_captured_from_automerge_repo() {
    let cases = [
        (
            concat!(
                "b9000564747970656473796e63687461726765744964667365727665726464617461581e00010203",
                "0405060708090a0b0c0d0e0f101112131415161718191a1b1c1d6a646f63756d656e744964781c34",
                "4e4d4e6e6b4d684c386a5872644a396a616d5335385041566458756873656e646572496468636c69",
                "656e742d31",
            ),
            Message::Sync {
                sender_id: peer("client-1"),
                target_id: peer("server"),
                document_id: doc(),
                data: (0..30).collect(),
            },
        ),
        (
            concat!(
                "b9000564747970656772657175657374687461726765744964667365727665726a646f63756d656e",
                "744964781c344e4d4e6e6b4d684c386a5872644a396a616d53353850415664587564646174614442",
                "0102036873656e646572496466636c69656e74",
            ),
            Message::Request {
                sender_id: peer("client"),
                target_id: peer("server"),
                document_id: doc(),
                data: vec![0x42, 1, 2, 3],
            },
        ),
        (
            concat!(
                "b9000464747970656f646f632d756e617661696c61626c656a646f63756d656e744964781c344e4d",
                "4e6e6b4d684c386a5872644a396a616d53353850415664587568746172676574496466636c69656e",
                "746873656e646572496466736572766572",
            ),
            Message::DocUnavailable {
                sender_id: peer("server"),
                target_id: peer("client"),
                document_id: doc(),
            },
        ),
        (
            concat!(
                "b90007647479706569657068656d6572616c687461726765744964667365727665726a646f63756d",
                "656e744964781c344e4d4e6e6b4d684c386a5872644a396a616d5335385041566458756464617461",
                "44a161780165636f756e74fb41f2a05f200000006973657373696f6e49646973657373696f6e2d39",
                "6873656e646572496466636c69656e74",
            ),
            Message::Ephemeral {
                sender_id: peer("client"),
                target_id: peer("server"),
                document_id: doc(),
                session_id: "session-9".into(),
                count: 5_000_000_000,
                data: vec![0xa1, 0x61, 0x78, 0x01],
            },
        ),
        (
            concat!(
                "b900046474797065646a6f696e6873656e646572496466636c69656e746c706565724d6574616461",
                "7461b900026973746f7261676549646e636c69656e742d73746f726167656b6973457068656d6572",
                "616cf47819737570706f7274656450726f746f636f6c56657273696f6e73816131",
            ),
            Message::Join {
                sender_id: peer("client"),
                supported_protocol_versions: vec!["1".into()],
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some(storage("client-storage")),
                    is_ephemeral: false,
                    extensions: vec![],
                }),
            },
        ),
        (
            CAPTURED_PEER_HEX,
            Message::Peer {
                sender_id: peer("server"),
                target_id: peer("client"),
                selected_protocol_version: "1".into(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some(storage("store-1")),
                    is_ephemeral: false,
                    extensions: vec![],
                }),
            },
        ),
        (
            concat!(
                "b900046474797065656572726f726873656e646572496466736572766572676d657373616765781c",
                "756e737570706f727465642070726f746f636f6c2076657273696f6e68746172676574496466636c",
                "69656e74",
            ),
            Message::Error {
                sender_id: peer("server"),
                target_id: Some(peer("client")),
                message: "unsupported protocol version".into(),
            },
        ),
        (
            "b900026474797065656c656176656873656e646572496466636c69656e74",
            Message::Leave {
                sender_id: peer("client"),
            },
        ),
        (
            concat!(
                "b900056474797065781a72656d6f74652d737562736372697074696f6e2d6368616e676568746172",
                "6765744964667365727665726361646482616161626672656d6f7665806873656e64657249646663",
                "6c69656e74",
            ),
            Message::RemoteSubscriptionChange {
                sender_id: peer("client"),
                target_id: peer("server"),
                add: vec![storage("a"), storage("b")],
                remove: vec![],
            },
        ),
        (
            concat!(
                "b9000564747970657472656d6f74652d68656164732d6368616e6765646874617267657449646663",
                "6c69656e746a646f63756d656e744964781c344e4d4e6e6b4d684c386a5872644a396a616d533538",
                "504156645875686e65774865616473b90002627331b9000265686561647381782d3263527871376f",
                "3479564a4b3373556d385770516874413357395a4e4469416a46367555376e474271394e61386974",
                "696d657374616d70fb427941f297c7b000627332b90002656865616473806974696d657374616d70",
                "116873656e646572496466736572766572",
            ),
            Message::RemoteHeadsChanged {
                sender_id: peer("server"),
                target_id: peer("client"),
                document_id: doc(),
                new_heads: vec![
                    (
                        storage("s1"),
                        RemoteHeads {
                            heads: vec!["2cRxq7o4yVJK3sUm8WpQhtA3W9ZNDiAjF6uU7nGBq9Na8".into()],
                            timestamp: 1_735_689_600_123,
                        },
                    ),
                    (
                        storage("s2"),
                        RemoteHeads {
                            heads: vec![],
                            timestamp: 17,
                        },
                    ),
                ],
            },
        ),
    ];
    for (hex, message) in cases {
        let bytes = from_hex(hex);
        assert_eq!(Message::decode(&bytes), Ok(message.clone()), "{hex}");
        assert_eq!(message.encode(), bytes, "{message:?}");
    }
}

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn large_numbers_are_written_as_float64_like_cbor_x() {
    let message = Message::Ephemeral {
        sender_id: peer("c"),
        target_id: peer("s"),
        document_id: doc(),
        session_id: "x".into(),
        count: 1 << 33,
        data: vec![1],
    };
    let bytes = message.encode();
    let float = [&[0xfb][..], &((1u64 << 33) as f64).to_be_bytes()].concat();
    assert!(bytes.windows(9).any(|w| w == float.as_slice()));
    assert_eq!(Message::decode(&bytes), Ok(message));
}

#[test]
fn decodes_any_key_order_and_minimal_map_headers() {
    // The order `type, senderId, targetId, documentId, data`, with a 1-byte map header as a
    // generic CBOR encoder would write it.
    let mut b = vec![0xa5];
    b.extend(text("type"));
    b.extend(text("sync"));
    b.extend(text("senderId"));
    b.extend(text("client-1"));
    b.extend(text("targetId"));
    b.extend(text("server"));
    b.extend(text("documentId"));
    b.extend(text(DOC));
    b.extend(text("data"));
    b.extend([0x43, 1, 2, 3]);
    assert_eq!(
        Message::decode(&b),
        Ok(Message::Sync {
            sender_id: peer("client-1"),
            target_id: peer("server"),
            document_id: doc(),
            data: vec![1, 2, 3],
        })
    );
}

/// Encodes a generic CBOR value with ciborium, for hand-built inputs.
fn cbor(value: &ciborium::Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn map(entries: Vec<(&str, ciborium::Value)>) -> ciborium::Value {
    ciborium::Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (ciborium::Value::Text(k.into()), v))
            .collect(),
    )
}

fn t(s: &str) -> ciborium::Value {
    ciborium::Value::Text(s.into())
}

#[test]
fn accepts_what_javascript_may_send() {
    use ciborium::Value;
    // Tag 64 around the data, a float count, an undefined storageId (ciborium reads `undefined`
    // as Null), and an unknown key.
    let ephemeral = map(vec![
        ("type", t("ephemeral")),
        ("targetId", t("s")),
        ("documentId", t(DOC)),
        ("data", Value::Tag(64, Box::new(Value::Bytes(vec![9, 9])))),
        ("count", Value::Float(3.0)),
        ("sessionId", t("abc")),
        ("senderId", t("c")),
        ("somethingNew", Value::Array(vec![Value::Null])),
    ]);
    assert_eq!(
        Message::decode(&cbor(&ephemeral)),
        Ok(Message::Ephemeral {
            sender_id: peer("c"),
            target_id: peer("s"),
            document_id: doc(),
            session_id: "abc".into(),
            count: 3,
            data: vec![9, 9],
        })
    );

    let mut join = vec![0xb9, 0x00, 0x03];
    join.extend(text("type"));
    join.extend(text("join"));
    join.extend(text("senderId"));
    join.extend(text("c"));
    join.extend(text("peerMetadata"));
    join.extend([0xb9, 0x00, 0x02]);
    join.extend(text("storageId"));
    join.push(0xf7); // undefined: a repo without storage
    join.extend(text("isEphemeral"));
    join.push(0xf5);
    assert_eq!(
        Message::decode(&join),
        Ok(Message::Join {
            sender_id: peer("c"),
            // No supportedProtocolVersions: a pre-versioning client, which speaks "1".
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
                extensions: vec![],
            }),
        })
    );
}

#[test]
fn reports_what_is_wrong() {
    use ciborium::Value;
    let sync = |fields: Vec<(&str, Value)>| Message::decode(&cbor(&map(fields)));

    assert_eq!(
        sync(vec![("type", t("gossip")), ("senderId", t("c"))]),
        Err(DecodeError::UnknownType("gossip".into()))
    );
    assert_eq!(
        sync(vec![("senderId", t("c"))]),
        Err(DecodeError::MissingField { field: "type" })
    );
    assert_eq!(
        sync(vec![
            ("type", t("sync")),
            ("senderId", t("c")),
            ("targetId", t("s")),
            ("documentId", t(DOC)),
        ]),
        Err(DecodeError::MissingField { field: "data" })
    );
    assert_eq!(
        sync(vec![
            ("type", t("sync")),
            ("senderId", t("c")),
            ("targetId", t("s")),
            ("documentId", t(DOC)),
            ("data", t("not bytes")),
        ]),
        Err(DecodeError::InvalidField {
            field: "data",
            expected: "a byte string"
        })
    );
    assert_eq!(
        sync(vec![
            ("type", t("doc-unavailable")),
            ("senderId", t("c")),
            ("targetId", t("s")),
            ("documentId", t("automerge:nope")),
        ]),
        Err(DecodeError::InvalidDocumentId {
            field: "documentId",
            source: DocumentIdError::WrongLength { len: 3 }
        })
    );
    assert_eq!(
        sync(vec![("type", t("leave")), ("senderId", t(""))]),
        Err(DecodeError::InvalidId {
            field: "senderId",
            source: crate::PeerIdError::Empty
        })
    );
    assert_eq!(
        sync(vec![
            ("type", t("ephemeral")),
            ("senderId", t("c")),
            ("targetId", t("s")),
            ("documentId", t(DOC)),
            ("sessionId", t("x")),
            ("count", Value::Float(1.5)),
            ("data", Value::Bytes(vec![])),
        ]),
        Err(DecodeError::InvalidField {
            field: "count",
            expected: "a whole number from 0 to 2^53 - 1"
        })
    );
    let long_type = "x".repeat(10_000);
    let Err(DecodeError::UnknownType(echoed)) =
        sync(vec![("type", t(&long_type)), ("senderId", t("c"))])
    else {
        panic!("expected UnknownType");
    };
    assert!(
        echoed.len() < 100,
        "error messages must not echo huge input"
    );

    assert_eq!(
        Message::decode(&cbor(&t("sync"))),
        Err(DecodeError::NotAMap)
    );
    assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(Message::decode(&[0xb9, 0x00]), Err(DecodeError::Truncated));
    let mut trailing = samples()[3].encode();
    trailing.extend([0, 0]);
    assert_eq!(
        Message::decode(&trailing),
        Err(DecodeError::TrailingBytes { count: 2 })
    );
    assert!(matches!(
        Message::decode(&[0xff]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // 100 000 nested one-element arrays inside the `data` field.
    let mut b = vec![0xa1];
    b.extend(text("type"));
    b.extend(std::iter::repeat_n(0x81, 100_000));
    b.push(0x00);
    assert_eq!(Message::decode(&b), Err(DecodeError::TooDeep));
    // Nested tags and maps are limited too.
    let tags: Vec<u8> = std::iter::repeat_n(0xc1, 100_000).chain([0x00]).collect();
    assert_eq!(Message::decode(&tags), Err(DecodeError::TooDeep));
    let maps: Vec<u8> = std::iter::repeat_n([0xa1, 0x00], 100_000)
        .flatten()
        .chain([0x00])
        .collect();
    assert_eq!(Message::decode(&maps), Err(DecodeError::TooDeep));
}

#[test]
fn huge_declared_lengths_fail_without_allocating() {
    // A byte string that claims 2^63 bytes, then ends.
    let mut b = vec![0xa1];
    b.extend(text("data"));
    b.extend([0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert_eq!(Message::decode(&b), Err(DecodeError::Truncated));
    // An array that claims 2^32 elements.
    let array = [0x9a, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(Message::decode(&array), Err(DecodeError::Truncated));
}

#[test]
fn metadata_without_extensions_is_written_as_automerge_repo_writes_it() {
    let meta = PeerMetadata {
        storage_id: Some(storage("store-1")),
        ..PeerMetadata::default()
    };
    assert!(meta.extensions.is_empty());
    let message = Message::Peer {
        sender_id: peer("server"),
        target_id: peer("client"),
        selected_protocol_version: "1".into(),
        peer_metadata: Some(meta),
    };
    let bytes = message.encode();
    assert_eq!(bytes, from_hex(CAPTURED_PEER_HEX));
    assert!(
        !bytes.windows(7).any(|w| w == b"lianxin"),
        "a stock peer must never see the extension key"
    );
}

#[test]
fn peer_metadata_defaults_to_a_durable_peer_without_extensions() {
    let meta = PeerMetadata::default();
    assert_eq!(meta.storage_id, None);
    assert!(!meta.is_ephemeral);
    assert!(meta.extensions.is_empty());
    assert!(!meta.supports(EXT_CHANGED_DOCS));
    let meta = PeerMetadata {
        extensions: vec!["lianxin/other/1".into(), EXT_CHANGED_DOCS.into()],
        ..PeerMetadata::default()
    };
    assert!(meta.supports(EXT_CHANGED_DOCS));
    assert!(!meta.supports("lianxin/changed-docs/2"));
}

#[test]
fn extensions_are_written_after_is_ephemeral_and_read_back() {
    let message = Message::Join {
        sender_id: peer("c"),
        supported_protocol_versions: vec!["1".into()],
        peer_metadata: Some(PeerMetadata {
            storage_id: Some(storage("s")),
            is_ephemeral: false,
            extensions: vec![EXT_CHANGED_DOCS.into()],
        }),
    };
    let mut expected = vec![0xb9, 0x00, 0x04];
    expected.extend(text("type"));
    expected.extend(text("join"));
    expected.extend(text("senderId"));
    expected.extend(text("c"));
    expected.extend(text("peerMetadata"));
    expected.extend([0xb9, 0x00, 0x03]); // one more entry than a stock repo writes
    expected.extend(text("storageId"));
    expected.extend(text("s"));
    expected.extend(text("isEphemeral"));
    expected.push(0xf4);
    expected.extend(text("lianxinExtensions"));
    expected.push(0x81); // an array of one
    expected.extend(text("lianxin/changed-docs/1"));
    expected.extend(text("supportedProtocolVersions"));
    expected.push(0x81);
    expected.extend(text("1"));
    assert_eq!(message.encode(), expected);
    assert_eq!(Message::decode(&expected), Ok(message));
}

#[test]
fn extension_lists_are_checked() {
    use ciborium::Value;
    let join_with = |extensions: Value| {
        let meta = map(vec![
            ("isEphemeral", Value::Bool(false)),
            ("lianxinExtensions", extensions),
        ]);
        let join = map(vec![
            ("type", t("join")),
            ("senderId", t("c")),
            ("peerMetadata", meta),
        ]);
        match Message::decode(&cbor(&join)) {
            Ok(Message::Join {
                peer_metadata: Some(meta),
                ..
            }) => Ok(meta.extensions),
            Ok(other) => panic!("decoded as {other:?}"),
            Err(e) => Err(e),
        }
    };
    let texts = |n: usize, len: usize| Value::Array(vec![t(&"x".repeat(len)); n]);
    let refused = Err(DecodeError::InvalidField {
        field: "peerMetadata.lianxinExtensions",
        expected: decode::EXPECTED_EXTENSIONS,
    });

    // `null` or `undefined` (JavaScript's unset property) mean none.
    assert_eq!(join_with(Value::Null), Ok(vec![]));
    assert_eq!(join_with(Value::Array(vec![])), Ok(vec![]));
    assert_eq!(
        join_with(texts(MAX_EXTENSIONS, MAX_EXTENSION_LEN)),
        Ok(vec!["x".repeat(MAX_EXTENSION_LEN); MAX_EXTENSIONS])
    );
    assert_eq!(join_with(texts(MAX_EXTENSIONS + 1, 1)), refused);
    assert_eq!(join_with(texts(1, MAX_EXTENSION_LEN + 1)), refused);
    assert_eq!(join_with(t(EXT_CHANGED_DOCS)), refused);
    assert_eq!(join_with(Value::Bool(true)), refused);
    assert_eq!(
        join_with(Value::Array(vec![
            t(EXT_CHANGED_DOCS),
            Value::Integer(1.into())
        ])),
        refused
    );
    assert_eq!(join_with(Value::Array(vec![Value::Null])), refused);

    // The error text states the limits the decoder applies.
    let expected = decode::EXPECTED_EXTENSIONS;
    assert!(expected.contains(&format!("at most {MAX_EXTENSIONS} text strings")));
    assert!(expected.contains(&format!("at most {MAX_EXTENSION_LEN} bytes")));
}

#[test]
fn changed_docs_messages_follow_the_repo_message_layout() {
    // `type`, `targetId`, the payload, then `senderId`, as a repo message sent through
    // NetworkSubsystem would be written.
    let mut request = vec![0xb9, 0x00, 0x03];
    request.extend(text("type"));
    request.extend(text("lianxin-changed-docs-request"));
    request.extend(text("targetId"));
    request.extend(text("server"));
    request.extend(text("senderId"));
    request.extend(text("client"));
    let message = Message::ChangedDocsRequest {
        sender_id: peer("client"),
        target_id: peer("server"),
    };
    assert_eq!(message.encode(), request);
    assert_eq!(Message::decode(&request), Ok(message));

    let mut answer = vec![0xb9, 0x00, 0x04];
    answer.extend(text("type"));
    answer.extend(text("lianxin-changed-docs"));
    answer.extend(text("targetId"));
    answer.extend(text("client"));
    answer.extend(text("documentIds"));
    answer.push(0x82); // an array of two
    answer.extend(text(DOC));
    answer.extend(text(&other_doc().to_string()));
    answer.extend(text("senderId"));
    answer.extend(text("server"));
    let message = Message::ChangedDocs {
        sender_id: peer("server"),
        target_id: peer("client"),
        document_ids: vec![doc(), other_doc()],
    };
    assert_eq!(message.encode(), answer);
    assert_eq!(Message::decode(&answer), Ok(message));
}

#[test]
fn area_batch_lists_must_match() {
    use ciborium::Value;
    let batch = |ids: Vec<Value>, documents: Value| {
        Message::decode(&cbor(&map(vec![
            ("type", t("lianxin-area-batch")),
            ("senderId", t("s")),
            ("targetId", t("c")),
            ("documentIds", Value::Array(ids)),
            ("documents", documents),
            ("cursor", t("1:0:3:")),
        ])))
    };
    // One document without its bytes is refused, not paired with the wrong bytes.
    assert_eq!(
        batch(
            vec![t(DOC), t(&other_doc().to_string())],
            Value::Array(vec![Value::Bytes(vec![1])])
        ),
        Err(DecodeError::InvalidField {
            field: "documents",
            expected: "an array of byte strings, one for each entry of `documentIds`",
        })
    );
    assert!(matches!(
        batch(vec![t(DOC)], Value::Array(vec![t("not bytes")])),
        Err(DecodeError::InvalidField {
            field: "documents",
            ..
        })
    ));
    // `complete` may be left out, and then is false.
    assert_eq!(
        batch(vec![t(DOC)], Value::Array(vec![Value::Bytes(vec![1, 2])])),
        Ok(Message::AreaBatch {
            sender_id: peer("s"),
            target_id: peer("c"),
            documents: vec![(doc(), vec![1, 2])],
            cursor: "1:0:3:".into(),
            complete: false,
        })
    );
}

#[test]
fn changed_docs_fields_are_checked() {
    use ciborium::Value;
    let changed_docs = |document_ids: Option<Value>| {
        let mut fields = vec![
            ("type", t("lianxin-changed-docs")),
            ("senderId", t("s")),
            ("targetId", t("c")),
        ];
        fields.extend(document_ids.map(|ids| ("documentIds", ids)));
        Message::decode(&cbor(&map(fields)))
    };

    assert_eq!(
        changed_docs(Some(Value::Array(vec![t(DOC)]))),
        Ok(Message::ChangedDocs {
            sender_id: peer("s"),
            target_id: peer("c"),
            document_ids: vec![doc()],
        })
    );
    assert_eq!(
        changed_docs(None),
        Err(DecodeError::MissingField {
            field: "documentIds"
        })
    );
    assert_eq!(
        changed_docs(Some(t(DOC))),
        Err(DecodeError::InvalidField {
            field: "documentIds",
            expected: "an array"
        })
    );
    assert_eq!(
        changed_docs(Some(Value::Array(vec![t(DOC), Value::Bytes(vec![1])]))),
        Err(DecodeError::InvalidField {
            field: "documentIds",
            expected: "a text string"
        })
    );
    assert_eq!(
        changed_docs(Some(Value::Array(vec![t(DOC), t("automerge:nope")]))),
        Err(DecodeError::InvalidDocumentId {
            field: "documentIds",
            source: DocumentIdError::WrongLength { len: 3 }
        })
    );
    // The IDs are bs58check strings: a changed character fails the checksum.
    let mut corrupted = DOC.to_owned();
    corrupted.replace_range(0..1, "5");
    assert!(matches!(
        changed_docs(Some(Value::Array(vec![t(&corrupted)]))),
        Err(DecodeError::InvalidDocumentId {
            field: "documentIds",
            ..
        })
    ));

    let request = |fields: Vec<(&str, Value)>| Message::decode(&cbor(&map(fields)));
    assert_eq!(
        request(vec![
            ("type", t("lianxin-changed-docs-request")),
            ("senderId", t("c")),
        ]),
        Err(DecodeError::MissingField { field: "targetId" })
    );
    assert_eq!(
        request(vec![
            ("type", t("lianxin-changed-docs-request")),
            ("senderId", t("c")),
            ("targetId", t("s")),
            ("documentIds", Value::Array(vec![])),
        ]),
        Ok(Message::ChangedDocsRequest {
            sender_id: peer("c"),
            target_id: peer("s"),
        })
    );
}

/// The start of a `lianxin-changed-docs` message whose last entry is `documentIds`, without its
/// value.
fn changed_docs_prefix() -> Vec<u8> {
    let mut b = vec![0xa4];
    b.extend(text("type"));
    b.extend(text("lianxin-changed-docs"));
    b.extend(text("senderId"));
    b.extend(text("s"));
    b.extend(text("targetId"));
    b.extend(text("c"));
    b.extend(text("documentIds"));
    b
}

#[test]
fn huge_document_id_lists_fail_without_allocating() {
    // Arrays that claim 2^64 - 1 and 2^32 - 1 IDs, followed by a single one.
    for header in [
        &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
        &[0x9a, 0xff, 0xff, 0xff, 0xff],
    ] {
        let mut b = changed_docs_prefix();
        b.extend(header);
        b.extend(text(DOC));
        assert_eq!(Message::decode(&b), Err(DecodeError::Truncated));
    }
}

#[test]
fn document_id_lists_longer_than_the_limit_are_refused() {
    // One item more than allowed. The items need not be IDs, since the length is checked first;
    // one-byte integers keep the input at about a megabyte.
    let len = u32::try_from(MAX_CHANGED_DOCS + 1).unwrap();
    let mut b = changed_docs_prefix();
    b.push(0x9a);
    b.extend(len.to_be_bytes());
    b.extend(std::iter::repeat_n(0x00, MAX_CHANGED_DOCS + 1));
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::InvalidField {
            field: "documentIds",
            expected: decode::EXPECTED_DOCUMENT_IDS
        })
    );
    assert!(decode::EXPECTED_DOCUMENT_IDS.contains(&format!("at most {MAX_CHANGED_DOCS} ")));
}

/// A CBOR head of major type `major` with argument `arg`, in the shortest form.
fn head(major: u8, arg: u64) -> Vec<u8> {
    let major = major << 5;
    match arg {
        0..24 => vec![major | arg as u8],
        24..0x100 => vec![major | 24, arg as u8],
        0x100..0x1_0000 => [&[major | 25][..], &(arg as u16).to_be_bytes()].concat(),
        0x1_0000..0x1_0000_0000 => [&[major | 26][..], &(arg as u32).to_be_bytes()].concat(),
        _ => [&[major | 27][..], &arg.to_be_bytes()].concat(),
    }
}

/// A definite-length map of already encoded keys and values.
fn raw_map(entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = head(5, entries.len() as u64);
    for (key, value) in entries {
        out.extend(key);
        out.extend(value);
    }
    out
}

/// An indefinite-length byte (`major` 2) or text (3) string made of `chunks`.
fn chunked(major: u8, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![(major << 5) | 31];
    for chunk in chunks {
        out.extend(head(major, chunk.len() as u64));
        out.extend(*chunk);
    }
    out.push(0xff);
    out
}

/// The entries of a `sync` message from `c` to `s` about [`DOC`] with data `[1]`.
fn sync_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (text("type"), text("sync")),
        (text("senderId"), text("c")),
        (text("targetId"), text("s")),
        (text("documentId"), text(DOC)),
        (text("data"), vec![0x41, 0x01]),
    ]
}

fn small_sync(data: Vec<u8>) -> Message {
    Message::Sync {
        sender_id: peer("c"),
        target_id: peer("s"),
        document_id: doc(),
        data,
    }
}

#[test]
fn huge_declared_lengths_anywhere_are_truncated() {
    for arg in [1 << 63, u64::MAX] {
        for (what, item) in [
            ("array", head(4, arg)),
            ("map", head(5, arg)),
            ("byte string", head(2, arg)),
            ("text string", head(3, arg)),
            ("byte chunk", [vec![0x5f], head(2, arg)].concat()),
            ("text chunk", [vec![0x7f], head(3, arg)].concat()),
            (
                "tagged byte string",
                [vec![0xd8, 64], head(2, arg)].concat(),
            ),
        ] {
            let frame = [item.clone(), vec![0; 4]].concat();
            assert_eq!(
                Message::decode(&frame),
                Err(DecodeError::Truncated),
                "{what} as the frame"
            );
            // Under a key the decoder skips and under keys it reads, with the rest of a valid
            // message after it.
            for key in ["somethingNew", "type", "senderId", "data", "documentIds"] {
                let mut entries = sync_entries();
                entries.insert(1, (text(key), item.clone()));
                assert_eq!(
                    Message::decode(&raw_map(&entries)),
                    Err(DecodeError::Truncated),
                    "{what} under {key}"
                );
            }
        }
    }
}

#[test]
fn indefinite_lengths_and_chunked_strings_read_like_definite_ones() {
    // An indefinite-length map with keys, IDs and data in chunks. One chunk of the data is
    // itself chunked, which is not standard CBOR but which ciborium accepted, so we still do.
    let doc_text = DOC.as_bytes();
    let mut b = vec![0xbf];
    b.extend(text("type"));
    b.extend(chunked(3, &[b"sy", b"", b"nc"]));
    b.extend(chunked(3, &[b"sender", b"Id"]));
    b.extend(text("client-1"));
    b.extend(text("targetId"));
    b.extend(chunked(3, &[b"server"]));
    b.extend(text("documentId"));
    b.extend(chunked(3, &[&doc_text[..5], &doc_text[5..]]));
    b.extend(text("data"));
    b.extend([0x5f, 0x42, 1, 2, 0x5f, 0x41, 3, 0xff, 0x40, 0xff]);
    b.push(0xff);
    assert_eq!(
        Message::decode(&b),
        Ok(Message::Sync {
            sender_id: peer("client-1"),
            target_id: peer("server"),
            document_id: doc(),
            data: vec![1, 2, 3],
        })
    );

    // Indefinite-length arrays and nested maps.
    let meta = [
        vec![0xbf],
        text("lianxinExtensions"),
        vec![0x9f],
        chunked(3, &[b"lianxin/", b"changed-docs/1"]),
        vec![0xff],
        text("isEphemeral"),
        vec![0xf5],
        vec![0xff],
    ]
    .concat();
    let join = raw_map(&[
        (text("type"), text("join")),
        (text("senderId"), text("c")),
        (
            text("supportedProtocolVersions"),
            [vec![0x9f], text("1"), chunked(3, &[b"2"]), vec![0xff]].concat(),
        ),
        (text("peerMetadata"), meta),
    ]);
    assert_eq!(
        Message::decode(&join),
        Ok(Message::Join {
            sender_id: peer("c"),
            supported_protocol_versions: vec!["1".into(), "2".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
                extensions: vec![EXT_CHANGED_DOCS.into()],
            }),
        })
    );

    let mut b = changed_docs_prefix();
    b.extend([vec![0x9f], text(DOC), text(DOC), vec![0xff]].concat());
    assert_eq!(
        Message::decode(&b),
        Ok(Message::ChangedDocs {
            sender_id: peer("s"),
            target_id: peer("c"),
            document_ids: vec![doc(), doc()],
        })
    );
}

#[test]
fn values_under_unknown_keys_are_skipped_whatever_they_hold() {
    let others: Vec<Vec<u8>> = vec![
        // Nested as deep as allowed: the message map is one level of MAX_DEPTH.
        [vec![0x81; MAX_DEPTH - 1], vec![0x00]].concat(),
        [[0xa1, 0x00].repeat(MAX_DEPTH - 1), vec![0x00]].concat(),
        [vec![0xc6; MAX_DEPTH - 1], vec![0x00]].concat(),
        // Bignums (tags 2 and 3 around at most 16 bytes) are numbers, not levels.
        [vec![0x81; MAX_DEPTH - 1], vec![0xc2, 0x41, 0x01]].concat(),
        vec![
            0xc3, 0x50, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        // Every kind of scalar, in every width.
        [
            &[0x9f, 0x1b, 0, 0, 0, 0, 0, 0, 0, 1][..],
            &[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[
                0xf9, 0x7e, 0x00, 0xfa, 0, 0, 0, 0, 0xf8, 0x14, 0xf8, 0x17, 0xff,
            ],
        ]
        .concat(),
        chunked(2, &[b"ab", b"", b"c"]),
        chunked(3, &["é".as_bytes(), "𝄞".as_bytes()]),
        // An indefinite-length map with non-text keys.
        vec![0xbf, 0x00, 0x01, 0x40, 0xf6, 0x80, 0xa0, 0xff],
    ];
    for other in others {
        let mut entries = sync_entries();
        entries.insert(2, (text("other"), other.clone()));
        assert_eq!(
            Message::decode(&raw_map(&entries)),
            Ok(small_sync(vec![1])),
            "{other:02x?}"
        );
    }
}

#[test]
fn malformed_cbor_anywhere_is_reported_before_anything_about_the_fields() {
    // An unknown type and an invalid sender come first, then the problem.
    let entries = vec![(text("type"), text("gossip")), (text("senderId"), text(""))];
    let malformed = DecodeError::Malformed(String::new());
    let too_deep: Vec<u8> = [vec![0x81; MAX_DEPTH], vec![0x00]].concat();
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("bad UTF-8", vec![0x62, 0xc3, 0x28], malformed.clone()),
        (
            "bad UTF-8 in a chunk",
            chunked(3, &[b"a", &[0xc3]]),
            malformed.clone(),
        ),
        (
            "an unassigned simple value",
            vec![0xf8, 0x10],
            malformed.clone(),
        ),
        ("a reserved length encoding", vec![0x1c], malformed.clone()),
        (
            "an indefinite-length integer",
            vec![0x1f],
            malformed.clone(),
        ),
        (
            "a text chunk in a byte string",
            vec![0x5f, 0x61, b'a', 0xff],
            malformed.clone(),
        ),
        ("a stray break", vec![0xff], malformed.clone()),
        (
            "a break where a value belongs",
            vec![0xbf, 0x00, 0xff],
            malformed.clone(),
        ),
        (
            "a negative bignum beyond 128 bits",
            [vec![0xc3, 0x50], vec![0xff; 16]].concat(),
            malformed.clone(),
        ),
        ("nesting beyond the limit", too_deep, DecodeError::TooDeep),
        (
            "a missing array item",
            vec![0x82, 0x00],
            DecodeError::Truncated,
        ),
        // The tagged item is read before the tag counts as a level, as ciborium did.
        (
            "a tag at the limit, then nothing",
            vec![0xc6; MAX_DEPTH],
            DecodeError::Truncated,
        ),
    ];
    for (what, problem, expected) in cases {
        let mut with_problem = entries.clone();
        with_problem.push((text("later"), problem));
        let result = Message::decode(&raw_map(&with_problem));
        match (&result, &expected) {
            (Err(DecodeError::Malformed(_)), DecodeError::Malformed(_)) => {}
            _ => assert_eq!(result, Err(expected), "{what}"),
        }
    }
    let mut trailing = raw_map(&entries);
    trailing.push(0x00);
    assert_eq!(
        Message::decode(&trailing),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
}

#[test]
fn bad_utf8_in_a_long_text_is_found_in_the_first_4_kib_even_when_the_frame_is_cut_short() {
    // ciborium checked long text 4 KiB at a time; the decoder reports the same errors, so a
    // text claiming 10 000 bytes but cut off at 5 000 is malformed if its first 4 KiB are bad,
    // and truncated if they are fine.
    for (bad_at, expected) in [(10, "malformed"), (4_500, "truncated")] {
        let mut content = vec![b'x'; 5_000];
        content[bad_at] = 0xff;
        let mut entries = sync_entries();
        entries.push((text("other"), [head(3, 10_000), content].concat()));
        let result = Message::decode(&raw_map(&entries));
        let got = match result {
            Err(DecodeError::Malformed(_)) => "malformed",
            Err(DecodeError::Truncated) => "truncated",
            _ => "something else",
        };
        assert_eq!(got, expected, "bad byte at {bad_at}");
    }
}

#[test]
fn counts_may_use_any_cbor_encoding_of_a_safe_whole_number() {
    let ephemeral = |count: Vec<u8>| {
        Message::decode(&raw_map(&[
            (text("type"), text("ephemeral")),
            (text("senderId"), text("c")),
            (text("targetId"), text("s")),
            (text("documentId"), text(DOC)),
            (text("sessionId"), text("x")),
            (text("count"), count),
            (text("data"), vec![0x40]),
        ]))
        .map(|message| match message {
            Message::Ephemeral { count, .. } => count,
            other => panic!("decoded as {other:?}"),
        })
    };
    let max_safe = (1u64 << 53) - 1;
    let accepted: Vec<(Vec<u8>, u64)> = vec![
        (vec![0x18, 0x05], 5), // a needlessly long encoding
        (vec![0x1b, 0, 0, 0, 0, 0, 0, 0, 7], 7),
        (vec![0xf9, 0x42, 0x00], 3),                   // float16 3.0
        (vec![0xfa, 0x4f, 0x80, 0x00, 0x00], 1 << 32), // float32 2^32
        (
            [vec![0xfb], (max_safe as f64).to_be_bytes().to_vec()].concat(),
            max_safe,
        ),
        (vec![0xc2, 0x42, 0x01, 0x00], 256), // a bignum, which ciborium read as an integer
        ([vec![0xc2, 0x50], vec![0; 15], vec![9]].concat(), 9),
    ];
    for (bytes, expected) in accepted {
        assert_eq!(ephemeral(bytes.clone()), Ok(expected), "{bytes:02x?}");
    }
    let refused: Vec<Vec<u8>> = vec![
        vec![0x20], // -1
        [vec![0x1b], (max_safe + 1).to_be_bytes().to_vec()].concat(),
        vec![0xc2, 0x47, 0x20, 0, 0, 0, 0, 0, 0], // 2^53 as a bignum
        [vec![0xc2, 0x51], vec![0; 16], vec![1]].concat(), // a bignum of 17 bytes is not a number
        vec![0xc3, 0x41, 0x00],                   // -1 as a bignum
        vec![0xc6, 0x05],                         // another tag around 5
        vec![0xf9, 0x7e, 0x00],                   // NaN
        vec![0xf9, 0x3e, 0x00],                   // 1.5
        text("5"),
    ];
    for bytes in refused {
        assert_eq!(
            ephemeral(bytes.clone()),
            Err(DecodeError::InvalidField {
                field: "count",
                expected: "a whole number from 0 to 2^53 - 1"
            }),
            "{bytes:02x?}"
        );
    }
}

#[test]
fn half_precision_floats_are_read_exactly_as_ciborium_reads_them() {
    for bits in 0..=u16::MAX {
        let [high, low] = bits.to_be_bytes();
        let value: ciborium::Value = ciborium::from_reader(&[0xf9, high, low][..]).unwrap();
        let ciborium::Value::Float(expected) = value else {
            panic!("{bits:#06x} read as {value:?}");
        };
        let got = decode::f16_to_f64(bits);
        assert!(
            got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan()),
            "{bits:#06x}: {got} instead of {expected}"
        );
    }
}

#[test]
fn both_encodings_of_simple_values_are_read() {
    // `0xf8 n` is a longer encoding of the simple values below 24; ciborium read it as the same
    // value.
    let meta = raw_map(&[
        (text("storageId"), vec![0xf8, 0x17]),
        (text("isEphemeral"), vec![0xf8, 0x15]),
    ]);
    let join = raw_map(&[
        (text("type"), text("join")),
        (text("senderId"), text("c")),
        (text("peerMetadata"), meta),
        (text("supportedProtocolVersions"), vec![0xf8, 0x16]),
    ]);
    assert_eq!(
        Message::decode(&join),
        Ok(Message::Join {
            sender_id: peer("c"),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: true,
                extensions: vec![],
            }),
        })
    );
}

#[test]
fn the_last_of_duplicate_keys_counts() {
    let with = |extra: Vec<(Vec<u8>, Vec<u8>)>| {
        let mut entries = sync_entries();
        entries.extend(extra);
        Message::decode(&raw_map(&entries))
    };
    assert_eq!(
        with(vec![(text("data"), vec![0x42, 9, 9])]),
        Ok(small_sync(vec![9, 9]))
    );
    // A key in chunks is the same key.
    assert_eq!(
        with(vec![(chunked(3, &[b"da", b"ta"]), vec![0x41, 8])]),
        Ok(small_sync(vec![8]))
    );
    // Null or undefined last means absent, whatever came before.
    assert_eq!(
        with(vec![(text("senderId"), vec![0xf6])]),
        Err(DecodeError::MissingField { field: "senderId" })
    );
    // A tagged text key, a byte string key and a longer key are other keys.
    assert_eq!(
        with(vec![
            ([vec![0xc6], text("data")].concat(), vec![0x41, 7]),
            ([vec![0x44], b"data".to_vec()].concat(), vec![0x41, 7]),
            (text(&format!("data{}", " ".repeat(40))), vec![0x41, 7]),
        ]),
        Ok(small_sync(vec![1]))
    );
}

fn arb_peer_id() -> impl Strategy<Value = PeerId> + Clone {
    "[a-zA-Z0-9_ -]{1,40}".prop_map(|s| PeerId::new(s).unwrap())
}

fn arb_storage_id() -> impl Strategy<Value = StorageId> + Clone {
    "[a-f0-9-]{1,36}".prop_map(|s| StorageId::new(s).unwrap())
}

fn arb_document_id() -> impl Strategy<Value = DocumentId> + Clone {
    any::<[u8; 16]>().prop_map(DocumentId::from_bytes)
}

fn arb_metadata() -> impl Strategy<Value = Option<PeerMetadata>> {
    let extensions = prop_oneof![
        Just(vec![]),
        proptest::collection::vec(".{0,16}", 1..4),
        proptest::collection::vec("[a-z0-9/-]{64}", MAX_EXTENSIONS),
    ];
    proptest::option::of(
        (
            proptest::option::of(arb_storage_id()),
            any::<bool>(),
            extensions,
        )
            .prop_map(|(storage_id, is_ephemeral, extensions)| PeerMetadata {
                storage_id,
                is_ephemeral,
                extensions,
            }),
    )
}

/// Whole numbers that survive the trip through a JavaScript number.
fn arb_js_whole() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..100, 0u64..=u64::from(u32::MAX), 0u64..(1 << 53)]
}

fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..300)
}

fn arb_message() -> impl Strategy<Value = Message> {
    let ids = (arb_peer_id(), arb_peer_id(), arb_document_id());
    prop_oneof![
        (
            arb_peer_id(),
            proptest::collection::vec("[0-9]{1,3}", 0..3),
            arb_metadata()
        )
            .prop_map(|(sender_id, versions, peer_metadata)| Message::Join {
                sender_id,
                supported_protocol_versions: versions,
                peer_metadata,
            }),
        (arb_peer_id(), arb_peer_id(), "[0-9]{1,3}", arb_metadata()).prop_map(
            |(sender_id, target_id, version, peer_metadata)| Message::Peer {
                sender_id,
                target_id,
                selected_protocol_version: version,
                peer_metadata,
            }
        ),
        arb_peer_id().prop_map(|sender_id| Message::Leave { sender_id }),
        (ids.clone(), arb_bytes()).prop_map(|((s, t, d), data)| Message::Request {
            sender_id: s,
            target_id: t,
            document_id: d,
            data,
        }),
        (ids.clone(), arb_bytes()).prop_map(|((s, t, d), data)| Message::Sync {
            sender_id: s,
            target_id: t,
            document_id: d,
            data,
        }),
        ids.clone().prop_map(|(s, t, d)| Message::DocUnavailable {
            sender_id: s,
            target_id: t,
            document_id: d,
        }),
        (ids.clone(), ".{0,20}", arb_js_whole(), arb_bytes()).prop_map(
            |((s, t, d), session_id, count, data)| Message::Ephemeral {
                sender_id: s,
                target_id: t,
                document_id: d,
                session_id,
                count,
                data,
            }
        ),
        (
            arb_peer_id(),
            proptest::option::of(arb_peer_id()),
            ".{0,80}"
        )
            .prop_map(|(sender_id, target_id, message)| Message::Error {
                sender_id,
                target_id,
                message,
            }),
        (
            arb_peer_id(),
            arb_peer_id(),
            proptest::collection::vec(arb_storage_id(), 0..4),
            proptest::collection::vec(arb_storage_id(), 0..4)
        )
            .prop_map(|(sender_id, target_id, add, remove)| {
                Message::RemoteSubscriptionChange {
                    sender_id,
                    target_id,
                    add,
                    remove,
                }
            }),
        (
            ids,
            proptest::collection::vec(
                (
                    arb_storage_id(),
                    proptest::collection::vec("[1-9A-HJ-NP-Za-km-z]{40,50}", 0..3),
                    arb_js_whole()
                ),
                0..4
            )
        )
            .prop_map(|((s, t, d), heads)| Message::RemoteHeadsChanged {
                sender_id: s,
                target_id: t,
                document_id: d,
                new_heads: heads
                    .into_iter()
                    .map(|(id, heads, timestamp)| (id, RemoteHeads { heads, timestamp }))
                    .collect(),
            }),
        (arb_peer_id(), arb_peer_id()).prop_map(|(sender_id, target_id)| {
            Message::ChangedDocsRequest {
                sender_id,
                target_id,
            }
        }),
        (
            arb_peer_id(),
            arb_peer_id(),
            proptest::collection::vec(arb_document_id(), 0..20)
        )
            .prop_map(
                |(sender_id, target_id, document_ids)| Message::ChangedDocs {
                    sender_id,
                    target_id,
                    document_ids,
                }
            ),
    ]
}

/// Every `type` the decoder knows.
const TYPE_NAMES: [&str; 12] = [
    "join",
    "peer",
    "leave",
    "request",
    "sync",
    "doc-unavailable",
    "ephemeral",
    "error",
    "remote-subscription-change",
    "remote-heads-changed",
    "lianxin-changed-docs-request",
    "lianxin-changed-docs",
];

/// Every key some message or nested map has.
const KEYS: [&str; 20] = [
    "type",
    "senderId",
    "targetId",
    "documentId",
    "documentIds",
    "data",
    "peerMetadata",
    "storageId",
    "isEphemeral",
    "lianxinExtensions",
    "supportedProtocolVersions",
    "selectedProtocolVersion",
    "sessionId",
    "count",
    "message",
    "add",
    "remove",
    "newHeads",
    "heads",
    "timestamp",
];

/// A key some message or nested map has, with the Lianxin ones (which the fuzzers had never fed)
/// as likely as all others together.
fn arb_key() -> impl Strategy<Value = &'static str> + Clone {
    prop_oneof![
        prop::sample::select(&KEYS[1..]),
        prop::sample::select(&["documentIds", "peerMetadata", "lianxinExtensions"][..]),
    ]
}

/// Any small CBOR value, with text that is often a valid ID or extension name, lists of such
/// text, and maps keyed like messages.
fn arb_cbor() -> impl Strategy<Value = ciborium::Value> {
    use ciborium::Value;
    let text = prop_oneof![
        Just(DOC.to_owned()),
        Just(EXT_CHANGED_DOCS.to_owned()),
        "[1-9A-HJ-NP-Za-km-z]{0,30}",
        ".{0,70}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Integer(n.into())),
        any::<f64>().prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
        text.clone().prop_map(Value::Text),
        proptest::collection::vec(text.prop_map(Value::Text), 0..40).prop_map(Value::Array),
        // Lists that are valid, or nearly, for `documentIds` and `lianxinExtensions`.
        proptest::collection::vec(arb_document_id().prop_map(|id| t(&id.to_string())), 0..40)
            .prop_map(Value::Array),
        proptest::collection::vec("[a-z0-9/-]{0,70}".prop_map(|s| t(&s)), 0..40)
            .prop_map(Value::Array),
    ];
    leaf.prop_recursive(3, 40, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((arb_key(), inner), 0..5).prop_map(|entries| {
                Value::Map(entries.into_iter().map(|(k, v)| (t(k), v)).collect())
            }),
        ]
    })
}

/// A map with a known `type`, usually valid `senderId` and `targetId` (the decoder reads them
/// first, so without them it would never look further), and random values under the other keys
/// messages use, which reaches every field decoder with every CBOR type.
fn arb_message_shaped() -> impl Strategy<Value = Vec<u8>> {
    let id = prop_oneof![
        4 => "[a-z]{1,8}".prop_map(|s| t(&s)),
        1 => arb_cbor(),
    ];
    (
        prop::sample::select(&TYPE_NAMES[..]),
        id.clone(),
        id,
        proptest::collection::vec((arb_key(), arb_cbor()), 0..6),
    )
        .prop_map(|(type_name, sender_id, target_id, fields)| {
            let mut entries = vec![
                ("type", t(type_name)),
                ("senderId", sender_id),
                ("targetId", target_id),
            ];
            entries.extend(fields);
            cbor(&map(entries))
        })
}

/// A valid encoding with a few bytes overwritten, inserted or cut, which reaches much deeper into
/// the decoder than uniformly random bytes do.
fn arb_mutated_encoding() -> impl Strategy<Value = Vec<u8>> {
    (
        arb_message(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
    )
        .prop_map(|(message, edits)| {
            let mut bytes = message.encode();
            for (at, byte, kind) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    2 => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_messages_round_trip(message in arb_message()) {
        prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
    }

    #[test]
    fn decode_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_random_fields(bytes in arb_message_shaped()) {
        if let Ok(message) = Message::decode(&bytes) {
            prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn decode_never_panics_on_mutated_messages(bytes in arb_mutated_encoding()) {
        if let Ok(message) = Message::decode(&bytes) {
            // Whatever we accept, we can write back and read again to the same message.
            prop_assert_eq!(Message::decode(&message.encode()), Ok(message));
        }
    }

    #[test]
    fn document_id_parse_never_panics(s in ".{0,80}") {
        let _ = s.parse::<DocumentId>();
        let _ = format!("automerge:{s}").parse::<DocumentId>();
    }

    #[test]
    fn document_id_parse_of_base58_noise_never_panics(s in "[1-9A-HJ-NP-Za-km-z]{0,40}") {
        if let Ok(id) = s.parse::<DocumentId>() {
            prop_assert_eq!(id.to_string(), s);
        }
    }
}

/// What ciborium's parser makes of `bytes` as one CBOR item: `None` if it reads them to the end,
/// else the error [`Message::decode`] must give too. The decoder reads CBOR itself but accepts
/// exactly what ciborium accepts, so that no frame a peer could send before is refused now.
fn ciborium_verdict(bytes: &[u8]) -> Option<DecodeError> {
    let mut rest = bytes;
    let parsed =
        ciborium::de::from_reader_with_recursion_limit::<ciborium::Value, _>(&mut rest, MAX_DEPTH);
    match parsed {
        Ok(_) if rest.is_empty() => None,
        Ok(_) => Some(DecodeError::TrailingBytes { count: rest.len() }),
        Err(ciborium::de::Error::Io(_)) => Some(DecodeError::Truncated),
        Err(ciborium::de::Error::RecursionLimitExceeded) => Some(DecodeError::TooDeep),
        Err(_) => Some(DecodeError::Malformed(String::new())),
    }
}

/// The part of a decoding result that is about the CBOR rather than the message, with the
/// wording of `Malformed` left out.
fn cbor_error(result: &Result<Message, DecodeError>) -> Option<DecodeError> {
    match result {
        Err(DecodeError::Malformed(_)) => Some(DecodeError::Malformed(String::new())),
        Err(
            e @ (DecodeError::Truncated | DecodeError::TooDeep | DecodeError::TrailingBytes { .. }),
        ) => Some(e.clone()),
        _ => None,
    }
}

/// Short runs of CBOR pieces chosen to meet every rule of the parser: indefinite lengths and
/// breaks, chunked strings, bad UTF-8, bignums, tags, both encodings of simple values, reserved
/// encodings, huge lengths, and keys messages use.
fn arb_cbor_pieces() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        &[0xa1],
        &[0xa2],
        &[0xb9, 0x00, 0x02],
        &[0xbf],
        &[0x81],
        &[0x82],
        &[0x9f],
        &[0xff],
        &[0x5f],
        &[0x7f],
        &[0x40],
        &[0x42, 0x01, 0x02],
        &[0x60],
        &[0x61, b'a'],
        &[0x62, 0xc3, 0xa9],
        &[0x61, 0xc3],
        &[0x61, 0xa9],
        &[0x61, 0xff],
        &[0xc2],
        &[0xc3],
        &[0xc2, 0x41, 0x01],
        &[
            0xc3, 0x50, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
        &[0xc6],
        &[0xd8, 0x40],
        &[0x00],
        &[0x17],
        &[0x18, 0x18],
        &[0x20],
        &[0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0xf4],
        &[0xf6],
        &[0xf7],
        &[0xf8, 0x14],
        &[0xf8, 0x17],
        &[0xf8, 0x10],
        &[0xe0],
        &[0xf9, 0x3c, 0x00],
        &[0xfa, 0x4f, 0x80, 0x00, 0x00],
        &[0xfb, 0x41, 0xf2, 0xa0, 0x5f, 0x20, 0, 0, 0],
        &[0x1c],
        &[0x1f],
        &[0x3f],
        &[0xdf],
        &[0x9b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x5b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        &[0x64, b't', b'y', b'p', b'e'],
        &[0x64, b's', b'y', b'n', b'c'],
        &[0x64, b'd', b'a', b't', b'a'],
        &[0x68, b's', b'e', b'n', b'd', b'e', b'r', b'I', b'd'],
    ];
    proptest::collection::vec(prop::sample::select(PIECES), 0..40)
        .prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn cbor_errors_match_ciborium_on_cbor_pieces(bytes in arb_cbor_pieces()) {
        prop_assert_eq!(cbor_error(&Message::decode(&bytes)), ciborium_verdict(&bytes));
    }

    #[test]
    fn cbor_errors_match_ciborium_on_random_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        prop_assert_eq!(cbor_error(&Message::decode(&bytes)), ciborium_verdict(&bytes));
    }

    #[test]
    fn cbor_errors_match_ciborium_on_mutated_messages(bytes in arb_mutated_encoding()) {
        prop_assert_eq!(cbor_error(&Message::decode(&bytes)), ciborium_verdict(&bytes));
    }

    #[test]
    fn cbor_errors_match_ciborium_on_random_fields(bytes in arb_message_shaped()) {
        prop_assert_eq!(cbor_error(&Message::decode(&bytes)), ciborium_verdict(&bytes));
    }
}
