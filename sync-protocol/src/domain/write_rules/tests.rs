//! The write rules, driven the way the server meets them: a stored document, devices that fork
//! it, edit offline and send their changes, and `check_change` on before and after.

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT, ReadDoc};

use super::*;
use crate::domain::actor::SERVER_USER;
use crate::domain::builders::{
    append_claim, append_request_event, assign_order, init_household, init_order, init_request,
    set_order_status,
};
use crate::domain::event::{EventKind, EventType, Satisfaction, Track};
use crate::domain::fixtures::*;
use crate::domain::order_flow::{Claim, winning_claim};
use crate::domain::personal_number::PersonalNumber;
use crate::domain::request_flow::{Status, read_flow};
use crate::domain::schema::{SchemaError, SchemaLimits, validate};

/// The server's copy of one document, judging every change it receives.
struct Server {
    doc: Automerge,
    info: DocInfo,
}

impl Server {
    /// The server after `creator` uploaded `doc`, which must be accepted.
    fn new(creator: &Actor, doc: &Automerge) -> Server {
        let outcome = check_change(creator, None, &Automerge::new(), doc).unwrap();
        assert!(outcome.created);
        Server {
            doc: doc.clone(),
            info: outcome.info,
        }
    }

    /// Receives everything `device` has; stores it only if accepted.
    fn receive(&mut self, actor: &Actor, device: &Automerge) -> Result<Outcome, Forbidden> {
        let after = received(&self.doc, device);
        let outcome = check_change(actor, Some(&self.info), &self.doc, &after)?;
        self.doc = after;
        Ok(outcome)
    }

    /// Brings `device` up to date with the server.
    fn sync(&self, device: &mut Automerge) {
        device.merge(&mut self.doc.clone()).unwrap();
    }

    /// What the server would say to `actor` about a change `edit` made on a fresh device.
    fn try_edit(
        &self,
        actor: &Actor,
        build: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
    ) -> Result<Outcome, Forbidden> {
        let mut device = device(&self.doc, 0x42);
        edit(&mut device, build);
        let after = received(&self.doc, &device);
        check_change(actor, Some(&self.info), &self.doc, &after)
    }
}

fn secretary() -> Actor {
    actor("sec-1", Role::Secretary, GRID)
}

fn grid_worker() -> Actor {
    actor("grid-1", Role::GridWorker, GRID)
}

fn supervisor() -> Actor {
    actor("sup-1", Role::Supervisor, "/jining/rencheng/street-3")
}

fn volunteer(user: &str) -> Actor {
    actor(user, Role::Volunteer, GRID)
}

fn handler(department: &str) -> Actor {
    Actor {
        department: Some(department.to_owned()),
        ..actor("dept-1", Role::DepartmentHandler, "/jining/rencheng")
    }
}

fn server_actor() -> Actor {
    Actor::server(area("/jining"))
}

fn ev(kind: EventKind, by: &str, at: i64) -> Event {
    Event {
        kind,
        at,
        by: by.to_owned(),
        device: None,
        note: None,
    }
}

fn triaged(track: Track, by: &str) -> Event {
    let department = (track == Track::Transfer).then(|| "housing".to_owned());
    ev(EventKind::Triaged { track, department }, by, T0 + 100)
}

fn append(doc: &mut Automerge, event: &Event) {
    edit(doc, |tx| append_request_event(tx, event).unwrap());
}

fn claim(volunteer: &str, at: i64) -> Claim {
    Claim {
        volunteer: volunteer.to_owned(),
        device: Some(format!("{volunteer}-phone")),
        at,
    }
}

fn timeline(tx: &automerge::transaction::Transaction<'_>) -> ObjId {
    tx.get(ROOT, "timeline").unwrap().unwrap().1
}

// ----- creation -----

#[test]
fn a_secretary_records_a_visit_in_their_grid() {
    let doc = visit("sec-1", "2026-03-05");
    let outcome = check_change(&secretary(), None, &Automerge::new(), &doc).unwrap();
    assert!(outcome.created);
    assert_eq!(outcome.info.kind, Kind::Visit);
    assert!(outcome.flags.is_empty(), "the 5th is a listening day");
    // A community-level secretary may record it too: the grid is in their subtree.
    let community = actor(
        "sec-1",
        Role::Secretary,
        "/jining/rencheng/street-3/community-2",
    );
    assert!(check_change(&community, None, &Automerge::new(), &doc).is_ok());
}

#[test]
fn a_visit_off_a_listening_day_is_accepted_but_flagged() {
    let doc = visit("sec-1", "2026-03-06");
    let outcome = check_change(&secretary(), None, &Automerge::new(), &doc).unwrap();
    assert_eq!(
        outcome.flags,
        [Flag::OffListeningDay {
            date: "2026-03-06".parse().unwrap()
        }]
    );
    // With the 6th configured as a listening day, the same visit is not flagged.
    let config = CheckConfig {
        listening_days: ListeningDays { days: vec![6] },
        ..CheckConfig::default()
    };
    let outcome = check_change_with(&config, &secretary(), None, &Automerge::new(), &doc).unwrap();
    assert!(outcome.flags.is_empty());

    // Re-dating a visit onto an off day flags it; other edits of an off-day visit do not.
    let mut server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    let outcome = server
        .try_edit(&secretary(), |tx| {
            tx.put(ROOT, "date", "2026-03-07").unwrap()
        })
        .unwrap();
    assert_eq!(outcome.flags.len(), 1);
    let mut redated = device(&server.doc, 9);
    edit(&mut redated, |tx| {
        tx.put(ROOT, "date", "2026-03-07").unwrap()
    });
    server.receive(&secretary(), &redated).unwrap();
    let outcome = server
        .try_edit(&secretary(), |tx| tx.put(ROOT, "heard", "more").unwrap())
        .unwrap();
    assert!(outcome.flags.is_empty());
}

