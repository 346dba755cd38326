//! Convergence, durability and live fan-out through the real server and client SDK.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc, ScalarValue, Value};
use lianxin_client::{Client, ClientConfig, DocumentId};
use lianxin_tests::{Backend, TestApp, TestDb, spawn_app};

use crate::both_backends;

const WAIT: Duration = Duration::from_secs(10);

both_backends!(
    concurrent_offline_edits_converge,
    restart_loses_nothing_and_resync_moves_only_news,
    live_changes_reach_other_connected_clients,
    documents_leave_memory_when_idle,
);

fn get_str(client: &Client, id: DocumentId, key: &str) -> Option<String> {
    client
        .read(id, |doc| match doc.get(ROOT, key).ok().flatten() {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        })
        .unwrap()
}

/// Loads the document as the server stored it, straight from the database.
async fn stored_doc(app: &TestApp, id: DocumentId) -> automerge::Automerge {
    app.stored_doc(id).await.expect("document stored")
}

async fn connected(app: &TestApp, user: &str) -> Client {
    let client = Client::in_memory(ClientConfig::default()).await.unwrap();
    client
        .connect(
            &app.ws_url(),
            &app.token(user, &format!("{user}-phone")).await,
        )
        .await
        .unwrap();
    client
}

async fn concurrent_offline_edits_converge(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db).await;

    // A records a visit and syncs; B fetches it.
    let a = connected(&app, "secretary-a").await;
    let id = a
        .create(|tx| tx.put(ROOT, "household", "3-2-401").map(|_| ()))
        .await
        .unwrap();
    a.wait_synced(id, WAIT).await.unwrap();
    let b = connected(&app, "secretary-b").await;
    b.fetch(id, WAIT).await.unwrap();
    assert_eq!(get_str(&b, id, "household").as_deref(), Some("3-2-401"));

    // Both go offline (a basement) and edit the same document concurrently.
    a.disconnect().await;
    b.disconnect().await;
    a.change(id, |tx| tx.put(ROOT, "heard", "lift broken").map(|_| ()))
        .await
        .unwrap();
    a.change(id, |tx| tx.put(ROOT, "visitor", "Wang").map(|_| ()))
        .await
        .unwrap();
    b.change(id, |tx| tx.put(ROOT, "visitor", "Li").map(|_| ()))
        .await
        .unwrap();
    b.change(id, |tx| tx.put(ROOT, "request", "fix the lift").map(|_| ()))
        .await
        .unwrap();
    assert_ne!(a.heads(id).unwrap(), b.heads(id).unwrap());

    // Back online: both and the server end with the same heads and content.
    a.connect(
        &app.ws_url(),
        &app.token("secretary-a", "secretary-a-phone").await,
    )
    .await
    .unwrap();
    b.connect(
        &app.ws_url(),
        &app.token("secretary-b", "secretary-b-phone").await,
    )
    .await
    .unwrap();
    a.wait_synced(id, WAIT).await.unwrap();
    b.wait_synced(id, WAIT).await.unwrap();
    // A may have synced before B's changes arrived; it is pushed B's changes live.
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.heads(id).unwrap() != b.heads(id).unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "clients did not converge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = stored_doc(&app, id).await;
    let mut heads_a = a.heads(id).unwrap();
    let mut heads_stored = stored.get_heads();
    heads_a.sort();
    heads_stored.sort();
    assert_eq!(heads_a, heads_stored, "server stored the merged document");
    for key in ["household", "heard", "visitor", "request"] {
        let on_a = get_str(&a, id, key);
        assert!(on_a.is_some(), "{key} survived the merge");
        assert_eq!(on_a, get_str(&b, id, key), "{key} equal on both devices");
    }
    // The concurrent writes to "visitor" resolve to the same winner everywhere.
    let stored_visitor = match stored.get(ROOT, "visitor").unwrap() {
        Some((Value::Scalar(s), _)) => s.to_string(),
        other => panic!("unexpected {other:?}"),
    };
    assert!(stored_visitor.contains(get_str(&a, id, "visitor").unwrap().as_str()));
    app.stop().await;
}

