//! The `order` schema: a volunteer service order.
//!
//! `requester` (a household document ID or user ID, never a name), `serviceKind`, `windowStart`
//! and `windowEnd` (ms, end not before start), `place`, `claims` (`{volunteer, device?, at}`),
//! `assignee` (written only by the server) and `status`. An `assigned` or `done` order must have
//! an assignee: the server writes both in one change, so a document without one was tampered
//! with.

use crate::domain::keys;
use crate::domain::order_flow::{Claim, OrderStatus};
use crate::domain::read::Node;
use crate::domain::schema::SchemaError;
use crate::domain::schema::shape::{Class, Field, Shape};

/// The fields of an order besides the common ones.
pub(super) const FIELDS: &[Field] = &[
    (keys::REQUESTER, Shape::Str(Class::Id)),
    (keys::SERVICE_KIND, Shape::Str(Class::Code)),
    (keys::WINDOW_START, Shape::Int),
    (keys::WINDOW_END, Shape::Int),
    (keys::PLACE, Shape::Str(Class::Text)),
    (keys::CLAIMS, Shape::List(&Shape::Map(CLAIM))),
    (keys::ASSIGNEE, Shape::Str(Class::Id)),
    (keys::STATUS, Shape::Str(Class::Code)),
];

/// The fields of a claim.
const CLAIM: &[Field] = &[
    (keys::VOLUNTEER, Shape::Str(Class::Id)),
    (keys::DEVICE, Shape::Str(Class::Id)),
    (keys::AT, Shape::Int),
];

pub(super) fn validate(root: &Node<'_>) -> Result<(), SchemaError> {
    root.req_id(keys::REQUESTER)?;
    root.req_id(keys::SERVICE_KIND)?;
    let start = root.req_int(keys::WINDOW_START)?;
    let end = root.req_int(keys::WINDOW_END)?;
    if end < start {
        return Err(SchemaError::Invalid {
            field: keys::WINDOW_END.to_owned(),
            reason: format!("it is before `{}`", keys::WINDOW_START),
        });
    }
    root.req_string(keys::PLACE)?;
    for claim in root.req_list(keys::CLAIMS)?.maps()? {
        Claim::read(&claim)?;
    }
    let assignee = root.opt_id(keys::ASSIGNEE)?;
    let status: OrderStatus = root.req_parsed(keys::STATUS)?;
    if matches!(status, OrderStatus::Assigned | OrderStatus::Done) && assignee.is_none() {
        return Err(SchemaError::Invalid {
            field: keys::STATUS.to_owned(),
            reason: format!(
                "an order that is `{status}` must have an `{}`",
                keys::ASSIGNEE
            ),
        });
    }
    Ok(())
}
