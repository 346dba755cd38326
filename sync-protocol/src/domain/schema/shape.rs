//! [`Shape`]: the fields of every kind as data (which keys each map may hold, what each holds,
//! how long it may be), and [`check_document`], which holds a whole document to it.
//!
//! The shape is the allow-list: a key it does not name is refused, at ROOT and in every nested
//! map, in the winning value and in every losing value of a conflict (a client can read those
//! too). Every string is held to its limit, every list to the list limit, and, outside
//! households, every free-text or code string is searched for residents' phone and ID numbers
//! ([`PersonalNumber`]). Identifiers (user, device, document, station and department IDs) are
//! not searched: a deployment may use phone numbers as user IDs.
//!
//! The per-kind checks (`schema/<kind>.rs`) then check what the shape cannot say: required
//! fields, enumerations, dates, and relations between fields. The operations of a change are
//! held to the same shape in `schema/ops`, so the two cannot disagree. This module walks with
//! its own stack, never recursing, and never reads a Text object longer than its limit.

use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value};

use super::limits::SchemaLimits;
use super::{SchemaError, household, order, request, station_log, visit};
use crate::domain::area;
use crate::domain::keys;
use crate::domain::kind::Kind;
use crate::domain::personal_number::PersonalNumber;
use crate::domain::wire_enum::clip;

/// What a string field holds, which decides its limit and whether it is searched for personal
/// numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A user, device, document, station or department ID: short, not searched.
    Id,
    /// A code, a date or a short label (`category`, `serviceKind`), or a household's resident
    /// name or number: short, searched outside households.
    Code,
    /// An area path: held to the area path's own limit.
    Area,
    /// Free text: long, searched outside households.
    Text,
}

impl Class {
    /// The most bytes a string of this class may have.
    pub(crate) fn max_bytes(self, limits: &SchemaLimits) -> usize {
        match self {
            Class::Id | Class::Code => limits.max_short_bytes,
            Class::Area => area::MAX_LEN,
            Class::Text => limits.max_text_bytes,
        }
    }
}

/// One field of a map: its key and what it holds.
pub(crate) type Field = (&'static str, Shape);

/// What a field holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// A string, scalar or Text object.
    Str(Class),
    /// An integer: signed, unsigned, a timestamp or a counter.
    Int,
    /// A list of these.
    List(&'static Shape),
    /// A map of these fields.
    Map(&'static [Field]),
    /// The ROOT map: the common fields and these.
    Root(&'static [Field]),
}

/// The ROOT fields of every kind.
const COMMON: &[Field] = &[
    (keys::KIND, Shape::Str(Class::Code)),
    (keys::SCHEMA, Shape::Int),
    (keys::AREA, Shape::Str(Class::Area)),
    (keys::CREATED_BY, Shape::Str(Class::Id)),
    (keys::CREATED_AT, Shape::Int),
];

impl Shape {
    /// The ROOT map of a document of `kind`.
    pub(crate) fn of(kind: Kind) -> Shape {
        Shape::Root(match kind {
            Kind::Household => household::FIELDS,
            Kind::Visit => visit::FIELDS,
            Kind::Request => request::FIELDS,
            Kind::Order => order::FIELDS,
            Kind::StationLog => station_log::FIELDS,
        })
    }

    /// What the field `key` of this map holds, if this is a map that has such a field.
    pub(crate) fn field(self, key: &str) -> Option<Shape> {
        let find = |fields: &[Field]| {
            fields
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, shape)| *shape)
        };
        match self {
            Shape::Map(fields) => find(fields),
            Shape::Root(fields) => find(COMMON).or_else(|| find(fields)),
            Shape::Str(_) | Shape::Int | Shape::List(_) => None,
        }
    }

    /// What the field `key` holds in the first map of this shape, at any depth, that has such a
    /// field.
    pub(crate) fn anywhere(self, key: &str) -> Option<Shape> {
        let mut stack = vec![self];
        while let Some(shape) = stack.pop() {
            if let Some(found) = shape.field(key) {
                return Some(found);
            }
            match shape {
                Shape::Map(fields) | Shape::Root(fields) => {
                    stack.extend(fields.iter().map(|(_, shape)| *shape));
                }
                Shape::List(element) => stack.push(*element),
                Shape::Str(_) | Shape::Int => {}
            }
        }
        None
    }

    /// What the elements of this list hold, if this is a list.
    pub(crate) fn element(self) -> Option<Shape> {
        match self {
            Shape::List(element) => Some(*element),
            _ => None,
        }
    }

    /// What a value must be to fit, for messages.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            Shape::Str(_) => "a string",
            Shape::Int => "an integer",
            Shape::List(_) => "a list",
            Shape::Map(_) | Shape::Root(_) => "a map",
        }
    }

    /// Whether an object of type `obj_type` fits here.
    pub(crate) fn fits_object(self, obj_type: ObjType) -> bool {
        matches!(
            (self, obj_type),
            (Shape::Str(_), ObjType::Text)
                | (Shape::List(_), ObjType::List)
                | (
                    Shape::Map(_) | Shape::Root(_),
                    ObjType::Map | ObjType::Table
                )
        )
    }
}

/// Whether `value` is an integer, as `read` counts them.
pub(crate) fn is_int(value: &ScalarValue) -> bool {
    matches!(
        value,
        ScalarValue::Int(_)
            | ScalarValue::Uint(_)
            | ScalarValue::Timestamp(_)
            | ScalarValue::Counter(_)
    )
}

/// The path of `key` in the map at `path`, for messages, with the key cut short: keys come from
/// devices.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        clip(key)
    } else {
        format!("{path}.{}", clip(key))
    }
}

