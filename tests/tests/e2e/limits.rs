//! Limits at the edge: connection count, document size, and several server processes sharing
//! one Postgres.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use lianxin_client::{Client, ClientConfig};
use lianxin_tests::{Backend, TestDb, spawn_app, spawn_app_with, test_settings};
use tokio_tungstenite::tungstenite;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn connections_over_the_limit_get_503() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.max_connections = 1;
    let app = spawn_app_with(settings).await;
    let first = Client::in_memory(ClientConfig::default()).await.unwrap();
    first
        .connect(&app.ws_url(), &app.token("a", "a1").await)
        .await
        .unwrap();
    let url = format!("{}?token={}", app.ws_url(), app.token("b", "b1").await);
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "unavailable");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    // The slot is given back when the first connection closes.
    first.disconnect().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if tokio_tungstenite::connect_async(url.clone()).await.is_ok() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_document_over_the_size_limit_is_refused_and_not_stored() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.max_document_bytes = 4 * 1024;
    let app = spawn_app_with(settings).await;
    let client = Client::in_memory(ClientConfig::default()).await.unwrap();
    client
        .connect(&app.ws_url(), &app.token("a", "a1").await)
        .await
        .unwrap();
    let id = client
        .create(|tx| {
            for i in 0..400 {
                tx.put(ROOT, format!("k{i}"), uuid::Uuid::new_v4().to_string())?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let errors = client.server_errors();
        if let Some(e) = errors.first() {
            assert!(e.contains(&id.to_string()), "error names the document: {e}");
            assert!(e.contains("over the limit"), "error says why: {e}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no error reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app.state.store.load(&id).await.unwrap().is_none());
    // A small document from the same client still goes through.
    let small = client
        .create(|tx| tx.put(ROOT, "ok", true).map(|_| ()))
        .await
        .unwrap();
    client.wait_synced(small, WAIT).await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_share_one_postgres() {
    let db = TestDb::new(Backend::Postgres).await;
    let one = spawn_app(&db).await;
    let two = spawn_app(&db).await;
    let a = Client::in_memory(ClientConfig::default()).await.unwrap();
    a.connect(&one.ws_url(), &one.token("a", "a1").await)
        .await
        .unwrap();
    let b = Client::in_memory(ClientConfig::default()).await.unwrap();
    b.connect(&two.ws_url(), &two.token("b", "b1").await)
        .await
        .unwrap();

    let id = a
        .create(|tx| tx.put(ROOT, "order", "accompany to hospital").map(|_| ()))
        .await
        .unwrap();
    a.wait_synced(id, WAIT).await.unwrap();
    // Server two has never seen the document in memory; it reads it from the shared database.
    b.fetch(id, WAIT).await.unwrap();
    b.change(id, |tx| {
        tx.put(ROOT, "note_b", "from server two").map(|_| ())
    })
    .await
    .unwrap();
    b.wait_synced(id, WAIT).await.unwrap();

    // Server one hears of server two's append (its announcement) and syncs it to A, who has
    // the document open there, without A doing anything.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen = a
            .read(id, |doc| doc.get(ROOT, "note_b").unwrap().is_some())
            .unwrap();
        if seen {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never saw B's change"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.change(id, |tx| {
        tx.put(ROOT, "note_a", "from server one").map(|_| ())
    })
    .await
    .unwrap();
    a.wait_synced(id, WAIT).await.unwrap();
    lianxin_tests::until(WAIT, || async {
        b.read(id, |doc| doc.get(ROOT, "note_a").unwrap().is_some())
            .unwrap()
            .then_some(())
            .ok_or_else(|| "B never saw A's change".to_owned())
    })
    .await;
    let stored = one.state.store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.last_seq, 3, "three appends, densely numbered");
    one.stop().await;
    two.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_closed_as_dead() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.keepalive_secs = 1;
    let app = spawn_app_with(settings).await;
    // Joins, then never reads again, so it never answers the server's pings.
    let _silent = lianxin_tests::RawPeer::connect(&app, &app.token("s", "s1").await).await;
    // A live client that answers pings stays connected meanwhile.
    let live = Client::in_memory(ClientConfig::default()).await.unwrap();
    live.connect(&app.ws_url(), &app.token("l", "l1").await)
        .await
        .unwrap();
    assert_eq!(app.metric("lianxin_connections_open").await, 2.0);
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.metric("lianxin_connections_open").await > 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "silent peer never dropped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        live.stats().connections,
        1,
        "the live client kept its one connection"
    );
    assert_ne!(live.status().state, lianxin_client::SyncState::Offline);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_disconnected_and_nobody_else_waits() {
    use lianxin_protocol::Message;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.send_queue = 8;
    // The flood below must reach the queue, not the per-connection ephemeral rate limit.
    settings.limits.ephemeral_per_second = 10_000;
    settings.limits.ephemeral_burst = 10_000;
    let app = spawn_app_with(settings).await;

    // A document both raw peers open.
    let owner = Client::in_memory(ClientConfig::default()).await.unwrap();
    owner
        .connect(&app.ws_url(), &app.token("o", "o1").await)
        .await
        .unwrap();
    let id = owner
        .create(|tx| tx.put(ROOT, "station", "red sail 3").map(|_| ()))
        .await
        .unwrap();
    owner.wait_synced(id, WAIT).await.unwrap();
    let open = |peer: &lianxin_tests::RawPeer| {
        let mut state = automerge::sync::State::new();
        let data = automerge::sync::SyncDoc::generate_sync_message(
            &automerge::Automerge::new(),
            &mut state,
        )
        .unwrap()
        .encode();
        Message::Request {
            sender_id: peer.peer_id.clone(),
            target_id: peer.peer_id.clone(),
            document_id: id,
            data,
        }
    };
    let mut stalled = lianxin_tests::RawPeer::connect(&app, &app.token("s", "s1").await).await;
    stalled.send(&open(&stalled)).await;
    assert!(matches!(stalled.recv().await, Some(Message::Sync { .. })));
    let mut chatty = lianxin_tests::RawPeer::connect(&app, &app.token("c", "c1").await).await;
    chatty.send(&open(&chatty)).await;
    assert!(matches!(chatty.recv().await, Some(Message::Sync { .. })));

    // `stalled` stops reading; `chatty` floods the document with ephemeral messages (presence,
    // cursors), which the server relays to `stalled` until its queue overflows.
    let payload = vec![0x5a; 64 * 1024];
    for count in 0..400u64 {
        chatty
            .send(&Message::Ephemeral {
                sender_id: chatty.peer_id.clone(),
                target_id: chatty.peer_id.clone(),
                document_id: id,
                session_id: "s".into(),
                count,
                data: payload.clone(),
            })
            .await;
        if app.metric("lianxin_slow_client_disconnects_total").await >= 1.0 {
            break;
        }
    }
    assert!(app.metric("lianxin_slow_client_disconnects_total").await >= 1.0);

    // The other clients carry on: the owner's edit is stored and acknowledged.
    owner
        .change(id, |tx| tx.put(ROOT, "served", 12).map(|_| ()))
        .await
        .unwrap();
    owner.wait_synced(id, WAIT).await.unwrap();
    let stored = app.stored_doc(id).await.unwrap();
    assert!(stored.get(ROOT, "served").unwrap().is_some());
    owner.disconnect().await;
    app.stop().await;
}
