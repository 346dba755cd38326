//! [`Forbidden`]: why a change, or a read, is refused.
//!
//! Each variant's message is one line that names the field and the rule, fit to send to the
//! device that made the change ("volunteers may not add `triaged` events to a request") and to
//! show to its user. Values quoted from the document are cut short. This module only describes
//! refusals; the rules that produce them live in [`access`](super::access) and
//! [`write_rules`](super::write_rules).

use super::area::AreaPath;
use super::event::EventType;
use super::kind::Kind;
use super::order_flow::OrderStatus;
use super::role::Role;
use super::schema::SchemaError;

/// Why a change (or a read) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forbidden {
    /// The document after the change does not fit its schema.
    #[error("{0}")]
    Invalid(#[from] SchemaError),
    /// The role may not create documents of this kind.
    #[error("{} may not create {kind} documents", role.people())]
    MayNotCreate { role: Role, kind: Kind },
    /// The document's area is not in the user's subtree.
    #[error("`area` {area} is outside your area {yours}")]
    OutsideArea { area: AreaPath, yours: AreaPath },
    /// A new document names someone else as its creator.
    #[error("`createdBy` must be your own user ID `{user}`, not `{created_by}`")]
    NotCreator { created_by: String, user: String },
    /// The role may not see documents of this kind.
    #[error("{} may not see {kind} documents", role.people())]
    NoAccess { role: Role, kind: Kind },
    /// A department handler's change to a request not transferred to their department.
    #[error("this request is not transferred to your department")]
    NotTransferred,
    /// The role may see the kind but not change it at all.
    #[error("{} may not change {kind} documents", role.people())]
    MayNotWrite { role: Role, kind: Kind },
    /// A common field (`kind`, `schema`, `area`, `createdBy`, `createdAt`) changed.
    #[error("`{field}` is fixed at creation and may not change")]
    FixedField { field: &'static str },
    /// The role may not change this field of this kind.
    #[error("{} may not change `{field}` in {kind} documents", role.people())]
    ReadOnlyField {
        role: Role,
        kind: Kind,
        field: String,
    },
    /// An append-only list (`timeline`, `claims`) was replaced by a new list.
    #[error("`{field}` may not be replaced; add to it instead")]
    ListReplaced { field: &'static str },
    /// An existing timeline event was changed or removed. `index` is its place before the
    /// change.
    #[error("existing events in `timeline` may not be changed or removed (`timeline[{index}]`)")]
    TimelineRewritten { index: usize },
    /// A new event was put in front of events its author had already seen.
    #[error("`timeline[{index}]` must be appended after the events you had seen, not inserted")]
    EventNotAppended { index: usize },
    /// A new event names someone else as its author.
    #[error("`timeline[{index}].by` must be your own user ID `{user}`, not `{by}`")]
    EventByOther {
        index: usize,
        by: String,
        user: String,
    },
    /// The role may not add this type of event.
    #[error("{} may not add `{event}` events to a request", role.people())]
    EventNotAllowed { role: Role, event: EventType },
    /// An existing claim was changed or removed. `index` is its place before the change.
    #[error("existing claims in `claims` may not be changed or removed (`claims[{index}]`)")]
    ClaimsRewritten { index: usize },
    /// The role may not claim orders.
    #[error("{} may not add claims to an order", role.people())]
    MayNotClaim { role: Role },
    /// A new claim names another volunteer.
    #[error("`claims[{index}].volunteer` must be your own user ID `{user}`, not `{volunteer}`")]
    ClaimByOther {
        index: usize,
        volunteer: String,
        user: String,
    },
    /// Someone other than the server did what only the server does: write `assignee`, or set
    /// `status` to `assigned`.
    #[error("only the server may {what}")]
    ServerOnly { what: &'static str },
    /// A status change this role may not make.
    #[error("{} may not change `status` of an order from `{from}` to `{to}`", role.people())]
    StatusChange {
        role: Role,
        from: OrderStatus,
        to: OrderStatus,
    },
    /// A new order that is not fresh: it must start open, unclaimed and unassigned.
    #[error("a new order must be `open`, with no `claims` and no `assignee`; `{field}` is not")]
    OrderNotFresh { field: &'static str },
}