#[test]
fn creation_is_refused_to_the_wrong_role_area_or_creator() {
    let household = household("vol-1");
    assert_eq!(
        check_change(&volunteer("vol-1"), None, &Automerge::new(), &household)
            .unwrap_err()
            .to_string(),
        "volunteers may not create household documents"
    );
    let elsewhere = actor(
        "sec-1",
        Role::Secretary,
        "/jining/rencheng/street-3/community-9",
    );
    assert!(matches!(
        check_change(
            &elsewhere,
            None,
            &Automerge::new(),
            &visit("sec-1", "2026-03-05")
        ),
        Err(Forbidden::OutsideArea { .. })
    ));
    assert_eq!(
        check_change(
            &secretary(),
            None,
            &Automerge::new(),
            &visit("sec-2", "2026-03-05")
        )
        .unwrap_err()
        .to_string(),
        "`createdBy` must be your own user ID `sec-1`, not `sec-2`"
    );
    let mut invalid = visit("sec-1", "2026-03-05");
    edit(&mut invalid, |tx| tx.delete(ROOT, "heard").unwrap());
    assert_eq!(
        check_change(&secretary(), None, &Automerge::new(), &invalid),
        Err(Forbidden::Invalid(SchemaError::Missing {
            field: "heard".to_owned()
        }))
    );
    assert!(matches!(
        check_change(
            &supervisor(),
            None,
            &Automerge::new(),
            &new_doc(1, |tx| init_household(
                tx,
                &common("sup-1"),
                &household_init()
            )
            .unwrap())
        ),
        Err(Forbidden::MayNotCreate { .. })
    ));
}

#[test]
fn station_staff_raise_requests_with_the_collected_event_only() {
    let staff = actor("staff-1", Role::StationStaff, GRID);
    let raised = request("staff-1");
    assert!(check_change(&staff, None, &Automerge::new(), &raised).is_ok());

    let mut triaged_too = raised.clone();
    append(&mut triaged_too, &triaged(Track::Immediate, "staff-1"));
    assert_eq!(
        check_change(&staff, None, &Automerge::new(), &triaged_too)
            .unwrap_err()
            .to_string(),
        "station staff may not add `triaged` events to a request"
    );

    let mut forged = new_doc(1, |tx| {
        init_request(tx, &common("sec-1"), &request_init()).unwrap()
    });
    append(&mut forged, &ev(EventKind::Handling, "grid-1", T0));
    assert_eq!(
        check_change(&secretary(), None, &Automerge::new(), &forged)
            .unwrap_err()
            .to_string(),
        "`timeline[1].by` must be your own user ID `sec-1`, not `grid-1`"
    );
}

#[test]
fn a_new_order_is_open_unclaimed_and_unassigned() {
    let placed = order("grid-1");
    let outcome = check_change(&grid_worker(), None, &Automerge::new(), &placed).unwrap();
    assert!(outcome.flags.is_empty());

    let mut pre_assigned = placed.clone();
    edit(&mut pre_assigned, |tx| assign_order(tx, "vol-1").unwrap());
    assert_eq!(
        check_change(&grid_worker(), None, &Automerge::new(), &pre_assigned)
            .unwrap_err()
            .to_string(),
        "a new order must be `open`, with no `claims` and no `assignee`; `status` is not"
    );
    let mut pre_claimed = new_doc(1, |tx| {
        init_order(tx, &common("grid-1"), &order_init()).unwrap();
        append_claim(tx, &claim("vol-1", T0)).unwrap();
    });
    assert_eq!(
        check_change(&grid_worker(), None, &Automerge::new(), &pre_claimed),
        Err(Forbidden::OrderNotFresh { field: "claims" })
    );
    edit(&mut pre_claimed, |tx| {
        let (_, claims) = tx.get(ROOT, "claims").unwrap().unwrap();
        tx.delete(&claims, 0).unwrap();
        tx.put(ROOT, "assignee", "vol-1").unwrap();
    });
    assert_eq!(
        check_change(&grid_worker(), None, &Automerge::new(), &pre_claimed),
        Err(Forbidden::OrderNotFresh { field: "assignee" })
    );
}

// ----- updates: who may touch what -----

#[test]
fn common_fields_never_change_not_even_for_an_admin() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    let admin = actor("admin-1", Role::Admin, "/jining");
    assert_eq!(
        server
            .try_edit(&admin, |tx| tx
                .put(ROOT, "area", "/jining/rencheng")
                .unwrap())
            .unwrap_err()
            .to_string(),
        "`area` is fixed at creation and may not change"
    );
    assert_eq!(
        server.try_edit(&admin, |tx| tx.put(ROOT, "kind", "household").unwrap()),
        Err(Forbidden::FixedField { field: "kind" })
    );
    // Ending on the same value is still a change: a new operation now holds it.
    assert_eq!(
        server.try_edit(&admin, |tx| {
            tx.put(ROOT, "createdBy", "admin-1").unwrap();
            tx.put(ROOT, "createdBy", "sec-1").unwrap();
        }),
        Err(Forbidden::FixedField { field: "createdBy" })
    );
    assert_eq!(
        server.try_edit(&admin, |tx| tx.delete(ROOT, "createdAt").unwrap()),
        Err(Forbidden::FixedField { field: "createdAt" })
    );
    assert!(
        server
            .try_edit(&admin, |tx| tx.put(ROOT, "heard", "corrected").unwrap())
            .is_ok()
    );
}

#[test]
fn a_grid_worker_cannot_touch_another_grids_documents() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    let neighbour = actor(
        "grid-5",
        Role::GridWorker,
        "/jining/rencheng/street-3/community-2/compound-1/grid-5",
    );
    assert!(matches!(
        server.try_edit(&neighbour, |tx| tx.put(ROOT, "heard", "x").unwrap()),
        Err(Forbidden::OutsideArea { .. })
    ));
}

#[test]
fn supervisors_read_visits_but_change_nothing_in_them() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    assert_eq!(
        server
            .try_edit(&supervisor(), |tx| tx.put(ROOT, "heard", "x").unwrap())
            .unwrap_err()
            .to_string(),
        "supervisors may not change visit documents"
    );
}

#[test]
fn supervisors_triage_and_close_requests_and_nothing_else() {
    let server = Server::new(&secretary(), &request("sec-1"));
    let outcome = server
        .try_edit(&supervisor(), |tx| {
            append_request_event(tx, &triaged(Track::Supervised, "sup-1")).unwrap();
        })
        .unwrap();
    assert!(outcome.flags.is_empty());
    assert_eq!(
        server
            .try_edit(&supervisor(), |tx| {
                append_request_event(tx, &ev(EventKind::Handling, "sup-1", T0)).unwrap();
            })
            .unwrap_err()
            .to_string(),
        "supervisors may not add `handling` events to a request"
    );
    assert_eq!(
        server
            .try_edit(&supervisor(), |tx| tx
                .put(ROOT, "description", "x")
                .unwrap())
            .unwrap_err()
            .to_string(),
        "supervisors may not change `description` in request documents"
    );
}

