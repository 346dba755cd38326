//! The field rules through real websockets and real storage: who may see which documents (the
//! area tree and the role), and which changes they may make. A refused document looks exactly
//! like a missing one; a refused change is stored nowhere and its author's device sets it
//! aside.

use std::time::Duration;

use automerge::AutomergeError;
use lianxin_client::{Client, ClientConfig, ClientError, ClientEvent, DocumentId};
use lianxin_protocol::domain::builders::{self, Common, HouseholdInit, RequestInit, Resident};
use lianxin_protocol::domain::{AreaPath, Event, EventKind, Origin, Track};
use lianxin_tests::{Backend, TestApp, TestDb, spawn_app_with, test_settings};

const WAIT: Duration = Duration::from_secs(10);
const GRID_A: &str = "/city/street-1/community-1/grid-a";
const GRID_B: &str = "/city/street-1/community-1/grid-b";

/// A server that accepts only the field's typed documents.
pub(crate) async fn field_app(db: &TestDb) -> TestApp {
    let mut settings = test_settings(db);
    settings.documents.allow_untyped = false;
    spawn_app_with(settings).await
}

/// A connected device of `user`, registered with `role` in `area`.
pub(crate) async fn device(app: &TestApp, user: &str, role: &str, area: &str) -> Client {
    let client = Client::in_memory(ClientConfig::default()).await.unwrap();
    let token = app
        .token_as(user, &format!("{user}-phone"), role, area)
        .await;
    client.connect(&app.ws_url(), &token).await.unwrap();
    client
}

fn common(area: &str, user: &str) -> Common {
    Common {
        area: AreaPath::new(area).unwrap(),
        created_by: user.into(),
        created_at: 1_763_000_000_000,
    }
}

/// Places an order for household 17 in `area`, written by `user` on `client`, and waits until
/// the server has it.
pub(crate) async fn place_order(client: &Client, area: &str, user: &str) -> DocumentId {
    use lianxin_protocol::domain::builders::OrderInit;
    let order = client
        .create(|tx| {
            builders::init_order(
                tx,
                &common(area, user),
                &OrderInit {
                    requester: "household-17".into(),
                    service_kind: "accompany to hospital".into(),
                    window_start: 1_763_100_000_000,
                    window_end: 1_763_110_000_000,
                    place: "3-2-401".into(),
                },
            )
            .map_err(am)
        })
        .await
        .unwrap();
    client.wait_synced(order, WAIT).await.unwrap();
    order
}

/// Volunteer `me` taps "take" on `order` on `client` (online or not), at `at`.
pub(crate) async fn claim(client: &Client, order: DocumentId, me: &str, at: i64) {
    let claim = lianxin_protocol::domain::Claim {
        volunteer: me.into(),
        device: Some(format!("{me}-phone")),
        at,
    };
    client
        .change(order, |tx| builders::append_claim(tx, &claim).map_err(am))
        .await
        .unwrap();
}

