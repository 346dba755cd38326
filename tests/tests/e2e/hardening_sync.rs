//! Hostile input on the sync path (issue "Hardening"): inflation bombs, orphan changes, slow
//! readers, ephemeral messages, unknown and unreadable document IDs, malformed floods. Each
//! attack gets a typed answer for its sender and costs the server bounded memory and work.

use std::io::Write;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use lianxin_client::{Client, ClientConfig};
use lianxin_protocol::{DocSession, DocumentId, Message, PeerId};
use lianxin_tests::{Backend, RawPeer, TestApp, TestDb, spawn_app, spawn_app_with, test_settings};

use crate::field::{device, field_app, place_order};

const WAIT: Duration = Duration::from_secs(10);
const MIB: usize = 1024 * 1024;
const GRID_A: &str = "/city/street-1/community-1/grid-a";
const GRID_B: &str = "/city/street-1/community-1/grid-b";

/// Peak resident memory of this process so far (each nextest test is its own process).
fn peak_rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// CPU time this process has used, user and system.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // Linux reports in clock ticks of 1/100 s.
    Duration::from_millis(ticks * 10)
}

/// An Automerge chunk of `chunk_type` around `data` (the checksum is checked only after
/// inflating, so any will do for a bomb).
fn chunk(chunk_type: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, chunk_type];
    uleb(&mut out, data.len() as u64);
    out.extend(data);
    out
}

fn uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// `len` zero bytes, DEFLATE-compressed: about a thousandth of `len`.
fn zeros_deflated(len: usize) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![0u8; MIB];
    for _ in 0..len / MIB {
        encoder.write_all(&block).unwrap();
    }
    encoder.finish().unwrap()
}

/// A sync message carrying `chunks` as its changes.
fn sync_with_chunks(chunks: Vec<Vec<u8>>) -> Vec<u8> {
    automerge::sync::Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: chunks.into(),
        flags: None,
        version: automerge::sync::MessageVersion::V1,
    }
    .encode()
}

fn sync(peer: &RawPeer, document_id: DocumentId, data: Vec<u8>) -> Message {
    Message::Sync {
        sender_id: peer.peer_id.clone(),
        target_id: peer.peer_id.clone(),
        document_id,
        data,
    }
}

fn request(peer: &RawPeer, document_id: DocumentId) -> Message {
    let data = DocSession::new().generate(&Automerge::new()).unwrap();
    Message::Request {
        sender_id: peer.peer_id.clone(),
        target_id: peer.peer_id.clone(),
        document_id,
        data,
    }
}

/// Opens `doc` on a raw peer: requests it and reads until the server's first sync arrives.
async fn open(peer: &mut RawPeer, doc: DocumentId) {
    let message = request(peer, doc);
    peer.send(&message).await;
    match peer.recv().await {
        Some(Message::Sync { document_id, .. }) if document_id == doc => {}
        other => panic!("expected a sync for {doc}, got {other:?}"),
    }
}

/// The next message that is not a sync message about another document, within `within`.
async fn next_within(peer: &mut RawPeer, within: Duration) -> Option<Message> {
    tokio::time::timeout(within, peer.recv())
        .await
        .ok()
        .flatten()
}

crate::both_backends!(inflation_bombs_are_refused_and_memory_stays_flat);

