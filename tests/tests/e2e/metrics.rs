//! `/metrics` counters move during a sync, and the health endpoints answer.

use std::time::Duration;

use automerge::ROOT;
use automerge::transaction::Transactable;
use lianxin_client::{Client, ClientConfig};
use lianxin_tests::{Backend, TestDb, spawn_app};

use crate::both_backends;

both_backends!(metrics_move_during_a_sync);

async fn metrics_move_during_a_sync(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = spawn_app(&db).await;
    let names = [
        "lianxin_connections_total",
        "lianxin_messages_in_total",
        "lianxin_messages_out_total",
        "lianxin_bytes_in_total",
        "lianxin_bytes_out_total",
        "lianxin_merges_total",
        "lianxin_merge_duration_seconds_count",
    ];
    let mut before = Vec::new();
    for name in names {
        before.push(app.metric(name).await);
    }
    let client = Client::in_memory(ClientConfig::default()).await.unwrap();
    client
        .connect(&app.ws_url(), &app.token("m", "m-phone").await)
        .await
        .unwrap();
    let id = client
        .create(|tx| tx.put(ROOT, "service", "haircut").map(|_| ()))
        .await
        .unwrap();
    client
        .wait_synced(id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(app.metric("lianxin_connections_open").await, 1.0);
    for (name, before) in names.iter().zip(before) {
        let after = app.metric(name).await;
        assert!(after > before, "{name} did not move: {before} -> {after}");
    }

    let ready: serde_json::Value = reqwest::get(app.http_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready");
    let health = reqwest::get(app.http_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    client.disconnect().await;
    app.stop().await;
}
