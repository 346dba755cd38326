//! The `request` (诉求) schema: `origin`, optional `household` and `visit` (document IDs),
//! `category`, `description`, and the `timeline` of events.
//!
//! Every event must be well formed (see `event`). The timeline must start with a `collected`
//! event: the creating device writes it with the request, and every later event is appended after
//! it, so only a hand-crafted change could put anything in front. Where later events are valid
//! is the state machine's business, not the schema's: an out-of-place event is ignored, not
//! refused.

use crate::domain::event::{Event, EventType};
use crate::domain::keys;
use crate::domain::origin::Origin;
use crate::domain::read::Node;
use crate::domain::schema::SchemaError;
use crate::domain::schema::shape::{Class, Field, Shape};

/// The fields of a request besides the common ones.
pub(super) const FIELDS: &[Field] = &[
    (keys::ORIGIN, Shape::Str(Class::Code)),
    (keys::HOUSEHOLD, Shape::Str(Class::Id)),
    (keys::VISIT, Shape::Str(Class::Id)),
    (keys::CATEGORY, Shape::Str(Class::Code)),
    (keys::DESCRIPTION, Shape::Str(Class::Text)),
    (keys::TIMELINE, Shape::List(&Shape::Map(EVENT))),
];

/// The fields of a timeline event (see `event`).
const EVENT: &[Field] = &[
    (keys::TYPE, Shape::Str(Class::Code)),
    (keys::AT, Shape::Int),
    (keys::BY, Shape::Str(Class::Id)),
    (keys::DEVICE, Shape::Str(Class::Id)),
    (keys::NOTE, Shape::Str(Class::Text)),
    (keys::TRACK, Shape::Str(Class::Code)),
    (keys::DEPARTMENT, Shape::Str(Class::Id)),
    (keys::SATISFACTION, Shape::Str(Class::Code)),
];

pub(super) fn validate(root: &Node<'_>) -> Result<(), SchemaError> {
    root.req_parsed::<Origin>(keys::ORIGIN)?;
    root.opt_id(keys::HOUSEHOLD)?;
    root.opt_id(keys::VISIT)?;
    root.req_id(keys::CATEGORY)?;
    root.req_string(keys::DESCRIPTION)?;
    let timeline = root.req_list(keys::TIMELINE)?;
    let events = timeline
        .maps()?
        .iter()
        .map(Event::read)
        .collect::<Result<Vec<_>, _>>()?;
    match events.first() {
        Some(first) if first.event_type() == EventType::Collected => Ok(()),
        Some(first) => Err(SchemaError::Invalid {
            field: format!("{}[0].{}", keys::TIMELINE, keys::TYPE),
            reason: format!(
                "a request's timeline starts with a `collected` event, not `{}`",
                first.event_type()
            ),
        }),
        None => Err(SchemaError::Invalid {
            field: keys::TIMELINE.to_owned(),
            reason: "a request's timeline starts with a `collected` event, and it is empty"
                .to_owned(),
        }),
    }
}
