//! The area tree, users and devices: tokens must name a registered, active user and a device
//! bound to them; administrators manage only their own area; revoking cuts open connections.

use std::time::Duration;

use automerge::ROOT;
use automerge::transaction::Transactable;
use lianxin_client::{Client, ClientConfig, ClientEvent};
use lianxin_server::auth::TokenRequest;
use lianxin_tests::{Backend, RawPeer, TestApp, TestDb, spawn_app};
use serde_json::json;
use tokio_tungstenite::tungstenite;

const WAIT: Duration = Duration::from_secs(10);

fn raw_token(app: &TestApp, sub: &str, device: Option<&str>) -> String {
    app.state
        .auth
        .issue(&TokenRequest {
            sub: sub.into(),
            role: "secretary".into(),
            scope: "/test".into(),
            device: device.map(Into::into),
            ttl_secs: 600,
        })
        .unwrap()
}

/// Status and body of a refused upgrade (101 when accepted).
async fn upgrade(app: &TestApp, token: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(format!("{}?token={token}", app.ws_url())).await {
        Ok(_) => (101, String::new()),
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn tokens_must_name_an_active_user_and_their_own_device() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    app.register("wang", "wang-phone", "grid_worker", "/test/grid-1")
        .await;
    app.register("li", "li-phone", "grid_worker", "/test/grid-1")
        .await;

    let cases = [
        (raw_token(&app, "nobody", Some("x")), "unknown user"),
        (raw_token(&app, "wang", None), "no device"),
        (raw_token(&app, "wang", Some("nothing")), "unknown device"),
        (raw_token(&app, "wang", Some("li-phone")), "not bound"),
    ];
    for (token, why) in &cases {
        let (status, body) = upgrade(&app, token).await;
        assert_eq!(status, 401, "{why}");
        assert!(body.contains(why), "{why}: {body}");
    }
    assert_eq!(
        upgrade(&app, &raw_token(&app, "wang", Some("wang-phone")))
            .await
            .0,
        101
    );

    app.state.store.revoke_device("wang-phone").await.unwrap();
    let (status, body) = upgrade(&app, &raw_token(&app, "wang", Some("wang-phone"))).await;
    assert_eq!((status, body.contains("revoked")), (401, true), "{body}");
    app.state.store.revoke_user("li").await.unwrap();
    let (status, body) = upgrade(&app, &raw_token(&app, "li", Some("li-phone"))).await;
    assert_eq!((status, body.contains("revoked")), (401, true), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_disconnected_at_once_and_refused_after() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = spawn_app(&db).await;
    let admin = app
        .token_as("admin-1", "admin-desk", "admin", "/test")
        .await;
    let token = app.token("zhao", "zhao-phone").await;
    let phone = Client::in_memory(ClientConfig::default()).await.unwrap();
    let mut events = phone.subscribe();
    phone.connect(&app.ws_url(), &token).await.unwrap();
    let mut raw = RawPeer::connect(&app, &token).await;

    let http = reqwest::Client::new();
    let response = http
        .post(app.http_url("/v1/admin/devices/zhao-phone/revoke"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    // The open connection is told and closed (policy violation, 1008)…
    match raw.recv().await {
        Some(lianxin_protocol::Message::Error { message, .. }) => {
            assert!(message.contains("revoked"), "{message}")
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    assert_eq!(raw.closed().await, Some(1008));
    // …and the SDK's reconnect is refused: it asks the app for a fresh token.
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
    assert!(reason.contains("revoked"), "{reason}");
    // Edits still work offline on the phone; they just do not go anywhere.
    phone
        .create(|tx| tx.put(ROOT, "k", 1).map(|_| ()))
        .await
        .unwrap();
    phone.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn administrators_manage_their_own_area_only() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let admin = app
        .token_as("street-admin", "desk-1", "admin", "/city/street-1")
        .await;
    // Another street exists, outside this administrator's area.
    app.register("other-admin", "desk-2", "admin", "/city/street-2")
        .await;
    let secretary = app
        .token_as("sec", "sec-phone", "secretary", "/city/street-1")
        .await;
    let http = reqwest::Client::new();
    let post = |path: &str, token: &str, body: serde_json::Value| {
        http.post(app.http_url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
    };

    let r = post(
        "/v1/admin/areas",
        &admin,
        json!({"path": "/city/street-1/community-1", "name": "社区一", "level": "community"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(
        "/v1/admin/areas",
        &admin,
        json!({"path": "/city/street-1/community-1", "name": "again", "level": "community"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 409, "duplicate");
    let r = post(
        "/v1/admin/areas",
        &admin,
        json!({"path": "/city/street-2/community-9", "name": "x", "level": "community"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403, "outside the admin's area");
    let r = post(
        "/v1/admin/areas",
        &admin,
        json!({"path": "/city/street-1/nowhere/grid-1", "name": "x", "level": "grid"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "parent missing");
    let r = post(
        "/v1/admin/users",
        &admin,
        json!({"id": "vol-1", "name": "志愿者", "role": "volunteer", "area": "/city/street-1/community-1"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = post(
        "/v1/admin/users",
        &admin,
        json!({"id": "x", "name": "x", "role": "emperor", "area": "/city/street-1"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400, "unknown role");
    let r = post(
        "/v1/admin/devices",
        &admin,
        json!({"id": "vol-1-phone", "user": "vol-1"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    // A user of another street is "not found" to this administrator.
    let r = post(
        "/v1/admin/devices",
        &admin,
        json!({"id": "d9", "user": "other-admin"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    // Non-administrators may not.
    let r = post(
        "/v1/admin/areas",
        &secretary,
        json!({"path": "/city/street-1/c2", "name": "x", "level": "community"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    let users: serde_json::Value = http
        .get(app.http_url("/v1/admin/users"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec!["sec", "street-admin", "vol-1"],
        "only this street's users"
    );

    // The new volunteer's device can connect with a token.
    let token = app
        .token_as(
            "vol-1",
            "vol-1-phone",
            "volunteer",
            "/city/street-1/community-1",
        )
        .await;
    assert_eq!(upgrade(&app, &token).await.0, 101);
    app.stop().await;
}
