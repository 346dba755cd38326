//! The permission matrix, checked against the policy as the field describes it.

use super::*;
use crate::domain::builders::append_request_event;
use crate::domain::event::{Event, EventKind};
use crate::domain::fixtures::*;
use crate::domain::schema::read_info;

fn kinds_readable_by(role: Role) -> Vec<Kind> {
    Kind::ALL
        .iter()
        .copied()
        .filter(|kind| may_read(role, *kind))
        .collect()
}

fn creators_of(kind: Kind) -> Vec<Role> {
    Role::ALL
        .iter()
        .copied()
        .filter(|role| may_create(*role, kind))
        .collect()
}

#[test]
fn read_matrix() {
    use Kind::*;
    assert_eq!(
        kinds_readable_by(Role::Secretary),
        [Household, Visit, Request]
    );
    assert_eq!(
        kinds_readable_by(Role::GridWorker),
        [Household, Visit, Request, Order]
    );
    assert_eq!(kinds_readable_by(Role::Volunteer), [Order]);
    assert_eq!(kinds_readable_by(Role::StationStaff), [Order, StationLog]);
    assert_eq!(kinds_readable_by(Role::DepartmentHandler), [Request]);
    assert_eq!(
        kinds_readable_by(Role::Supervisor),
        [Visit, Request, Order, StationLog]
    );
    assert_eq!(kinds_readable_by(Role::Admin), Kind::ALL);
}

#[test]
fn personal_data_goes_only_to_roles_that_need_it() {
    let readers: Vec<Role> = Role::ALL
        .iter()
        .copied()
        .filter(|role| may_read(*role, Kind::Household))
        .collect();
    assert_eq!(readers, [Role::Secretary, Role::GridWorker, Role::Admin]);
    assert!(!may_read(Role::Supervisor, Kind::Household));
}

#[test]
fn create_matrix() {
    use Role::*;
    assert_eq!(creators_of(Kind::Household), [Secretary, GridWorker, Admin]);
    assert_eq!(creators_of(Kind::Visit), [Secretary, GridWorker]);
    assert_eq!(
        creators_of(Kind::Request),
        [Secretary, GridWorker, StationStaff]
    );
    assert_eq!(creators_of(Kind::Order), [Secretary, GridWorker]);
    assert_eq!(creators_of(Kind::StationLog), [StationStaff]);
}

#[test]
fn event_matrix() {
    use EventType::*;
    let adders = |event: EventType| -> Vec<Role> {
        Role::ALL
            .iter()
            .copied()
            .filter(|role| may_add_event(*role, event))
            .collect()
    };
    let field_work = [Role::Secretary, Role::GridWorker, Role::DepartmentHandler];
    let steering = [Role::Secretary, Role::GridWorker, Role::Supervisor];
    for event in [Collected, Handling, Resolved, CalledBack] {
        assert_eq!(adders(event), field_work, "{event}");
    }
    for event in [Triaged, Closed] {
        assert_eq!(adders(event), steering, "{event}");
    }
    assert!(
        EventType::ALL
            .iter()
            .all(|e| !may_add_event(Role::Volunteer, *e))
    );
}

#[test]
fn write_rights_follow_read_rights() {
    // Nobody writes what their role cannot read, except what they created.
    for role in Role::ALL {
        for kind in Kind::ALL {
            if may_write(*role, *kind) {
                assert!(
                    may_read(*role, *kind) || may_create(*role, *kind),
                    "{role} writes {kind} without reading it"
                );
            }
        }
    }
    assert!(!may_write(Role::Supervisor, Kind::Visit));
    assert!(
        may_write(Role::Supervisor, Kind::Request),
        "triage and close"
    );
    assert!(!may_edit(Role::Supervisor, Kind::Request));
    assert!(may_write(Role::Volunteer, Kind::Order), "claims");
    assert!(!may_edit(Role::Volunteer, Kind::Order));
    assert!(may_write(Role::DepartmentHandler, Kind::Request));
    assert!(!may_write(Role::StationStaff, Kind::Request));
}

