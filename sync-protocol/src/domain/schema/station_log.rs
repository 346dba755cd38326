//! The `station_log` schema: one service station's log of one day.
//!
//! `station` (the station's ID), `date` (`YYYY-MM-DD`, local), and `entries`, each
//! `{serviceKind, peopleServed ≥ 0, servedBy}` (`servedBy` is a user ID).

use crate::domain::date::LocalDate;
use crate::domain::keys;
use crate::domain::read::Node;
use crate::domain::schema::SchemaError;
use crate::domain::schema::shape::{Class, Field, Shape};

/// The fields of a station log besides the common ones.
pub(super) const FIELDS: &[Field] = &[
    (keys::STATION, Shape::Str(Class::Id)),
    (keys::DATE, Shape::Str(Class::Code)),
    (keys::ENTRIES, Shape::List(&Shape::Map(ENTRY))),
];

/// The fields of a log entry.
const ENTRY: &[Field] = &[
    (keys::SERVICE_KIND, Shape::Str(Class::Code)),
    (keys::PEOPLE_SERVED, Shape::Int),
    (keys::SERVED_BY, Shape::Str(Class::Id)),
];

pub(super) fn validate(root: &Node<'_>) -> Result<(), SchemaError> {
    root.req_id(keys::STATION)?;
    root.req_parsed::<LocalDate>(keys::DATE)?;
    for entry in root.req_list(keys::ENTRIES)?.maps()? {
        entry.req_id(keys::SERVICE_KIND)?;
        entry.req_count(keys::PEOPLE_SERVED)?;
        entry.req_id(keys::SERVED_BY)?;
    }
    Ok(())
}
