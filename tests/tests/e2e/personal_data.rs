//! Personal data and schema limits through the real server: each way of smuggling residents'
//! data into a document that is not a household is refused, and nothing of it is stored or
//! reaches a supervisor who reads the area; a visit whose `heard` is a megabyte is refused and
//! stored nowhere. The rules themselves are tested in `lianxin_protocol::domain`; this shows
//! that the server applies them to what devices send, history included.

use std::time::Duration;

use automerge::legacy::{Key, OpType};
use automerge::transaction::{Transactable, Transaction};
use automerge::{Automerge, AutomergeError, ObjType, ROOT, ReadDoc, ScalarValue};
use lianxin_client::{Client, ClientConfig, ClientEvent, DocumentId};
use lianxin_protocol::domain::builders::{self, Common, RequestInit, VisitInit};
use lianxin_protocol::domain::{AreaPath, Event, EventKind, LocalDate, Origin};
use lianxin_tests::{Backend, TestApp, TestDb};
use tokio::sync::broadcast;

use crate::both_backends;
use crate::field::{am, device, field_app};

const WAIT: Duration = Duration::from_secs(10);
const GRID_A: &str = "/city/street-1/community-1/grid-a";

/// What the smuggling attempts carry. None of it may be stored or reach a supervisor.
const NAME: &str = "王秀兰";
const MOBILE: &str = "13912345678";
const ID_NUMBER: &str = "11010519491231002X";
const SMUGGLED_KEYS: [&str; 7] = [
    "residentName",
    "mobile",
    "idCard",
    "住户",
    "姓名",
    "电话",
    "name",
];

both_backends!(
    each_way_of_smuggling_personal_data_is_refused_and_reaches_no_one,
    a_megabyte_of_heard_is_refused_and_stored_nowhere,
);

fn common(user: &str) -> Common {
    Common {
        area: AreaPath::new(GRID_A).unwrap(),
        created_by: user.into(),
        created_at: 1_763_000_000_000,
    }
}

fn visit_init(heard: String) -> VisitInit {
    VisitInit {
        household: "household-17".into(),
        date: LocalDate::new(2026, 11, 25).unwrap(),
        visitors: vec!["sec".into()],
        heard,
        people_received: 2,
        requests: vec![],
    }
}

/// The next refusal of a change to `doc` that `events` hears: its reason.
/// The sequence number of the last chunk stored for `doc`, which exists.
async fn last_seq(app: &TestApp, doc: DocumentId) -> i64 {
    app.state.store.load(&doc).await.unwrap().unwrap().last_seq
}

async fn refusal(events: &mut broadcast::Receiver<ClientEvent>, doc: DocumentId) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no refusal of a change to {doc}"));
        match event {
            Ok(ClientEvent::ChangeRejected {
                document, reason, ..
            }) if document == doc => return reason,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(error) => panic!("{error}"),
        }
    }
}

/// Every map key and every string that any operation in the history of `doc` writes; the
/// characters of Text objects are joined per change, in the order they were written.
fn history(doc: &Automerge) -> (Vec<String>, String) {
    let mut keys = Vec::new();
    let mut strings = String::new();
    for change in doc.get_changes(&[]) {
        for op in change.decode().operations {
            if let Key::Map(key) = &op.key {
                keys.push(key.to_string());
            }
            if let OpType::Put(ScalarValue::Str(text)) = &op.action {
                strings.push_str(text);
                if !op.insert {
                    strings.push('\n');
                }
            }
        }
        strings.push('\n');
    }
    (keys, strings)
}

/// Fails if the history of `doc` (as `who` holds it) has any of what was smuggled.
fn assert_clean(doc: &Automerge, who: &str) {
    let (keys, strings) = history(doc);
    for key in SMUGGLED_KEYS {
        assert!(
            !keys.iter().any(|k| k == key),
            "{who} holds the key `{key}`"
        );
    }
    for value in [NAME, MOBILE, ID_NUMBER, "139 1234 5678"] {
        assert!(!strings.contains(value), "{who} holds `{value}`");
    }
}

