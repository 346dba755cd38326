//! Document edits driven by fuzz input: values, trees of maps, lists and text, and sequences of
//! puts, deletes, inserts, splices, commits and concurrent forks, on an [`AutoCommit`].
//!
//! Keys and strings come mostly from a dictionary of the domain's own words (field names, kinds,
//! roles, statuses, areas, user IDs, dates, phone and ID numbers), so that edits reach the deep
//! checks of the schema and the write rules instead of stopping at "unknown field".

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjId, ObjType, Prop, ROOT, ReadDoc, ScalarValue, Value};
use lianxin_protocol::domain::{
    EventType, Kind, OrderStatus, Origin, Role, Satisfaction, Track, keys,
};

use crate::docs;

/// How deep a generated tree may nest.
const MAX_DEPTH: usize = 5;

/// The most objects an edit chooses among.
const MAX_OBJECTS: usize = 64;

/// Every field name of every kind, and other spellings of personal data.
pub const KEYS: &[&str] = &[
    keys::KIND,
    keys::SCHEMA,
    keys::AREA,
    keys::CREATED_BY,
    keys::CREATED_AT,
    keys::ADDRESS,
    keys::RESIDENTS,
    keys::NAME,
    keys::PHONE,
    keys::ID_NUMBER,
    keys::HOUSEHOLD,
    keys::DATE,
    keys::VISITORS,
    keys::HEARD,
    keys::PEOPLE_RECEIVED,
    keys::REQUESTS,
    keys::ORIGIN,
    keys::VISIT,
    keys::CATEGORY,
    keys::DESCRIPTION,
    keys::TIMELINE,
    keys::TYPE,
    keys::AT,
    keys::BY,
    keys::DEVICE,
    keys::NOTE,
    keys::TRACK,
    keys::DEPARTMENT,
    keys::SATISFACTION,
    keys::REQUESTER,
    keys::SERVICE_KIND,
    keys::WINDOW_START,
    keys::WINDOW_END,
    keys::PLACE,
    keys::CLAIMS,
    keys::VOLUNTEER,
    keys::ASSIGNEE,
    keys::STATUS,
    keys::STATION,
    keys::ENTRIES,
    keys::PEOPLE_SERVED,
    keys::SERVED_BY,
    "residentName",
    "mobile",
    "idCard",
    "姓名",
    "电话",
    "",
];

/// Strings worth writing: the domain's enum names, areas, users, dates, numbers that look like
/// personal data, and IDs.
pub fn words() -> &'static [String] {
    static WORDS: OnceLock<Vec<String>> = OnceLock::new();
    WORDS.get_or_init(|| {
        let mut words: Vec<String> = Vec::new();
        words.extend(Kind::ALL.iter().map(|v| v.as_str().to_owned()));
        words.extend(Role::ALL.iter().map(|v| v.as_str().to_owned()));
        words.extend(Origin::ALL.iter().map(|v| v.as_str().to_owned()));
        words.extend(EventType::ALL.iter().map(|v| v.as_str().to_owned()));
        words.extend(Track::ALL.iter().map(|v| v.as_str().to_owned()));
        words.extend(Satisfaction::ALL.iter().map(|v| v.as_str().to_owned()));
        words.extend(OrderStatus::ALL.iter().map(|v| v.as_str().to_owned()));
        words.extend(docs::AREAS.iter().map(|v| (*v).to_owned()));
        words.extend(docs::USERS.iter().map(|v| (*v).to_owned()));
        words.extend(docs::DEPARTMENTS.iter().map(|v| (*v).to_owned()));
        words.extend(KEYS.iter().map(|v| (*v).to_owned()));
        words.extend(
            [
                "2026-03-05",
                "2026-03-06",
                "2026-02-29",
                "2026-13-01",
                "hh-1",
                "req-1",
                "visit-1",
                "phone-1",
                "13800000000",
                "138 0000 0000",
                "+86-138-0000-0000",
                "11010519491231002X",
                "110105194912310021",
                "王秀兰",
                "/",
                "/jining//rencheng",
            ]
            .map(str::to_owned),
        );
        words
    })
}