async fn restart_loses_nothing_and_resync_moves_only_news(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db).await;
    let device = connected(&app, "secretary-c").await;
    // A document with some history, so that a full resync would be visibly larger.
    let id = device
        .create(|tx| tx.put(ROOT, "household", "7-1-101").map(|_| ()))
        .await
        .unwrap();
    for batch in 0..5 {
        device
            .change(id, |tx| {
                for i in 0..100 {
                    let note = uuid::Uuid::new_v4().to_string();
                    tx.put(ROOT, format!("note-{batch}-{i}"), note)?;
                }
                Ok(())
            })
            .await
            .unwrap();
    }
    device.wait_synced(id, WAIT).await.unwrap();
    let acknowledged = device.heads(id).unwrap();

    // The server restarts (nothing kept in memory survives).
    app.stop().await;
    device.disconnect().await;
    let app = spawn_app(&db).await;

    // Everything acknowledged before the restart is in the new process's storage.
    let stored = stored_doc(&app, id).await;
    let mut stored_heads = stored.get_heads();
    stored_heads.sort();
    let mut acknowledged = acknowledged;
    acknowledged.sort();
    assert_eq!(stored_heads, acknowledged);

    // One new edit, then reconnect: only that edit moves, not the document's history.
    device
        .change(id, |tx| tx.put(ROOT, "callback", "done").map(|_| ()))
        .await
        .unwrap();
    let before = device.stats();
    device
        .connect(
            &app.ws_url(),
            &app.token("secretary-c", "secretary-c-phone").await,
        )
        .await
        .unwrap();
    device.wait_synced(id, WAIT).await.unwrap();
    let moved = device.stats() - before;
    let full_size = stored.save().len() as u64;
    assert!(
        moved.bytes_sent + moved.bytes_received < full_size / 4,
        "reconnect moved {moved:?}, the whole document is {full_size} bytes"
    );
    assert!(
        moved.messages_sent <= 6,
        "reconnect took {} messages",
        moved.messages_sent
    );
    // The same device, reinstalled with an empty store, gets the whole document although the
    // server remembers what it shared with that device before.
    device.disconnect().await;
    let reinstalled = connected(&app, "secretary-c").await;
    reinstalled.fetch(id, WAIT).await.unwrap();
    assert_eq!(
        get_str(&reinstalled, id, "callback").as_deref(),
        Some("done")
    );
    assert_eq!(reinstalled.heads(id).unwrap(), device.heads(id).unwrap());
    // A second device sees the new edit and the old history.
    let other = connected(&app, "secretary-d").await;
    other.fetch(id, WAIT).await.unwrap();
    assert_eq!(get_str(&other, id, "callback").as_deref(), Some("done"));
    assert_eq!(get_str(&other, id, "note-4-99").map(|s| s.len()), Some(36));
    app.stop().await;
}

async fn live_changes_reach_other_connected_clients(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db).await;
    let a = connected(&app, "grid-a").await;
    let b = connected(&app, "grid-b").await;
    let id = a
        .create(|tx| tx.put(ROOT, "status", "collected").map(|_| ()))
        .await
        .unwrap();
    a.wait_synced(id, WAIT).await.unwrap();
    b.fetch(id, WAIT).await.unwrap();

    // No polling: B learns of A's edit because the server pushes it.
    a.change(id, |tx| tx.put(ROOT, "status", "triaged").map(|_| ()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while get_str(&b, id, "status").as_deref() != Some("triaged") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "edit never reached B"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
}

async fn documents_leave_memory_when_idle(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db).await;
    let device = connected(&app, "station-1").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = device
            .create(|tx| tx.put(ROOT, "entry", i as i64).map(|_| ()))
            .await
            .unwrap();
        ids.push(id);
    }
    for id in &ids {
        device.wait_synced(*id, WAIT).await.unwrap();
    }
    assert_eq!(app.state.hub.in_memory(), 20);
    device.disconnect().await;
    // With `document_idle_secs = 1` every document leaves memory shortly after its last
    // connection went away; the data stays in the store.
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.hub.in_memory() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "documents stayed in memory"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.state.store.count_documents().await.unwrap(), 20);
    app.stop().await;
}
