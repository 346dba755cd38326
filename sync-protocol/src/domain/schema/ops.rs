//! [`check_operations`]: the operations of new changes, held to the kind's [`Shape`] one by one,
//! not only the document they lead to.
//!
//! A value written in one change and deleted in the next is not in the document after both,
//! but it is in the history that every reader of the document receives (area sync sends whole
//! documents). So every operation of every new change must fit the shape too:
//!
//! - a change holds at most `max_change_ops` operations, counted before any is decoded;
//! - a map key an operation writes must name a field of that map (deleting is always allowed,
//!   so a document may shed what it should not hold); an object under a key the shape does not
//!   name takes no writes either;
//! - a value must fit its field: strings within their limit and, outside households, free text
//!   and codes without residents' phone or ID numbers; integers where integers go; objects of
//!   the field's type;
//! - a Text object holds characters only: no embedded objects, no marks, and characters are
//!   inserted and deleted, never overwritten. The characters one change inserts into one Text
//!   object may be at most the field's byte limit. The characters *all* the new changes insert
//!   into one Text object, deleted or not, are read in their place in the sequence (each group
//!   inserted after one older character in turn) and searched for personal numbers, so a number
//!   typed and deleted, or typed back to front, or typed across several changes, is found. What
//!   is not found: digits split between groups anchored at different older characters that were
//!   themselves deleted earlier (the document check finds them while they are visible).
//!
//! The place of each object in the shape is read from the documents before and after the
//! changes (every object either still shows, with its index, or showed before them), and for an
//! object the changes create, from the operation that creates it. An object in neither (one
//! deleted before these changes, which an offline device may still write into) is held to the
//! fields of the kind wherever they are: a key must name a field somewhere in the kind, and its
//! value fit that field. This module judges operations; it must not judge who may write (that
//! is `write_rules`).

use std::collections::HashMap;

use automerge::legacy::{ElementId, Key, ObjectId, Op, OpId, OpType};
use automerge::{Automerge, Change, ObjId, Prop, ReadDoc, ScalarValue};

use super::SchemaError;
use super::limits::SchemaLimits;
use super::shape::{Class, Rules, Shape, is_int, join};
use crate::domain::kind::Kind;

/// Fails if a change of `changes` holds more than `limits.max_change_ops` operations. Cheap:
/// nothing is decoded.
pub(crate) fn check_operation_count(
    changes: &[Change],
    limits: &SchemaLimits,
) -> Result<(), SchemaError> {
    match changes.iter().find(|c| c.len() > limits.max_change_ops) {
        Some(change) => Err(SchemaError::TooManyOperations {
            ops: change.len(),
            max: limits.max_change_ops,
        }),
        None => Ok(()),
    }
}

