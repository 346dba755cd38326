//! The permission matrix: which role may read, create and change which kind of document, and
//! which role may add which event to a request. The tables below are the policy; the functions
//! only look things up in them.
//!
//! Reading is further narrowed in two ways that need more than a role and a kind:
//!
//! - **Area.** A user reads only documents whose `area` lies in the user's area subtree
//!   ([`AreaPath::contains`](super::area::AreaPath::contains)). The server checks this for every
//!   document it serves and every change it accepts; [`check_read`] includes it.
//! - **Department.** A department handler reads only the requests whose last valid triage
//!   transferred them to the handler's department ([`may_read_request_as_department`]), and so
//!   loses sight of a request that is re-triaged elsewhere.
//!
//! One rule is added on top of the table: the creator of a document may always read it. Without
//! it a secretary who places an order, or station staff who raise a request, could create a
//! document the server then refuses to show back to them.
//!
//! Residents' personal data lives only in household documents (the schema refuses it anywhere
//! else), so the household row of the read table is the whole personal-data policy: secretaries,
//! grid workers and admins. Supervisors read figures, not residents' names.
//!
//! This module decides "may"; it must not look at what a change does (that is
//! [`write_rules`](super::write_rules)).

use automerge::Automerge;

use super::actor::Actor;
use super::area::AreaPath;
use super::event::{EventType, Track};
use super::forbidden::Forbidden;
use super::kind::Kind;
use super::request_flow::read_flow;
use super::role::Role;
use super::schema::DocInfo;

use EventType as E;
use Kind as K;
use Role as R;

/// Who may read what, by role.
const READ: &[(Role, &[Kind])] = &[
    (R::Secretary, &[K::Household, K::Visit, K::Request]),
    (
        R::GridWorker,
        &[K::Household, K::Visit, K::Request, K::Order],
    ),
    (R::Volunteer, &[K::Order]),
    (R::StationStaff, &[K::StationLog, K::Order]),
    (R::DepartmentHandler, &[K::Request]),
    (
        R::Supervisor,
        &[K::Visit, K::Request, K::Order, K::StationLog],
    ),
    (R::Admin, Kind::ALL),
];

/// Who may create what, by kind.
const CREATE: &[(Kind, &[Role])] = &[
    (K::Household, &[R::Secretary, R::GridWorker, R::Admin]),
    (K::Visit, &[R::Secretary, R::GridWorker]),
    (K::Request, &[R::Secretary, R::GridWorker, R::StationStaff]),
    (K::Order, &[R::GridWorker, R::Secretary]),
    (K::StationLog, &[R::StationStaff]),
];

/// Who may change the ordinary fields of a kind: every field that is not fixed at creation and
/// has no rule of its own (a request's `timeline`; an order's `claims`, `assignee`, `status`).
///
/// Supervisors change nothing but the request events below; volunteers change nothing but their
/// claims and the status of orders assigned to them (see `write_rules`).
const EDIT: &[(Kind, &[Role])] = &[
    (K::Household, &[R::Secretary, R::GridWorker, R::Admin]),
    (K::Visit, &[R::Secretary, R::GridWorker, R::Admin]),
    (K::Request, &[R::Secretary, R::GridWorker, R::Admin]),
    (
        K::Order,
        &[R::GridWorker, R::Secretary, R::StationStaff, R::Admin],
    ),
    (K::StationLog, &[R::StationStaff, R::Admin]),
];

/// Who may add which event to a request's timeline.
///
/// A department handler's events also need the request to be transferred to their department,
/// which [`check_read`] enforces. Admins add no events: the trace records field work.
const EVENTS: &[(EventType, &[Role])] = &[
    (
        E::Collected,
        &[R::Secretary, R::GridWorker, R::DepartmentHandler],
    ),
    (E::Triaged, &[R::Secretary, R::GridWorker, R::Supervisor]),
    (
        E::Handling,
        &[R::Secretary, R::GridWorker, R::DepartmentHandler],
    ),
    (
        E::Resolved,
        &[R::Secretary, R::GridWorker, R::DepartmentHandler],
    ),
    (
        E::CalledBack,
        &[R::Secretary, R::GridWorker, R::DepartmentHandler],
    ),
    (E::Closed, &[R::Secretary, R::GridWorker, R::Supervisor]),
];

