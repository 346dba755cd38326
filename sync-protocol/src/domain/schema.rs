//! The versioned schema of every document kind: [`read_info`] reads the common fields,
//! [`validate`] checks a whole document, and [`SchemaError`] says what is wrong in words fit for
//! the client.
//!
//! Every document is an Automerge document whose ROOT map holds the common fields `kind`,
//! `schema`, `area`, `createdBy` and `createdAt`, and the fields of its kind (see the per-kind
//! files under `schema/`). Validation follows the winner of any conflict, as every reader does,
//! and accepts a string as a scalar or a Text object (see `read`).
//!
//! Forward compatibility: unknown ROOT fields and unknown keys in nested maps are allowed, so a
//! newer client can add a field without an older server refusing its documents. The one
//! exception is personal data: the keys `name`, `phone`, `idNumber` and `residents` anywhere in a
//! document that is not a household make it invalid, because residents' personal data may live
//! only in household documents, which only the roles that need it can read. An unknown schema
//! version is refused outright: this server cannot know what the newer version promises.
//!
//! This module checks shape and types. It must not decide who may write what (that is
//! [`write_rules`](super::write_rules)) nor compute a request's status (that is
//! [`request_flow`](super::request_flow)).

mod household;
mod order;
mod request;
mod station_log;
mod visit;

use automerge::{Automerge, ObjId, ObjType, ReadDoc, Value};
use serde::{Deserialize, Serialize};

use super::area::AreaPath;
use super::keys;
use super::kind::Kind;
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
    /// Personal data in a document that is not a household.
    #[error(
        "`{field}` is personal data, which only household documents may hold, not {kind} \
         documents"
    )]
    PersonalData { field: String, kind: Kind },
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

/// Checks that `doc` is a well-formed document of its kind and schema version, and returns its
/// common fields.
pub fn validate(doc: &Automerge) -> Result<DocInfo, SchemaError> {
    let info = read_info(doc)?;
    if info.schema != SCHEMA_VERSION {
        return Err(SchemaError::UnsupportedSchema {
            version: i64::from(info.schema),
        });
    }
    let root = Node::root(doc);
    match info.kind {
        Kind::Household => household::validate(&root)?,
        Kind::Visit => visit::validate(&root)?,
        Kind::Request => request::validate(&root)?,
        Kind::Order => order::validate(&root)?,
        Kind::StationLog => station_log::validate(&root)?,
    }
    if !info.kind.holds_personal_data() {
        refuse_personal_data(doc, info.kind)?;
    }
    Ok(info)
}

/// Fails if any map anywhere in `doc` has a personal-data key.
///
/// The walk visits every value, including the losers of conflicts, because a client can read
/// those too. It keeps its own stack rather than recursing, so a maliciously deep document cannot
/// overflow the server's stack.
fn refuse_personal_data(doc: &Automerge, kind: Kind) -> Result<(), SchemaError> {
    let mut stack: Vec<(ObjId, ObjType, String)> = vec![(ObjId::Root, ObjType::Map, String::new())];
    while let Some((obj, obj_type, path)) = stack.pop() {
        match obj_type {
            ObjType::Map | ObjType::Table => {
                for key in doc.keys(&obj) {
                    let field = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    if keys::PERSONAL.contains(&key.as_str()) {
                        return Err(SchemaError::PersonalData { field, kind });
                    }
                    for (value, id) in doc.get_all(&obj, key.as_str()).unwrap_or_default() {
                        if let Value::Object(child_type) = value {
                            stack.push((id, child_type, field.clone()));
                        }
                    }
                }
            }
            ObjType::List => {
                for index in 0..doc.length(&obj) {
                    for (value, id) in doc.get_all(&obj, index).unwrap_or_default() {
                        if let Value::Object(child_type) = value {
                            stack.push((id, child_type, format!("{path}[{index}]")));
                        }
                    }
                }
            }
            // Text holds characters, not keys.
            ObjType::Text => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
