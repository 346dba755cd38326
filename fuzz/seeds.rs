//! Writes the seed corpora under `fuzz/corpus/<target>/`: a few valid inputs per target, so the
//! fuzzers start from real messages, sync exchanges and documents rather than from nothing.
//!
//! Run from the repository root (it is not a fuzz target, and is built without instrumentation):
//!
//! ```sh
//! cargo run --release --manifest-path fuzz/Cargo.toml --features seeds --bin seeds
//! ```
//!
//! It is deterministic (fixed actor IDs and peer IDs, no clock), so rerunning it rewrites the same
//! files. Keep the corpus small: what libFuzzer finds later lives in fuzz/target, not here.

use std::fs;
use std::path::{Path, PathBuf};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ROOT};
use lianxin_fuzz::docs;
use lianxin_protocol::domain::builders::append_request_event;
use lianxin_protocol::domain::{Event, EventKind, Kind};
use lianxin_protocol::{DocumentId, Message, PeerId, PeerMetadata, RemoteHeads, StorageId};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("create corpus dir");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let path = corpus(target).join(name);
    fs::write(&path, bytes).expect("write seed");
    println!("{:>8} {}", bytes.len(), path.display());
}

/// Every message the two sides send while syncing `a` and `b` until both are quiet, in order.
fn exchange(a: &mut Automerge, b: &mut Automerge) -> Vec<Vec<u8>> {
    let mut sa = sync::State::new();
    let mut sb = sync::State::new();
    let mut sent = Vec::new();
    for _ in 0..10 {
        let mut quiet = true;
        if let Some(m) = a.generate_sync_message(&mut sa) {
            let bytes = m.encode();
            b.receive_sync_message(&mut sb, sync::Message::decode(&bytes).unwrap())
                .unwrap();
            sent.push(bytes);
            quiet = false;
        }
        if let Some(m) = b.generate_sync_message(&mut sb) {
            let bytes = m.encode();
            a.receive_sync_message(&mut sa, sync::Message::decode(&bytes).unwrap())
                .unwrap();
            sent.push(bytes);
            quiet = false;
        }
        if quiet {
            break;
        }
    }
    sent
}