/// Builder errors as Automerge errors, for the SDK's transaction closures.
pub(crate) fn am(e: builders::BuildError) -> AutomergeError {
    match e {
        builders::BuildError::Automerge(e) => e,
        _ => AutomergeError::Fail,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_b_cannot_read_grid_a_and_cannot_tell_it_exists() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = field_app(&db).await;
    let worker_a = device(&app, "grid-worker-a", "grid_worker", GRID_A).await;
    let household = worker_a
        .create(|tx| {
            builders::init_household(
                tx,
                &common(GRID_A, "grid-worker-a"),
                &HouseholdInit {
                    address: "3-2-401".into(),
                    residents: vec![Resident {
                        name: "张三".into(),
                        phone: Some("13800000000".into()),
                        id_number: None,
                    }],
                },
            )
            .map_err(am)
        })
        .await
        .unwrap();
    worker_a.wait_synced(household, WAIT).await.unwrap();
    assert!(app.stored_doc(household).await.is_some());

    let worker_b = device(&app, "grid-worker-b", "grid_worker", GRID_B).await;
    let known = worker_b.fetch(household, WAIT).await.unwrap_err();
    let missing = worker_b
        .fetch(DocumentId::random(), WAIT)
        .await
        .unwrap_err();
    assert!(matches!(known, ClientError::Unavailable(_)), "{known:?}");
    assert!(
        matches!(missing, ClientError::Unavailable(_)),
        "{missing:?}"
    );

    // A supervisor of the street sees requests but not households (residents' names).
    let supervisor = device(&app, "sup", "supervisor", "/city/street-1").await;
    assert!(matches!(
        supervisor.fetch(household, WAIT).await,
        Err(ClientError::Unavailable(_))
    ));
    // A secretary of the community does see it.
    let secretary = device(&app, "sec", "secretary", "/city/street-1/community-1").await;
    secretary.fetch(household, WAIT).await.unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_changes_are_stored_nowhere_and_set_aside_on_the_device() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = field_app(&db).await;
    let secretary = device(&app, "sec", "secretary", GRID_A).await;
    let request = secretary
        .create(|tx| {
            builders::init_request(
                tx,
                &common(GRID_A, "sec"),
                &RequestInit {
                    origin: Origin::Visit,
                    household: None,
                    visit: None,
                    category: "elevator".into(),
                    description: "lift broken for a week".into(),
                    device: Some("sec-phone".into()),
                },
            )
            .map_err(am)
        })
        .await
        .unwrap();
    secretary.wait_synced(request, WAIT).await.unwrap();

    // A volunteer cannot even see requests, so cannot change their triage.
    let volunteer = device(&app, "vol", "volunteer", GRID_A).await;
    assert!(matches!(
        volunteer.fetch(request, WAIT).await,
        Err(ClientError::Unavailable(_))
    ));

    // A supervisor may triage but may not claim to be handling it.
    let supervisor = device(&app, "sup", "supervisor", "/city").await;
    let mut events = supervisor.subscribe();
    supervisor.fetch(request, WAIT).await.unwrap();
    let stored_before = app.state.store.load(&request).await.unwrap().unwrap();
    supervisor
        .change(request, |tx| {
            builders::append_request_event(
                tx,
                &Event {
                    kind: EventKind::Handling,
                    at: 1_763_000_100_000,
                    by: "sup".into(),
                    device: None,
                    note: None,
                },
            )
            .map_err(am)
        })
        .await
        .unwrap();
    let (change, reason) = loop {
        match tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            ClientEvent::ChangeRejected {
                document,
                change,
                reason,
                removed,
            } => {
                assert_eq!(document, request);
                assert_eq!(removed, 1);
                break (change, reason);
            }
            _ => continue,
        }
    };
    assert!(reason.contains("handling"), "{reason}");
    // Stored nowhere…
    let stored_after = app.state.store.load(&request).await.unwrap().unwrap();
    assert_eq!(stored_before.last_seq, stored_after.last_seq);
    // …removed from the supervisor's copy and kept aside…
    let rejected = supervisor.rejected_changes().await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].1, change);
    let events_now = supervisor
        .read(request, |doc| {
            lianxin_protocol::domain::read_events(doc).unwrap().len()
        })
        .unwrap();
    assert_eq!(events_now, 1, "only the original `collected` event");
    // …and the supervisor's allowed changes still go through.
    supervisor
        .change(request, |tx| {
            builders::append_request_event(
                tx,
                &Event {
                    kind: EventKind::Triaged {
                        track: Track::Supervised,
                        department: None,
                    },
                    at: 1_763_000_200_000,
                    by: "sup".into(),
                    device: None,
                    note: None,
                },
            )
            .map_err(am)
        })
        .await
        .unwrap();
    supervisor.wait_synced(request, WAIT).await.unwrap();
    let stored = app.stored_doc(request).await.unwrap();
    let flow = lianxin_protocol::domain::read_flow(&stored).unwrap();
    assert_eq!(flow.track, Some(Track::Supervised));
    app.stop().await;
}