#[test]
fn a_volunteer_cannot_change_a_requests_triage() {
    let mut server = Server::new(&secretary(), &request("sec-1"));
    let mut grid = device(&server.doc, 2);
    append(&mut grid, &triaged(Track::Transfer, "grid-1"));
    server.receive(&grid_worker(), &grid).unwrap();

    let result = server.try_edit(&volunteer("vol-1"), |tx| {
        append_request_event(tx, &triaged(Track::Immediate, "vol-1")).unwrap();
    });
    assert_eq!(
        result.unwrap_err().to_string(),
        "volunteers may not see request documents"
    );
}

#[test]
fn department_handlers_work_only_on_requests_transferred_to_them() {
    let mut server = Server::new(&secretary(), &request("sec-1"));
    let handling = |tx: &mut automerge::transaction::Transaction<'_>| {
        append_request_event(tx, &ev(EventKind::Handling, "dept-1", T0 + 200)).unwrap();
    };
    assert_eq!(
        server.try_edit(&handler("housing"), handling),
        Err(Forbidden::NotTransferred)
    );
    let mut grid = device(&server.doc, 2);
    append(&mut grid, &triaged(Track::Transfer, "grid-1"));
    server.receive(&grid_worker(), &grid).unwrap();

    assert!(server.try_edit(&handler("housing"), handling).is_ok());
    assert_eq!(
        server.try_edit(&handler("water"), handling),
        Err(Forbidden::NotTransferred)
    );
    assert_eq!(
        server
            .try_edit(&handler("housing"), |tx| {
                append_request_event(tx, &triaged(Track::Immediate, "dept-1")).unwrap();
            })
            .unwrap_err()
            .to_string(),
        "department handlers may not add `triaged` events to a request"
    );
    assert!(matches!(
        server.try_edit(&handler("housing"), |tx| tx
            .put(ROOT, "category", "x")
            .unwrap()),
        Err(Forbidden::ReadOnlyField { .. })
    ));
}

#[test]
fn fields_follow_the_edit_table_and_unknown_fields_are_refused_to_all() {
    let server = Server::new(&grid_worker(), &order("grid-1"));
    assert!(
        server
            .try_edit(&grid_worker(), |tx| tx
                .put(ROOT, "place", "gate 2")
                .unwrap())
            .is_ok()
    );
    assert_eq!(
        server
            .try_edit(&volunteer("vol-1"), |tx| tx
                .put(ROOT, "place", "gate 3")
                .unwrap())
            .unwrap_err()
            .to_string(),
        "volunteers may not change `place` in order documents"
    );
    for actor in [grid_worker(), server_actor()] {
        assert_eq!(
            server.try_edit(&actor, |tx| tx.put(ROOT, "urgency", "high").unwrap()),
            Err(Forbidden::Invalid(SchemaError::UnknownField {
                field: "urgency".to_owned(),
                kind: Kind::Order
            }))
        );
    }
}

#[test]
fn an_invalid_result_is_refused_with_the_schema_reason() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    assert_eq!(
        server
            .try_edit(&secretary(), |tx| tx
                .put(ROOT, "phone", "13800000000")
                .unwrap())
            .unwrap_err()
            .to_string(),
        "`phone` is personal data, which only household documents may hold, not visit documents"
    );
}

#[test]
fn an_empty_change_is_accepted() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    let outcome = server.try_edit(&supervisor(), |_| {}).unwrap();
    assert!(!outcome.created);
    assert!(outcome.new_claims.is_empty());
}

#[test]
fn station_staff_keep_their_log() {
    let staff = actor("staff-1", Role::StationStaff, GRID);
    let server = Server::new(&staff, &station_log("staff-1"));
    assert!(
        server
            .try_edit(&staff, |tx| {
                let (_, entries) = tx.get(ROOT, "entries").unwrap().unwrap();
                let (_, first) = tx.get(&entries, 0).unwrap().unwrap();
                tx.put(&first, "peopleServed", 13).unwrap();
            })
            .is_ok()
    );
    assert!(matches!(
        server.try_edit(&supervisor(), |tx| tx.put(ROOT, "station", "x").unwrap()),
        Err(Forbidden::MayNotWrite { .. })
    ));
}

// ----- request timeline -----

#[test]
fn existing_events_cannot_be_changed_or_removed() {
    let mut server = Server::new(&secretary(), &request("sec-1"));
    let mut grid = device(&server.doc, 2);
    append(&mut grid, &triaged(Track::Immediate, "grid-1"));
    server.receive(&grid_worker(), &grid).unwrap();

    assert_eq!(
        server
            .try_edit(&grid_worker(), |tx| {
                let (_, event) = tx.get(timeline(tx), 1).unwrap().unwrap();
                tx.put(&event, "track", "supervised").unwrap();
            })
            .unwrap_err()
            .to_string(),
        "existing events in `timeline` may not be changed or removed (`timeline[1]`)"
    );
    assert_eq!(
        server.try_edit(&grid_worker(), |tx| {
            let (_, event) = tx.get(timeline(tx), 1).unwrap().unwrap();
            tx.put(&event, "note", "added later").unwrap();
        }),
        Err(Forbidden::TimelineRewritten { index: 1 })
    );
    assert_eq!(
        server.try_edit(&grid_worker(), |tx| tx.delete(timeline(tx), 1).unwrap()),
        Err(Forbidden::TimelineRewritten { index: 1 })
    );
}

#[test]
fn replacing_the_timeline_with_an_identical_copy_is_refused() {
    let server = Server::new(&secretary(), &request("sec-1"));
    let events = crate::domain::request_flow::read_events(&server.doc).unwrap();
    assert_eq!(
        server
            .try_edit(&secretary(), |tx| {
                tx.put_object(ROOT, "timeline", ObjType::List).unwrap();
                for event in &events {
                    append_request_event(tx, event).unwrap();
                }
            })
            .unwrap_err()
            .to_string(),
        "`timeline` may not be replaced; add to it instead"
    );
}

