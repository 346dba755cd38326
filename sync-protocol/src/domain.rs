//! The pure domain rules of Lianxin: the document kinds of the field, their schemas, who may
//! read and write what, and the rules a plain merge cannot keep.
//!
//! # The model
//!
//! Every document is an Automerge document whose ROOT map holds the common fields `kind`,
//! `schema`, `area`, `createdBy` and `createdAt`, fixed at creation ([`DocInfo`]), and the
//! fields of its [`Kind`]:
//!
//! - `household`: `address`, `residents` (`{name, phone?, idNumber?}`). The only kind that may
//!   hold residents' personal data.
//! - `visit`: a listening-day household visit: `household`, `date`, `visitors`, `heard`,
//!   `peopleReceived`, `requests`.
//! - `request` (诉求): `origin`, `household?`, `visit?`, `category`, `description`, and an
//!   append-only `timeline` of [`Event`]s from which its [`Status`] is derived.
//! - `order`: a volunteer service order: `requester`, `serviceKind`, `windowStart`, `windowEnd`,
//!   `place`, `claims`, `assignee` (server only), `status`.
//! - `station_log`: one station's day: `station`, `date`, `entries`
//!   (`{serviceKind, peopleServed, servedBy}`).
//!
//! Strings may be scalar strings or Text objects (JavaScript clients write Text); the builders
//! write scalars.
//!
//! # The rules
//!
//! - **Where**: each user and document sits on a node of the area tree ([`AreaPath`]); a user
//!   sees the subtree of their node.
//! - **Who**: the [`access`] tables say which [`Role`] reads, creates and edits which kind and
//!   adds which request event; department handlers see only requests transferred to them.
//! - **What**: [`validate`] checks a document against its kind's schema, which names every field
//!   it may have and bounds every string and list ([`SchemaLimits`]); [`check_change`] judges a
//!   device's change on the document before and after it, and on every operation of the change,
//!   and returns a [`Forbidden`] reason or an [`Outcome`] with [`Flag`]s for the server.
//! - **Personal data**: only households hold residents' names, phones and ID numbers. Other kinds
//!   accept only the fields their schema names, and their free text may hold no phone or ID
//!   number ([`PersonalNumber`]), in the document or in any new change's history.
//! - **Beyond the merge**: a request's status comes from its timeline by a state machine
//!   ([`request_flow::status`]), identical on every replica; each triage track has a due time
//!   ([`due`]); visits are expected on listening days ([`ListeningDays`]); each order goes to the
//!   claim the server received first ([`winning_claim`]).
//!
//! Everything here is pure. There is no IO and no clock: times are arguments in milliseconds
//! since the Unix epoch, and the local zone is a fixed UTC offset in seconds. Nothing here may
//! know about storage, sockets or sessions.
//!
//! # Layout
//!
//! - [`area`], [`role`], [`kind`], [`origin`], [`date`]: the words of the field, as types.
//! - [`access`]: the permission matrix. [`actor`]: who makes a change. [`forbidden`]: why not.
//! - [`schema`] (+ `schema/<kind>.rs`, `schema/shape.rs`, `schema/ops.rs`, `schema/limits.rs`):
//!   [`DocInfo`], [`read_info`], [`validate`], [`SchemaError`], [`SchemaLimits`].
//! - [`personal_number`]: phone and resident ID numbers found in free text.
//! - [`event`], [`request_flow`], [`due`]: a request's timeline, status and deadline.
//! - [`listening_day`]: listening days and local dates.
//! - [`order_flow`]: claims and arbitration of orders.
//! - [`write_rules`] (+ `write_rules/compare.rs`): [`check_change`].
//! - [`builders`]: typed constructors that write well-formed documents.
//! - [`projection`]: a document's merged state as a typed record for supervisors' queries, and
//!   the readable summary of one change.
//! - [`keys`]: the wire names of fields.

#[macro_use]
mod wire_enum;

pub mod access;
pub mod actor;
pub mod area;
pub mod builders;
pub mod date;
pub mod due;
pub mod event;
pub mod forbidden;
pub mod keys;
pub mod kind;
pub mod listening_day;
pub mod order_flow;
pub mod origin;
pub mod personal_number;
pub mod projection;
mod read;
pub mod request_flow;
pub mod role;
pub mod schema;
pub mod write_rules;

#[cfg(test)]
mod fixtures;

pub use access::{
    check_read, check_read_where, may_add_event, may_create, may_edit, may_read, may_read_document,
    may_read_request_as_department, may_write, transferred_to,
};
pub use actor::{Actor, SERVER_USER};
pub use area::{AreaLevel, AreaLevelError, AreaPath, AreaPathError};
pub use builders::{
    BuildError, ClaimInit, Common, EventInit, HouseholdInit, OrderInit, RequestInit, Resident,
    StationEntry, StationLogInit, VisitInit,
};
pub use date::{DateError, LocalDate, SHANGHAI_OFFSET_SECS};
pub use due::{Due, DueTimes, due_at, is_overdue};
pub use event::{Event, EventKind, EventType, Satisfaction, Track};
pub use forbidden::Forbidden;
pub use kind::{Kind, KindError};
pub use listening_day::{ListeningDays, local_date};
pub use order_flow::{Claim, OrderStatus, read_claims, winning_claim};
pub use origin::Origin;
pub use personal_number::PersonalNumber;
pub use projection::{Projected, ProjectionConfig, Record, describe, project};
pub use request_flow::{Flow, Status, read_events, read_flow};
pub use role::{Role, RoleError};
pub use schema::{
    DocInfo, SCHEMA_VERSION, SchemaError, SchemaLimits, read_info, validate, validate_with,
};
pub use write_rules::{CheckConfig, Flag, Outcome, check_change, check_change_with};