/// Holds every operation of `changes` (the new changes, in causal order) to the shape of `kind`.
/// `before` is the document without them, `after` with every one of them applied.
pub(crate) fn check_operations(
    kind: Kind,
    changes: &[Change],
    before: &Automerge,
    after: &Automerge,
    limits: &SchemaLimits,
) -> Result<(), SchemaError> {
    check_operation_count(changes, limits)?;
    if changes.is_empty() {
        return Ok(());
    }
    let rules = Rules { kind, limits };
    let mut places = Places::new(kind, before, after);
    let mut texts: HashMap<OpId, Inserted> = HashMap::new();
    for change in changes {
        let expanded = change.decode();
        let start = expanded.start_op.get();
        let mut bytes_inserted: HashMap<OpId, usize> = HashMap::new();
        for (index, op) in expanded.operations.iter().enumerate() {
            let id = OpId(start + index as u64, expanded.actor_id.clone());
            let place = places.place(&op.obj);
            match (&place.fit, &op.obj) {
                (_, _) if matches!(op.action, OpType::Delete) => {}
                (Fit::Unknown { key }, _) => return Err(rules.unknown(place.path.clone(), key)),
                (Fit::Lost, _) => check_lost_op(&rules, op)?,
                (Fit::Known(Shape::Str(class)), ObjectId::Id(text)) => {
                    let Some((anchor, characters)) = check_text_op(&place.path, op)? else {
                        continue;
                    };
                    let max = class.max_bytes(limits);
                    let total = bytes_inserted.entry(text.clone()).or_default();
                    *total += characters.len();
                    if *total > max {
                        return Err(SchemaError::TooLong {
                            field: place.path.clone(),
                            max,
                        });
                    }
                    texts
                        .entry(text.clone())
                        .or_insert_with(|| Inserted {
                            field: place.path.clone(),
                            class: *class,
                            characters: Vec::new(),
                        })
                        .characters
                        .push((id.clone(), anchor, characters));
                }
                (Fit::Known(shape @ (Shape::Map(_) | Shape::Root(_) | Shape::List(_))), _) => {
                    check_field_op(&rules, *shape, &place.path, op)?;
                }
                (Fit::Known(_), _) => return Err(invalid(&place.path, "it holds no fields")),
            }
            if let OpType::Make(_) = op.action {
                places.made(id, &place, &op.key);
            }
        }
    }
    for inserted in texts.values() {
        rules.search(&inserted.field, inserted.class, &inserted.in_sequence())?;
    }
    Ok(())
}