#[test]
fn new_events_are_by_their_author() {
    let server = Server::new(&secretary(), &request("sec-1"));
    assert_eq!(
        server.try_edit(&secretary(), |tx| {
            append_request_event(tx, &triaged(Track::Immediate, "grid-1")).unwrap();
        }),
        Err(Forbidden::EventByOther {
            index: 1,
            by: "grid-1".to_owned(),
            user: "sec-1".to_owned()
        })
    );
}

#[test]
fn inserting_before_an_event_the_author_had_seen_is_refused() {
    let mut server = Server::new(&secretary(), &request("sec-1"));
    let mut grid = device(&server.doc, 2);
    append(&mut grid, &triaged(Track::Transfer, "grid-1"));
    append(&mut grid, &ev(EventKind::Handling, "grid-1", T0 + 200));
    server.receive(&grid_worker(), &grid).unwrap();

    // Rewriting history: a "resolved" slipped in between triage and handling.
    let result = server.try_edit(&grid_worker(), |tx| {
        let event = tx.insert_object(timeline(tx), 2, ObjType::Map).unwrap();
        tx.put(&event, "type", "resolved").unwrap();
        tx.put(&event, "at", T0 + 150).unwrap();
        tx.put(&event, "by", "grid-1").unwrap();
    });
    assert_eq!(
        result.unwrap_err().to_string(),
        "`timeline[2]` must be appended after the events you had seen, not inserted"
    );
    // In front of `collected`, the schema already refuses it.
    assert!(matches!(
        server.try_edit(&grid_worker(), |tx| {
            let event = tx.insert_object(timeline(tx), 0, ObjType::Map).unwrap();
            tx.put(&event, "type", "handling").unwrap();
            tx.put(&event, "at", T0).unwrap();
            tx.put(&event, "by", "grid-1").unwrap();
        }),
        Err(Forbidden::Invalid(_))
    ));
}

#[test]
fn concurrent_offline_appends_are_accepted_wherever_they_land() {
    let mut server = Server::new(&secretary(), &request("sec-1"));
    let mut grid = device(&server.doc, 2);
    append(&mut grid, &triaged(Track::Immediate, "grid-1"));
    server.receive(&grid_worker(), &grid).unwrap();

    // Two phones, both offline at the triaged state. Their actor IDs decide the merged order:
    // Automerge puts concurrent inserts at one place in descending order of operation ID.
    let mut early = device(&server.doc, 0x10);
    let mut late = device(&server.doc, 0xf0);
    append(&mut early, &ev(EventKind::Handling, "sec-1", T0 + 300));
    append(&mut late, &ev(EventKind::Resolved, "grid-1", T0 + 310));

    server.receive(&secretary(), &early).unwrap();
    let outcome = server.receive(&grid_worker(), &late).unwrap();
    let events = crate::domain::request_flow::read_events(&server.doc).unwrap();
    let resolved_at = events
        .iter()
        .position(|e| e.event_type() == EventType::Resolved)
        .unwrap();
    let handling_at = events
        .iter()
        .position(|e| e.event_type() == EventType::Handling)
        .unwrap();
    assert!(
        resolved_at < handling_at,
        "the later-received event landed in front of one the server already had"
    );
    // Immediate track: resolved straight from triage, and the secretary's handling, merged
    // after it, reopens the request. Surprising perhaps, but the same on every replica.
    let flow = read_flow(&server.doc).unwrap();
    assert_eq!((resolved_at, handling_at), (2, 3));
    assert_eq!(flow.status, Status::Handling);
    assert!(flow.ignored.is_empty());
    assert!(
        outcome.flags.is_empty(),
        "the new event counts where it landed"
    );

    // Every replica derives the same status.
    server.sync(&mut early);
    server.sync(&mut late);
    assert_eq!(read_flow(&early).unwrap(), flow);
    assert_eq!(read_flow(&late).unwrap(), flow);
}

#[test]
fn an_event_that_is_invalid_where_it_lands_is_kept_and_flagged() {
    let server = Server::new(&secretary(), &request("sec-1"));
    let outcome = server
        .try_edit(&secretary(), |tx| {
            append_request_event(tx, &ev(EventKind::Closed, "sec-1", T0 + 1)).unwrap();
        })
        .unwrap();
    assert_eq!(outcome.flags, [Flag::IgnoredEvents { indices: vec![1] }]);
}

#[test]
fn a_request_walks_its_whole_loop_from_devices_editing_concurrently() {
    let mut server = Server::new(&secretary(), &request("sec-1"));
    let mut sec = device(&server.doc, 0x20);
    let mut grid = device(&server.doc, 0x30);
    let mut dept = device(&server.doc, 0x40);
    let sync_all = |server: &Server, devices: [&mut Automerge; 3]| {
        for device in devices {
            server.sync(device);
        }
    };

    append(&mut grid, &triaged(Track::Transfer, "grid-1"));
    server.receive(&grid_worker(), &grid).unwrap();
    sync_all(&server, [&mut sec, &mut grid, &mut dept]);

    // Offline at the same time: the department starts and finishes the work, while the
    // secretary, following up in the stairwell, also records that it is being handled.
    append(&mut dept, &ev(EventKind::Handling, "dept-1", T0 + 300));
    append(&mut dept, &ev(EventKind::Resolved, "dept-1", T0 + 400));
    append(&mut sec, &ev(EventKind::Handling, "sec-1", T0 + 350));
    server.receive(&handler("housing"), &dept).unwrap();
    server.receive(&secretary(), &sec).unwrap();
    sync_all(&server, [&mut sec, &mut grid, &mut dept]);

    // Everyone acts on the status they see until the loop is closed; whatever order the
    // concurrent events merged in, the state machine says the same thing on every device.
    for step in 0.. {
        assert!(step < 10, "the loop does not close");
        let flows: Vec<_> = [&server.doc, &sec, &grid, &dept]
            .iter()
            .map(|doc| read_flow(doc).unwrap())
            .collect();
        assert!(flows.windows(2).all(|pair| pair[0] == pair[1]), "{flows:?}");
        let at = T0 + 1000 + step;
        match flows[0].status {
            Status::Handling => {
                append(&mut dept, &ev(EventKind::Resolved, "dept-1", at));
                server.receive(&handler("housing"), &dept).unwrap();
            }
            Status::Resolved => {
                let satisfied = EventKind::CalledBack {
                    satisfaction: Satisfaction::Satisfied,
                };
                append(&mut sec, &ev(satisfied, "sec-1", at));
                server.receive(&secretary(), &sec).unwrap();
            }
            Status::CalledBack => {
                append(&mut grid, &ev(EventKind::Closed, "grid-1", at));
                server.receive(&grid_worker(), &grid).unwrap();
            }
            Status::Closed => break,
            other => panic!("unexpected status {other}"),
        }
        sync_all(&server, [&mut sec, &mut grid, &mut dept]);
    }
    let flow = read_flow(&server.doc).unwrap();
    assert_eq!(flow.status, Status::Closed);
    assert_eq!(flow.satisfaction, Some(Satisfaction::Satisfied));
}

