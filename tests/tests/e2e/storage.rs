//! The `Store` on its own, against both real backends: the append-only log, compaction, the
//! catch-up read other processes rely on, and sync states.

use lianxin_protocol::DocumentId;
use lianxin_server::storage::{ChunksAfter, PoolConfig, Store};
use lianxin_tests::{Backend, TestDb};
use secrecy::SecretString;

use crate::both_backends;

both_backends!(append_compact_and_reload, sync_states_round_trip);

async fn store(db: &TestDb) -> Store {
    let store = Store::connect(&SecretString::from(db.url.clone()), &PoolConfig::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    // Migrating twice is harmless (every process migrates at start).
    store.migrate().await.unwrap();
    store
}

/// A document with `n` changes, and the incremental chunk of each change.
fn doc_with_changes(n: usize) -> (automerge::Automerge, Vec<Vec<u8>>) {
    use automerge::transaction::Transactable;
    let mut doc = automerge::Automerge::new();
    let mut chunks = Vec::new();
    for i in 0..n {
        let heads = doc.get_heads();
        doc.transact(|tx| tx.put(automerge::ROOT, format!("k{i}"), i as i64))
            .unwrap();
        chunks.push(doc.save_after(&heads));
    }
    (doc, chunks)
}

fn rebuild(stored: &lianxin_server::storage::StoredDocument) -> automerge::Automerge {
    stored.to_automerge().unwrap()
}

async fn append_compact_and_reload(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let id = DocumentId::random();
    assert!(store.load(&id).await.unwrap().is_none());

    let (doc, chunks) = doc_with_changes(10);
    for (i, chunk) in chunks.iter().enumerate() {
        let appended = store
            .append(&id, chunk, Some("u/d"), &untyped())
            .await
            .unwrap();
        assert_eq!(appended.seq, i as i64 + 1, "sequence numbers are dense");
    }
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.last_seq, 10);
    assert_eq!(stored.chunks.len(), 10);
    assert_eq!(rebuild(&stored).get_heads(), doc.get_heads());
    let ChunksAfter::Chunks(after) = store.chunks_after(&id, 7).await.unwrap() else {
        panic!("nothing was compacted yet");
    };
    assert_eq!(
        after.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );

    // Compact up to 6 with a snapshot containing changes 1..=6; 7..=10 stay as chunks.
    let mut upto6 = automerge::Automerge::new();
    for c in &chunks[..6] {
        upto6.load_incremental(c).unwrap();
    }
    store.compact(&id, &upto6.save(), 6).await.unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.chunks.len(), 4);
    // A process that had only up to 5 must load the document again; one at 6 reads on.
    assert_eq!(
        store.chunks_after(&id, 5).await.unwrap(),
        ChunksAfter::Compacted
    );
    let ChunksAfter::Chunks(after) = store.chunks_after(&id, 6).await.unwrap() else {
        panic!("6 is in the snapshot");
    };
    assert_eq!(after.len(), 4);
    assert_eq!(rebuild(&stored).get_heads(), doc.get_heads());

    // An older snapshot never replaces a newer one.
    let mut upto3 = automerge::Automerge::new();
    for c in &chunks[..3] {
        upto3.load_incremental(c).unwrap();
    }
    store.compact(&id, &upto3.save(), 3).await.unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(rebuild(&stored).get_heads(), doc.get_heads());
    assert_eq!(store.count_documents().await.unwrap(), 1);
}

async fn sync_states_round_trip(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = store(&db).await;
    let id = DocumentId::random();
    assert_eq!(store.load_sync_state("u/d", &id).await.unwrap(), None);
    store.save_sync_state("u/d", &id, b"one", 0).await.unwrap();
    store.save_sync_state("u/d", &id, b"two", 0).await.unwrap();
    store
        .save_sync_state("u/other", &id, b"three", 0)
        .await
        .unwrap();
    assert_eq!(
        store.load_sync_state("u/d", &id).await.unwrap().as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        store
            .load_sync_state("u/other", &id)
            .await
            .unwrap()
            .as_deref(),
        Some(&b"three"[..])
    );

    // Which of a device's documents changed since it last held all of them.
    let (_, chunks) = doc_with_changes(3);
    store
        .append(&id, &chunks[0], None, &untyped())
        .await
        .unwrap();
    let other = DocumentId::random();
    store
        .append(&other, &chunks[0], None, &untyped())
        .await
        .unwrap();
    store.save_sync_state("u/d", &id, b"s", 1).await.unwrap();
    store.save_sync_state("u/d", &other, b"s", 1).await.unwrap();
    let mut held: Vec<_> = store
        .device_documents("u/d")
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.id, h.changed))
        .collect();
    held.sort();
    let mut expected = vec![(id, false), (other, false)];
    expected.sort();
    assert_eq!(held, expected);
    store
        .append(&other, &chunks[1], None, &untyped())
        .await
        .unwrap();
    let changed: Vec<_> = store
        .device_documents("u/d")
        .await
        .unwrap()
        .into_iter()
        .filter(|h| h.changed)
        .map(|h| h.id)
        .collect();
    assert_eq!(changed, vec![other]);
    assert!(store.device_documents("nobody").await.unwrap().is_empty());

    // The storage ID is created once and shared.
    let first = store.storage_id().await.unwrap();
    assert_eq!(store.storage_id().await.unwrap(), first);
}

/// The read-model record of a change to an untyped document, as the server writes it.
fn untyped() -> lianxin_server::storage::read_model::ChangeRecord<'static> {
    lianxin_server::storage::read_model::ChangeRecord {
        projected: None,
        author: lianxin_server::storage::read_model::Author {
            user: "u",
            device: Some("d"),
            role: "admin",
        },
        changes: 1,
        client_time: None,
        summary: "test".to_owned(),
    }
}
