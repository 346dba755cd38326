//! Identity-aware comparison of two versions of one document: the "before" as stored and the
//! "after" with a device's changes applied.
//!
//! Two values are the same when they are the same Automerge operations, not merely equal
//! contents: a device that deletes a timeline and writes an identical new one has changed the
//! document, because other devices' concurrent appends to the old list would be lost. So every
//! comparison looks at the operation IDs of all conflicting values (not only the winner, so a
//! planted conflict is seen too), and for objects, recursively at their contents. Operation IDs
//! are the same in both documents because "after" contains every change of "before".
//!
//! The walk keeps its own stack rather than recursing, so deeply nested hostile documents cannot
//! overflow the stack. This module compares; it must not judge whether a difference is allowed.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{Automerge, ChangeHash, ObjId, ObjType, Prop, ReadDoc, Value};

/// Whether `key` of the map `obj` is unchanged between `before` and `after`.
pub(super) fn same_key(before: &Automerge, after: &Automerge, obj: &ObjId, key: &str) -> bool {
    same(before, after, obj, Prop::from(key), Prop::from(key))
}

/// The keys of the map `obj` whose values differ between `before` and `after`, in order.
pub(super) fn changed_keys(before: &Automerge, after: &Automerge, obj: &ObjId) -> Vec<String> {
    let keys: BTreeSet<String> = before.keys(obj).chain(after.keys(obj)).collect();
    keys.into_iter()
        .filter(|key| !same_key(before, after, obj, key))
        .collect()
}

/// The identity of each element of the list `obj`, in list order: one entry per index, so
/// that indices here are indices in the list.
///
/// An index Automerge cannot read (it always can below the length) gets `ObjId::Root`, which is
/// no element's identity, so it reads as removed or unknown and is refused rather than skipped.
pub(super) fn element_ids(doc: &Automerge, obj: &ObjId) -> Vec<ObjId> {
    (0..doc.length(obj))
        .map(|index| {
            doc.get(obj, index)
                .ok()
                .flatten()
                .map_or(ObjId::Root, |(_, id)| id)
        })
        .collect()
}

/// The identities of the elements of the list `obj` as of `heads`.
pub(super) fn element_ids_at(doc: &Automerge, obj: &ObjId, heads: &[ChangeHash]) -> HashSet<ObjId> {
    (0..doc.length_at(obj, heads))
        .filter_map(|index| {
            doc.get_at(obj, index, heads)
                .ok()
                .flatten()
                .map(|(_, id)| id)
        })
        .collect()
}

/// How the list `obj` grew from `before` to `after`.
pub(super) enum ListDiff {
    /// Every element of before is in after, unchanged and in the same order; these are the
    /// indices in after of the elements that are new.
    Grown(Vec<usize>),
    /// The element at this index of before was changed or removed.
    Rewritten(usize),
}

/// Compares the list `obj` in `before` and `after`, element by element.
///
/// New elements may land anywhere, not only at the end: concurrent appends from devices that
/// were offline merge into an order decided by Automerge, and may land in front of elements the
/// server already has. Whether that is allowed is the caller's question.
pub(super) fn diff_list(before: &Automerge, after: &Automerge, obj: &ObjId) -> ListDiff {
    let before_ids = element_ids(before, obj);
    let after_ids = element_ids(after, obj);
    let position: HashMap<&ObjId, usize> = after_ids
        .iter()
        .enumerate()
        .map(|(index, id)| (id, index))
        .collect();
    let mut matched = vec![false; after_ids.len()];
    let mut last = None;
    for (index_before, id) in before_ids.iter().enumerate() {
        let Some(&index_after) = position.get(id) else {
            return ListDiff::Rewritten(index_before);
        };
        let in_order = last.is_none_or(|last| index_after > last);
        if !in_order
            || !same(
                before,
                after,
                obj,
                Prop::Seq(index_before),
                Prop::Seq(index_after),
            )
        {
            return ListDiff::Rewritten(index_before);
        }
        matched[index_after] = true;
        last = Some(index_after);
    }
    ListDiff::Grown(
        matched
            .iter()
            .enumerate()
            .filter(|(_, matched)| !**matched)
            .map(|(index, _)| index)
            .collect(),
    )
}

/// Whether the value at `prop_before` of `obj` in `before` is the same as the value at
/// `prop_after` of `obj` in `after`: the same operations, and for objects the same contents.
fn same(
    before: &Automerge,
    after: &Automerge,
    obj: &ObjId,
    prop_before: Prop,
    prop_after: Prop,
) -> bool {
    let mut stack = vec![(obj.clone(), prop_before, prop_after)];
    while let Some((obj, prop_before, prop_after)) = stack.pop() {
        let (Ok(mut values_before), Ok(mut values_after)) = (
            before.get_all(&obj, prop_before),
            after.get_all(&obj, prop_after),
        ) else {
            return false;
        };
        if values_before.len() != values_after.len() {
            return false;
        }
        // Conflicting values come back in each document's internal order; sort by operation ID
        // so that the two lists line up.
        values_before.sort_by(|a, b| a.1.cmp(&b.1));
        values_after.sort_by(|a, b| a.1.cmp(&b.1));
        for ((value_before, id_before), (value_after, id_after)) in
            values_before.iter().zip(&values_after)
        {
            if id_before != id_after {
                return false;
            }
            match (value_before, value_after) {
                // One operation sets one value, except that a counter's value moves with
                // increments.
                (Value::Scalar(a), Value::Scalar(b)) => {
                    if a.is_counter() && a != b {
                        return false;
                    }
                }
                (Value::Object(a), Value::Object(b)) if a == b => match a {
                    ObjType::Map | ObjType::Table => {
                        let keys: BTreeSet<String> = before
                            .keys(id_before)
                            .chain(after.keys(id_before))
                            .collect();
                        for key in keys {
                            stack.push((
                                id_before.clone(),
                                Prop::from(key.as_str()),
                                Prop::from(key.as_str()),
                            ));
                        }
                    }
                    ObjType::List => {
                        let length = before.length(id_before);
                        if length != after.length(id_before) {
                            return false;
                        }
                        for index in 0..length {
                            stack.push((id_before.clone(), Prop::Seq(index), Prop::Seq(index)));
                        }
                    }
                    ObjType::Text => {
                        if before.text(id_before).ok() != after.text(id_before).ok() {
                            return false;
                        }
                    }
                },
                _ => return false,
            }
        }
    }
    true
}
