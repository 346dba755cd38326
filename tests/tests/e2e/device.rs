//! The client SDK as a field device lives it: offline edits that survive restarts, flaky
//! networks, catch-up that does not grow with the store, events, token refresh, damaged stores,
//! and the `lianxin` command line.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc};
use lianxin_client::backoff::BackoffConfig;
use lianxin_client::{
    Client, ClientConfig, ClientError, ClientEvent, DocumentId, Origin, StoreError, SyncState,
};
use lianxin_tests::{
    Backend, FlakyProxy, TestApp, TestDb, spawn_app, spawn_app_with, test_settings,
};

const WAIT: Duration = Duration::from_secs(20);

fn fast_retry() -> ClientConfig {
    ClientConfig {
        backoff: BackoffConfig {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(300),
        },
        ..ClientConfig::default()
    }
}

fn temp_store(name: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("lianxin-device-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn text_of(client: &Client, id: DocumentId, key: &str) -> Option<String> {
    client
        .read(id, |doc| {
            doc.get(ROOT, key)
                .ok()
                .flatten()
                .map(|(v, _)| v.to_string())
        })
        .unwrap()
}

/// A URL on which nothing listens yet, and the address to start a server on later.
async fn free_addr() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_edits_survive_a_restart_and_reach_the_server_once_it_is_up() {
    let db = TestDb::new(Backend::Postgres).await;
    let addr = free_addr().await;
    let url = format!("ws://{addr}/v1/sync");
    let path = temp_store("secretary.db");

    // The server is down. A secretary records two visits in a basement.
    let phone = Client::open(&path, fast_retry()).await.unwrap();
    phone.start_sync(&url, "no-server-yet").await;
    let visit = phone
        .create(|tx| tx.put(ROOT, "household", "5-1-302").map(|_| ()))
        .await
        .unwrap();
    phone
        .change(visit, |tx| {
            tx.put(ROOT, "heard", "stairwell light broken").map(|_| ())
        })
        .await
        .unwrap();
    let second = phone
        .create(|tx| tx.put(ROOT, "household", "5-1-303").map(|_| ()))
        .await
        .unwrap();
    assert_eq!(phone.status().state, SyncState::Offline);
    assert!(phone.status().unsent_changes >= 3);
    // The battery dies: the process ends without any goodbye.
    drop(phone);

    // Restarted upstairs: every edit and every pending upload is still there.
    let phone = Client::open(&path, fast_retry()).await.unwrap();
    assert_eq!(phone.documents().len(), 2);
    assert_eq!(
        text_of(&phone, visit, "heard").as_deref(),
        Some("\"stairwell light broken\"")
    );
    assert!(
        phone.status().unsent_changes >= 3,
        "pending uploads survived"
    );

    // The server comes up on the address the phone keeps retrying.
    let mut settings = test_settings(&db);
    settings.listen = addr;
    let app = spawn_app_with(settings).await;
    phone
        .start_sync(&url, &app.token("sec-1", "phone-1").await)
        .await;
    phone.wait_up_to_date(WAIT).await.unwrap();
    assert_eq!(phone.status().unsent_changes, 0);

    let supervisor = Client::in_memory(ClientConfig::default()).await.unwrap();
    supervisor
        .connect(&app.ws_url(), &app.token("sup", "desk").await)
        .await
        .unwrap();
    supervisor.fetch(visit, WAIT).await.unwrap();
    supervisor.fetch(second, WAIT).await.unwrap();
    assert_eq!(
        text_of(&supervisor, visit, "heard").as_deref(),
        Some("\"stairwell light broken\"")
    );
    phone.disconnect().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_network_loses_nothing_and_duplicates_nothing() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = spawn_app(&db).await;
    let proxy = FlakyProxy::start(app.addr).await;
    let devices = 4;
    let rounds = 30;
    let mut clients = Vec::new();
    for d in 0..devices {
        let client = Client::in_memory(fast_retry()).await.unwrap();
        client
            .connect(
                &proxy.ws_url(),
                &app.token(&format!("u{d}"), &format!("dev{d}")).await,
            )
            .await
            .unwrap();
        clients.push(client);
    }
    let id = clients[0]
        .create(|tx| tx.put_object(ROOT, "log", ObjType::List).map(|_| ()))
        .await
        .unwrap();
    clients[0].wait_synced(id, WAIT).await.unwrap();
    for client in &clients[1..] {
        client.fetch(id, WAIT).await.unwrap();
    }

    let mut cuts = 0;
    for round in 0..rounds {
        for (d, client) in clients.iter().enumerate() {
            let entry = format!("dev{d}-round{round}");
            client
                .change(id, |tx| {
                    let (_, log) = tx.get(ROOT, "log")?.expect("log list");
                    let len = tx.length(&log);
                    tx.insert(&log, len, entry.as_str())
                })
                .await
                .unwrap();
        }
        // Cut every connection mid-sync, often.
        if round % 3 == 0 {
            cuts += proxy.cut_all();
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert!(cuts >= 10, "the network was actually flaky ({cuts} cuts)");

    // The network settles: everyone converges.
    for client in &clients {
        client.wait_up_to_date(WAIT).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut heads: Vec<_> = clients
            .iter()
            .map(|c| {
                let mut h = c.heads(id).unwrap();
                h.sort();
                h
            })
            .collect();
        heads.dedup();
        if heads.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "devices did not converge"
        );
        for client in &clients {
            let _ = client.wait_synced(id, Duration::from_millis(200)).await;
        }
    }
    // Every edit exactly once, on every device and on the server.
    let expected = devices * rounds;
    let entries = |doc: &automerge::Automerge| -> Vec<String> {
        let (_, log) = doc.get(ROOT, "log").unwrap().unwrap();
        (0..doc.length(&log))
            .map(|i| doc.get(&log, i).unwrap().unwrap().0.to_string())
            .collect()
    };
    for client in &clients {
        let list = client.read(id, entries).unwrap();
        let unique: std::collections::HashSet<_> = list.iter().collect();
        assert_eq!(list.len(), expected, "no edit lost");
        assert_eq!(unique.len(), expected, "no edit duplicated");
    }
    let server_doc = app.stored_doc(id).await.unwrap();
    assert_eq!(entries(&server_doc).len(), expected);
    let mut server_heads = server_doc.get_heads();
    server_heads.sort();
    let mut device_heads = clients[0].heads(id).unwrap();
    device_heads.sort();
    assert_eq!(server_heads, device_heads);
    for client in &clients {
        client.disconnect().await;
    }
    app.stop().await;
}

/// Waits until the server has saved that device `key` holds `n` documents, all in sync.
async fn wait_until_recorded(app: &TestApp, key: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let held = app.state.store.device_documents(key).await.unwrap();
        if held.len() == n && held.iter().all(|h| !h.changed) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync states never saved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages a reconnect costs for a store of `n` documents, nothing having changed.
async fn reconnect_cost(app: &TestApp, n: usize, catch_up: bool) -> lianxin_client::ClientStats {
    let path = temp_store("many.db");
    let config = ClientConfig {
        catch_up,
        ..ClientConfig::default()
    };
    let client = Client::open(&path, config.clone()).await.unwrap();
    for i in 0..n {
        client
            .create(|tx| tx.put(ROOT, "n", i as i64).map(|_| ()))
            .await
            .unwrap();
    }
    let token = app.token("grid-worker", &format!("phone-{n}")).await;
    client.connect(&app.ws_url(), &token).await.unwrap();
    client.wait_up_to_date(WAIT).await.unwrap();
    client.disconnect().await;
    // The server saves what each session shared as the old connection's documents detach,
    // just after the socket closed; a reconnect racing that would hear of a few documents
    // again (harmless, but not "nothing new"). Wait until it is recorded.
    if catch_up {
        let store_id = client.store().get_meta("store_id").await.unwrap().unwrap();
        wait_until_recorded(app, &format!("grid-worker/phone-{n}/{store_id}"), n).await;
    }
    // Restart the app too: the catch-up must come from what is stored, not from memory.
    drop(client);
    let client = Client::open(&path, config).await.unwrap();
    let before = client.stats();
    client.connect(&app.ws_url(), &token).await.unwrap();
    client.wait_up_to_date(WAIT).await.unwrap();
    let cost = client.stats() - before;
    client.disconnect().await;
    cost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_nothing_new_does_not_grow_with_the_store() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = spawn_app(&db).await;
    let small = reconnect_cost(&app, 10, true).await;
    let large = reconnect_cost(&app, 1_000, true).await;
    assert_eq!(
        (large.messages_sent, large.messages_received),
        (small.messages_sent, small.messages_received),
        "1,000 documents cost what 10 cost"
    );
    assert!(
        large.messages_sent + large.messages_received <= 6,
        "a handful of messages: {large:?}"
    );
    // The measure is sensitive: without catch-up, every document is offered again.
    let without = reconnect_cost(&app, 10, false).await;
    assert!(without.messages_sent >= 10, "{without:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_brings_what_changed_while_offline_and_live_changes_after() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let path = temp_store("a.db");
    let a = Client::open(&path, ClientConfig::default()).await.unwrap();
    let token_a = app.token("a", "phone-a").await;
    a.connect(&app.ws_url(), &token_a).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            a.create(|tx| tx.put(ROOT, "n", i as i64).map(|_| ()))
                .await
                .unwrap(),
        );
    }
    a.wait_up_to_date(WAIT).await.unwrap();
    // The server records that A's store holds the documents while A is still connected, so a
    // server that dies without closing A's sessions still names them at A's next catch-up.
    let store_id = a.store().get_meta("store_id").await.unwrap().unwrap();
    let held = app
        .state
        .store
        .device_documents(&format!("a/phone-a/{store_id}"))
        .await
        .unwrap();
    assert_eq!(held.len(), 50);
    a.disconnect().await;
    wait_until_recorded(&app, &format!("a/phone-a/{store_id}"), 50).await;

    // While A is offline, B changes two of A's documents.
    let b = Client::in_memory(ClientConfig::default()).await.unwrap();
    b.connect(&app.ws_url(), &app.token("b", "phone-b").await)
        .await
        .unwrap();
    for id in &ids[..2] {
        b.fetch(*id, WAIT).await.unwrap();
        b.change(*id, |tx| tx.put(ROOT, "triaged", true).map(|_| ()))
            .await
            .unwrap();
        b.wait_synced(*id, WAIT).await.unwrap();
    }

    let mut events = a.subscribe();
    let before = a.stats();
    a.connect(&app.ws_url(), &token_a).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while ids[..2]
        .iter()
        .any(|id| text_of(&a, *id, "triaged").is_none())
    {
        assert!(tokio::time::Instant::now() < deadline, "A never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.wait_up_to_date(WAIT).await.unwrap();
    let cost = a.stats() - before;
    assert!(
        cost.messages_sent < 20,
        "only the two changed documents were synced: {cost:?}"
    );

    // A holds the other 48 without having opened them on this connection; a change to one
    // of them still reaches A live.
    b.fetch(ids[10], WAIT).await.unwrap();
    b.change(ids[10], |tx| {
        tx.put(ROOT, "callback", "satisfied").map(|_| ())
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while text_of(&a, ids[10], "callback").is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "live change never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …and the app heard of it, with patches. The event follows the store write, which
    // follows the in-memory change the loop above saw, so wait for it.
    let mut saw_remote = false;
    while let Ok(Ok(event)) = tokio::time::timeout(WAIT, events.recv()).await {
        if let ClientEvent::DocumentChanged {
            id,
            origin: Origin::Remote,
            patches,
        } = event
            && id == ids[10]
        {
            assert!(!patches.is_empty());
            saw_remote = true;
            break;
        }
    }
    assert!(saw_remote, "a DocumentChanged event for the remote change");
    a.disconnect().await;
    b.disconnect().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_waits_for_a_fresh_one() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let client = Client::in_memory(fast_retry()).await.unwrap();
    let mut events = client.subscribe();
    let id = client
        .create(|tx| tx.put(ROOT, "k", 1).map(|_| ()))
        .await
        .unwrap();
    client.start_sync(&app.ws_url(), "expired-or-bogus").await;
    let reason = loop {
        match tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            ClientEvent::TokenRejected { reason } => break reason,
            _ => continue,
        }
    };
    assert!(reason.contains("unauthorized"), "{reason}");
    assert_eq!(client.status().state, SyncState::Offline);
    client.set_token(&app.token("u", "d").await);
    client.wait_synced(id, WAIT).await.unwrap();
    client.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn damaged_or_newer_stores_are_refused_with_the_file_named() {
    // Not a database at all.
    let path = temp_store("garbage.db");
    std::fs::write(
        &path,
        b"this is not a sqlite file, it is a shopping list".repeat(100),
    )
    .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Client::open(&path, ClientConfig::default())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, ClientError::Store(StoreError::Corrupt { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the file was not touched"
    );

    // Written by a newer version of the schema.
    let path = temp_store("newer.db");
    let client = Client::open(&path, ClientConfig::default()).await.unwrap();
    let id = client
        .create(|tx| tx.put(ROOT, "k", "keep me").map(|_| ()))
        .await
        .unwrap();
    drop(client);
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, x'00', 0)",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let err = Client::open(&path, ClientConfig::default())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            ClientError::Store(StoreError::NewerSchema { version: 9999, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(&path.display().to_string()));
    // Nothing was lost: remove the future migration and the document is there.
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 9999")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let client = Client::open(&path, ClientConfig::default()).await.unwrap();
    assert_eq!(text_of(&client, id, "k").as_deref(), Some("\"keep me\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_acts_as_a_device() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let store = temp_store("cli.db");
    let cli = |args: &[&str]| {
        let mut argv = vec![
            "lianxin".to_string(),
            "--store".into(),
            store.display().to_string(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        async move {
            let mut out = Vec::new();
            lianxin_client::cli::run_with(argv, &mut out).await.unwrap();
            String::from_utf8(out).unwrap()
        }
    };
    let id = cli(&[
        "doc",
        "create",
        "--json",
        r#"{"household":"9-9-909","people":3,"visitors":["Wang","Li"],"address":{"building":9,"rooms":[1,2]}}"#,
    ])
    .await;
    let id = id.trim().to_string();
    cli(&["doc", "put", &id, "heard", "needs a ramp"]).await;
    cli(&["doc", "put", &id, "people", "4"]).await;
    let json: serde_json::Value = serde_json::from_str(&cli(&["doc", "get", &id]).await).unwrap();
    assert_eq!(json["household"], "9-9-909");
    assert_eq!(json["people"], 4);
    assert_eq!(json["heard"], "needs a ramp");
    assert_eq!(json["visitors"][1], "Li");
    assert_eq!(json["address"]["building"], 9);
    assert_eq!(json["address"]["rooms"][1], 2);
    assert_eq!(cli(&["doc", "list"]).await.trim(), id);
    let status: serde_json::Value = serde_json::from_str(&cli(&["status"]).await).unwrap();
    assert!(status["unsent_changes"].as_u64().unwrap() >= 3);

    let token = app.token("cli", "laptop").await;
    cli(&["login", "--server", &app.ws_url(), "--token", &token]).await;
    let synced = cli(&["sync", "--timeout", "20"]).await;
    assert!(
        synced.starts_with("up to date: 1 documents, 0 unsent"),
        "{synced}"
    );
    let stored = app.state.store.load(&id.parse().unwrap()).await.unwrap();
    assert!(stored.is_some(), "the server has the document");

    let report = lianxin_client::cli::simulate(&lianxin_client::cli::SimulateOptions {
        devices: 3,
        edits: 8,
        docs: 2,
        server: app.ws_url(),
        token: app.token("sim", "sim").await,
        seed: 42,
        timeout: WAIT,
    })
    .await
    .unwrap();
    assert!(report.converged, "{report:?}");
    assert!(report.all_edits_present, "{report:?}");
    app.stop().await;
}
