//! The versioned schema of every document kind: [`read_info`] reads the common fields,
//! [`validate`] checks a whole document, and [`SchemaError`] says what is wrong in words fit for
//! the client.
//!
//! Every document is an Automerge document whose ROOT map holds the common fields `kind`,
//! `schema`, `area`, `createdBy` and `createdAt`, and the fields of its kind (see the per-kind
//! files under `schema/`). Validation follows the winner of any conflict, as every reader does,
//! and accepts a string as a scalar or a Text object (see `read`); the shape (`schema/shape`)
//! is checked on the losers of conflicts too.
//!
//! Personal data by allow-list: every kind names all its fields (`schema/shape`), and a key it
//! does not name is refused, at ROOT and in nested maps. Until schema version 1 was hardened,
//! unknown fields were allowed for forward compatibility, and four key names (`name`, `phone`,
//! `idNumber`, `residents`) were refused outside households; but any other spelling
//! (`residentName`, `mobile`, `idCard`, `{姓名, 电话}`) then carried residents' personal data to
//! everyone who may read visits or requests. Residents' personal data may live only in household
//! documents, which only the roles that need it can read. So a newer client that adds a field
//! must bump the schema version, and an unknown schema version is refused outright: this server
//! cannot know what the newer version promises. Outside households, free text is also searched
//! for phone and ID numbers ([`PersonalNumber`]), and
//! the write rules hold every operation of a new change to the same shape (`schema/ops`), so
//! data written and deleted again, which stays in the history every reader receives, is refused
//! too. Every string and list is held to [`SchemaLimits`].
//!
//! This module checks shape and types. It must not decide who may write what (that is
//! [`write_rules`](super::write_rules)) nor compute a request's status (that is
//! [`request_flow`](super::request_flow)).

mod household;
mod limits;
mod ops;
mod order;
mod request;
mod shape;
mod station_log;
mod visit;

use automerge::Automerge;
use serde::{Deserialize, Serialize};

pub use self::limits::SchemaLimits;
pub(crate) use self::ops::check_operations;
use super::area::AreaPath;
use super::keys;
use super::kind::Kind;
use super::personal_number::PersonalNumber;
use super::read::Node;

/// The schema version this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a document does not fit its schema. The message names the field and says why, and
/// contains nothing the sender did not send, so it can go back to the client as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// A required field is absent (or `null`).
    #[error("`{field}` is missing")]
    Missing { field: String },
    /// A field holds the wrong type of value.
    #[error("`{field}` must be {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    /// A field has the right type but a value that is not allowed.
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: String, reason: String },
    /// The document was written under a schema version this code does not know.
    #[error("`schema` is version {version}, but only version {SCHEMA_VERSION} is supported")]
    UnsupportedSchema { version: i64 },
    /// A key that names residents' personal data, in a document that is not a household.
    #[error(
        "`{field}` is personal data, which only household documents may hold, not {kind} \
         documents"
    )]
    PersonalData { field: String, kind: Kind },
    /// A key the kind's schema does not name.
    #[error(
        "`{field}` is not a field of {kind} documents (schema version {SCHEMA_VERSION} names \
         every field they may have)"
    )]
    UnknownField { field: String, kind: Kind },
    /// A resident's phone or ID number in the free text of a document that is not a household.
    /// The number itself is never repeated.
    #[error(
        "`{field}` contains what looks like {found}, which is personal data that only household \
         documents may hold, not {kind} documents"
    )]
    PersonalText {
        field: String,
        found: PersonalNumber,
        kind: Kind,
    },
    /// A string longer than its limit.
    #[error("`{field}` is longer than {max} bytes, the limit for this field")]
    TooLong { field: String, max: usize },
    /// A list longer than the limit.
    #[error("`{field}` has more than {max} items, the limit for a list")]
    TooMany { field: String, max: usize },
    /// A change with more operations than the limit.
    #[error("a change may hold at most {max} operations, and this one holds {ops}")]
    TooManyOperations { ops: usize, max: usize },
}

/// The common fields of a document, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocInfo {
    /// What the document is about.
    pub kind: Kind,
    /// The schema version it was written under.
    pub schema: u32,
    /// The node of the area tree it belongs to.
    pub area: AreaPath,
    /// The user who created it.
    pub created_by: String,
    /// When it was created, in milliseconds since the Unix epoch, by the creating device's clock.
    pub created_at: i64,
}

/// Reads the common fields of `doc`.
///
/// This checks their types, not the rest of the document, and accepts any positive schema
/// version, so the server can file a document written by a newer client (and refuse to serve it
/// to roles that may not see its kind) without understanding it.
pub fn read_info(doc: &Automerge) -> Result<DocInfo, SchemaError> {
    let root = Node::root(doc);
    let kind = root.req_parsed(keys::KIND)?;
    let version = root.req_int(keys::SCHEMA)?;
    let schema = u32::try_from(version)
        .ok()
        .filter(|version| *version >= 1)
        .ok_or_else(|| SchemaError::Invalid {
            field: keys::SCHEMA.to_owned(),
            reason: format!("{version} is not a schema version"),
        })?;
    Ok(DocInfo {
        kind,
        schema,
        area: root.req_parsed(keys::AREA)?,
        created_by: root.req_id(keys::CREATED_BY)?,
        created_at: root.req_int(keys::CREATED_AT)?,
    })
}

/// Checks that `doc` is a well-formed document of its kind and schema version, under the
/// default [`SchemaLimits`], and returns its common fields.
pub fn validate(doc: &Automerge) -> Result<DocInfo, SchemaError> {
    validate_with(doc, &SchemaLimits::default())
}

/// Checks that `doc` is a well-formed document of its kind and schema version, with strings and
/// lists within `limits`, and returns its common fields.
pub fn validate_with(doc: &Automerge, limits: &SchemaLimits) -> Result<DocInfo, SchemaError> {
    let info = read_info(doc)?;
    if info.schema != SCHEMA_VERSION {
        return Err(SchemaError::UnsupportedSchema {
            version: i64::from(info.schema),
        });
    }
    // The shape first: it reads no string longer than its limit, which the per-kind checks
    // then read whole.
    shape::check_document(doc, info.kind, limits)?;
    let root = Node::root(doc);
    match info.kind {
        Kind::Household => household::validate(&root)?,
        Kind::Visit => visit::validate(&root)?,
        Kind::Request => request::validate(&root)?,
        Kind::Order => order::validate(&root)?,
        Kind::StationLog => station_log::validate(&root)?,
    }
    Ok(info)
}

#[cfg(test)]
mod tests;