/// The rules of one kind under some limits: what the document walk and the operation walk
/// apply to every string and every unknown key.
pub(crate) struct Rules<'a> {
    pub(crate) kind: Kind,
    pub(crate) limits: &'a SchemaLimits,
}

impl Rules<'_> {
    /// Whether strings of `class` are searched for personal numbers in this kind.
    pub(crate) fn searches(&self, class: Class) -> bool {
        !self.kind.holds_personal_data() && matches!(class, Class::Code | Class::Text)
    }

    /// Checks the string `text` of class `class` at `field`.
    pub(crate) fn check_string(
        &self,
        field: &str,
        class: Class,
        text: &str,
    ) -> Result<(), SchemaError> {
        let max = class.max_bytes(self.limits);
        if text.len() > max {
            return Err(SchemaError::TooLong {
                field: field.to_owned(),
                max,
            });
        }
        self.search(field, class, text)
    }

    /// Searches `text` at `field` for personal numbers, if this kind and class call for it.
    pub(crate) fn search(&self, field: &str, class: Class, text: &str) -> Result<(), SchemaError> {
        match PersonalNumber::find(text) {
            Some(found) if self.searches(class) => Err(SchemaError::PersonalText {
                field: field.to_owned(),
                found,
                kind: self.kind,
            }),
            _ => Ok(()),
        }
    }

    /// The refusal of `key` at `field`, which the shape does not name: a key that names
    /// residents' personal data says so.
    pub(crate) fn unknown(&self, field: String, key: &str) -> SchemaError {
        if !self.kind.holds_personal_data() && keys::PERSONAL.contains(&key) {
            SchemaError::PersonalData {
                field,
                kind: self.kind,
            }
        } else {
            SchemaError::UnknownField {
                field,
                kind: self.kind,
            }
        }
    }
}

/// Holds the whole document `doc` of `kind` to its shape and `limits`.
pub(crate) fn check_document(
    doc: &Automerge,
    kind: Kind,
    limits: &SchemaLimits,
) -> Result<(), SchemaError> {
    let rules = Rules { kind, limits };
    let mut stack: Vec<(ObjId, Shape, String)> =
        vec![(ObjId::Root, Shape::of(kind), String::new())];
    while let Some((obj, shape, path)) = stack.pop() {
        match shape {
            Shape::Map(_) | Shape::Root(_) => {
                for key in doc.keys(&obj) {
                    let field = join(&path, &key);
                    let Some(child) = shape.field(&key) else {
                        return Err(rules.unknown(field, &key));
                    };
                    for (value, id) in doc.get_all(&obj, key.as_str()).unwrap_or_default() {
                        if let Some(object) = check_value(&rules, doc, child, &value, &id, &field)?
                        {
                            stack.push((id, object, field.clone()));
                        }
                    }
                }
            }
            Shape::List(element) => {
                let length = doc.length(&obj);
                if length > limits.max_list_items {
                    return Err(SchemaError::TooMany {
                        field: path,
                        max: limits.max_list_items,
                    });
                }
                for index in 0..length {
                    let field = format!("{path}[{index}]");
                    for (value, id) in doc.get_all(&obj, index).unwrap_or_default() {
                        if let Some(object) =
                            check_value(&rules, doc, *element, &value, &id, &field)?
                        {
                            stack.push((id, object, field.clone()));
                        }
                    }
                }
            }
            // Strings and integers are checked where they are met.
            Shape::Str(_) | Shape::Int => {}
        }
    }
    Ok(())
}

/// Checks one value at `field`, which must fit `shape`; returns the shape to walk into when it
/// is a list or a map.
fn check_value(
    rules: &Rules<'_>,
    doc: &Automerge,
    shape: Shape,
    value: &Value<'_>,
    id: &ObjId,
    field: &str,
) -> Result<Option<Shape>, SchemaError> {
    let wrong = || SchemaError::WrongType {
        field: field.to_owned(),
        expected: shape.expected(),
    };
    match (shape, value) {
        // `null` counts as absent, wherever it is.
        (_, Value::Scalar(scalar)) if scalar.is_null() => Ok(None),
        (Shape::Str(class), Value::Scalar(scalar)) => match scalar.as_ref() {
            ScalarValue::Str(text) => rules.check_string(field, class, text).map(|()| None),
            _ => Err(wrong()),
        },
        (Shape::Str(class), Value::Object(ObjType::Text)) => {
            check_text(rules, doc, id, field, class).map(|()| None)
        }
        (Shape::Int, Value::Scalar(scalar)) if is_int(scalar) => Ok(None),
        (Shape::List(_) | Shape::Map(_) | Shape::Root(_), Value::Object(obj_type))
            if shape.fits_object(*obj_type) =>
        {
            Ok(Some(shape))
        }
        _ => Err(wrong()),
    }
}

/// Checks the Text object `id` at `field`.
///
/// Automerge gives a Text object's length in the units of its text encoding (Unicode code
/// points in this build; UTF-16 or UTF-8 code units in others). Each unit is at least one byte
/// and at most four bytes of UTF-8 in every encoding, so the length alone decides when the text
/// is surely too long or surely short enough, and the text is read only when it must be measured
/// exactly or searched, never when it is longer than the limit.
fn check_text(
    rules: &Rules<'_>,
    doc: &Automerge,
    id: &ObjId,
    field: &str,
    class: Class,
) -> Result<(), SchemaError> {
    let max = class.max_bytes(rules.limits);
    let units = doc.length(id);
    let too_long = || SchemaError::TooLong {
        field: field.to_owned(),
        max,
    };
    if units > max {
        return Err(too_long());
    }
    if units.saturating_mul(4) <= max && !rules.searches(class) {
        return Ok(());
    }
    let text = doc.text(id).map_err(|_| SchemaError::WrongType {
        field: field.to_owned(),
        expected: "a string",
    })?;
    rules.check_string(field, class, &text)
}
