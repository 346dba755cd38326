//! Tokens: a websocket upgrade without a valid token is refused with 401 and a JSON error
//! body, before any protocol message is exchanged.

use lianxin_server::auth::Claims;
use lianxin_tests::{Backend, TestApp, TestDb, spawn_app};
use tokio_tungstenite::tungstenite;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Claims {
    Claims {
        sub: "u1".into(),
        role: "secretary".into(),
        scope: "/test".into(),
        device: Some("d1".into()),
        iss: "lianxin".into(),
        aud: "lianxin-sync".into(),
        iat: now(),
        exp: now() + 600,
    }
}

/// Signs `claims` with `key` (HS256).
fn sign(claims: &Claims, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn server_key(db: &TestDb) -> Vec<u8> {
    std::fs::read(db.data_dir.join("jwt-hs256.key")).unwrap()
}

/// Attempts an upgrade; returns the HTTP status and body of a refusal, or 101.
async fn upgrade(app: &TestApp, token: Option<&str>) -> (u16, String) {
    let url = match token {
        Some(t) => format!("{}?token={t}", app.ws_url()),
        None => app.ws_url(),
    };
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => (101, String::new()),
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn assert_unauthorized((status, body): (u16, String), why: &str) {
    assert_eq!(status, 401, "{why}: status");
    let body: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
    assert_eq!(body["error"], "unauthorized", "{why}: code");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{why}: message"
    );
}

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    app.register("u1", "d1", "secretary", "/test").await;
    let key = server_key(&db);

    assert_unauthorized(upgrade(&app, None).await, "no token");

    let mut expired = claims();
    expired.iat = now() - 7200;
    expired.exp = now() - 3600;
    let (status, body) = upgrade(&app, Some(&sign(&expired, &key))).await;
    assert!(
        body.contains("expired"),
        "expired token named as such: {body}"
    );
    assert_unauthorized((status, body), "expired");

    assert_unauthorized(
        upgrade(
            &app,
            Some(&sign(&claims(), b"not-the-server-key-not-the-server-key")),
        )
        .await,
        "wrong signature",
    );

    let mut wrong_aud = claims();
    wrong_aud.aud = "someone-else".into();
    assert_unauthorized(
        upgrade(&app, Some(&sign(&wrong_aud, &key))).await,
        "wrong audience",
    );

    let mut wrong_iss = claims();
    wrong_iss.iss = "someone-else".into();
    assert_unauthorized(
        upgrade(&app, Some(&sign(&wrong_iss, &key))).await,
        "wrong issuer",
    );

    assert_unauthorized(upgrade(&app, Some("not.a.jwt")).await, "garbage");

    // The same claims signed with the right key are accepted.
    assert_eq!(upgrade(&app, Some(&sign(&claims(), &key))).await.0, 101);
    assert!(app.metric("lianxin_auth_failures_total").await >= 5.0);
    app.stop().await;
}

#[tokio::test]
async fn bearer_header_is_accepted() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let mut request = app.ws_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", app.token("u2", "d2").await)
            .parse()
            .unwrap(),
    );
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
    app.stop().await;
}