/// A deterministic pseudo-random byte string.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn main() {
    // --- sync exchanges --------------------------------------------------------------------
    let server = docs::build(Kind::Request).document().clone();

    // A device that has the request adds an event, and syncs with the server.
    let mut device = AutoCommit::load(&server.save())
        .unwrap()
        .with_actor(ActorId::from([5u8; 16]));
    append_request_event(
        &mut device,
        &Event {
            kind: EventKind::Handling,
            at: docs::T0 + 120_000,
            by: "gw-1".to_owned(),
            device: Some("phone-2".to_owned()),
            note: Some("on my way".to_owned()),
        },
    )
    .unwrap();
    device.commit();
    let mut device = device.document().clone();
    let mut stored = server.clone();
    let update = exchange(&mut device, &mut stored);

    // A device uploads a new document to a server that has nothing: the whole document, with
    // compressed columns, as stock clients do.
    let mut big = docs::build(Kind::Visit).with_actor(ActorId::from([6u8; 16]));
    let _ = big.put(ROOT, "heard", "The stairwell light is broken. ".repeat(40));
    big.commit();
    let mut big = big.document().clone();
    let mut nothing = Automerge::new().with_actor(ActorId::from([7u8; 16]));
    let upload = exchange(&mut big, &mut nothing);

    for (i, m) in update.iter().enumerate() {
        write("sync_session", &format!("update-{i}"), m);
    }
    for (i, m) in upload.iter().enumerate() {
        write("sync_session", &format!("upload-{i}"), m);
    }

    // --- wire messages ---------------------------------------------------------------------
    let client = PeerId::new("client-4f1c9a").unwrap();
    let srv = PeerId::new("lianxin-server-1").unwrap();
    let storage = StorageId::new("3760df37-a4c6-4f66-9ecd-732039a9385d").unwrap();
    let doc_id = DocumentId::from_bytes([0x42; 16]);
    let metadata = PeerMetadata {
        storage_id: Some(storage.clone()),
        is_ephemeral: false,
        extensions: vec![
            lianxin_protocol::EXT_CHANGED_DOCS.to_owned(),
            lianxin_protocol::EXT_AREA_SYNC.to_owned(),
        ],
    };
    let messages = vec![
        (
            "join",
            Message::Join {
                sender_id: client.clone(),
                supported_protocol_versions: vec!["1".to_owned()],
                peer_metadata: Some(metadata.clone()),
            },
        ),
        (
            "peer",
            Message::Peer {
                sender_id: srv.clone(),
                target_id: client.clone(),
                selected_protocol_version: "1".to_owned(),
                peer_metadata: Some(PeerMetadata::default()),
            },
        ),
        (
            "leave",
            Message::Leave {
                sender_id: client.clone(),
            },
        ),
        (
            "request",
            Message::Request {
                sender_id: client.clone(),
                target_id: srv.clone(),
                document_id: doc_id,
                data: upload[0].clone(),
            },
        ),
        (
            "sync",
            Message::Sync {
                sender_id: client.clone(),
                target_id: srv.clone(),
                document_id: doc_id,
                data: update[update.len().min(3) - 1].clone(),
            },
        ),
        (
            "doc-unavailable",
            Message::DocUnavailable {
                sender_id: srv.clone(),
                target_id: client.clone(),
                document_id: doc_id,
            },
        ),
        (
            "ephemeral",
            Message::Ephemeral {
                sender_id: client.clone(),
                target_id: srv.clone(),
                document_id: doc_id,
                session_id: "b1a2".to_owned(),
                count: 7,
                data: vec![0xa1, 0x61, 0x78, 0x01],
            },
        ),
        (
            "error",
            Message::Error {
                sender_id: srv.clone(),
                target_id: Some(client.clone()),
                message: "refused: not allowed".to_owned(),
            },
        ),
        (
            "remote-subscription-change",
            Message::RemoteSubscriptionChange {
                sender_id: client.clone(),
                target_id: srv.clone(),
                add: vec![storage.clone()],
                remove: vec![],
            },
        ),
        (
            "remote-heads-changed",
            Message::RemoteHeadsChanged {
                sender_id: srv.clone(),
                target_id: client.clone(),
                document_id: doc_id,
                new_heads: vec![(
                    storage.clone(),
                    RemoteHeads {
                        heads: vec!["8AhsGJaSaRFjS6SYjkuhdFQtTYMDuMmw3QoBmFzrFY3v".to_owned()],
                        timestamp: 1_772_672_400_123,
                    },
                )],
            },
        ),
        (
            "changed-docs-request",
            Message::ChangedDocsRequest {
                sender_id: client.clone(),
                target_id: srv.clone(),
            },
        ),
        (
            "changed-docs",
            Message::ChangedDocs {
                sender_id: srv.clone(),
                target_id: client.clone(),
                document_ids: vec![doc_id, DocumentId::from_bytes([7; 16])],
            },
        ),
        (
            "area-sync",
            Message::AreaSync {
                sender_id: client.clone(),
                target_id: srv.clone(),
                cursor: Some("1234".to_owned()),
            },
        ),
        (
            "area-batch",
            Message::AreaBatch {
                sender_id: srv.clone(),
                target_id: client.clone(),
                documents: vec![(doc_id, server.save())],
                cursor: "1235".to_owned(),
                complete: true,
            },
        ),
    ];
    for (name, message) in &messages {
        write("message_decode", name, &message.encode());
    }

    // --- chunks ----------------------------------------------------------------------------
    // The first six bytes are the budget, three bytes each, little-endian: 8 MiB inflated,
    // 250,000 operations (the server's defaults).
    let budget = [0x00, 0x00, 0x80, 0x90, 0xd0, 0x03];
    let with_budget = |bytes: &[u8]| [&budget[..], bytes].concat();
    write("chunk_inspect", "document", &with_budget(&server.save()));
    write(
        "chunk_inspect",
        "document-compressed",
        &with_budget(&big.save()),
    );
    write(
        "chunk_inspect",
        "changes",
        &with_budget(&device.save_after(&server.get_heads())),
    );
    let mut compressed = Vec::new();
    for mut change in big.get_changes(&[]) {
        compressed.extend_from_slice(&change.bytes());
    }
    write(
        "chunk_inspect",
        "changes-maybe-compressed",
        &with_budget(&compressed),
    );

    // --- documents built from fuzz bytes -----------------------------------------------------
    // Unstructured takes any bytes; a few lengths of noise give the fuzzer different shapes.
    for (i, len) in [16usize, 64, 256, 1024].into_iter().enumerate() {
        write(
            "schema_validate",
            &format!("noise-{i}"),
            &noise(i as u64 + 1, len),
        );
        write(
            "write_rules",
            &format!("noise-{i}"),
            &noise(i as u64 + 101, len),
        );
    }
}