// ----- orders -----

/// Volunteers claim one open order while all offline; the server receives their claims in the
/// order given and arbitrates after each change it accepts, as the real server does. Returns the
/// phones (synced afterwards) and the server's record of receive order.
fn race(server: &mut Server, claimers: &[(&str, u8)]) -> (Vec<Automerge>, Vec<String>) {
    let mut received_order: Vec<String> = Vec::new();
    let mut phones: Vec<Automerge> = claimers
        .iter()
        .map(|(user, seed)| {
            let mut phone = device(&server.doc, *seed);
            edit(&mut phone, |tx| {
                append_claim(tx, &claim(user, T0 + 10)).unwrap()
            });
            phone
        })
        .collect();
    for (phone, (user, _)) in phones.iter().zip(claimers) {
        let outcome = server.receive(&volunteer(user), phone).unwrap();
        received_order.extend(outcome.new_claims);
        if outcome.flags.contains(&Flag::ArbitrateOrder) {
            let claims = read_claims(&server.doc).unwrap();
            let winner = winning_claim(&claims, &received_order).unwrap();
            let mut own = server.doc.clone();
            edit(&mut own, |tx| assign_order(tx, &winner.volunteer).unwrap());
            let outcome = server.receive(&server_actor(), &own).unwrap();
            assert!(
                outcome.flags.is_empty(),
                "assigned: nothing left to arbitrate"
            );
        }
    }
    for phone in &mut phones {
        server.sync(phone);
    }
    (phones, received_order)
}

#[test]
fn two_offline_volunteers_claim_one_order_and_exactly_one_gets_it_either_way() {
    for (first, second) in [
        (("vol-1", 0x11), ("vol-2", 0xee)),
        (("vol-2", 0xee), ("vol-1", 0x11)),
    ] {
        let mut server = Server::new(&grid_worker(), &order("grid-1"));
        let (phones, received_order) = race(&mut server, &[first, second]);
        assert_eq!(received_order, [first.0, second.0]);
        assert_eq!(
            read_claims(&server.doc).unwrap().len(),
            2,
            "both claims are kept"
        );
        for doc in [&server.doc, &phones[0], &phones[1]] {
            assert_eq!(read_assignee(doc).unwrap().as_deref(), Some(first.0));
            assert_eq!(read_order_status(doc).unwrap(), OrderStatus::Assigned);
        }
    }
}

#[test]
fn claims_are_append_only_and_only_volunteers_own() {
    let mut server = Server::new(&grid_worker(), &order("grid-1"));
    let mut phone = device(&server.doc, 5);
    edit(&mut phone, |tx| {
        append_claim(tx, &claim("vol-1", T0)).unwrap()
    });
    let outcome = server.receive(&volunteer("vol-1"), &phone).unwrap();
    assert_eq!(outcome.new_claims, ["vol-1"]);
    assert_eq!(outcome.flags, [Flag::ArbitrateOrder]);

    assert_eq!(
        server
            .try_edit(&volunteer("vol-2"), |tx| append_claim(
                tx,
                &claim("vol-3", T0)
            )
            .unwrap())
            .unwrap_err()
            .to_string(),
        "`claims[1].volunteer` must be your own user ID `vol-2`, not `vol-3`"
    );
    assert_eq!(
        server
            .try_edit(&grid_worker(), |tx| append_claim(tx, &claim("grid-1", T0))
                .unwrap())
            .unwrap_err()
            .to_string(),
        "grid workers may not add claims to an order"
    );
    assert_eq!(
        server.try_edit(&volunteer("vol-2"), |tx| {
            let (_, claims) = tx.get(ROOT, "claims").unwrap().unwrap();
            tx.delete(&claims, 0).unwrap();
            append_claim(tx, &claim("vol-2", T0)).unwrap();
        }),
        Err(Forbidden::ClaimsRewritten { index: 0 })
    );
    assert_eq!(
        server.try_edit(&volunteer("vol-2"), |tx| {
            tx.put_object(ROOT, "claims", ObjType::List).unwrap();
        }),
        Err(Forbidden::ListReplaced { field: "claims" })
    );
}

#[test]
fn only_the_server_assigns() {
    let mut server = Server::new(&grid_worker(), &order("grid-1"));
    let mut phone = device(&server.doc, 5);
    edit(&mut phone, |tx| {
        append_claim(tx, &claim("vol-1", T0)).unwrap()
    });
    server.receive(&volunteer("vol-1"), &phone).unwrap();

    assert_eq!(
        server
            .try_edit(&volunteer("vol-1"), |tx| assign_order(tx, "vol-1").unwrap())
            .unwrap_err()
            .to_string(),
        "only the server may write `assignee`"
    );
    assert_eq!(
        server
            .try_edit(&actor("admin-1", Role::Admin, "/jining"), |tx| {
                tx.put(ROOT, "assignee", "vol-1").unwrap();
            })
            .unwrap_err()
            .to_string(),
        "only the server may write `assignee`"
    );
    assert!(
        server
            .try_edit(&server_actor(), |tx| assign_order(tx, "vol-1").unwrap())
            .is_ok()
    );
    // A human user named like the server is not the server unless they are an admin too.
    let impostor = actor(SERVER_USER, Role::GridWorker, GRID);
    assert!(!impostor.is_server());
}

