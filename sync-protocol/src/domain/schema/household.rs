//! The `household` schema: `address`, and `residents`, a list of `{name, phone?, idNumber?}`.
//!
//! Households are the only documents that hold personal data. This file checks their shape; it
//! must not decide who may read them (see `access`).

use crate::domain::keys;
use crate::domain::read::Node;
use crate::domain::schema::SchemaError;
use crate::domain::schema::shape::{Class, Field, Shape};

/// The fields of a household besides the common ones.
pub(super) const FIELDS: &[Field] = &[
    (keys::ADDRESS, Shape::Str(Class::Text)),
    (keys::RESIDENTS, Shape::List(&Shape::Map(RESIDENT))),
];

const RESIDENT: &[Field] = &[
    (keys::NAME, Shape::Str(Class::Code)),
    (keys::PHONE, Shape::Str(Class::Code)),
    (keys::ID_NUMBER, Shape::Str(Class::Code)),
];

pub(super) fn validate(root: &Node<'_>) -> Result<(), SchemaError> {
    root.req_string(keys::ADDRESS)?;
    for resident in root.req_list(keys::RESIDENTS)?.maps()? {
        resident.req_string(keys::NAME)?;
        resident.string(keys::PHONE)?;
        resident.string(keys::ID_NUMBER)?;
    }
    Ok(())
}
