//! Well-formed documents of every kind, written with `lianxin_protocol::domain::builders` the
//! way the domain's own test fixtures (`sync-protocol/src/domain/fixtures.rs`, test-only) do,
//! and the people who edit them.

use automerge::{ActorId, AutoCommit};
use lianxin_protocol::domain::builders::{
    add_station_entry, append_claim, append_request_event, init_household, init_order,
    init_request, init_station_log, init_visit,
};
use lianxin_protocol::domain::{
    Actor, AreaPath, Claim, Common, Event, EventKind, HouseholdInit, Kind, OrderInit, Origin,
    RequestInit, Resident, Role, StationEntry, StationLogInit, Track, VisitInit,
};

/// 2026-03-05 09:00 in Shanghai, a listening day.
pub const T0: i64 = 1_772_672_400_000;

/// The grid the documents are in.
pub const GRID: &str = "/jining/rencheng/street-3/community-2/compound-1/grid-4";

/// Areas an actor may be bound to: the grid, its ancestors, a sibling, another city.
pub const AREAS: &[&str] = &[
    GRID,
    "/jining/rencheng/street-3/community-2/compound-1",
    "/jining/rencheng",
    "/jining",
    "/jining/rencheng/street-3/community-2/compound-1/grid-5",
    "/qufu",
    "/jining/rencheng/street-3/community-2/compound-1/grid-4/building-7",
];

/// User IDs: the creator of every fixture is `sec-1`; `server` is the server's own.
pub const USERS: &[&str] = &[
    "sec-1", "sec-2", "gw-1", "vol-1", "vol-2", "staff-1", "dept-1", "sup-1", "admin-1", "server",
];

/// Departments a handler may belong to; requests are transferred to `housing`.
pub const DEPARTMENTS: &[&str] = &["housing", "water"];

/// The creator of every fixture.
pub const CREATOR: &str = "sec-1";

/// The actor ID of every fixture's first change.
pub fn creator_actor() -> ActorId {
    ActorId::from([1u8; 16])
}

pub fn area(path: &str) -> AreaPath {
    path.parse().expect("fixture area paths are valid")
}

pub fn common(user: &str) -> Common {
    Common {
        area: area(GRID),
        created_by: user.to_owned(),
        created_at: T0,
    }
}

/// An actor as the server builds it from a token.
pub fn actor(user: &str, role: Role, area_path: &str, department: Option<&str>) -> Actor {
    Actor {
        user: user.to_owned(),
        role,
        area: area(area_path),
        department: department.map(str::to_owned),
    }
}

pub fn household_init() -> HouseholdInit {
    HouseholdInit {
        address: "Building 7, unit 2, room 301".to_owned(),
        residents: vec![Resident {
            name: "王秀兰".to_owned(),
            phone: Some("13800000000".to_owned()),
            id_number: None,
        }],
    }
}

pub fn visit_init() -> VisitInit {
    VisitInit {
        household: "hh-1".to_owned(),
        date: "2026-03-05".parse().expect("valid date"),
        visitors: vec!["sec-1".to_owned(), "sec-2".to_owned()],
        heard: "The stairwell light is broken.".to_owned(),
        people_received: 2,
        requests: vec!["req-1".to_owned()],
    }
}

pub fn request_init() -> RequestInit {
    RequestInit {
        origin: Origin::Visit,
        household: Some("hh-1".to_owned()),
        visit: Some("visit-1".to_owned()),
        category: "public-facilities".to_owned(),
        description: "The stairwell light is broken.".to_owned(),
        device: Some("phone-1".to_owned()),
    }
}

pub fn order_init() -> OrderInit {
    OrderInit {
        requester: "hh-1".to_owned(),
        service_kind: "hospital-escort".to_owned(),
        window_start: T0 + 3_600_000,
        window_end: T0 + 4 * 3_600_000,
        place: "Renji hospital".to_owned(),
    }
}

pub fn station_log_init() -> StationLogInit {
    StationLogInit {
        station: "station-9".to_owned(),
        date: "2026-03-05".parse().expect("valid date"),
        entries: vec![StationEntry {
            service_kind: "haircut".to_owned(),
            people_served: 12,
            served_by: "staff-1".to_owned(),
        }],
    }
}

/// A new, valid document of `kind` created by [`CREATOR`] in one change, with actor
/// [`creator_actor`]. Only the creation: what [`build`] adds is left out.
pub fn create(kind: Kind) -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(creator_actor());
    let c = common(CREATOR);
    match kind {
        Kind::Household => init_household(&mut doc, &c, &household_init()),
        Kind::Visit => init_visit(&mut doc, &c, &visit_init()),
        Kind::Request => init_request(&mut doc, &c, &request_init()),
        Kind::Order => init_order(&mut doc, &c, &order_init()),
        Kind::StationLog => init_station_log(&mut doc, &c, &station_log_init()),
    }
    .expect("builders write fixtures");
    doc.commit();
    doc
}

/// A valid document of `kind` with some history: [`create`], then for a request a triage
/// (transfer to `housing`) by `gw-1`, for an order a claim by `vol-1`, for a station log a
/// second entry, each in its own change by another actor.
pub fn build(kind: Kind) -> AutoCommit {
    let mut doc = create(kind);
    let mut later = doc.fork().with_actor(ActorId::from([2u8; 16]));
    match kind {
        Kind::Request => append_request_event(
            &mut later,
            &Event {
                kind: EventKind::Triaged {
                    track: Track::Transfer,
                    department: Some("housing".to_owned()),
                },
                at: T0 + 60_000,
                by: "gw-1".to_owned(),
                device: Some("phone-2".to_owned()),
                note: Some("to housing".to_owned()),
            },
        ),
        Kind::Order => append_claim(
            &mut later,
            &Claim {
                volunteer: "vol-1".to_owned(),
                device: Some("phone-3".to_owned()),
                at: T0 + 60_000,
            },
        ),
        Kind::StationLog => add_station_entry(
            &mut later,
            &StationEntry {
                service_kind: "blood-pressure".to_owned(),
                people_served: 3,
                served_by: "staff-1".to_owned(),
            },
        ),
        Kind::Household | Kind::Visit => Ok(()),
    }
    .expect("builders write fixtures");
    later.commit();
    doc.merge(&mut later).expect("merging a fork");
    doc
}
