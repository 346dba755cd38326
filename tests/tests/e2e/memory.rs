//! Bounded server memory: with a cap of two loaded documents, and connections that keep only
//! three documents open (closing and watching the rest), devices that edit twenty documents at
//! once through their sync sessions lose nothing, and the server holds no more than the caps.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ChangeHash, ROOT, ReadDoc};
use lianxin_client::{Client, ClientConfig, DocumentId};
use lianxin_protocol::domain::builders::{self, Common, VisitInit};
use lianxin_protocol::domain::{AreaPath, LocalDate};
use lianxin_tests::{Backend, TestApp, TestDb, spawn_app_with, test_settings, until};

use crate::both_backends;
use crate::field::am;

const WAIT: Duration = Duration::from_secs(30);
const GRID: &str = "/city/street-1/community-1/grid-a";

both_backends!(eviction_under_a_tiny_cap_loses_nothing);

/// A device that syncs document by document (no area sync), so every document it touches is
/// open in a session on the server.
async fn session_device(app: &TestApp, user: &str) -> Client {
    let client = Client::in_memory(ClientConfig {
        area_sync: false,
        ..ClientConfig::default()
    })
    .await
    .unwrap();
    let token = app
        .token_as(user, &format!("{user}-phone"), "grid_worker", GRID)
        .await;
    client.connect(&app.ws_url(), &token).await.unwrap();
    client
}

fn text(client: &Client, id: DocumentId, key: &str) -> Option<String> {
    client
        .read(id, |d| {
            d.get(ROOT, key)
                .ok()
                .flatten()
                .and_then(|(v, _)| v.into_string().ok())
        })
        .ok()
        .flatten()
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

async fn eviction_under_a_tiny_cap_loses_nothing(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut settings = test_settings(&db);
    settings.documents.allow_untyped = false;
    settings.limits.max_documents_in_memory = 2;
    settings.limits.keep_open_documents_per_connection = 3;
    let app = spawn_app_with(settings).await;
    let a = session_device(&app, "worker-a").await;
    let b = session_device(&app, "worker-b").await;

    let mut ids = Vec::new();
    for n in 0..20 {
        let common = Common {
            area: AreaPath::new(GRID).unwrap(),
            created_by: "worker-a".into(),
            created_at: 1_767_578_400_000 + n,
        };
        let init = VisitInit {
            household: format!("household-{n}"),
            date: LocalDate::new(2026, 1, 5).unwrap(),
            visitors: vec!["worker-a".into()],
            heard: "first visit".into(),
            people_received: 1,
            requests: vec![],
        };
        ids.push(
            a.create(|tx| builders::init_visit(tx, &common, &init).map_err(am))
                .await
                .unwrap(),
        );
    }
    a.wait_up_to_date(WAIT).await.unwrap();
    for id in &ids {
        b.fetch(*id, WAIT).await.unwrap();
    }

    // Both edit every document at once, three rounds, on different fields.
    for round in 0..3 {
        let edits_a = async {
            for id in &ids {
                a.change(*id, |tx| tx.put(ROOT, "heard", format!("a{round}")))
                    .await
                    .unwrap();
            }
        };
        let edits_b = async {
            for id in ids.iter().rev() {
                b.change(*id, |tx| tx.put(ROOT, "household", format!("b{round}")))
                    .await
                    .unwrap();
            }
        };
        tokio::join!(edits_a, edits_b);
    }
    a.wait_up_to_date(WAIT).await.unwrap();
    b.wait_up_to_date(WAIT).await.unwrap();

    // Every document converges on both devices and in the store, with both last edits.
    until(WAIT, || async {
        let mut apart = 0;
        for id in &ids {
            let stored = app.stored_doc(*id).await.expect("stored");
            let server = sorted(stored.get_heads());
            if sorted(a.heads(*id).unwrap()) != server || sorted(b.heads(*id).unwrap()) != server {
                apart += 1;
            }
        }
        (apart == 0)
            .then_some(())
            .ok_or(format!("{apart} documents never converged"))
    })
    .await;
    for id in &ids {
        let stored = app.stored_doc(*id).await.unwrap();
        let field = |key: &str| {
            stored
                .get(ROOT, key)
                .unwrap()
                .and_then(|(v, _)| v.into_string().ok())
        };
        assert_eq!(field("heard").as_deref(), Some("a2"), "{id}");
        assert_eq!(field("household").as_deref(), Some("b2"), "{id}");
        assert_eq!(text(&a, *id, "household").as_deref(), Some("b2"));
        assert_eq!(text(&b, *id, "heard").as_deref(), Some("a2"));
    }

    // The cap held, and it was put to work.
    assert!(app.metric("lianxin_documents_loaded").await <= 2.0);
    assert!(app.metric("lianxin_documents_unloaded_total").await > 0.0);
    // Each connection keeps three documents open; the actors of the others leave memory once
    // idle (one second here), although both devices stay connected.
    until(WAIT, || async {
        let actors = app.metric("lianxin_documents_in_memory").await;
        (actors <= 6.0)
            .then_some(())
            .ok_or(format!("{actors} document actors still in memory"))
    })
    .await;
    // A change to a document the other device no longer has open still reaches it.
    let last = ids[0];
    a.change(last, |tx| tx.put(ROOT, "heard", "after the caps"))
        .await
        .unwrap();
    until(WAIT, || async {
        (text(&b, last, "heard").as_deref() == Some("after the caps"))
            .then_some(())
            .ok_or("the change never reached the other device".to_string())
    })
    .await;
    app.stop().await;
}