#[test]
fn order_status_changes_by_role() {
    let mut server = Server::new(&grid_worker(), &order("grid-1"));
    assert_eq!(
        server
            .try_edit(&grid_worker(), |tx| {
                tx.put(ROOT, "assignee", "vol-1").unwrap();
                tx.put(ROOT, "status", "assigned").unwrap();
            })
            .unwrap_err()
            .to_string(),
        "only the server may write `assignee`"
    );
    assert_eq!(
        server.try_edit(&volunteer("vol-1"), |tx| {
            set_order_status(tx, OrderStatus::Cancelled).unwrap();
        }),
        Err(Forbidden::StatusChange {
            role: Role::Volunteer,
            from: OrderStatus::Open,
            to: OrderStatus::Cancelled
        })
    );
    assert!(
        server
            .try_edit(&grid_worker(), |tx| set_order_status(
                tx,
                OrderStatus::Cancelled
            )
            .unwrap())
            .is_ok()
    );

    let mut own = server.doc.clone();
    edit(&mut own, |tx| assign_order(tx, "vol-1").unwrap());
    server.receive(&server_actor(), &own).unwrap();

    let done = |tx: &mut automerge::transaction::Transaction<'_>| {
        set_order_status(tx, OrderStatus::Done).unwrap();
    };
    assert!(
        server.try_edit(&volunteer("vol-1"), done).is_ok(),
        "the assignee"
    );
    assert_eq!(
        server
            .try_edit(&volunteer("vol-2"), done)
            .unwrap_err()
            .to_string(),
        "volunteers may not change `status` of an order from `assigned` to `done`"
    );
    assert!(server.try_edit(&grid_worker(), done).is_ok());
    assert_eq!(
        server.try_edit(&grid_worker(), |tx| {
            set_order_status(tx, OrderStatus::Open).unwrap();
        }),
        Err(Forbidden::StatusChange {
            role: Role::GridWorker,
            from: OrderStatus::Assigned,
            to: OrderStatus::Open
        })
    );
    assert_eq!(
        server
            .try_edit(&volunteer("vol-1"), |tx| tx
                .put(ROOT, "place", "home")
                .unwrap())
            .unwrap_err()
            .to_string(),
        "volunteers may not change `place` in order documents"
    );

    // Both phones of the assignee mark it done offline: the second is a harmless repeat.
    let mut phone_a = device(&server.doc, 0x61);
    let mut phone_b = device(&server.doc, 0x62);
    edit(&mut phone_a, done);
    edit(&mut phone_b, done);
    server.receive(&volunteer("vol-1"), &phone_a).unwrap();
    server.receive(&volunteer("vol-1"), &phone_b).unwrap();
    assert_eq!(read_order_status(&server.doc).unwrap(), OrderStatus::Done);
}

#[test]
fn a_claim_that_arrives_after_assignment_is_kept_and_loses() {
    let mut server = Server::new(&grid_worker(), &order("grid-1"));
    // The third volunteer claimed offline with the others but syncs last.
    let (phones, received_order) = race(
        &mut server,
        &[("vol-1", 0x11), ("vol-2", 0x22), ("vol-3", 0x33)],
    );
    assert_eq!(received_order, ["vol-1", "vol-2", "vol-3"]);
    assert_eq!(read_claims(&server.doc).unwrap().len(), 3);
    for doc in phones.iter().chain([&server.doc]) {
        assert_eq!(read_assignee(doc).unwrap().as_deref(), Some("vol-1"));
    }
}

#[test]
fn the_creator_of_an_order_follows_it_even_if_their_role_does_not_read_orders() {
    let placed = new_doc(1, |tx| {
        init_order(tx, &common("sec-1"), &order_init()).unwrap()
    });
    let server = Server::new(&secretary(), &placed);
    assert!(
        server
            .try_edit(&secretary(), |tx| set_order_status(
                tx,
                OrderStatus::Cancelled
            )
            .unwrap())
            .is_ok()
    );
    assert!(matches!(
        server.try_edit(&actor("sec-2", Role::Secretary, GRID), |tx| {
            set_order_status(tx, OrderStatus::Cancelled).unwrap();
        }),
        Err(Forbidden::NoAccess { .. })
    ));
}

#[test]
fn the_server_adds_no_events() {
    let server = Server::new(&secretary(), &request("sec-1"));
    assert!(matches!(
        server.try_edit(&server_actor(), |tx| {
            append_request_event(tx, &triaged(Track::Immediate, SERVER_USER)).unwrap();
        }),
        Err(Forbidden::EventNotAllowed { .. })
    ));
}

#[test]
fn households_are_edited_by_those_who_may_see_residents() {
    let server = Server::new(&secretary(), &household("sec-1"));
    assert!(
        server
            .try_edit(&grid_worker(), |tx| {
                let (_, residents) = tx.get(ROOT, "residents").unwrap().unwrap();
                let resident = tx.insert_object(&residents, 1, ObjType::Map).unwrap();
                tx.put(&resident, "name", "李建国").unwrap();
            })
            .is_ok()
    );
    assert!(matches!(
        server.try_edit(&supervisor(), |tx| tx.put(ROOT, "address", "x").unwrap()),
        Err(Forbidden::NoAccess { .. })
    ));
}

#[test]
fn text_and_counter_values_are_compared_by_content_too() {
    // A JavaScript client writes strings as Text objects and may count with counters.
    let mut doc = visit("sec-1", "2026-03-05");
    edit(&mut doc, |tx| {
        let heard = tx.put_object(ROOT, "heard", ObjType::Text).unwrap();
        tx.splice_text(&heard, 0, 0, "楼道灯坏了").unwrap();
        tx.put(ROOT, "peopleReceived", automerge::ScalarValue::counter(1))
            .unwrap();
    });
    let server = Server::new(&secretary(), &doc);
    let splice = |tx: &mut automerge::transaction::Transaction<'_>| {
        let (_, heard) = tx.get(ROOT, "heard").unwrap().unwrap();
        tx.splice_text(&heard, 5, 0, "，已报修").unwrap();
    };
    let count = |tx: &mut automerge::transaction::Transaction<'_>| {
        tx.increment(ROOT, "peopleReceived", 1).unwrap();
    };
    assert!(server.try_edit(&secretary(), splice).is_ok());
    assert!(server.try_edit(&secretary(), count).is_ok());
    let auditor = actor("sup-1", Role::Supervisor, GRID);
    assert!(matches!(
        server.try_edit(&auditor, splice),
        Err(Forbidden::MayNotWrite { .. })
    ));
    assert!(matches!(
        server.try_edit(&auditor, count),
        Err(Forbidden::MayNotWrite { .. })
    ));

    // Editing the text of an existing event's note rewrites history.
    let mut request = request("sec-1");
    edit(&mut request, |tx| {
        let (_, first) = tx.get(timeline(tx), 0).unwrap().unwrap();
        let note = tx.put_object(&first, "note", ObjType::Text).unwrap();
        tx.splice_text(&note, 0, 0, "seen at the door").unwrap();
    });
    let server = Server::new(&secretary(), &request);
    assert_eq!(
        server.try_edit(&secretary(), |tx| {
            let (_, first) = tx.get(timeline(tx), 0).unwrap().unwrap();
            let (_, note) = tx.get(&first, "note").unwrap().unwrap();
            tx.splice_text(&note, 0, 4, "heard").unwrap();
        }),
        Err(Forbidden::TimelineRewritten { index: 0 })
    );
}

