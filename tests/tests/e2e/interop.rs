//! Interop with a client no one here wrote: the npm `@automerge/automerge-repo` repo and its
//! websocket adapter (`tests/interop/interop.mjs`) create a document through our server, a
//! Rust client reads it, and a change made on the Rust side reaches the JS side.
//!
//! Needs Node and `npm ci` in `tests/interop` (done by `scripts/test`). Without them this test
//! fails with a message saying so, rather than skipping silently.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use lianxin_client::{Client, ClientConfig, DocumentId};
use lianxin_tests::{Backend, TestDb, spawn_app};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

fn interop_dir() -> PathBuf {
    std::env::var_os("LIANXIN_INTEROP_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automerge_repo_js_client_interoperates() {
    let dir = interop_dir();
    assert!(
        dir.join("node_modules/@automerge/automerge-repo").exists(),
        "{} has no node_modules: run scripts/test (or `npm ci` there) first",
        dir.display()
    );
    let db = TestDb::new(Backend::Postgres).await;
    let app = spawn_app(&db).await;

    let mut node = Command::new("node")
        .arg("interop.mjs")
        .current_dir(&dir)
        .env("LIANXIN_URL", app.ws_url())
        .env("LIANXIN_TOKEN", app.token("js-user", "js-device").await)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(40), lines.next_line())
            .await
            .expect("node answered in time")
            .expect("read node output")
            .expect("node printed a line")
    };

    // JS creates the document and waits until the server acknowledged it.
    let line = next_line().await;
    let url = line
        .strip_prefix("DOC ")
        .unwrap_or_else(|| panic!("expected DOC <url>, node said {line:?}"));
    let id: DocumentId = url.parse().expect("automerge URL");

    // The Rust client reads what JS wrote.
    let rust = Client::in_memory(ClientConfig::default()).await.unwrap();
    rust.connect(&app.ws_url(), &app.token("rust-user", "rust-device").await)
        .await
        .unwrap();
    rust.fetch(id, Duration::from_secs(10)).await.unwrap();
    let (title, items) = rust
        .read(id, |doc| {
            // automerge-js stores strings as text objects.
            let title = match doc.get(ROOT, "title").unwrap() {
                Some((automerge::Value::Object(automerge::ObjType::Text), text)) => {
                    Some(doc.text(&text).unwrap())
                }
                other => panic!("title should be text, is {other:?}"),
            };
            let items = doc
                .get(ROOT, "items")
                .unwrap()
                .map(|(_, list)| doc.length(&list));
            (title, items)
        })
        .unwrap();
    assert_eq!(title.as_deref(), Some("from-js"));
    assert_eq!(items, Some(2));

    // A change on the Rust side reaches the JS side.
    rust.change(id, |tx| {
        tx.put(ROOT, "fromRust", "hello from rust").map(|_| ())
    })
    .await
    .unwrap();
    let line = next_line().await;
    assert_eq!(line, "SAW hello from rust");
    let status = tokio::time::timeout(Duration::from_secs(10), node.wait())
        .await
        .expect("node exits")
        .unwrap();
    assert!(status.success(), "node exited with {status}");
    app.stop().await;
}