/// Makes `change` to `doc` on the secretary's device, waits for its refusal, checks that the
/// server stored nothing, and returns the reason.
async fn refused(
    app: &TestApp,
    sec: &Client,
    events: &mut broadcast::Receiver<ClientEvent>,
    doc: DocumentId,
    change: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
) -> String {
    let stored = last_seq(app, doc).await;
    sec.change(doc, change).await.unwrap();
    let reason = refusal(events, doc).await;
    let now = last_seq(app, doc).await;
    assert_eq!(stored, now, "nothing stored after: {reason}");
    for value in [NAME, MOBILE, ID_NUMBER, "5678"] {
        assert!(
            !reason.contains(value),
            "the reason echoes `{value}`: {reason}"
        );
    }
    reason
}

async fn each_way_of_smuggling_personal_data_is_refused_and_reaches_no_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = field_app(&db).await;
    let sec = device(&app, "sec", "secretary", GRID_A).await;
    let mut events = sec.subscribe();
    let visit = sec
        .create(|tx| {
            builders::init_visit(tx, &common("sec"), &visit_init("needs a ramp".into())).map_err(am)
        })
        .await
        .unwrap();
    let request = sec
        .create(|tx| {
            builders::init_request(
                tx,
                &common("sec"),
                &RequestInit {
                    origin: Origin::Visit,
                    household: Some("household-17".into()),
                    visit: Some(visit.to_string()),
                    category: "accessibility".into(),
                    description: "a ramp at the door".into(),
                    device: Some("sec-phone".into()),
                },
            )
            .map_err(am)
        })
        .await
        .unwrap();
    sec.wait_synced(visit, WAIT).await.unwrap();
    sec.wait_synced(request, WAIT).await.unwrap();

    // Under keys the schema does not name, at ROOT…
    for (key, value) in [
        ("residentName", NAME),
        ("mobile", MOBILE),
        ("idCard", ID_NUMBER),
    ] {
        let reason = refused(&app, &sec, &mut events, visit, |tx| {
            tx.put(ROOT, key, value)
        })
        .await;
        assert!(
            reason.contains(&format!("`{key}` is not a field of visit documents")),
            "{reason}"
        );
    }
    // …nested in a map of its own…
    let reason = refused(&app, &sec, &mut events, visit, |tx| {
        let resident = tx.put_object(ROOT, "住户", ObjType::Map)?;
        tx.put(&resident, "姓名", NAME)?;
        tx.put(&resident, "电话", MOBILE)
    })
    .await;
    assert!(reason.contains("`住户` is not a field"), "{reason}");
    // …and in a map the schema has, a new timeline event.
    let reason = refused(&app, &sec, &mut events, request, |tx| {
        builders::append_request_event(
            tx,
            &Event {
                kind: EventKind::Handling,
                at: 1_763_000_100_000,
                by: "sec".into(),
                device: None,
                note: None,
            },
        )
        .map_err(am)?;
        let (_, timeline) = tx.get(ROOT, "timeline")?.unwrap();
        let (_, event) = tx.get(&timeline, 1)?.unwrap();
        tx.put(&event, "姓名", NAME)?;
        tx.put(&event, "电话", MOBILE)
    })
    .await;
    assert!(reason.contains("timeline[1]."), "{reason}");
    // In free text.
    let reason = refused(&app, &sec, &mut events, visit, |tx| {
        tx.put(ROOT, "heard", "王阿姨请回电 139 1234 5678")
    })
    .await;
    assert!(
        reason.contains("`heard` contains what looks like a mobile phone number"),
        "{reason}"
    );
    // Written while offline and deleted in a later change: both changes arrive together, and
    // the document after them is clean, but the first is in the history every reader gets.
    sec.disconnect().await;
    sec.change(visit, |tx| tx.put(ROOT, "name", NAME))
        .await
        .unwrap();
    sec.change(visit, |tx| tx.delete(ROOT, "name"))
        .await
        .unwrap();
    assert!(
        sec.read(visit, |doc| doc.get(ROOT, "name").unwrap().is_none())
            .unwrap()
    );
    let stored = last_seq(&app, visit).await;
    let token = app.token_as("sec", "sec-phone", "secretary", GRID_A).await;
    sec.connect(&app.ws_url(), &token).await.unwrap();
    let reason = refusal(&mut events, visit).await;
    assert!(
        reason.contains("`name` is personal data, which only household documents may hold"),
        "{reason}"
    );
    assert_eq!(last_seq(&app, visit).await, stored);
    // At creation too: nothing of the document is stored.
    let created = sec
        .create(|tx| {
            builders::init_visit(tx, &common("sec"), &visit_init("all well".into())).map_err(am)?;
            tx.put(ROOT, "idCard", ID_NUMBER)
        })
        .await
        .unwrap();
    let reason = refusal(&mut events, created).await;
    assert!(reason.contains("`idCard`"), "{reason}");
    assert!(app.stored_doc(created).await.is_none());

    // The secretary's allowed changes still go through.
    sec.change(visit, |tx| {
        tx.put(ROOT, "heard", "needs a ramp; measured the door")
    })
    .await
    .unwrap();
    sec.wait_synced(visit, WAIT).await.unwrap();

    // What the server stores and what a supervisor reading the area receives hold none of it.
    for id in [visit, request] {
        assert_clean(&app.stored_doc(id).await.unwrap(), "the server");
    }
    let supervisor = Client::in_memory(ClientConfig::default()).await.unwrap();
    let token = app
        .token_as("sup", "sup-desk", "supervisor", "/city/street-1")
        .await;
    supervisor.connect(&app.ws_url(), &token).await.unwrap();
    supervisor.wait_up_to_date(WAIT).await.unwrap();
    let mut received = supervisor.documents();
    received.sort();
    let mut expected = vec![visit, request];
    expected.sort();
    assert_eq!(
        received, expected,
        "the supervisor gets the area's two documents"
    );
    for id in received {
        supervisor
            .read(id, |doc| assert_clean(doc, "the supervisor"))
            .unwrap();
    }
    let heard = supervisor
        .read(visit, |doc| {
            doc.get(ROOT, "heard")
                .unwrap()
                .and_then(|(v, _)| v.into_string().ok())
        })
        .unwrap();
    assert_eq!(heard.as_deref(), Some("needs a ramp; measured the door"));
    supervisor.disconnect().await;
    sec.disconnect().await;
    app.stop().await;
}

