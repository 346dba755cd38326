//! `domain::schema::validate` on documents built from fuzz input: never panics.
//!
//! A document is either built from nothing (common fields mostly valid, then a tree of maps,
//! lists, text and scalars under ROOT, keyed mostly by real field names), or is a valid fixture
//! of a chosen kind; either way a device then edits it (puts, deletes, inserts, splices,
//! concurrent forks merged back, which leave conflicts). It is then validated under the default
//! limits and under small fuzz-chosen ones, so the length checks fire too.
#![no_main]

use arbitrary::{Result, Unstructured};
use automerge::{ActorId, AutoCommit};
use lianxin_fuzz::docs;
use lianxin_fuzz::edits::{self, Place};
use lianxin_protocol::domain::schema::{read_info, validate, validate_with};
use lianxin_protocol::domain::{Kind, SchemaLimits};
use libfuzzer_sys::fuzz_target;

fn build(u: &mut Unstructured<'_>) -> Result<AutoCommit> {
    let mut doc = match u.choose_index(3)? {
        0 => {
            let mut doc = AutoCommit::new().with_actor(ActorId::from([1u8; 16]));
            if u.ratio(3u8, 4u8)? {
                edits::write_common(&mut doc, u)?;
            }
            let mut objects = edits::objects(&doc);
            let n = u.int_in_range(0..=12usize)?;
            for _ in 0..n {
                let k = edits::key(u)?;
                edits::write_value(
                    &mut doc,
                    u,
                    Place::Put(automerge::ROOT, k.into()),
                    0,
                    &mut objects,
                )?;
            }
            doc.commit();
            doc
        }
        1 => docs::create(*u.choose(Kind::ALL)?),
        _ => docs::build(*u.choose(Kind::ALL)?),
    };
    let mut device = doc.fork().with_actor(ActorId::from([3u8; 16]));
    edits::apply_edits(&mut device, u, 3, 32)?;
    let _ = doc.merge(&mut device);
    Ok(doc)
}

fn small_limits(u: &mut Unstructured<'_>) -> Result<SchemaLimits> {
    Ok(SchemaLimits {
        max_text_bytes: u.int_in_range(0..=64)?,
        max_short_bytes: u.int_in_range(0..=32)?,
        max_list_items: u.int_in_range(0..=4)?,
        max_change_ops: u.int_in_range(0..=64)?,
    })
}

fuzz_target!(
    init: lianxin_fuzz::init(),
    |data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mut doc) = build(&mut u) else {
        return;
    };
    let limits = small_limits(&mut u).unwrap_or_default();
    let doc = doc.document();
    let info = read_info(doc);
    if let Ok(valid) = validate(doc) {
        assert_eq!(
            info.as_ref().ok(),
            Some(&valid),
            "validate and read_info disagree"
        );
    }
    let _ = validate_with(doc, &limits);
});