fn invalid(field: &str, reason: &str) -> SchemaError {
    SchemaError::Invalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Checks an operation on a map or a list whose shape is `shape`, at `path`.
fn check_field_op(rules: &Rules<'_>, shape: Shape, path: &str, op: &Op) -> Result<(), SchemaError> {
    match &op.key {
        Key::Map(key) => match shape.field(key) {
            Some(child) => check_value_op(rules, child, &join(path, key), op),
            None => Err(rules.unknown(join(path, key), key)),
        },
        // A new element has no index until it is placed; `[]` stands for it.
        Key::Seq(_) => match shape.element() {
            Some(child) => check_value_op(rules, child, &format!("{path}[]"), op),
            None => Err(invalid(path, "a map has no elements")),
        },
    }
}

/// Checks an operation on an object that could not be placed: a key must name a field somewhere
/// in the kind, and the value fit that field; an element is held to the rules of free text.
fn check_lost_op(rules: &Rules<'_>, op: &Op) -> Result<(), SchemaError> {
    match &op.key {
        Key::Map(key) => match Shape::of(rules.kind).anywhere(key) {
            Some(child) => check_value_op(rules, child, &join("", key), op),
            None => Err(rules.unknown(join("", key), key)),
        },
        Key::Seq(_) => match &op.action {
            OpType::Put(ScalarValue::Str(text)) => {
                rules.check_string("an element of a deleted list", Class::Text, text)
            }
            OpType::MarkBegin(_) | OpType::MarkEnd(_) => Err(invalid(
                "an element of a deleted list",
                "marks are not part of the schema",
            )),
            _ => Ok(()),
        },
    }
}

/// Checks the value an operation writes at `field`, which holds `child`.
fn check_value_op(
    rules: &Rules<'_>,
    child: Shape,
    field: &str,
    op: &Op,
) -> Result<(), SchemaError> {
    let wrong = || SchemaError::WrongType {
        field: field.to_owned(),
        expected: child.expected(),
    };
    match &op.action {
        OpType::Delete => Ok(()),
        OpType::Put(value) if value.is_null() => Ok(()),
        OpType::Put(ScalarValue::Str(text)) => match child {
            Shape::Str(class) => rules.check_string(field, class, text),
            _ => Err(wrong()),
        },
        OpType::Put(value) if is_int(value) => match child {
            Shape::Int => Ok(()),
            _ => Err(wrong()),
        },
        OpType::Increment(_) => match child {
            Shape::Int => Ok(()),
            _ => Err(wrong()),
        },
        OpType::Make(obj_type) if child.fits_object(*obj_type) => Ok(()),
        OpType::Put(_) | OpType::Make(_) => Err(wrong()),
        OpType::MarkBegin(_) | OpType::MarkEnd(_) => {
            Err(invalid(field, "marks are not part of the schema"))
        }
    }
}

/// Checks an operation on a Text object at `field`; returns the characters it inserts, after
/// which element, when it inserts.
fn check_text_op(field: &str, op: &Op) -> Result<Option<(Option<OpId>, String)>, SchemaError> {
    match (&op.action, &op.key, op.insert) {
        (OpType::Delete, _, _) => Ok(None),
        (OpType::Put(ScalarValue::Str(characters)), Key::Seq(anchor), true) => {
            let anchor = match anchor {
                ElementId::Head => None,
                ElementId::Id(element) => Some(element.clone()),
            };
            Ok(Some((anchor, characters.to_string())))
        }
        (OpType::Put(ScalarValue::Str(_)), _, false) => Err(invalid(
            field,
            "characters of a text are inserted and deleted, never overwritten",
        )),
        (OpType::MarkBegin(_) | OpType::MarkEnd(_), _, _) => {
            Err(invalid(field, "marks are not part of the schema"))
        }
        _ => Err(invalid(field, "a text holds characters only")),
    }
}

/// The characters the new changes insert into one Text object.
struct Inserted {
    field: String,
    class: Class,
    /// Each insertion: its operation, the element it was inserted after (`None`: at the start),
    /// and its characters.
    characters: Vec<(OpId, Option<OpId>, String)>,
}

impl Inserted {
    /// The inserted characters in their order in the sequence, deleted ones included.
    ///
    /// Automerge places an insertion right after its anchor element, and of several insertions
    /// after one anchor, the one with the greater operation ID first. So each group of new
    /// elements hanging off one older element (or the start) is read depth first, greater IDs
    /// first. Groups are joined with a line break, which no number spans: their order in the
    /// sequence is not known without reading the whole object.
    fn in_sequence(&self) -> String {
        let index: HashMap<&OpId, usize> = self
            .characters
            .iter()
            .enumerate()
            .map(|(i, (id, _, _))| (id, i))
            .collect();
        let mut children: HashMap<Option<&OpId>, Vec<usize>> = HashMap::new();
        let mut roots: Vec<Option<&OpId>> = Vec::new();
        for (i, (_, anchor, _)) in self.characters.iter().enumerate() {
            let anchor = anchor.as_ref();
            let new_anchor = anchor.is_some_and(|a| index.contains_key(a));
            let siblings = children.entry(anchor).or_default();
            if siblings.is_empty() && !new_anchor {
                roots.push(anchor);
            }
            siblings.push(i);
        }
        let mut text = String::new();
        for root in roots {
            if !text.is_empty() {
                text.push('\n');
            }
            let mut stack: Vec<usize> = Vec::new();
            push_children(&mut stack, children.get(&root), &self.characters);
            while let Some(i) = stack.pop() {
                let (id, _, characters) = &self.characters[i];
                text.push_str(characters);
                push_children(&mut stack, children.get(&Some(id)), &self.characters);
            }
        }
        text
    }
}

/// Pushes `children` so that the one with the greatest operation ID is popped first.
fn push_children(
    stack: &mut Vec<usize>,
    children: Option<&Vec<usize>>,
    characters: &[(OpId, Option<OpId>, String)],
) {
    let Some(children) = children else { return };
    let mut sorted = children.clone();
    sorted.sort_by(|a, b| characters[*a].0.cmp(&characters[*b].0));
    stack.extend(sorted);
}

/// Where an object is in the shape.
#[derive(Debug, Clone)]
struct Place {
    fit: Fit,
    /// Its path, for messages; under an unknown key, the path of that key.
    path: String,
}

#[derive(Debug, Clone)]
enum Fit {
    /// The object holds this.
    Known(Shape),
    /// The object is under `key`, which the shape does not name.
    Unknown { key: String },
    /// The object could not be placed (see the module documentation).
    Lost,
}

impl Place {
    /// The place of this object's child at `prop`.
    fn child(&self, prop: &Prop) -> Place {
        let Fit::Known(shape) = self.fit else {
            return self.clone();
        };
        match prop {
            Prop::Map(key) => {
                let path = join(&self.path, key);
                match shape.field(key) {
                    Some(child) => Place {
                        fit: Fit::Known(child),
                        path,
                    },
                    None => Place {
                        fit: Fit::Unknown { key: key.clone() },
                        path,
                    },
                }
            }
            Prop::Seq(index) => self.element(&format!("{}[{index}]", self.path)),
        }
    }

    /// The place of an element of this list, at `path`.
    fn element(&self, path: &str) -> Place {
        match self.fit {
            Fit::Known(shape) => Place {
                fit: shape.element().map_or(Fit::Lost, Fit::Known),
                path: path.to_owned(),
            },
            _ => self.clone(),
        }
    }
}

/// The places of the objects of one document, found when first asked for.
struct Places<'a> {
    before: &'a Automerge,
    after: &'a Automerge,
    root: Place,
    known: HashMap<OpId, Place>,
    walked: bool,
}

