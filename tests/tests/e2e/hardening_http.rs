//! The HTTP side of hardening (issue 13): revocation ends changes-feed streams and long polls
//! on every node, streams end at their lifetime and at their token's expiry, figures follow
//! what a role reads, an administrator cannot tell IDs outside their area exist, tokens that
//! are not valid yet or live too long are refused, a user over the rate limit gets 429 while
//! others do not, and list pages are bounded in bytes.

use std::time::{Duration, Instant};

use lianxin_server::auth::TokenRequest;
use lianxin_tests::cluster::Cluster;
use lianxin_tests::{Backend, TestApp, TestDb, spawn_app, spawn_app_with, test_settings, until};
use serde_json::{Value, json};

use crate::field::{device, place_order};

const NODE: &str = env!("CARGO_BIN_EXE_lianxin-node");
const WAIT: Duration = Duration::from_secs(15);
/// The issue's bound: a revoked device's open stream ends within this.
const CUT_WITHIN: Duration = Duration::from_secs(2);
const GRID: &str = "/city/street-1/community-1/grid-a";

/// Opens `/v1/changes` at `url` as server-sent events; the answer has started (so the server
/// has registered the stream) when this returns.
async fn open_stream(url: &str, token: &str) -> reqwest::Response {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response
}

/// Reads a stream until the server ends it; the text received and when it ended, or `None`
/// if it was still open after `within`.
async fn read_to_end(
    mut response: reqwest::Response,
    within: Duration,
) -> (String, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut text = String::new();
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return (text, None),
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(_) => return (text, Some(Instant::now())),
        }
    }
}

/// A long poll of the feed: its status, body and when it answered.
async fn long_poll(url: String, token: String) -> (u16, String, Instant) {
    let response = reqwest::Client::new()
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, body, Instant::now())
}