// ----- personal data and limits, in every operation of a change -----

/// What the server says about everything `device` has beyond the stored document, judged as one
/// message.
fn judge(server: &Server, actor: &Actor, device: &Automerge) -> Result<Outcome, Forbidden> {
    let after = received(&server.doc, device);
    check_change(actor, Some(&server.info), &server.doc, &after)
}

/// A visit whose `heard` is a Text object, as JavaScript clients write it.
fn visit_with_text() -> Server {
    let mut doc = visit("sec-1", "2026-03-05");
    edit(&mut doc, |tx| {
        let heard = tx.put_object(ROOT, "heard", ObjType::Text).unwrap();
        tx.splice_text(&heard, 0, 0, "楼道灯坏了").unwrap();
    });
    Server::new(&secretary(), &doc)
}

fn heard(tx: &automerge::transaction::Transaction<'_>) -> ObjId {
    tx.get(ROOT, "heard").unwrap().unwrap().1
}

#[test]
fn a_name_written_then_deleted_in_a_later_change_is_refused() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    let mut phone = device(&server.doc, 0x42);
    edit(&mut phone, |tx| tx.put(ROOT, "name", "王秀兰").unwrap());
    edit(&mut phone, |tx| tx.delete(ROOT, "name").unwrap());
    // The document after both changes is clean…
    assert!(validate(&received(&server.doc, &phone)).is_ok());
    // …but the first change is in the history every reader of the visit receives.
    assert_eq!(
        judge(&server, &secretary(), &phone),
        Err(Forbidden::Invalid(SchemaError::PersonalData {
            field: "name".to_owned(),
            kind: Kind::Visit
        }))
    );
    // Written and deleted within one change, under another key.
    let mut phone = device(&server.doc, 0x43);
    edit(&mut phone, |tx| {
        tx.put(ROOT, "residentName", "王秀兰").unwrap();
        tx.delete(ROOT, "residentName").unwrap();
    });
    assert!(matches!(
        judge(&server, &secretary(), &phone),
        Err(Forbidden::Invalid(SchemaError::UnknownField { field, .. })) if field == "residentName"
    ));
    // A number in free text, replaced in a later change.
    let mut phone = device(&server.doc, 0x44);
    edit(&mut phone, |tx| {
        tx.put(ROOT, "heard", "回电 139 1234 5678").unwrap()
    });
    edit(&mut phone, |tx| tx.put(ROOT, "heard", "回电").unwrap());
    assert!(matches!(
        judge(&server, &secretary(), &phone),
        Err(Forbidden::Invalid(SchemaError::PersonalText { field, .. })) if field == "heard"
    ));
}

#[test]
fn each_way_of_smuggling_personal_data_is_refused() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    for (key, value) in [
        ("residentName", "王秀兰"),
        ("mobile", "13912345678"),
        ("idCard", "11010519491231002X"),
    ] {
        assert!(
            matches!(
                server.try_edit(&secretary(), |tx| tx.put(ROOT, key, value).unwrap()),
                Err(Forbidden::Invalid(SchemaError::UnknownField { .. }))
            ),
            "{key}"
        );
    }
    let nested = server.try_edit(&secretary(), |tx| {
        let resident = tx.put_object(ROOT, "住户", ObjType::Map).unwrap();
        tx.put(&resident, "姓名", "王秀兰").unwrap();
        tx.put(&resident, "电话", "13912345678").unwrap();
    });
    assert!(matches!(
        nested,
        Err(Forbidden::Invalid(SchemaError::UnknownField { field, .. })) if field == "住户"
    ));
    // In a map the schema has: a new timeline event.
    let server = Server::new(&secretary(), &request("sec-1"));
    let in_event = server.try_edit(&secretary(), |tx| {
        append_request_event(tx, &ev(EventKind::Handling, "sec-1", T0 + 1)).unwrap();
        let timeline = timeline(tx);
        let (_, event) = tx.get(&timeline, 1).unwrap().unwrap();
        tx.put(&event, "姓名", "王秀兰").unwrap();
        tx.put(&event, "电话", "13912345678").unwrap();
    });
    assert!(matches!(
        in_event,
        Err(Forbidden::Invalid(SchemaError::UnknownField { field, .. }))
            if field == "timeline[1].姓名" || field == "timeline[1].电话"
    ));
    // At creation too.
    let mut created = visit("sec-1", "2026-03-05");
    edit(&mut created, |tx| {
        tx.put(ROOT, "mobile", "13912345678").unwrap();
        tx.delete(ROOT, "mobile").unwrap();
    });
    assert!(matches!(
        check_change(&secretary(), None, &Automerge::new(), &created),
        Err(Forbidden::Invalid(SchemaError::UnknownField { .. }))
    ));
}

