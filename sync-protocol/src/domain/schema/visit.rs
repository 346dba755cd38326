//! The `visit` schema: a listening-day household visit.
//!
//! `household` (the household document's ID), `date` (`YYYY-MM-DD`, local, a real calendar
//! date), `visitors` (user IDs), `heard` (what the residents said), `peopleReceived` (≥ 0) and
//! `requests` (IDs of the request documents raised during the visit). A visit off a listening day
//! is valid: it is flagged, not refused (see `listening_day`).

use crate::domain::date::LocalDate;
use crate::domain::keys;
use crate::domain::read::Node;
use crate::domain::schema::SchemaError;
use crate::domain::schema::shape::{Class, Field, Shape};

/// The fields of a visit besides the common ones.
pub(super) const FIELDS: &[Field] = &[
    (keys::HOUSEHOLD, Shape::Str(Class::Id)),
    (keys::DATE, Shape::Str(Class::Code)),
    (keys::VISITORS, Shape::List(&Shape::Str(Class::Id))),
    (keys::HEARD, Shape::Str(Class::Text)),
    (keys::PEOPLE_RECEIVED, Shape::Int),
    (keys::REQUESTS, Shape::List(&Shape::Str(Class::Id))),
];

pub(super) fn validate(root: &Node<'_>) -> Result<(), SchemaError> {
    root.req_id(keys::HOUSEHOLD)?;
    root.req_parsed::<LocalDate>(keys::DATE)?;
    root.req_list(keys::VISITORS)?.ids()?;
    root.req_string(keys::HEARD)?;
    root.req_count(keys::PEOPLE_RECEIVED)?;
    root.req_list(keys::REQUESTS)?.ids()?;
    Ok(())
}