/// Two volunteers claim one order while both offline, then sync in the given order.
async fn double_claim(first_online: usize) {
    use lianxin_protocol::domain::order_flow::read_assignee;
    let db = TestDb::new(Backend::Postgres).await;
    let app = field_app(&db).await;
    let grid = device(&app, "grid-w", "grid_worker", GRID_A).await;
    let order = place_order(&grid, GRID_A, "grid-w").await;
    let volunteers = [
        device(&app, "vol-1", "volunteer", GRID_A).await,
        device(&app, "vol-2", "volunteer", GRID_A).await,
    ];
    for v in &volunteers {
        v.fetch(order, WAIT).await.unwrap();
    }
    // Both go offline and tap "take".
    for (i, v) in volunteers.iter().enumerate() {
        v.disconnect().await;
        claim(
            v,
            order,
            &format!("vol-{}", i + 1),
            1_763_000_000_000 + i as i64,
        )
        .await;
    }
    // They come back one after the other.
    let order_of_return = [first_online, 1 - first_online];
    for &i in &order_of_return {
        let token = app
            .token_as(
                &format!("vol-{}", i + 1),
                &format!("vol-{}-phone", i + 1),
                "volunteer",
                GRID_A,
            )
            .await;
        volunteers[i].connect(&app.ws_url(), &token).await.unwrap();
        volunteers[i].wait_synced(order, WAIT).await.unwrap();
    }
    let winner = format!("vol-{}", first_online + 1);
    // Exactly one assignee, the first claim the server received, everywhere.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let seen: Vec<Option<String>> = volunteers
            .iter()
            .chain([&grid])
            .map(|c| c.read(order, |doc| read_assignee(doc).unwrap()).unwrap())
            .collect();
        if seen.iter().all(|a| a.as_deref() == Some(winner.as_str())) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "assignees: {seen:?}"
        );
        for c in volunteers.iter().chain([&grid]) {
            let _ = c.wait_synced(order, Duration::from_millis(100)).await;
        }
    }
    let stored = app.stored_doc(order).await.unwrap();
    assert_eq!(
        read_assignee(&stored).unwrap().as_deref(),
        Some(winner.as_str())
    );
    // Both claims are kept: the loser's device is told by the document that it lost.
    assert_eq!(
        lianxin_protocol::domain::read_claims(&stored)
            .unwrap()
            .len(),
        2
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_offline_claims_give_one_assignee_first_volunteer_back_wins() {
    double_claim(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_offline_claims_give_one_assignee_in_the_other_order_too() {
    double_claim(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_walks_its_loop_from_two_devices_and_agrees_everywhere() {
    use lianxin_client::Author;
    use lianxin_protocol::domain::{Satisfaction, Status};
    let db = TestDb::new(Backend::Sqlite).await;
    let app = field_app(&db).await;
    let area = AreaPath::new(GRID_A).unwrap();
    let author = |user: &str| Author {
        user: user.into(),
        device: format!("{user}-phone"),
        area: area.clone(),
    };
    let sec = device(&app, "sec", "secretary", GRID_A).await;
    let grid = device(&app, "grid", "grid_worker", GRID_A).await;
    let sec_flow = sec.workflows(author("sec"));
    let grid_flow = grid.workflows(author("grid"));

    let request = sec_flow
        .raise_request(
            &area,
            &RequestInit {
                origin: Origin::Visit,
                household: None,
                visit: None,
                category: "lighting".into(),
                description: "stairwell light broken".into(),
                device: None,
            },
        )
        .await
        .unwrap();
    sec.wait_synced(request, WAIT).await.unwrap();
    grid.fetch(request, WAIT).await.unwrap();

    // Offline, concurrently: the secretary triages, the grid worker starts handling.
    sec.disconnect().await;
    grid.disconnect().await;
    sec_flow
        .triage(request, Track::Immediate, None)
        .await
        .unwrap();
    grid_flow
        .add_request_event(request, EventKind::Handling, Some("bought a bulb".into()))
        .await
        .unwrap();
    for (client, user) in [(&sec, "sec"), (&grid, "grid")] {
        let token = app
            .token_as(
                user,
                &format!("{user}-phone"),
                if user == "sec" {
                    "secretary"
                } else {
                    "grid_worker"
                },
                GRID_A,
            )
            .await;
        client.connect(&app.ws_url(), &token).await.unwrap();
    }
    let agree = async || {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            for c in [&sec, &grid] {
                let _ = c.wait_synced(request, Duration::from_millis(100)).await;
            }
            let a = sec_flow.request_flow(request).unwrap();
            let b = grid_flow.request_flow(request).unwrap();
            let stored = app.stored_doc(request).await.unwrap();
            let s = lianxin_protocol::domain::read_flow(&stored).unwrap();
            if a == b && b == s {
                return a;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "flows differ: {a:?} {b:?} {s:?}"
            );
        }
    };
    let merged = agree().await;
    assert!(
        matches!(merged.status, Status::Triaged | Status::Handling),
        "{merged:?}"
    );
    assert_eq!(merged.track, Some(Track::Immediate));

    // The rest of the loop, each step by whoever is at hand.
    grid_flow
        .add_request_event(request, EventKind::Resolved, None)
        .await
        .unwrap();
    grid.wait_synced(request, WAIT).await.unwrap();
    agree().await;
    sec_flow
        .add_request_event(
            request,
            EventKind::CalledBack {
                satisfaction: Satisfaction::Satisfied,
            },
            None,
        )
        .await
        .unwrap();
    sec.wait_synced(request, WAIT).await.unwrap();
    agree().await;
    sec_flow
        .add_request_event(request, EventKind::Closed, None)
        .await
        .unwrap();
    sec.wait_synced(request, WAIT).await.unwrap();
    let done = agree().await;
    assert_eq!(done.status, Status::Closed, "{done:?}");
    assert_eq!(
        sec_flow.list(lianxin_protocol::domain::Kind::Request, &area),
        vec![request]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visits_off_listening_days_are_accepted_but_flagged() {
    use lianxin_client::Author;
    use lianxin_protocol::domain::LocalDate;
    use lianxin_protocol::domain::builders::VisitInit;
    let db = TestDb::new(Backend::Sqlite).await;
    let app = field_app(&db).await;
    let area = AreaPath::new(GRID_A).unwrap();
    let sec = device(&app, "sec", "secretary", GRID_A).await;
    let flow = sec.workflows(Author {
        user: "sec".into(),
        device: "sec-phone".into(),
        area: area.clone(),
    });
    let visit = |date: LocalDate| VisitInit {
        household: "household-1".into(),
        date,
        visitors: vec!["sec".into()],
        heard: "needs a ramp".into(),
        people_received: 2,
        requests: vec![],
    };
    let on_day = flow
        .record_visit(&area, &visit(LocalDate::new(2026, 11, 25).unwrap()))
        .await
        .unwrap();
    let off_day = flow
        .record_visit(&area, &visit(LocalDate::new(2026, 11, 23).unwrap()))
        .await
        .unwrap();
    sec.wait_synced(on_day, WAIT).await.unwrap();
    sec.wait_synced(off_day, WAIT).await.unwrap();
    assert!(app.stored_doc(off_day).await.is_some(), "accepted");
    assert!(
        app.state
            .store
            .document_flags(&on_day)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        app.state.store.document_flags(&off_day).await.unwrap(),
        vec![("off_listening_day".to_string(), "2026-11-23".to_string())]
    );
    assert_eq!(
        flow.list(lianxin_protocol::domain::Kind::Visit, &area)
            .len(),
        2
    );
    app.stop().await;
}