#[test]
fn a_user_reads_only_inside_their_area_subtree() {
    let doc = visit("sec-1", "2026-03-05");
    let info = read_info(&doc).unwrap();
    let community = "/jining/rencheng/street-3/community-2";
    assert!(may_read_document(
        &actor("sec-9", Role::Secretary, community),
        &info,
        &doc
    ));
    assert!(may_read_document(
        &actor("sec-9", Role::Secretary, GRID),
        &info,
        &doc
    ));
    let neighbour = actor(
        "grid-5",
        Role::GridWorker,
        &format!("{community}/compound-1/grid-5"),
    );
    assert_eq!(
        check_read(&neighbour, &info, &doc),
        Err(Forbidden::OutsideArea {
            area: info.area.clone(),
            yours: neighbour.area.clone()
        })
    );
    // `grid-4` is a prefix of `grid-40` as a string, not as a path.
    let lookalike = actor("grid-40", Role::GridWorker, &format!("{GRID}0"));
    assert!(!may_read_document(&lookalike, &info, &doc));
}

#[test]
fn a_role_reads_only_its_kinds_but_a_creator_reads_their_own() {
    let household = household("sec-1");
    let info = read_info(&household).unwrap();
    let supervisor = actor("sup-1", Role::Supervisor, GRID);
    assert_eq!(
        check_read(&supervisor, &info, &household),
        Err(Forbidden::NoAccess {
            role: Role::Supervisor,
            kind: Kind::Household
        })
    );
    // A secretary placed this order; secretaries do not read orders, but they read their own.
    let order = order("sec-1");
    let info = read_info(&order).unwrap();
    assert!(may_read_document(
        &actor("sec-1", Role::Secretary, GRID),
        &info,
        &order
    ));
    assert!(!may_read_document(
        &actor("sec-2", Role::Secretary, GRID),
        &info,
        &order
    ));
}

#[test]
fn department_handlers_read_only_requests_transferred_to_them() {
    let mut doc = request("sec-1");
    let info = read_info(&doc).unwrap();
    let mut handler = actor("dept-1", Role::DepartmentHandler, GRID);
    handler.department = Some("housing".to_owned());
    assert_eq!(
        check_read(&handler, &info, &doc),
        Err(Forbidden::NotTransferred)
    );

    let triage = |track: Track, department: Option<&str>, at: i64| Event {
        kind: EventKind::Triaged {
            track,
            department: department.map(str::to_owned),
        },
        at,
        by: "grid-1".to_owned(),
        device: None,
        note: None,
    };
    edit(&mut doc, |tx| {
        append_request_event(tx, &triage(Track::Transfer, Some("housing"), T0 + 1)).unwrap();
    });
    assert!(may_read_request_as_department(&doc, "housing"));
    assert!(!may_read_request_as_department(&doc, "water"));
    assert!(may_read_document(&handler, &info, &doc));
    handler.department = None;
    assert!(
        !may_read_document(&handler, &info, &doc),
        "no department, no requests"
    );
    handler.department = Some("housing".to_owned());

    // Re-triaged elsewhere: the last valid triage decides.
    edit(&mut doc, |tx| {
        append_request_event(tx, &triage(Track::Transfer, Some("water"), T0 + 2)).unwrap();
    });
    assert!(!may_read_document(&handler, &info, &doc));
    assert!(may_read_request_as_department(&doc, "water"));

    // A department on a non-transfer track transfers nothing.
    let mut immediate = request("sec-1");
    edit(&mut immediate, |tx| {
        append_request_event(tx, &triage(Track::Immediate, Some("housing"), T0 + 1)).unwrap();
    });
    assert!(!may_read_request_as_department(&immediate, "housing"));
    assert!(!may_read_request_as_department(
        &household("sec-1"),
        "housing"
    ));
}