#[test]
fn a_number_typed_into_text_and_deleted_again_is_refused() {
    let server = visit_with_text();
    // Ordinary typing is fine.
    assert!(
        server
            .try_edit(&secretary(), |tx| {
                let heard = heard(tx);
                tx.splice_text(&heard, 5, 0, "，3 号楼 2 单元，已报修")
                    .unwrap();
            })
            .is_ok()
    );
    // Typed across changes, then deleted.
    let mut phone = device(&server.doc, 0x42);
    edit(&mut phone, |tx| {
        let heard = heard(tx);
        tx.splice_text(&heard, 5, 0, "，回电 139 1234").unwrap();
    });
    edit(&mut phone, |tx| {
        let heard = heard(tx);
        let end = tx.length(&heard);
        tx.splice_text(&heard, end, 0, " 5678").unwrap();
    });
    edit(&mut phone, |tx| {
        let heard = heard(tx);
        tx.splice_text(&heard, 5, 18, "").unwrap();
    });
    assert_eq!(
        phone
            .text(phone.get(ROOT, "heard").unwrap().unwrap().1)
            .unwrap(),
        "楼道灯坏了"
    );
    assert!(matches!(
        judge(&server, &secretary(), &phone),
        Err(Forbidden::Invalid(SchemaError::PersonalText {
            found: PersonalNumber::MobilePhone,
            ..
        }))
    ));
    // Typed back to front, each digit at the start, and deleted in the same change: the
    // insertion order spells nothing, the places in the sequence do.
    let back_to_front = server.try_edit(&secretary(), |tx| {
        let heard = heard(tx);
        for digit in "11010519491231002X".chars().rev() {
            tx.splice_text(&heard, 0, 0, &digit.to_string()).unwrap();
        }
        tx.splice_text(&heard, 0, 18, "").unwrap();
    });
    assert!(matches!(
        back_to_front,
        Err(Forbidden::Invalid(SchemaError::PersonalText {
            found: PersonalNumber::ResidentId,
            ..
        }))
    ));
    // The same digits kept apart by older text are not one number.
    assert!(
        server
            .try_edit(&secretary(), |tx| {
                let heard = heard(tx);
                tx.splice_text(&heard, 4, 0, "139").unwrap();
                tx.splice_text(&heard, 2, 0, "12345678").unwrap();
            })
            .is_ok()
    );
}

#[test]
fn text_holds_characters_only() {
    use automerge::marks::{ExpandMark, Mark};
    let server = visit_with_text();
    assert_eq!(
        server
            .try_edit(&secretary(), |tx| {
                let heard = heard(tx);
                tx.mark(
                    &heard,
                    Mark::new("comment".into(), "13912345678", 0, 2),
                    ExpandMark::None,
                )
                .unwrap();
            })
            .unwrap_err()
            .to_string(),
        "`heard` is invalid: marks are not part of the schema"
    );
    assert!(matches!(
        server.try_edit(&secretary(), |tx| {
            let heard = heard(tx);
            let block = tx.split_block(&heard, 0).unwrap();
            tx.put(&block, "name", "王秀兰").unwrap();
        }),
        Err(Forbidden::Invalid(SchemaError::Invalid { .. }))
    ));
}

#[test]
fn changes_are_held_to_the_limits_even_for_what_they_delete() {
    let server = visit_with_text();
    // More than the limit inserted, then deleted, in one change.
    let inserted = server.try_edit(&secretary(), |tx| {
        let heard = heard(tx);
        tx.splice_text(&heard, 0, 0, &"a".repeat(9_000)).unwrap();
        tx.splice_text(&heard, 0, 9_000, "").unwrap();
    });
    assert!(matches!(
        inserted,
        Err(Forbidden::Invalid(SchemaError::TooLong { field, max: 8192 })) if field == "heard"
    ));
    // A megabyte written, then replaced in a later change.
    let mut phone = device(&server.doc, 0x42);
    edit(&mut phone, |tx| {
        tx.put(ROOT, "heard", "好".repeat(350_000)).unwrap()
    });
    edit(&mut phone, |tx| tx.put(ROOT, "heard", "short").unwrap());
    assert!(matches!(
        judge(&server, &secretary(), &phone),
        Err(Forbidden::Invalid(SchemaError::TooLong { .. }))
    ));
    // Operations per change, counted before any is read.
    let config = CheckConfig {
        limits: SchemaLimits {
            max_change_ops: 10,
            ..SchemaLimits::default()
        },
        ..CheckConfig::default()
    };
    let doc = visit("sec-1", "2026-03-05");
    let ops = doc.get_changes(&[])[0].len();
    assert_eq!(
        check_change_with(&config, &secretary(), None, &Automerge::new(), &doc),
        Err(Forbidden::Invalid(SchemaError::TooManyOperations {
            ops,
            max: 10
        }))
    );
    assert!(check_change(&secretary(), None, &Automerge::new(), &doc).is_ok());
}

#[test]
fn a_field_stored_before_the_allow_list_can_be_removed_but_not_written() {
    // Stored before unknown fields were refused, so never judged by these rules.
    let mut doc = visit("sec-1", "2026-03-05");
    edit(&mut doc, |tx| {
        let extra = tx.put_object(ROOT, "followUp", ObjType::Map).unwrap();
        tx.put(&extra, "when", "next week").unwrap();
    });
    let server = Server {
        info: crate::domain::schema::read_info(&doc).unwrap(),
        doc,
    };
    assert!(matches!(
        server.try_edit(&secretary(), |tx| {
            let (_, extra) = tx.get(ROOT, "followUp").unwrap().unwrap();
            tx.put(&extra, "when", "tomorrow").unwrap();
        }),
        Err(Forbidden::Invalid(SchemaError::UnknownField { field, .. })) if field == "followUp"
    ));
    assert!(
        server
            .try_edit(&secretary(), |tx| tx.delete(ROOT, "followUp").unwrap())
            .is_ok()
    );
}

#[test]
fn a_write_into_a_list_replaced_meanwhile_is_judged_by_the_fields_of_the_kind() {
    let server = Server::new(&secretary(), &visit("sec-1", "2026-03-05"));
    let mut offline = device(&server.doc, 0x42);
    let mut online = device(&server.doc, 0x43);
    // One device replaces `visitors` (as a JavaScript client assigning an array does)…
    edit(&mut online, |tx| {
        let visitors = tx.put_object(ROOT, "visitors", ObjType::List).unwrap();
        tx.insert(&visitors, 0, "sec-1").unwrap();
    });
    let mut server = server;
    server.receive(&secretary(), &online).unwrap();
    // …while another, offline, adds to the old one: its change lands in a deleted list.
    let mut added = offline
        .fork()
        .with_actor(automerge::ActorId::from([0x44; 16]));
    edit(&mut offline, |tx| {
        let (_, visitors) = tx.get(ROOT, "visitors").unwrap().unwrap();
        tx.insert(&visitors, 2, "sec-3").unwrap();
    });
    assert!(server.receive(&secretary(), &offline).is_ok());
    // Personal data is still found there.
    edit(&mut added, |tx| {
        let (_, visitors) = tx.get(ROOT, "visitors").unwrap().unwrap();
        tx.insert(&visitors, 2, "回电 13912345678").unwrap();
    });
    assert!(matches!(
        server.receive(&secretary(), &added),
        Err(Forbidden::Invalid(SchemaError::PersonalText { .. }))
    ));
}