/// A map key: usually a field name.
pub fn key(u: &mut Unstructured<'_>) -> Result<String> {
    if u.ratio(7u8, 8u8)? {
        Ok((*u.choose(KEYS)?).to_owned())
    } else {
        u.arbitrary()
    }
}

/// A string: a word, fuzz bytes, a run of one word (to reach length limits), or digits.
pub fn string(u: &mut Unstructured<'_>) -> Result<String> {
    Ok(match u.choose_index(6)? {
        0..=2 => u.choose(words())?.clone(),
        3 => u.arbitrary()?,
        4 => {
            // Around the limits (256 bytes for short strings, 8 KiB for free text), not far
            // beyond: long strings make every run slow.
            let word = if u.arbitrary()? {
                u.choose(words())?.clone()
            } else {
                "x".to_owned()
            };
            let max = *u.choose(&[300usize, 300, 300, 8300])? / word.len().max(1);
            let times = u.int_in_range(0..=max)?;
            word.repeat(times)
        }
        _ => {
            let len = u.int_in_range(0..=24usize)?;
            let mut s = String::with_capacity(len);
            for _ in 0..len {
                let c = u.int_in_range(0..=12u8)?;
                s.push(match c {
                    0..=9 => char::from(b'0' + c),
                    10 => 'X',
                    11 => ' ',
                    _ => '-',
                });
            }
            s
        }
    })
}

/// A string to splice into a Text object: as [`string`], but over 300 bytes only one time in
/// eight, because Text costs one operation per character and long splices make runs slow.
pub fn text(u: &mut Unstructured<'_>) -> Result<String> {
    let s = string(u)?;
    if s.len() > 300 && !u.ratio(1u8, 8u8)? {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        return Ok(s[..end].to_owned());
    }
    Ok(s)
}

/// A scalar of any type Automerge has.
pub fn scalar(u: &mut Unstructured<'_>) -> Result<ScalarValue> {
    Ok(match u.choose_index(11)? {
        0..=3 => ScalarValue::Str(string(u)?.into()),
        4 => ScalarValue::Int(*u.choose(&[
            docs::T0,
            docs::T0 + 3_600_000,
            0,
            1,
            2,
            -1,
            i64::MAX,
            i64::MIN,
            u32::MAX as i64 + 1,
        ])?),
        5 => ScalarValue::Int(u.arbitrary()?),
        6 => ScalarValue::Uint(u.arbitrary()?),
        7 => ScalarValue::F64(u.arbitrary()?),
        8 => ScalarValue::Boolean(u.arbitrary()?),
        9 => match u.choose_index(5)? {
            0 => ScalarValue::Null,
            1 => ScalarValue::Bytes(u.arbitrary()?),
            2 => ScalarValue::counter(u.int_in_range(-1_000_000..=1_000_000)?),
            3 => ScalarValue::Timestamp(u.arbitrary()?),
            _ => ScalarValue::Unknown {
                type_code: u.int_in_range(10..=15)?,
                bytes: u.arbitrary()?,
            },
        },
        _ => ScalarValue::Null,
    })
}

/// Where a value goes.
#[derive(Debug, Clone)]
pub enum Place {
    /// A map key, or an existing list index to overwrite.
    Put(ObjId, Prop),
    /// A new list element at this index.
    Insert(ObjId, usize),
}

