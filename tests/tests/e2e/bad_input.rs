//! Bad input: malformed frames and oversized messages get a typed error to that client, leave
//! other clients and the stored data untouched, and never crash the server.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use lianxin_client::{Client, ClientConfig};
use lianxin_protocol::{DocumentId, Message};
use lianxin_tests::{Backend, RawPeer, TestDb, spawn_app, spawn_app_with, test_settings};

use crate::both_backends;

const WAIT: Duration = Duration::from_secs(10);

both_backends!(malformed_frames_hurt_no_one);

async fn malformed_frames_hurt_no_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db).await;

    // A healthy device with a stored document, connected throughout.
    let good = Client::in_memory(ClientConfig::default()).await.unwrap();
    good.connect(&app.ws_url(), &app.token("good", "good-phone").await)
        .await
        .unwrap();
    let id = good
        .create(|tx| tx.put(ROOT, "household", "1-1-101").map(|_| ()))
        .await
        .unwrap();
    good.wait_synced(id, WAIT).await.unwrap();
    let stored_before = app.state.store.load(&id).await.unwrap().unwrap();

    let mut bad = RawPeer::connect(&app, &app.token("bad", "bad-phone").await).await;

    // 1. Bytes that are not CBOR at all.
    bad.send_bytes(vec![0xff, 0x00, 0x13, 0x37]).await;
    expect_error(&mut bad, "malformed").await;
    // 2. CBOR, but not a message (an array of numbers).
    bad.send_bytes(vec![0x83, 0x01, 0x02, 0x03]).await;
    expect_error(&mut bad, "malformed").await;
    // 3. A well-formed sync message whose automerge payload is garbage, for a real document.
    bad.send(&Message::Sync {
        sender_id: bad.peer_id.clone(),
        target_id: bad.peer_id.clone(),
        document_id: id,
        data: vec![0x42, 0x13, 0x00, 0xff, 0xff],
    })
    .await;
    expect_error(&mut bad, &id.to_string()).await;
    // 4. A text frame.
    bad.send_text("{\"type\":\"sync\"}").await;
    expect_error(&mut bad, "binary").await;

    // The bad connection is still served after its errors…
    let fresh = DocumentId::random();
    let mut probe = automerge::sync::State::new();
    let data =
        automerge::sync::SyncDoc::generate_sync_message(&automerge::Automerge::new(), &mut probe)
            .unwrap()
            .encode();
    bad.send(&Message::Request {
        sender_id: bad.peer_id.clone(),
        target_id: bad.peer_id.clone(),
        document_id: fresh,
        data,
    })
    .await;
    assert!(
        matches!(bad.recv().await, Some(Message::DocUnavailable { document_id, .. }) if document_id == fresh)
    );

    // …the stored document is unchanged, and the good device keeps syncing.
    let stored_after = app.state.store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored_before.last_seq, stored_after.last_seq);
    assert_eq!(stored_before.chunks, stored_after.chunks);
    good.change(id, |tx| tx.put(ROOT, "heard", "all fine").map(|_| ()))
        .await
        .unwrap();
    good.wait_synced(id, WAIT).await.unwrap();
    let other = Client::in_memory(ClientConfig::default()).await.unwrap();
    other
        .connect(&app.ws_url(), &app.token("other", "other-phone").await)
        .await
        .unwrap();
    other.fetch(id, WAIT).await.unwrap();
    let heard = other
        .read(id, |doc| {
            doc.get(ROOT, "heard").unwrap().map(|(v, _)| v.to_string())
        })
        .unwrap();
    assert_eq!(heard.as_deref(), Some("\"all fine\""));
    assert!(app.metric("lianxin_malformed_messages_total").await >= 4.0);
    app.stop().await;
}

async fn expect_error(peer: &mut RawPeer, needle: &str) {
    match peer.recv().await {
        Some(Message::Error { message, .. }) => {
            assert!(
                message.contains(needle),
                "error {message:?} should mention {needle:?}"
            )
        }
        other => panic!("expected an error message, got {other:?}"),
    }
}

#[tokio::test]
async fn oversized_message_is_refused_with_a_clear_error() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.max_message_bytes = 64 * 1024;
    let app = spawn_app_with(settings).await;
    let mut peer = RawPeer::connect(&app, &app.token("big", "big-phone").await).await;
    let id = DocumentId::random();
    peer.send(&Message::Sync {
        sender_id: peer.peer_id.clone(),
        target_id: peer.peer_id.clone(),
        document_id: id,
        data: vec![7; 100 * 1024],
    })
    .await;
    expect_error(&mut peer, "too large").await;
    assert_eq!(peer.closed().await, Some(1009));
    assert!(
        app.state.store.load(&id).await.unwrap().is_none(),
        "nothing stored"
    );
    assert_eq!(app.metric("lianxin_oversized_messages_total").await, 1.0);
    app.stop().await;
}