async fn a_megabyte_of_heard_is_refused_and_stored_nowhere(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = field_app(&db).await;
    let max_message = app.state.settings.limits.max_message_bytes;
    let sec = device(&app, "sec", "secretary", GRID_A).await;
    let mut events = sec.subscribe();
    // About 1 MB of UTF-8 (3 bytes a character): well under the message limit, far over the
    // limit of a free-text field.
    let heard = "好".repeat(350_000);
    assert!(heard.len() > 1_000_000 && heard.len() < max_message / 4);
    let big = sec
        .create(|tx| builders::init_visit(tx, &common("sec"), &visit_init(heard)).map_err(am))
        .await
        .unwrap();
    let reason = refusal(&mut events, big).await;
    assert!(
        reason.contains("`heard` is longer than 8192 bytes"),
        "{reason}"
    );
    assert!(app.stored_doc(big).await.is_none());

    // An existing visit may not grow past the limit either, as a Text object written in pieces.
    let visit = sec
        .create(|tx| {
            builders::init_visit(tx, &common("sec"), &visit_init("needs a ramp".into())).map_err(am)
        })
        .await
        .unwrap();
    sec.wait_synced(visit, WAIT).await.unwrap();
    let stored = last_seq(&app, visit).await;
    sec.change(visit, |tx| {
        let text = tx.put_object(ROOT, "heard", ObjType::Text)?;
        for _ in 0..10 {
            let end = tx.length(&text);
            tx.splice_text(&text, end, 0, &"a".repeat(1_000))?;
        }
        Ok(())
    })
    .await
    .unwrap();
    let reason = refusal(&mut events, visit).await;
    assert!(reason.contains("`heard` is longer than"), "{reason}");
    assert_eq!(last_seq(&app, visit).await, stored);

    // A supervisor reading the area gets the small visit only, as it was stored.
    let supervisor = Client::in_memory(ClientConfig::default()).await.unwrap();
    let token = app
        .token_as("sup", "sup-desk", "supervisor", "/city/street-1")
        .await;
    supervisor.connect(&app.ws_url(), &token).await.unwrap();
    supervisor.wait_up_to_date(WAIT).await.unwrap();
    assert_eq!(supervisor.documents(), vec![visit]);
    let size = supervisor.read(visit, |doc| doc.save().len()).unwrap();
    assert!(size < 2_000, "{size} bytes");
    supervisor.disconnect().await;
    sec.disconnect().await;
    app.stop().await;
}
