//! Typed reads from an Automerge document: the one place that decides which Automerge values
//! count as a string, an integer, a list or a map.
//!
//! A string is a scalar string or a Text object, because JavaScript clients write text objects
//! and Rust writes scalars, and both must be accepted everywhere. An integer is a signed or
//! unsigned int, a timestamp (a JavaScript `Date`) or a counter. A `null` counts as absent, so a
//! client that clears an optional field with `null` is not refused. Every failure names the
//! field by its path (`timeline[2].track`), so the error can go to the client as it is.
//!
//! Reads here follow Automerge's winner for conflicting values, as every replica does. This
//! module must not apply rules beyond types: what values mean is for `schema` and the flows.

use std::fmt::Display;
use std::str::FromStr;

use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value};

use super::schema::SchemaError;

/// One map or list of a document, with its path for messages.
#[derive(Clone)]
pub(super) struct Node<'a> {
    doc: &'a Automerge,
    id: ObjId,
    path: String,
}

impl<'a> Node<'a> {
    /// The ROOT map of `doc`.
    pub(super) fn root(doc: &'a Automerge) -> Self {
        Self {
            doc,
            id: ObjId::Root,
            path: String::new(),
        }
    }

    /// The path of `key` in this map, for messages: `key` at ROOT, `path.key` below it.
    pub(super) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str) -> SchemaError {
        SchemaError::WrongType {
            field: self.field(key),
            expected,
        }
    }

    /// The value at `key`, with `null` read as absent.
    fn get(&self, key: &str) -> Result<Option<(Value<'a>, ObjId)>, SchemaError> {
        let found = self
            .doc
            .get(&self.id, key)
            .map_err(|error| SchemaError::Invalid {
                field: self.field(key),
                reason: error.to_string(),
            })?;
        Ok(found.filter(|(value, _)| !matches!(value, Value::Scalar(s) if s.is_null())))
    }

    /// The string at `key`, if there is one.
    pub(super) fn string(&self, key: &str) -> Result<Option<String>, SchemaError> {
        match self.get(key)? {
            None => Ok(None),
            Some((value, id)) => as_string(self.doc, &value, &id)
                .map(Some)
                .ok_or_else(|| self.wrong_type(key, "a string")),
        }
    }

    /// The string at `key`, which must be there.
    pub(super) fn req_string(&self, key: &str) -> Result<String, SchemaError> {
        self.string(key)?.ok_or_else(|| self.missing(key))
    }

    /// The string at `key`, which must be there and not empty: an identifier such as a user or
    /// document ID.
    pub(super) fn req_id(&self, key: &str) -> Result<String, SchemaError> {
        let value = self.req_string(key)?;
        if value.is_empty() {
            return Err(SchemaError::Invalid {
                field: self.field(key),
                reason: "it is empty".to_owned(),
            });
        }
        Ok(value)
    }

    /// The string at `key`, if there is one, which must not be empty when there.
    pub(super) fn opt_id(&self, key: &str) -> Result<Option<String>, SchemaError> {
        match self.string(key)? {
            Some(value) if value.is_empty() => Err(SchemaError::Invalid {
                field: self.field(key),
                reason: "it is empty".to_owned(),
            }),
            other => Ok(other),
        }
    }

    /// The string at `key` parsed as a `T`, if there is one.
    pub(super) fn parsed<T>(&self, key: &str) -> Result<Option<T>, SchemaError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(text) = self.string(key)? else {
            return Ok(None);
        };
        text.parse()
            .map(Some)
            .map_err(|error: T::Err| SchemaError::Invalid {
                field: self.field(key),
                reason: error.to_string(),
            })
    }

    /// The string at `key` parsed as a `T`, which must be there.
    pub(super) fn req_parsed<T>(&self, key: &str) -> Result<T, SchemaError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.parsed(key)?.ok_or_else(|| self.missing(key))
    }

    /// The integer at `key`, if there is one.
    pub(super) fn int(&self, key: &str) -> Result<Option<i64>, SchemaError> {
        let Some((value, _)) = self.get(key)? else {
            return Ok(None);
        };
        let number = match value.as_scalar() {
            Some(ScalarValue::Int(n) | ScalarValue::Timestamp(n)) => Some(*n),
            Some(ScalarValue::Uint(n)) => {
                Some(i64::try_from(*n).map_err(|_| SchemaError::Invalid {
                    field: self.field(key),
                    reason: format!("{n} is too large"),
                })?)
            }
            Some(ScalarValue::Counter(counter)) => Some(i64::from(counter)),
            _ => None,
        };
        number
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, "an integer"))
    }

    /// The integer at `key`, which must be there.
    pub(super) fn req_int(&self, key: &str) -> Result<i64, SchemaError> {
        self.int(key)?.ok_or_else(|| self.missing(key))
    }

    /// The integer at `key`, which must be there and not negative: a count of people.
    pub(super) fn req_count(&self, key: &str) -> Result<i64, SchemaError> {
        let count = self.req_int(key)?;
        if count < 0 {
            return Err(SchemaError::Invalid {
                field: self.field(key),
                reason: format!("{count} is negative"),
            });
        }
        Ok(count)
    }

    /// The list at `key`, if there is one.
    pub(super) fn list(&self, key: &str) -> Result<Option<Node<'a>>, SchemaError> {
        match self.get(key)? {
            None => Ok(None),
            Some((Value::Object(ObjType::List), id)) => Ok(Some(Node {
                doc: self.doc,
                id,
                path: self.field(key),
            })),
            Some(_) => Err(self.wrong_type(key, "a list")),
        }
    }

    /// The list at `key`, which must be there.
    pub(super) fn req_list(&self, key: &str) -> Result<Node<'a>, SchemaError> {
        self.list(key)?.ok_or_else(|| self.missing(key))
    }

    /// The number of elements of this list.
    pub(super) fn len(&self) -> usize {
        self.doc.length(&self.id)
    }

    /// The path of element `index` of this list.
    fn element(&self, index: usize) -> String {
        format!("{}[{index}]", self.path)
    }

    /// The elements of this list, each of which must be a map.
    pub(super) fn maps(&self) -> Result<Vec<Node<'a>>, SchemaError> {
        (0..self.len())
            .map(|index| match self.get_index(index)? {
                Some((Value::Object(ObjType::Map | ObjType::Table), id)) => Ok(Node {
                    doc: self.doc,
                    id,
                    path: self.element(index),
                }),
                _ => Err(SchemaError::WrongType {
                    field: self.element(index),
                    expected: "a map",
                }),
            })
            .collect()
    }

    /// The elements of this list, each of which must be a non-empty string (an ID).
    pub(super) fn ids(&self) -> Result<Vec<String>, SchemaError> {
        (0..self.len())
            .map(|index| {
                let text = match self.get_index(index)? {
                    Some((value, id)) => as_string(self.doc, &value, &id),
                    None => None,
                };
                match text {
                    Some(text) if !text.is_empty() => Ok(text),
                    Some(_) => Err(SchemaError::Invalid {
                        field: self.element(index),
                        reason: "it is empty".to_owned(),
                    }),
                    None => Err(SchemaError::WrongType {
                        field: self.element(index),
                        expected: "a string",
                    }),
                }
            })
            .collect()
    }

    fn get_index(&self, index: usize) -> Result<Option<(Value<'a>, ObjId)>, SchemaError> {
        self.doc
            .get(&self.id, index)
            .map_err(|error| SchemaError::Invalid {
                field: self.element(index),
                reason: error.to_string(),
            })
    }

    fn missing(&self, key: &str) -> SchemaError {
        SchemaError::Missing {
            field: self.field(key),
        }
    }
}

/// `value` as a string, whether a scalar string or a Text object.
fn as_string(doc: &Automerge, value: &Value<'_>, id: &ObjId) -> Option<String> {
    match value {
        Value::Scalar(scalar) => match scalar.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        Value::Object(ObjType::Text) => doc.text(id).ok(),
        Value::Object(_) => None,
    }
}
