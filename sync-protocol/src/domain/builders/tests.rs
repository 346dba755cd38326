//! Round trips: every builder writes a document that passes `validate` and reads back as written.

use automerge::{ROOT, ReadDoc};

use super::*;
use crate::domain::event::{Satisfaction, Track};
use crate::domain::fixtures::*;
use crate::domain::kind::Kind;
use crate::domain::order_flow::{read_assignee, read_claims, read_order_status};
use crate::domain::request_flow::{Status, read_events, read_flow};
use crate::domain::schema::{read_info, validate};

fn text(doc: &automerge::Automerge, key: &str) -> String {
    doc.get(ROOT, key)
        .unwrap()
        .unwrap()
        .0
        .into_string()
        .unwrap()
}

#[test]
fn every_init_builder_writes_a_valid_document_of_its_kind() {
    let docs = [
        (household("sec-1"), Kind::Household),
        (visit("sec-1", "2026-03-05"), Kind::Visit),
        (request("sec-1"), Kind::Request),
        (order("grid-1"), Kind::Order),
        (station_log("staff-1"), Kind::StationLog),
    ];
    for (doc, kind) in docs {
        let info = validate(&doc).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(info.kind, kind);
        assert_eq!(info.schema, 1);
        assert_eq!(info.area, area(GRID));
        assert_eq!(info.created_at, T0);
        assert_eq!(read_info(&doc).unwrap(), info);
    }
}

#[test]
fn builders_write_scalar_strings() {
    let doc = household("sec-1");
    let (value, _) = doc.get(ROOT, "address").unwrap().unwrap();
    assert!(value.is_str(), "Rust writes scalars, not Text objects");
    assert_eq!(text(&doc, "kind"), "household");
    assert_eq!(text(&doc, "createdBy"), "sec-1");
}

#[test]
fn a_new_request_starts_collected_by_its_creator() {
    let doc = request("sec-1");
    let events = read_events(&doc).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Collected);
    assert_eq!(events[0].by, "sec-1");
    assert_eq!(events[0].at, T0);
    assert_eq!(events[0].device.as_deref(), Some("phone-1"));
    assert_eq!(read_flow(&doc).unwrap().status, Status::Collected);
}

#[test]
fn appended_events_read_back_with_their_data() {
    let mut doc = request("sec-1");
    let triage = Event {
        kind: EventKind::Triaged {
            track: Track::Transfer,
            department: Some("housing".to_owned()),
        },
        at: T0 + 1,
        by: "grid-1".to_owned(),
        device: None,
        note: Some("needs an electrician".to_owned()),
    };
    let callback = Event {
        kind: EventKind::CalledBack {
            satisfaction: Satisfaction::Neutral,
        },
        at: T0 + 4,
        by: "sec-1".to_owned(),
        device: Some("phone-1".to_owned()),
        note: None,
    };
    edit(&mut doc, |tx| {
        append_request_event(tx, &triage).unwrap();
        for (kind, at) in [(EventKind::Handling, 2), (EventKind::Resolved, 3)] {
            append_request_event(
                tx,
                &Event {
                    kind,
                    at: T0 + at,
                    by: "dept-1".to_owned(),
                    device: None,
                    note: None,
                },
            )
            .unwrap();
        }
        append_request_event(tx, &callback).unwrap();
    });
    validate(&doc).unwrap();
    let events = read_events(&doc).unwrap();
    assert_eq!(events[1], triage);
    assert_eq!(events[4], callback);
    assert_eq!(read_flow(&doc).unwrap().status, Status::CalledBack);
}

#[test]
fn orders_start_open_and_take_claims_and_an_assignee() {
    let mut doc = order("grid-1");
    assert_eq!(read_order_status(&doc).unwrap(), OrderStatus::Open);
    assert!(read_claims(&doc).unwrap().is_empty());
    let claim = Claim {
        volunteer: "vol-1".to_owned(),
        device: Some("phone-7".to_owned()),
        at: T0 + 5,
    };
    edit(&mut doc, |tx| append_claim(tx, &claim).unwrap());
    assert_eq!(read_claims(&doc).unwrap(), [claim]);
    edit(&mut doc, |tx| assign_order(tx, "vol-1").unwrap());
    validate(&doc).unwrap();
    assert_eq!(read_assignee(&doc).unwrap().as_deref(), Some("vol-1"));
    assert_eq!(read_order_status(&doc).unwrap(), OrderStatus::Assigned);
    edit(&mut doc, |tx| {
        set_order_status(tx, OrderStatus::Done).unwrap()
    });
    assert_eq!(read_order_status(&doc).unwrap(), OrderStatus::Done);
    validate(&doc).unwrap();
}

#[test]
fn station_entries_and_visit_requests_are_appended() {
    let mut log = station_log("staff-1");
    edit(&mut log, |tx| {
        add_station_entry(
            tx,
            &StationEntry {
                service_kind: "blood-pressure".to_owned(),
                people_served: 0,
                served_by: "staff-2".to_owned(),
            },
        )
        .unwrap();
    });
    validate(&log).unwrap();
    let (_, entries) = log.get(ROOT, "entries").unwrap().unwrap();
    assert_eq!(log.length(&entries), 2);

    let mut visit = visit("sec-1", "2026-03-05");
    edit(&mut visit, |tx| link_visit_request(tx, "req-2").unwrap());
    validate(&visit).unwrap();
    let (_, requests) = visit.get(ROOT, "requests").unwrap().unwrap();
    assert_eq!(visit.length(&requests), 2);
}

#[test]
fn appending_to_the_wrong_kind_is_an_error_not_a_new_list() {
    let mut doc = household("sec-1");
    let mut tx = doc.transaction();
    let error = append_claim(
        &mut tx,
        &Claim {
            volunteer: "vol-1".to_owned(),
            device: None,
            at: T0,
        },
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the document has no `claims` list; is it an order?"
    );
    assert!(
        append_request_event(
            &mut tx,
            &Event {
                kind: EventKind::Handling,
                at: T0,
                by: "sec-1".to_owned(),
                device: None,
                note: None
            }
        )
        .is_err()
    );
}