/// Writes a value, possibly a whole tree, at `place`. Automerge's refusals (wrong object type,
/// index out of range) are ignored: they are part of what the fuzzer explores.
pub fn write_value(
    doc: &mut AutoCommit,
    u: &mut Unstructured<'_>,
    place: Place,
    depth: usize,
    objects: &mut Vec<(ObjId, ObjType)>,
) -> Result<()> {
    let choice = if depth >= MAX_DEPTH || u.is_empty() {
        0
    } else {
        u.choose_index(9)?
    };
    let obj_type = match choice {
        6 => ObjType::Map,
        7 => ObjType::List,
        8 => ObjType::Text,
        _ => {
            let value = scalar(u)?;
            let _ = match place {
                Place::Put(obj, prop) => doc.put(&obj, prop, value),
                Place::Insert(obj, index) => doc.insert(&obj, index, value),
            };
            return Ok(());
        }
    };
    let made = match place {
        Place::Put(obj, prop) => doc.put_object(&obj, prop, obj_type),
        Place::Insert(obj, index) => doc.insert_object(&obj, index, obj_type),
    };
    let Ok(id) = made else {
        return Ok(());
    };
    if objects.len() < MAX_OBJECTS {
        objects.push((id.clone(), obj_type));
    }
    match obj_type {
        ObjType::Map | ObjType::Table => {
            let n = u.int_in_range(0..=5usize)?;
            for _ in 0..n {
                let k = key(u)?;
                write_value(doc, u, Place::Put(id.clone(), k.into()), depth + 1, objects)?;
            }
        }
        ObjType::List => {
            let n = u.int_in_range(0..=4usize)?;
            for i in 0..n {
                write_value(doc, u, Place::Insert(id.clone(), i), depth + 1, objects)?;
            }
        }
        ObjType::Text => {
            let s = text(u)?;
            let _ = doc.splice_text(&id, 0, 0, &s);
        }
    }
    Ok(())
}

/// The objects of `doc` (conflict losers too), breadth first from ROOT, at most
/// [`MAX_OBJECTS`].
pub fn objects(doc: &AutoCommit) -> Vec<(ObjId, ObjType)> {
    let mut found = vec![(ROOT, ObjType::Map)];
    let mut next = 0;
    while next < found.len() && found.len() < MAX_OBJECTS {
        let (obj, obj_type) = found[next].clone();
        next += 1;
        let props: Vec<Prop> = match obj_type {
            ObjType::Map | ObjType::Table => doc.keys(&obj).map(Prop::from).collect(),
            ObjType::List => (0..doc.length(&obj).min(MAX_OBJECTS))
                .map(Prop::from)
                .collect(),
            ObjType::Text => Vec::new(),
        };
        for prop in props {
            for (value, id) in doc.get_all(&obj, prop).unwrap_or_default() {
                if let Value::Object(t) = value
                    && found.len() < MAX_OBJECTS
                {
                    found.push((id, t));
                }
            }
        }
    }
    found
}

/// Applies up to `max_ops` edits from `u` to `doc`, committing along the way and at the end.
/// `actor_seed` names the actor IDs of concurrent forks (`actor_seed + 1`, ...); a fork's edits
/// are merged back, which makes conflicts.
pub fn apply_edits(
    doc: &mut AutoCommit,
    u: &mut Unstructured<'_>,
    actor_seed: u8,
    max_ops: usize,
) -> Result<()> {
    edits(doc, u, actor_seed, max_ops, true)
}