impl<'a> Places<'a> {
    fn new(kind: Kind, before: &'a Automerge, after: &'a Automerge) -> Places<'a> {
        Places {
            before,
            after,
            root: Place {
                fit: Fit::Known(Shape::of(kind)),
                path: String::new(),
            },
            known: HashMap::new(),
            walked: false,
        }
    }

    fn place(&mut self, obj: &ObjectId) -> Place {
        let ObjectId::Id(id) = obj else {
            return self.root.clone();
        };
        if !self.walked && !self.known.contains_key(id) {
            self.walk();
        }
        self.known.get(id).cloned().unwrap_or(Place {
            fit: Fit::Lost,
            path: String::new(),
        })
    }

    /// Places every object that shows in `after` or showed in `before` (`after` first, for the
    /// indices a message names). Most changes write only ROOT fields and never need this.
    fn walk(&mut self) {
        self.walked = true;
        for doc in [self.after, self.before] {
            let mut stack = vec![(ObjId::Root, self.root.clone())];
            while let Some((obj, place)) = stack.pop() {
                let mut visit = |prop: Prop, values: Vec<(automerge::Value<'_>, ObjId)>| {
                    for (value, id) in values {
                        let (automerge::Value::Object(_), ObjId::Id(counter, actor, _)) =
                            (value, &id)
                        else {
                            continue;
                        };
                        let child = place.child(&prop);
                        self.known
                            .entry(OpId(*counter, actor.clone()))
                            .or_insert_with(|| child.clone());
                        stack.push((id, child));
                    }
                };
                match doc.object_type(&obj) {
                    Ok(automerge::ObjType::Map | automerge::ObjType::Table) => {
                        for key in doc.keys(&obj) {
                            let values = doc.get_all(&obj, key.as_str()).unwrap_or_default();
                            visit(Prop::Map(key), values);
                        }
                    }
                    Ok(automerge::ObjType::List) => {
                        for index in 0..doc.length(&obj) {
                            let values = doc.get_all(&obj, index).unwrap_or_default();
                            visit(Prop::Seq(index), values);
                        }
                    }
                    // Text holds characters; nothing in it is placed.
                    Ok(automerge::ObjType::Text) | Err(_) => {}
                }
            }
        }
    }

    /// Places the object the operation `id` makes at `key` of the object at `parent`, unless
    /// it is placed already (it shows in a document).
    fn made(&mut self, id: OpId, parent: &Place, key: &Key) {
        let child = match key {
            Key::Map(key) => parent.child(&Prop::Map(key.to_string())),
            Key::Seq(_) => parent.element(&format!("{}[]", parent.path)),
        };
        self.known.entry(id).or_insert(child);
    }
}
