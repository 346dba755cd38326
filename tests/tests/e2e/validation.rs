//! Vetting changes before they are accepted: a change is received into a fork and checked; a
//! rejected change is never stored or relayed, and its author is told which document, which
//! change and why.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use lianxin_client::{Client, ClientConfig};
use lianxin_protocol::{DocSession, DocumentId, Message};
use lianxin_tests::{Backend, RawPeer, TestDb, spawn_app};

const WAIT: Duration = Duration::from_secs(10);
const BUDGET: lianxin_protocol::chunk::Budget = lianxin_protocol::chunk::Budget {
    max_inflated_bytes: 64 << 20,
    max_ops: 10_000_000,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_under_another_devices_actor_is_rejected_and_stored_nowhere() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = spawn_app(&db).await;
    let a = Client::in_memory(ClientConfig::default()).await.unwrap();
    a.connect(&app.ws_url(), &app.token("wang", "wang-phone").await)
        .await
        .unwrap();
    let id = a
        .create(|tx| tx.put(ROOT, "heard", "lift broken").map(|_| ()))
        .await
        .unwrap();
    a.wait_synced(id, WAIT).await.unwrap();
    let a_actor = a.read(id, |doc| doc.get_actor().clone()).unwrap();

    // Another device fetches the document with a plain sync session…
    let mut mallory = RawPeer::connect(&app, &app.token("mallory", "mallory-phone").await).await;
    let mut doc = automerge::Automerge::new();
    let mut session = DocSession::new();
    let first = session.generate(&doc).unwrap();
    mallory
        .send(&Message::Request {
            sender_id: mallory.peer_id.clone(),
            target_id: mallory.peer_id.clone(),
            document_id: id,
            data: first,
        })
        .await;
    while doc.get_heads().is_empty() {
        match mallory.recv().await {
            Some(Message::Sync { data, .. }) => {
                answer(&mut mallory, &mut session, &mut doc, id, &data).await;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // …and forges a change under Wang's actor ID.
    doc.set_actor(a_actor);
    doc.transact(|tx| tx.put(ROOT, "heard", "all is well"))
        .unwrap();
    let forged = doc.get_heads()[0];
    let stored_before = app.state.store.load(&id).await.unwrap().unwrap();
    let data = loop {
        if let Some(data) = session.generate(&doc) {
            break data;
        }
        // Drain the server's last answer so the session is free to send.
        let Some(Message::Sync { data, .. }) = mallory.recv().await else {
            panic!("expected sync");
        };
        let _ = session.on_message(&mut doc, &data, &BUDGET).unwrap();
    };
    mallory
        .send(&Message::Sync {
            sender_id: mallory.peer_id.clone(),
            target_id: mallory.peer_id.clone(),
            document_id: id,
            data,
        })
        .await;
    // The server may first ask what Mallory has (when the message only announced heads): keep
    // answering until it judges the change.
    let error = loop {
        match mallory.recv().await {
            Some(Message::Error { message, .. }) => break message,
            Some(Message::Sync { data, .. }) => {
                answer(&mut mallory, &mut session, &mut doc, id, &data).await;
            }
            Some(_) => continue,
            None => panic!("no error reported"),
        }
    };
    assert!(
        error.contains(&id.to_string()),
        "names the document: {error}"
    );
    assert!(
        error.contains(&forged.to_string()),
        "names the change: {error}"
    );
    assert!(error.contains("belongs to another"), "says why: {error}");

    // Stored nowhere, relayed to no one.
    let stored_after = app.state.store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored_before.last_seq, stored_after.last_seq);
    a.wait_synced(id, WAIT).await.unwrap();
    let heard = a
        .read(id, |doc| {
            doc.get(ROOT, "heard").unwrap().map(|(v, _)| v.to_string())
        })
        .unwrap();
    assert_eq!(heard.as_deref(), Some("\"lift broken\""));
    assert!(app.metric("lianxin_rejected_changes_total").await >= 1.0);

    // Wang's own later changes are still accepted.
    a.change(id, |tx| tx.put(ROOT, "heard", "lift fixed").map(|_| ()))
        .await
        .unwrap();
    a.wait_synced(id, WAIT).await.unwrap();
    let stored = app.stored_doc(id).await.unwrap();
    assert_eq!(
        stored
            .get(ROOT, "heard")
            .unwrap()
            .map(|(v, _)| v.to_string())
            .as_deref(),
        Some("\"lift fixed\"")
    );
    a.disconnect().await;
    app.stop().await;
}

/// Applies a sync message from the server to `doc` and sends the session's answer, if any.
async fn answer(
    peer: &mut RawPeer,
    session: &mut DocSession,
    doc: &mut automerge::Automerge,
    id: DocumentId,
    data: &[u8],
) {
    let effects = session.on_message(doc, data, &BUDGET).unwrap();
    if let Some(reply) = effects.send {
        peer.send(&Message::Sync {
            sender_id: peer.peer_id.clone(),
            target_id: peer.peer_id.clone(),
            document_id: id,
            data: reply,
        })
        .await;
    }
}