async fn inflation_bombs_are_refused_and_memory_stays_flat(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = field_app(&db).await;
    let token = app
        .token_as("vol-1", "vol-1-phone", "volunteer", GRID_A)
        .await;
    let mut attacker = RawPeer::connect(&app, &token).await;
    // 256 MiB of zeros each: a compressed change chunk, and a document chunk with one
    // deflated column. Each message is a few hundred kilobytes on the wire.
    let change_bomb = chunk(2, &zeros_deflated(256 * MIB));
    let mut doc_data = Vec::new();
    uleb(&mut doc_data, 1);
    uleb(&mut doc_data, 16);
    doc_data.extend([7u8; 16]);
    uleb(&mut doc_data, 0); // heads
    uleb(&mut doc_data, 0); // change columns
    let column = zeros_deflated(256 * MIB);
    uleb(&mut doc_data, 1); // one op column…
    uleb(&mut doc_data, (4 << 4) | 0b1000 | 2); // …with the deflate bit
    uleb(&mut doc_data, column.len() as u64);
    doc_data.extend(&column);
    let doc_bomb = chunk(0, &doc_data);
    // Warm the path up (threads, allocator arenas, connections) with a compressed chunk well
    // inside the budget, so the figure before is the server at work, not at rest.
    let warm_up = chunk(2, &zeros_deflated(MIB));
    let message = sync(
        &attacker,
        DocumentId::random(),
        sync_with_chunks(vec![warm_up]),
    );
    attacker.send(&message).await;
    assert!(matches!(attacker.recv().await, Some(Message::Error { .. })));
    let before = peak_rss_bytes();
    let mut answers = Vec::new();
    for bomb in [change_bomb, doc_bomb] {
        let id = DocumentId::random();
        let message = sync(&attacker, id, sync_with_chunks(vec![bomb]));
        attacker.send(&message).await;
        answers.push((id, attacker.recv().await));
    }
    let after = peak_rss_bytes();
    println!(
        "inflation bombs: peak RSS {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
    assert!(
        after < 2 * before,
        "peak RSS went from {} MiB to {} MiB",
        before / MIB,
        after / MIB
    );
    for (id, answer) in answers {
        match answer {
            Some(Message::Error { message, .. }) => {
                assert!(message.contains("inflate"), "{message}");
                assert!(message.contains(&id.to_string()), "{message}");
            }
            other => panic!("expected an error, got {other:?}"),
        }
        assert!(app.stored_doc(id).await.is_none(), "nothing stored");
    }
    // The connection is still served.
    let probe = DocumentId::random();
    let message = request(&attacker, probe);
    attacker.send(&message).await;
    assert!(matches!(
        attacker.recv().await,
        Some(Message::DocUnavailable { document_id, .. }) if document_id == probe
    ));
    app.stop().await;
}

/// A connected SDK device of user `writer`.
async fn writer(app: &TestApp) -> Client {
    let writer = Client::in_memory(ClientConfig::default()).await.unwrap();
    writer
        .connect(&app.ws_url(), &app.token("writer", "writer-phone").await)
        .await
        .unwrap();
    writer
}

/// A small untyped document the server has stored, with the device that wrote it (kept
/// connected by the caller).
async fn stored_by_writer(app: &TestApp) -> (Client, DocumentId) {
    let writer = writer(app).await;
    let id = writer
        .create(|tx| tx.put(ROOT, "n", 0).map(|_| ()))
        .await
        .unwrap();
    writer.wait_synced(id, WAIT).await.unwrap();
    (writer, id)
}

/// A 2-million-character text, the kind of document whose reload costs seconds.
async fn big_document(app: &TestApp) -> DocumentId {
    let writer = writer(app).await;
    let id = writer
        .create(|tx| {
            let text = tx.put_object(ROOT, "text", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, &"办".repeat(2_000_000))
        })
        .await
        .unwrap();
    writer
        .wait_synced(id, Duration::from_secs(120))
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_changes_cost_no_reload() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.document_idle_secs = 600;
    // The big document is 2 million operations, over the default per-message budget: such
    // documents exist (stored before the limits, or grown change by change).
    settings.limits.max_message_ops = 5_000_000;
    let app = spawn_app_with(settings).await;
    let id = big_document(&app).await;

    let token = app.token("reader", "reader-phone").await;
    let mut reader = RawPeer::connect(&app, &token).await;
    open(&mut reader, id).await;
    // A change whose dependency nobody has: it can never apply.
    let mut own = automerge::AutoCommit::new();
    own.put(ROOT, "a", 1).unwrap();
    own.commit();
    own.put(ROOT, "b", 2).unwrap();
    own.commit();
    let orphan = own.get_last_local_change().unwrap().raw_bytes().to_vec();
    let reloads_before = app.metric("lianxin_documents_unloaded_total").await;

    const MESSAGES: u32 = 10;
    let start = cpu_time();
    let wall = Instant::now();
    for _ in 0..MESSAGES {
        let message = sync(&reader, id, sync_with_chunks(vec![orphan.clone()]));
        reader.send(&message).await;
        // The server answers (asking for what it lacks) or says nothing; either way it is done
        // with the message when the next one is handled.
        let _ = next_within(&mut reader, Duration::from_millis(300)).await;
    }
    let cpu = cpu_time() - start;
    let per_message = cpu / MESSAGES;
    println!(
        "orphan change: {} ms CPU per message ({} ms wall for {MESSAGES})",
        per_message.as_millis(),
        wall.elapsed().as_millis()
    );
    assert!(
        per_message < Duration::from_millis(50),
        "{} ms of CPU per orphan change",
        per_message.as_millis()
    );
    assert_eq!(
        app.metric("lianxin_documents_unloaded_total").await,
        reloads_before
    );
    assert!(app.stored_doc(id).await.is_some());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_is_cut_off_by_bytes_not_messages() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    // Large ephemeral messages let through, as in the attack this test replays: the queue's
    // byte bound must hold on its own.
    settings.limits.max_ephemeral_bytes = 8 * MIB;
    settings.limits.ephemeral_per_second = 1_000;
    settings.limits.ephemeral_burst = 1_000;
    let app = spawn_app_with(settings).await;
    let (_writer, id) = stored_by_writer(&app).await;
    let mut stalled = RawPeer::connect(&app, &app.token("slow", "slow-phone").await).await;
    open(&mut stalled, id).await;
    let mut sender = RawPeer::connect(&app, &app.token("loud", "loud-phone").await).await;
    open(&mut sender, id).await;
    // From now on `stalled` reads nothing; `sender` sends it 4 MiB ephemeral messages.
    let mut sent = 0;
    while app.metric("lianxin_slow_client_disconnects_total").await < 1.0 {
        assert!(
            sent < 64 * MIB,
            "{} MiB sent towards a reader that does not read, and it is still connected",
            sent / MIB
        );
        let message = Message::Ephemeral {
            sender_id: sender.peer_id.clone(),
            target_id: sender.peer_id.clone(),
            document_id: id,
            session_id: "s".into(),
            count: (sent / (4 * MIB)) as u64,
            data: vec![7; 4 * MIB],
        };
        sender.send(&message).await;
        sent += 4 * MIB;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("slow reader cut after {} MiB", sent / MIB);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_messages_reach_only_readers_and_name_the_real_sender() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = field_app(&db).await;
    let owner = device(&app, "sec-a", "secretary", GRID_A).await;
    let order = place_order(&owner, GRID_A, "sec-a").await;

    let mut reader = RawPeer::connect(
        &app,
        &app.token_as("sec-a2", "sec-a2-phone", "grid_worker", GRID_A)
            .await,
    )
    .await;
    open(&mut reader, order).await;
    let mut colleague = RawPeer::connect(
        &app,
        &app.token_as("sec-a3", "sec-a3-phone", "grid_worker", GRID_A)
            .await,
    )
    .await;
    open(&mut colleague, order).await;
    let mut outsider = RawPeer::connect(
        &app,
        &app.token_as("sec-b", "sec-b-phone", "grid_worker", GRID_B)
            .await,
    )
    .await;
    let message = request(&outsider, order);
    outsider.send(&message).await;
    assert!(matches!(
        outsider.recv().await,
        Some(Message::DocUnavailable { .. })
    ));

    let ephemeral = |from: &RawPeer, claimed: &str, data: Vec<u8>| Message::Ephemeral {
        sender_id: PeerId::new(claimed).unwrap(),
        target_id: from.peer_id.clone(),
        document_id: order,
        session_id: "s".into(),
        count: 1,
        data,
    };
    // The outsider's presence reaches nobody, whatever it claims to be.
    outsider
        .send(&ephemeral(&outsider, "sec-a-phone", b"outsider".to_vec()))
        .await;
    // A reader's reaches the other reader, under its real name.
    reader
        .send(&ephemeral(&reader, "sec-a-phone", b"reader".to_vec()))
        .await;
    loop {
        match next_within(&mut colleague, Duration::from_secs(5)).await {
            Some(Message::Ephemeral {
                sender_id, data, ..
            }) => {
                assert_eq!(data, b"reader", "only the reader's message arrives");
                assert_eq!(sender_id.as_str(), "lianxin:sec-a2:sec-a2-phone");
                break;
            }
            Some(_) => continue,
            None => panic!("the reader's ephemeral message did not arrive"),
        }
    }
    while let Some(message) = next_within(&mut colleague, Duration::from_millis(500)).await {
        assert!(
            !matches!(message, Message::Ephemeral { .. }),
            "unexpected {message:?}"
        );
    }
    // Too large: an error to the sender, nothing relayed.
    reader
        .send(&ephemeral(&reader, "x", vec![0; 4 * MIB]))
        .await;
    match next_within(&mut reader, WAIT).await {
        Some(Message::Error { message, .. }) => assert!(message.contains("ephemeral"), "{message}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        next_within(&mut colleague, Duration::from_millis(500))
            .await
            .is_none()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_and_missing_documents_are_answered_alike_and_never_watched() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.documents.allow_untyped = false;
    settings.limits.keep_open_documents_per_connection = 1;
    let app = spawn_app_with(settings).await;
    let owner = device(&app, "sec-a", "secretary", GRID_A).await;
    let order = place_order(&owner, GRID_A, "sec-a").await;
    let mut outsider = RawPeer::connect(
        &app,
        &app.token_as("sec-b", "sec-b-phone", "grid_worker", GRID_B)
            .await,
    )
    .await;
    let changed_docs = Message::ChangedDocsRequest {
        sender_id: outsider.peer_id.clone(),
        target_id: outsider.peer_id.clone(),
    };
    outsider.send(&changed_docs).await;
    assert!(matches!(
        outsider.recv().await,
        Some(Message::ChangedDocs { .. })
    ));

    // `sync` without changes, for the unreadable order and for an unused ID: the same answer.
    let hello = DocSession::new().generate(&Automerge::new()).unwrap();
    let mut answers = Vec::new();
    for id in [order, DocumentId::random()] {
        let message = sync(&outsider, id, hello.clone());
        outsider.send(&message).await;
        answers.push(match outsider.recv().await {
            Some(Message::Sync { data, .. }) => data,
            other => panic!("expected a sync answer for {id}, got {other:?}"),
        });
    }
    assert_eq!(answers[0], answers[1]);
    // `request`: doc-unavailable for both.
    for id in [order, DocumentId::random()] {
        let message = request(&outsider, id);
        outsider.send(&message).await;
        assert!(matches!(
            outsider.recv().await,
            Some(Message::DocUnavailable { document_id, .. }) if document_id == id
        ));
    }
    // Opening something else makes room by watching least-used documents; the order must not
    // be among them. Then its owner edits it: the outsider hears nothing.
    let message = request(&outsider, DocumentId::random());
    outsider.send(&message).await;
    let _ = outsider.recv().await;
    owner
        .change(order, |tx| tx.put(ROOT, "place", "3-2-402").map(|_| ()))
        .await
        .unwrap();
    owner.wait_synced(order, WAIT).await.unwrap();
    while let Some(message) = next_within(&mut outsider, Duration::from_secs(2)).await {
        if let Message::ChangedDocs { document_ids, .. } = &message {
            assert!(
                !document_ids.contains(&order),
                "the outsider heard that the order changed"
            );
        }
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_unknown_ids_leave_no_actors_behind() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let mut peer = RawPeer::connect(&app, &app.token("prober", "prober-phone").await).await;
    const PROBES: usize = 2_000;
    for _ in 0..PROBES {
        let message = request(&peer, DocumentId::random());
        peer.send(&message).await;
    }
    for _ in 0..PROBES {
        assert!(matches!(
            peer.recv().await,
            Some(Message::DocUnavailable { .. })
        ));
    }
    // The connection stays open; the actors must still leave memory.
    lianxin_tests::until(Duration::from_secs(10), || async {
        let in_memory = app.metric("lianxin_documents_in_memory").await;
        if in_memory < 50.0 {
            Ok(())
        } else {
            Err(format!("{in_memory} documents still in memory"))
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_frames_ends_the_connection() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let mut bad = RawPeer::connect(&app, &app.token("bad", "bad-phone").await).await;
    // One frame at a time, each answered before the next is sent (so the end of the
    // connection is not a race with frames still in flight).
    let mut errors = 0;
    let mut goodbye = None;
    for _ in 0..20 {
        bad.send_bytes(vec![0xff]).await;
        match bad.recv().await {
            Some(Message::Error { message, .. }) if message.contains("too many malformed") => {
                goodbye = Some(message);
                break;
            }
            Some(Message::Error { message, .. }) => {
                assert!(message.contains("malformed"), "{message}");
                errors += 1;
                // The frame that spends the budget gets its error and then the goodbye.
                if errors == 16 {
                    if let Some(Message::Error { message, .. }) = bad.recv().await {
                        goodbye = Some(message);
                    }
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(errors, 16, "one error per malformed frame up to the budget");
    assert!(
        goodbye.is_some_and(|g| g.contains("too many malformed")),
        "the connection was not closed for its malformed messages"
    );
    assert_eq!(bad.closed().await, Some(1008));
    app.stop().await;
}

/// `raw`, a change chunk, as a compressed change chunk (type 2) with the same checksum.
fn compress_change(raw: &[u8]) -> Vec<u8> {
    let mut rest = &raw[9..];
    let mut len = 0u64;
    let mut shift = 0;
    loop {
        let byte = rest[0];
        rest = &rest[1..];
        len |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    assert_eq!(rest.len() as u64, len);
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(rest).unwrap();
    let mut out = chunk(2, &encoder.finish().unwrap());
    out[4..8].copy_from_slice(&raw[4..8]);
    out
}

crate::both_backends!(a_run_length_bomb_is_refused_by_its_operations);

async fn a_run_length_bomb_is_refused_by_its_operations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = field_app(&db).await;
    let token = app
        .token_as("vol-1", "vol-1-phone", "volunteer", GRID_A)
        .await;
    let mut attacker = RawPeer::connect(&app, &token).await;
    // 300,000 nulls inserted into a list: a change of about a hundred bytes, which Automerge
    // would expand into 300,000 operations before any rule looked at it.
    let mut doc = automerge::AutoCommit::new();
    let list = doc.put_object(ROOT, "list", ObjType::List).unwrap();
    doc.splice(&list, 0, 0, vec![automerge::ScalarValue::Null; 300_000])
        .unwrap();
    doc.commit();
    let bomb = doc.get_last_local_change().unwrap().raw_bytes().to_vec();
    assert!(bomb.len() < 200, "{} bytes", bomb.len());
    drop(doc);
    let id = DocumentId::random();
    let message = sync(&attacker, id, sync_with_chunks(vec![bomb]));
    attacker.send(&message).await;
    match attacker.recv().await {
        Some(Message::Error { message, .. }) => {
            assert!(message.contains("operations"), "{message}");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(app.stored_doc(id).await.is_none(), "nothing stored");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_orphans_are_bounded_by_what_they_inflate_to() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let (_writer, id) = stored_by_writer(&app).await;
    let mut reader = RawPeer::connect(&app, &app.token("reader", "reader-phone").await).await;
    open(&mut reader, id).await;

    // Forty changes that each inflate to 1.5 MB from 1.5 KB, all built on a change the server
    // never gets: they wait for it in the session's pending set.
    let mut base = automerge::AutoCommit::new();
    base.put(ROOT, "base", 1).unwrap();
    base.commit();
    let orphans: Vec<Vec<u8>> = (0..40)
        .map(|_| {
            let mut fork = base.fork();
            fork.put(ROOT, "blob", "a".repeat(1_500_000)).unwrap();
            fork.commit();
            compress_change(fork.get_last_local_change().unwrap().raw_bytes())
        })
        .collect();
    assert!(orphans.iter().all(|o| o.len() < 8 * 1024));
    drop(base);
    let message = request(&reader, DocumentId::random());
    reader.send(&message).await;
    let _ = reader.recv().await;
    let before = peak_rss_bytes();
    for orphan in orphans {
        let message = sync(&reader, id, sync_with_chunks(vec![orphan]));
        reader.send(&message).await;
        let _ = next_within(&mut reader, Duration::from_millis(300)).await;
    }
    let after = peak_rss_bytes();
    println!(
        "held orphans: peak RSS {} MiB before, {} MiB after",
        before / MIB,
        after / MIB
    );
    assert!(
        after < before + 32 * MIB,
        "peak RSS went from {} MiB to {} MiB",
        before / MIB,
        after / MIB
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_change_makes_the_server_ask_for_what_it_lacks() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let (_writer, id) = stored_by_writer(&app).await;
    let mut device = RawPeer::connect(&app, &app.token("device", "device-phone").await).await;
    open(&mut device, id).await;

    // Two changes of this device; the message with the first was lost on the way.
    let mut own = automerge::AutoCommit::new();
    own.put(ROOT, "first", 1).unwrap();
    own.commit();
    let first = own.get_last_local_change().unwrap().clone();
    own.put(ROOT, "second", 2).unwrap();
    own.commit();
    let second = own.get_last_local_change().unwrap().clone();
    let carrying = |device: &RawPeer, change: &automerge::Change| {
        let data = automerge::sync::Message {
            heads: vec![second.hash()],
            need: Vec::new(),
            have: Vec::new(),
            changes: vec![change.raw_bytes().to_vec()].into(),
            flags: None,
            version: automerge::sync::MessageVersion::V1,
        };
        sync(device, id, data.encode())
    };
    let message = carrying(&device, &second);
    device.send(&message).await;
    // The server holds the second change and asks for the first, by name.
    let asked = loop {
        match next_within(&mut device, WAIT).await {
            Some(Message::Sync { data, .. }) => {
                break automerge::sync::Message::decode(&data).unwrap().need;
            }
            Some(_) => continue,
            None => panic!("no answer"),
        }
    };
    assert!(
        asked.contains(&first.hash()),
        "the server asked for {asked:?}, not for the change the held one depends on"
    );
    // Given it, the server stores both.
    let message = carrying(&device, &first);
    device.send(&message).await;
    lianxin_tests::until(WAIT, || async {
        let stored = app.stored_doc(id).await.unwrap();
        if stored.get_heads().contains(&second.hash()) {
            Ok(())
        } else {
            Err("the held change was not stored".to_owned())
        }
    })
    .await;
    app.stop().await;
}
