//! Test fixtures shared by the domain's tests: actors, well-formed documents of every kind, and
//! devices that fork, edit and sync them the way real replicas do.
//!
//! Test-only. Fixtures build documents with the public builders, so every test also exercises
//! them; they must not bypass the rules they are used to test.

use automerge::transaction::Transaction;
use automerge::{ActorId, Automerge};

use super::actor::Actor;
use super::area::AreaPath;
use super::builders::{
    Common, HouseholdInit, OrderInit, RequestInit, Resident, StationEntry, StationLogInit,
    VisitInit, init_household, init_order, init_request, init_station_log, init_visit,
};
use super::date::LocalDate;
use super::origin::Origin;
use super::role::Role;

/// 2026-03-05 09:00 in Shanghai, a listening day.
pub(super) const T0: i64 = 1_772_672_400_000;

/// The grid most tests happen in.
pub(super) const GRID: &str = "/jining/rencheng/street-3/community-2/compound-1/grid-4";

pub(super) fn area(path: &str) -> AreaPath {
    path.parse().unwrap()
}

pub(super) fn actor(user: &str, role: Role, path: &str) -> Actor {
    Actor {
        user: user.to_owned(),
        role,
        area: area(path),
        department: None,
    }
}

pub(super) fn common(user: &str) -> Common {
    Common {
        area: area(GRID),
        created_by: user.to_owned(),
        created_at: T0,
    }
}

/// A document with the actor ID `seed` repeated, made by `build` in one transaction.
pub(super) fn new_doc(seed: u8, build: impl FnOnce(&mut Transaction<'_>)) -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from([seed; 16]));
    edit(&mut doc, build);
    doc
}

/// Applies `build` to `doc` in one transaction.
pub(super) fn edit(doc: &mut Automerge, build: impl FnOnce(&mut Transaction<'_>)) {
    let mut tx = doc.transaction();
    build(&mut tx);
    tx.commit();
}

/// A device's copy of `doc`, with its own actor ID `seed`.
pub(super) fn device(doc: &Automerge, seed: u8) -> Automerge {
    doc.fork().with_actor(ActorId::from([seed; 16]))
}

/// `stored` with everything `device` has merged in: what the server holds after receiving the
/// device's changes.
pub(super) fn received(stored: &Automerge, device: &Automerge) -> Automerge {
    let mut after = stored.clone();
    after.merge(&mut device.clone()).unwrap();
    after
}

pub(super) fn household_init() -> HouseholdInit {
    HouseholdInit {
        address: "Building 7, unit 2, room 301".to_owned(),
        residents: vec![Resident {
            name: "王秀兰".to_owned(),
            phone: Some("13800000000".to_owned()),
            id_number: None,
        }],
    }
}

pub(super) fn household(user: &str) -> Automerge {
    new_doc(1, |tx| {
        init_household(tx, &common(user), &household_init()).unwrap();
    })
}

pub(super) fn visit_init(date: &str) -> VisitInit {
    VisitInit {
        household: "hh-1".to_owned(),
        date: date.parse::<LocalDate>().unwrap(),
        visitors: vec!["sec-1".to_owned(), "sec-2".to_owned()],
        heard: "The stairwell light is broken.".to_owned(),
        people_received: 2,
        requests: vec!["req-1".to_owned()],
    }
}

pub(super) fn visit(user: &str, date: &str) -> Automerge {
    new_doc(1, |tx| {
        init_visit(tx, &common(user), &visit_init(date)).unwrap()
    })
}

pub(super) fn request_init() -> RequestInit {
    RequestInit {
        origin: Origin::Visit,
        household: Some("hh-1".to_owned()),
        visit: Some("visit-1".to_owned()),
        category: "public-facilities".to_owned(),
        description: "The stairwell light is broken.".to_owned(),
        device: Some("phone-1".to_owned()),
    }
}

pub(super) fn request(user: &str) -> Automerge {
    new_doc(1, |tx| {
        init_request(tx, &common(user), &request_init()).unwrap()
    })
}

pub(super) fn order_init() -> OrderInit {
    OrderInit {
        requester: "hh-1".to_owned(),
        service_kind: "hospital-escort".to_owned(),
        window_start: T0 + 3_600_000,
        window_end: T0 + 4 * 3_600_000,
        place: "Renji hospital".to_owned(),
    }
}

pub(super) fn order(user: &str) -> Automerge {
    new_doc(1, |tx| {
        init_order(tx, &common(user), &order_init()).unwrap()
    })
}

pub(super) fn station_log_init() -> StationLogInit {
    StationLogInit {
        station: "station-9".to_owned(),
        date: "2026-03-05".parse().unwrap(),
        entries: vec![StationEntry {
            service_kind: "haircut".to_owned(),
            people_served: 12,
            served_by: "staff-1".to_owned(),
        }],
    }
}

pub(super) fn station_log(user: &str) -> Automerge {
    new_doc(1, |tx| {
        init_station_log(tx, &common(user), &station_log_init()).unwrap();
    })
}