/// GETs `path` with `token`: status and JSON body (or text).
async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(app.http_url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_devices_changes_stream_and_long_poll_end_within_two_seconds() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = spawn_app(&db).await;
    let admin = app
        .token_as("admin-1", "admin-desk", "admin", "/test")
        .await;
    let token = app.token("zhao", "zhao-phone").await;
    let stream = open_stream(&app.http_url("/v1/changes"), &token).await;
    let poll = tokio::spawn(long_poll(
        app.http_url("/v1/changes?wait=30"),
        token.clone(),
    ));
    // Both are waiting, registered for revocation.
    until(WAIT, || async {
        match app.state.live.len() {
            2 => Ok(()),
            n => Err(format!("{n} streams registered")),
        }
    })
    .await;

    let revoked_at = Instant::now();
    let response = reqwest::Client::new()
        .post(app.http_url("/v1/admin/devices/zhao-phone/revoke"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let (text, ended) = read_to_end(stream, WAIT).await;
    let ended = ended.unwrap_or_else(|| panic!("the stream went on after revocation: {text:?}"));
    assert!(
        ended - revoked_at < CUT_WITHIN,
        "the stream ended {:?} after revocation",
        ended - revoked_at
    );
    assert!(
        text.contains("event: end") && text.contains("data: revoked"),
        "the stream says why it ends: {text:?}"
    );
    let (status, body, answered) = tokio::time::timeout(WAIT, poll)
        .await
        .expect("the long poll went on after revocation")
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(
        answered - revoked_at < CUT_WITHIN,
        "the long poll answered {:?} after revocation",
        answered - revoked_at
    );
    until(WAIT, || async {
        match app.state.live.len() {
            0 => Ok(()),
            n => Err(format!("{n} ended streams still registered")),
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_ends_the_devices_streams_on_every_node() {
    let cluster = Cluster::start(NODE, 2, true).await;
    let token = cluster
        .token_as("zhao", "zhao-phone", "secretary", GRID)
        .await;
    let mut streams = Vec::new();
    for i in 0..2 {
        streams.push(open_stream(&cluster.http_url(i, "/v1/changes"), &token).await);
    }
    // Revoked from outside both nodes (as `lianxin-server device revoke` would).
    let revoked_at = Instant::now();
    assert!(cluster.store.revoke_device("zhao-phone").await.unwrap());
    let ends =
        futures_util::future::join_all(streams.into_iter().map(|stream| read_to_end(stream, WAIT)))
            .await;
    for (i, (text, ended)) in ends.into_iter().enumerate() {
        let ended = ended.unwrap_or_else(|| panic!("node {i}: the stream went on: {text:?}"));
        assert!(
            ended - revoked_at < CUT_WITHIN,
            "node {i}: the stream ended {:?} after revocation",
            ended - revoked_at
        );
        assert!(text.contains("data: revoked"), "node {i}: {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changes_stream_ends_at_its_lifetime_and_at_its_tokens_expiry() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.sse_max_secs = 2;
    let app = spawn_app_with(settings).await;
    let token = app.token("zhao", "zhao-phone").await;

    let opened = Instant::now();
    let stream = open_stream(&app.http_url("/v1/changes?since=0-0"), &token).await;
    let (text, ended) = read_to_end(stream, WAIT).await;
    let lived = ended.expect("the stream outlived its lifetime") - opened;
    assert!(
        lived >= Duration::from_millis(1900),
        "ended early: {lived:?}"
    );
    assert!(text.contains("data: lifetime"), "{text:?}");
    // The end event carries the cursor to resume from.
    assert!(text.contains("id: 0-0"), "{text:?}");
    // Resuming from it works.
    let response = reqwest::Client::new()
        .get(app.http_url("/v1/changes"))
        .bearer_auth(&token)
        .header("accept", "text/event-stream")
        .header("last-event-id", "0-0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    // A token that expires in a second: the stream does not outlive it.
    let short = app
        .state
        .auth
        .issue(&TokenRequest {
            sub: "zhao".into(),
            role: "secretary".into(),
            scope: "/test".into(),
            device: Some("zhao-phone".into()),
            ttl_secs: 1,
        })
        .unwrap();
    let stream = open_stream(&app.http_url("/v1/changes"), &short).await;
    let (text, ended) = read_to_end(stream, WAIT).await;
    assert!(ended.is_some(), "the stream outlived its token");
    assert!(text.contains("data: token-expired"), "{text:?}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_are_given_only_of_kinds_the_role_reads() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = crate::field::field_app(&db).await;
    let secretary = device(&app, "sec-1", "secretary", GRID).await;
    // A secretary may place orders, but not read the order list.
    place_order(&secretary, GRID, "sec-1").await;
    let sec = app
        .token_as("sec-1", "sec-1-phone", "secretary", GRID)
        .await;
    let sup = app
        .token_as("sup-1", "sup-1-desk", "supervisor", GRID)
        .await;
    let vol = app
        .token_as("vol-1", "vol-1-phone", "volunteer", GRID)
        .await;
    let period = "/v1/stats?from=2025-11-01&to=2025-11-30";

    assert_eq!(get(&app, &sec, "/v1/orders").await.0, 403);
    let (status, body) = get(&app, &sec, period).await;
    assert_eq!(status, 200, "{body}");
    let row = &body["items"][0];
    for figure in [
        "ordersPlaced",
        "ordersTaken",
        "ordersDone",
        "meanMsToTake",
        "stationServices",
        "beneficiaries",
    ] {
        assert_eq!(
            row[figure],
            Value::Null,
            "a secretary gets no {figure}: {row}"
        );
    }
    assert_eq!(row["visits"], 0, "{row}");
    assert_eq!(row["requestsCollected"], 0, "{row}");

    // A supervisor reads orders: the order is counted.
    let (status, body) = get(&app, &sup, period).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["ordersPlaced"], 1, "{body}");
    assert_eq!(body["items"][0]["stationServices"], 0, "{body}");
    // A volunteer reads orders only.
    let (status, body) = get(&app, &vol, period).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"][0]["ordersPlaced"], 1, "{body}");
    assert_eq!(body["items"][0]["visits"], Value::Null, "{body}");
    assert_eq!(body["items"][0]["requestsCollected"], Value::Null, "{body}");

    // The CSV leaves the hidden figures empty.
    let (_, csv) = get(&app, &sec, &format!("{period}&format=csv")).await;
    let csv = csv.as_str().unwrap().to_owned();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cells: Vec<&str> = lines.next().unwrap().split(',').collect();
    let placed = header.iter().position(|h| *h == "ordersPlaced").unwrap();
    assert_eq!(cells[placed], "", "{csv}");
    secretary.disconnect().await;
    app.stop().await;
}

#[tokio::test]
async fn an_administrator_cannot_tell_an_id_outside_their_area_exists() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    let admin = app
        .token_as("street-admin", "desk-1", "admin", "/city/street-1")
        .await;
    app.register("zhang", "zhang-phone", "secretary", "/city/street-2")
        .await;
    app.register("li", "li-phone", "secretary", "/city/street-1")
        .await;
    let http = reqwest::Client::new();
    // The answer, with the ID it names replaced, so answers about different IDs compare.
    let answer = |path: &'static str, body: Value, id: &'static str| {
        let request = http
            .post(app.http_url(path))
            .bearer_auth(&admin)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            let message = body["message"].as_str().unwrap_or_default();
            let quoted = format!("{id:?}");
            let message = message.replace(&quoted, "<id>");
            (status, format!("{} {message}", body["error"]))
        }
    };
    let user = |id: &'static str| {
        answer(
            "/v1/admin/users",
            json!({"id": id, "name": "x", "role": "secretary", "area": "/city/street-1"}),
            id,
        )
    };
    let device =
        |id: &'static str| answer("/v1/admin/devices", json!({"id": id, "user": "li"}), id);

    // A user who exists in another street, one in this street, and a reserved ID (which
    // exists nowhere) get one and the same answer.
    let outside = user("zhang").await;
    assert_eq!(outside.0, 409, "{outside:?}");
    assert_eq!(user("li").await, outside);
    assert_eq!(user("server").await, outside);
    // It names neither what holds the ID nor where.
    for word in ["exists", "user", "street-2", "secretary", "reserved"] {
        assert!(!outside.1.contains(word), "{word:?} in {outside:?}");
    }
    // Devices alike: one of another street's user, and one of this street.
    assert_eq!(device("zhang-phone").await, outside);
    assert_eq!(device("li-phone").await, outside);
    // A free ID is created.
    assert_eq!(user("wang").await.0, 201);
    app.stop().await;
}

#[tokio::test]
async fn tokens_not_valid_yet_or_living_too_long_are_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = spawn_app(&db).await;
    app.register("zhao", "zhao-phone", "secretary", "/test")
        .await;
    let key = std::fs::read(db.data_dir.join("jwt-hs256.key")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let sign = |claims: &Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(&key),
        )
        .unwrap()
    };
    let claims = json!({
        "sub": "zhao", "role": "secretary", "scope": "/test", "device": "zhao-phone",
        "iss": "lianxin", "aud": "lianxin-sync", "iat": now, "exp": now + 600,
    });
    assert_eq!(get(&app, &sign(&claims), "/v1/changes").await.0, 200);

    let mut later = claims.clone();
    later["nbf"] = (now + 3600).into();
    let mut forever = claims.clone();
    forever["exp"] = (now + 10 * 365 * 24 * 3600).into();
    let mut no_iat = claims.clone();
    no_iat.as_object_mut().unwrap().remove("iat");
    for (why, claims) in [
        ("nbf in an hour", later),
        ("ten years", forever),
        ("no iat", no_iat),
    ] {
        let (status, body) = get(&app, &sign(&claims), "/v1/changes").await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"], "unauthorized", "{why}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_user_over_the_rate_limit_gets_429_and_others_do_not() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.limits.http_requests_per_second = 1;
    settings.limits.http_burst = 5;
    let app = spawn_app_with(settings).await;
    let zhao = app.token("zhao", "zhao-phone").await;
    let qian = app.token("qian", "qian-phone").await;

    let mut limited = None;
    for _ in 0..10 {
        let response = reqwest::Client::new()
            .get(app.http_url("/v1/changes"))
            .bearer_auth(&zhao)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let response = limited.expect("ten requests at once passed a burst of five");
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    // Another user is not held back.
    assert_eq!(get(&app, &qian, "/v1/changes").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_stop_at_the_byte_budget_and_continue_with_next() {
    const BUDGET: usize = 1500;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.documents.allow_untyped = false;
    settings.limits.max_page_bytes = BUDGET;
    let app = spawn_app_with(settings).await;
    let worker = device(&app, "worker", "grid_worker", GRID).await;
    let mut placed = std::collections::BTreeSet::new();
    for _ in 0..6 {
        placed.insert(place_order(&worker, GRID, "worker").await.to_string());
    }
    let token = app
        .token_as("worker", "worker-phone", "grid_worker", GRID)
        .await;

    // Orders: every page within the budget, several pages, every order once.
    let mut seen = std::collections::BTreeSet::new();
    let mut path = "/v1/orders?limit=100".to_owned();
    let mut pages = 0;
    loop {
        let (status, body) = get(&app, &token, &path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        let items = body["items"].as_array().unwrap();
        assert!(!items.is_empty());
        let bytes = serde_json::to_vec(items).unwrap().len();
        assert!(bytes <= BUDGET, "a page of {bytes} bytes");
        for item in items {
            assert!(seen.insert(item["documentId"].as_str().unwrap().to_owned()));
        }
        match body["next"].as_str() {
            Some(next) => path = format!("/v1/orders?limit=100&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, placed);
    assert!(pages > 1, "six orders fit in one page of {BUDGET} bytes?");

    // The area history, likewise (its `next` is a cursor; the last page is empty).
    let mut changes = 0;
    let mut pages = 0;
    let mut path = "/v1/history".to_owned();
    loop {
        let (status, body) = get(&app, &token, &path).await;
        assert_eq!(status, 200, "{body}");
        let items = body["changes"].as_array().unwrap();
        if items.is_empty() {
            break;
        }
        pages += 1;
        let bytes = serde_json::to_vec(items).unwrap().len();
        assert!(
            bytes <= BUDGET || items.len() == 1,
            "a page of {bytes} bytes"
        );
        changes += items.len();
        path = format!("/v1/history?after={}", body["next"].as_str().unwrap());
    }
    assert!(changes >= 6, "{changes} changes");
    assert!(pages > 1);
    worker.disconnect().await;
    app.stop().await;
}