fn edits(
    doc: &mut AutoCommit,
    u: &mut Unstructured<'_>,
    actor_seed: u8,
    max_ops: usize,
    may_fork: bool,
) -> Result<()> {
    let mut objects = objects(doc);
    let mut forks = 0u8;
    for _ in 0..max_ops {
        if u.is_empty() {
            break;
        }
        let op = u.choose_index(9)?;
        let (obj, obj_type) = u.choose(&objects)?.clone();
        let len = doc.length(&obj);
        match (op, obj_type) {
            // put, at a key that exists or a new one
            (0..=2, ObjType::Map | ObjType::Table) => {
                let existing: Vec<String> = doc.keys(&obj).collect();
                let k = if !existing.is_empty() && u.arbitrary()? {
                    u.choose(&existing)?.clone()
                } else {
                    key(u)?
                };
                write_value(doc, u, Place::Put(obj, k.into()), 1, &mut objects)?;
            }
            (0..=2, ObjType::List) if len > 0 => {
                let i = u.choose_index(len)?;
                write_value(doc, u, Place::Put(obj, i.into()), 1, &mut objects)?;
            }
            // insert into a list (anywhere, not only at the end), or text
            (0..=3, ObjType::List) => {
                let i = u.int_in_range(0..=len)?;
                write_value(doc, u, Place::Insert(obj, i), 1, &mut objects)?;
            }
            (0..=4, ObjType::Text) => {
                let pos = u.int_in_range(0..=len)?;
                let del = u.int_in_range(0..=len - pos)? as isize;
                let s = text(u)?;
                let _ = doc.splice_text(&obj, pos, del, &s);
            }
            // delete
            (3 | 4, ObjType::Map | ObjType::Table) => {
                let existing: Vec<String> = doc.keys(&obj).collect();
                let k = if existing.is_empty() {
                    key(u)?
                } else {
                    u.choose(&existing)?.clone()
                };
                let _ = doc.delete(&obj, k);
            }
            (4, ObjType::List) if len > 0 => {
                let i = u.choose_index(len)?;
                let _ = doc.delete(&obj, i);
            }
            (4, ObjType::List) => {}
            (5, _) => {
                let prop: Prop = match obj_type {
                    ObjType::Map | ObjType::Table => key(u)?.into(),
                    _ => u.int_in_range(0..=len)?.into(),
                };
                // Small amounts: Automerge's counters overflow (and panic in debug builds) otherwise.
                let _ = doc.increment(&obj, prop, u.int_in_range(-1_000_000..=1_000_000)?);
            }
            (6, _) => {
                doc.commit();
            }
            (7, _) if may_fork && forks < 4 => {
                // A concurrent edit by another device, merged back: conflicts.
                forks += 1;
                let mut other = doc
                    .fork()
                    .with_actor(ActorId::from([actor_seed.wrapping_add(forks); 16]));
                let n = u.int_in_range(1..=6usize)?;
                edits(&mut other, u, actor_seed, n, false)?;
                doc.commit();
                let _ = doc.merge(&mut other);
                objects = self::objects(doc);
            }
            _ => {
                // delete a whole object from its parent, or nothing
                if op == 8 && !objects.is_empty() {
                    let (parent, parent_type) = u.choose(&objects)?.clone();
                    if matches!(parent_type, ObjType::Map | ObjType::Table) {
                        let existing: Vec<String> = doc.keys(&parent).collect();
                        if !existing.is_empty() {
                            let k = u.choose(&existing)?.clone();
                            let _ = doc.delete(&parent, k);
                        }
                    }
                }
            }
        }
    }
    doc.commit();
    Ok(())
}

/// Common fields with valid values (a chosen kind), or some of them missing or wrong.
pub fn write_common(doc: &mut AutoCommit, u: &mut Unstructured<'_>) -> Result<()> {
    let kind = *u.choose(Kind::ALL)?;
    let fields: [(&str, ScalarValue); 5] = [
        (keys::KIND, ScalarValue::Str(kind.as_str().into())),
        (keys::SCHEMA, ScalarValue::Int(1)),
        (keys::AREA, ScalarValue::Str(docs::GRID.into())),
        (keys::CREATED_BY, ScalarValue::Str(docs::CREATOR.into())),
        (keys::CREATED_AT, ScalarValue::Int(docs::T0)),
    ];
    for (k, v) in fields {
        // Mostly valid, sometimes left out or replaced by a fuzz value.
        match u.choose_index(10)? {
            0 => {}
            1 => {
                let v = scalar(u)?;
                let _ = doc.put(ROOT, k, v);
            }
            _ => {
                let _ = doc.put(ROOT, k, v);
            }
        }
    }
    Ok(())
}
