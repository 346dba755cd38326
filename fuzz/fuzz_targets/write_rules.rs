//! `domain::check_change` on a valid fixture and a device's fuzz-generated edits of it (or a
//! document the device creates from scratch): never panics, and an accepted change leaves a
//! document that validates, with the common fields unchanged.
//!
//! The actor (user, role, area, department) and, one time in four, small schema limits come
//! from the input; the edits are puts, deletes, inserts anywhere in lists, text splices, commits
//! (several changes) and concurrent forks merged back (conflicts), see `lianxin_fuzz::edits`.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use automerge::{ActorId, AutoCommit, Automerge};
use lianxin_fuzz::{docs, edits};
use lianxin_protocol::domain::schema::{read_info, validate_with};
use lianxin_protocol::domain::{CheckConfig, Kind, Role, check_change, check_change_with};
use libfuzzer_sys::fuzz_target;

fn fixtures() -> &'static Vec<(Kind, AutoCommit)> {
    static FIXTURES: OnceLock<Vec<(Kind, AutoCommit)>> = OnceLock::new();
    FIXTURES.get_or_init(|| Kind::ALL.iter().map(|&k| (k, docs::build(k))).collect())
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let role = *u.choose(Role::ALL)?;
    let user = *u.choose(docs::USERS)?;
    let area = *u.choose(docs::AREAS)?;
    let department = if u.arbitrary()? {
        Some(*u.choose(docs::DEPARTMENTS)?)
    } else {
        None
    };
    let actor = docs::actor(user, role, area, department);
    let mut config = CheckConfig::default();
    let custom = u.ratio(1u8, 4u8)?;
    if custom {
        config.limits.max_text_bytes = u.int_in_range(0..=64)?;
        config.limits.max_short_bytes = u.int_in_range(0..=32)?;
        config.limits.max_list_items = u.int_in_range(0..=4)?;
        config.limits.max_change_ops = u.int_in_range(0..=64)?;
    }
    let device_actor = ActorId::from([9u8; 16]);

    if u.ratio(1u8, 5u8)? {
        // The device creates the document: from a valid creation, or from nothing.
        let mut device = if u.arbitrary()? {
            let kind = *u.choose(Kind::ALL)?;
            docs::create(kind).with_actor(device_actor)
        } else {
            let mut doc = AutoCommit::new().with_actor(device_actor);
            edits::write_common(&mut doc, u)?;
            doc
        };
        edits::apply_edits(&mut device, u, 9, 48)?;
        let after = device.document();
        let empty = Automerge::new();
        let result = if custom {
            check_change_with(&config, &actor, None, &empty, after)
        } else {
            check_change(&actor, None, &empty, after)
        };
        if let Ok(outcome) = result {
            assert!(outcome.created, "a creation not reported as one");
            let valid = validate_with(after, &config.limits);
            assert_eq!(
                valid.as_ref().ok(),
                Some(&outcome.info),
                "accepted an invalid document"
            );
        }
        return Ok(());
    }

    let (_, fixture) = u.choose(fixtures())?;
    let mut stored = fixture.clone();
    let before = stored.document().clone();
    let info = read_info(&before).expect("fixtures are valid");
    let mut device = stored.fork().with_actor(device_actor);
    edits::apply_edits(&mut device, u, 9, 48)?;
    let after = device.document();
    let result = if custom {
        check_change_with(&config, &actor, Some(&info), &before, after)
    } else {
        check_change(&actor, Some(&info), &before, after)
    };
    if let Ok(outcome) = result {
        assert!(!outcome.created, "an update reported as a creation");
        assert_eq!(outcome.info, info, "accepted a change to the common fields");
        let valid = validate_with(after, &config.limits);
        assert_eq!(
            valid.as_ref().ok(),
            Some(&outcome.info),
            "accepted an invalid document"
        );
    }
    Ok(())
}

fuzz_target!(
    init: lianxin_fuzz::init(),
    |data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