fn listed<A: PartialEq, B: PartialEq>(table: &[(A, &[B])], key: A, value: B) -> bool {
    table
        .iter()
        .any(|(k, values)| *k == key && values.contains(&value))
}

/// Whether `role` may read documents of `kind` (before the area and department rules).
pub fn may_read(role: Role, kind: Kind) -> bool {
    listed(READ, role, kind)
}

/// Whether `role` may create documents of `kind`.
pub fn may_create(role: Role, kind: Kind) -> bool {
    listed(CREATE, kind, role)
}

/// Whether `role` may change the ordinary fields of `kind` documents.
pub fn may_edit(role: Role, kind: Kind) -> bool {
    listed(EDIT, kind, role)
}

/// Whether `role` may add `event` to a request's timeline.
pub fn may_add_event(role: Role, event: EventType) -> bool {
    listed(EVENTS, event, role)
}

/// Whether `role` may change `kind` documents in any way at all: edit them, add request events,
/// or (volunteers) claim and complete orders.
pub fn may_write(role: Role, kind: Kind) -> bool {
    may_edit(role, kind)
        || (kind == Kind::Request && EventType::ALL.iter().any(|e| may_add_event(role, *e)))
        || (kind == Kind::Order && role == Role::Volunteer)
}

/// The department the request document `doc` is transferred to by its last valid triage, if
/// any. A request that cannot be read (not a request, or malformed) is transferred nowhere.
pub fn transferred_to(doc: &Automerge) -> Option<String> {
    read_flow(doc)
        .ok()
        .filter(|flow| flow.track == Some(Track::Transfer))
        .and_then(|flow| flow.department)
}

/// Whether the request document `doc` is transferred to `department` by its last valid triage.
pub fn may_read_request_as_department(doc: &Automerge, department: &str) -> bool {
    transferred_to(doc).as_deref() == Some(department)
}

/// Checks that `actor` may read the document `doc` with common fields `info`: area, kind (or
/// being its creator), and, for department handlers, the transfer.
pub fn check_read(actor: &Actor, info: &DocInfo, doc: &Automerge) -> Result<(), Forbidden> {
    check_read_where(actor, info.kind, &info.area, &info.created_by, || {
        transferred_to(doc)
    })
}

/// [`check_read`] for a document known by its kind, area and creator and, for a request, the
/// department it is transferred to (`transfer` is asked only when that decides), as the
/// server's storage records them: it serves documents without loading them.
pub fn check_read_where(
    actor: &Actor,
    kind: Kind,
    area: &AreaPath,
    created_by: &str,
    transfer: impl FnOnce() -> Option<String>,
) -> Result<(), Forbidden> {
    if !actor.area.contains(area) {
        return Err(Forbidden::OutsideArea {
            area: area.clone(),
            yours: actor.area.clone(),
        });
    }
    let creator = created_by == actor.user;
    if !may_read(actor.role, kind) && !creator {
        return Err(Forbidden::NoAccess {
            role: actor.role,
            kind,
        });
    }
    if actor.role == Role::DepartmentHandler && kind == Kind::Request && !creator {
        let transferred = actor
            .department
            .as_deref()
            .is_some_and(|department| transfer().as_deref() == Some(department));
        if !transferred {
            return Err(Forbidden::NotTransferred);
        }
    }
    Ok(())
}

/// Whether `actor` may read `doc`: [`check_read`] as a yes or no.
pub fn may_read_document(actor: &Actor, info: &DocInfo, doc: &Automerge) -> bool {
    check_read(actor, info, doc).is_ok()
}

#[cfg(test)]
mod tests;
