//! Schema validation over real Automerge documents, written the way Rust and JavaScript clients
//! write them.

use automerge::transaction::Transactable;
use automerge::{ObjType, ROOT, ReadDoc, ScalarValue};

use super::*;
use crate::domain::fixtures::*;

/// `doc` after `change`, validated.
fn validate_after(
    mut doc: Automerge,
    change: impl FnOnce(&mut automerge::transaction::Transaction<'_>),
) -> Result<DocInfo, SchemaError> {
    edit(&mut doc, change);
    validate(&doc)
}

fn message(result: Result<DocInfo, SchemaError>) -> String {
    result.unwrap_err().to_string()
}

/// Puts `text` at `key` of `obj` as a Text object, the way JavaScript clients write strings.
fn put_text(tx: &mut impl Transactable, obj: &ObjId, key: &str, text: &str) {
    let id = tx.put_object(obj, key, ObjType::Text).unwrap();
    tx.splice_text(&id, 0, 0, text).unwrap();
}

#[test]
fn missing_and_mistyped_fields_are_named() {
    assert_eq!(
        message(validate_after(household("sec-1"), |tx| {
            tx.delete(ROOT, "address").unwrap()
        })),
        "`address` is missing"
    );
    assert_eq!(
        message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "peopleReceived", "two").unwrap()
        })),
        "`peopleReceived` must be an integer"
    );
    assert_eq!(
        message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "visitors", "sec-1").unwrap()
        })),
        "`visitors` must be a list"
    );
    assert_eq!(
        message(validate_after(household("sec-1"), |tx| {
            let (_, residents) = tx.get(ROOT, "residents").unwrap().unwrap();
            tx.insert(&residents, 1, "李四").unwrap();
        })),
        "`residents[1]` must be a map"
    );
    assert_eq!(
        message(validate_after(household("sec-1"), |tx| {
            let (_, residents) = tx.get(ROOT, "residents").unwrap().unwrap();
            let (_, first) = tx.get(&residents, 0).unwrap().unwrap();
            tx.put(&first, "phone", 13_800_000_000_i64).unwrap();
        })),
        "`residents[0].phone` must be a string"
    );
}

#[test]
fn text_objects_count_as_strings_everywhere() {
    let info = validate_after(visit("sec-1", "2026-03-05"), |tx| {
        put_text(tx, &ROOT, "heard", "楼道灯坏了");
        put_text(tx, &ROOT, "date", "2026-03-15");
        put_text(tx, &ROOT, "household", "hh-2");
        put_text(tx, &ROOT, "area", GRID);
        let (_, visitors) = tx.get(ROOT, "visitors").unwrap().unwrap();
        let visitor = tx.insert_object(&visitors, 2, ObjType::Text).unwrap();
        tx.splice_text(&visitor, 0, 0, "sec-3").unwrap();
    })
    .unwrap();
    assert_eq!(info.area, area(GRID));
    // A Text date is checked like a scalar one.
    assert!(
        validate_after(visit("sec-1", "2026-03-05"), |tx| put_text(
            tx,
            &ROOT,
            "date",
            "2026-02-30"
        ))
        .is_err()
    );
}

#[test]
fn integers_may_be_signed_unsigned_timestamps_or_counters_but_not_floats() {
    for value in [
        ScalarValue::Uint(3),
        ScalarValue::Timestamp(3),
        ScalarValue::counter(3),
    ] {
        assert!(
            validate_after(visit("sec-1", "2026-03-05"), |tx| {
                tx.put(ROOT, "peopleReceived", value.clone()).unwrap()
            })
            .is_ok(),
            "{value:?}"
        );
    }
    assert_eq!(
        message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "peopleReceived", 2.5).unwrap()
        })),
        "`peopleReceived` must be an integer"
    );
    assert_eq!(
        message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "peopleReceived", -1).unwrap()
        })),
        "`peopleReceived` is invalid: -1 is negative"
    );
    assert_eq!(
        message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "createdAt", u64::MAX).unwrap()
        })),
        format!("`createdAt` is invalid: {} is too large", u64::MAX)
    );
}

#[test]
fn common_fields_are_checked() {
    assert_eq!(
        message(validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "kind", "parcel").unwrap()
        })),
        "`kind` is invalid: `parcel` is not a known document kind; expected one of: household, \
         visit, request, order, station_log"
    );
    assert_eq!(
        message(validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "area", "jining/grid-4").unwrap()
        })),
        "`area` is invalid: area path must start with `/`"
    );
    assert_eq!(
        message(validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "createdBy", "").unwrap()
        })),
        "`createdBy` is invalid: it is empty"
    );
    assert_eq!(
        message(validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "schema", 0).unwrap()
        })),
        "`schema` is invalid: 0 is not a schema version"
    );
}

#[test]
fn an_unknown_schema_version_is_refused_but_its_info_is_readable() {
    let mut doc = order("grid-1");
    edit(&mut doc, |tx| tx.put(ROOT, "schema", 2).unwrap());
    assert_eq!(
        validate(&doc),
        Err(SchemaError::UnsupportedSchema { version: 2 })
    );
    assert_eq!(
        validate(&doc).unwrap_err().to_string(),
        "`schema` is version 2, but only version 1 is supported"
    );
    let info = read_info(&doc).unwrap();
    assert_eq!((info.kind, info.schema), (Kind::Order, 2));
}

#[test]
fn unknown_fields_are_allowed_for_forward_compatibility() {
    assert!(
        validate_after(request("sec-1"), |tx| {
            tx.put(ROOT, "priority", "high").unwrap();
            let tags = tx.put_object(ROOT, "tags", ObjType::List).unwrap();
            tx.insert(&tags, 0, "lighting").unwrap();
            let (_, timeline) = tx.get(ROOT, "timeline").unwrap().unwrap();
            let (_, first) = tx.get(&timeline, 0).unwrap().unwrap();
            tx.put(&first, "photo", "blob-7").unwrap();
        })
        .is_ok()
    );
}

#[test]
fn personal_data_is_refused_outside_households_at_any_depth() {
    assert_eq!(
        validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "phone", "13800000000").unwrap()
        }),
        Err(SchemaError::PersonalData {
            field: "phone".to_owned(),
            kind: Kind::Visit
        })
    );
    assert_eq!(
        message(validate_after(request("sec-1"), |tx| {
            let (_, timeline) = tx.get(ROOT, "timeline").unwrap().unwrap();
            let (_, first) = tx.get(&timeline, 0).unwrap().unwrap();
            let extra = tx.put_object(&first, "resident", ObjType::Map).unwrap();
            tx.put(&extra, "idNumber", "370802...").unwrap();
        })),
        "`timeline[0].resident.idNumber` is personal data, which only household documents may \
         hold, not request documents"
    );
    assert!(
        validate_after(order("grid-1"), |tx| {
            tx.put_object(ROOT, "residents", ObjType::List).unwrap();
        })
        .is_err()
    );
    assert!(
        validate_after(station_log("staff-1"), |tx| {
            let (_, entries) = tx.get(ROOT, "entries").unwrap().unwrap();
            let (_, first) = tx.get(&entries, 0).unwrap().unwrap();
            tx.put(&first, "name", "王秀兰").unwrap();
        })
        .is_err()
    );
    // In a household, personal data is the point.
    assert!(validate(&household("sec-1")).is_ok());
}

#[test]
fn personal_data_is_found_in_the_losing_side_of_a_conflict_too() {
    let stored = visit("sec-1", "2026-03-05");
    let mut a = device(&stored, 2);
    let mut b = device(&stored, 3);
    edit(&mut a, |tx| {
        let extra = tx.put_object(ROOT, "extra", ObjType::Map).unwrap();
        tx.put(&extra, "name", "王秀兰").unwrap();
    });
    edit(&mut b, |tx| {
        tx.put(ROOT, "extra", "nothing to see").unwrap()
    });
    let merged = received(&received(&stored, &a), &b);
    assert_eq!(merged.get_all(ROOT, "extra").unwrap().len(), 2);
    assert!(matches!(
        validate(&merged),
        Err(SchemaError::PersonalData { .. })
    ));
}

#[test]
fn a_request_timeline_starts_collected_and_its_events_are_well_formed() {
    assert_eq!(
        message(validate_after(request("sec-1"), |tx| {
            let (_, timeline) = tx.get(ROOT, "timeline").unwrap().unwrap();
            tx.delete(&timeline, 0).unwrap();
        })),
        "`timeline` is invalid: a request's timeline starts with a `collected` event, and it is \
         empty"
    );
    let with_event = |build: fn(&mut automerge::transaction::Transaction<'_>, &ObjId)| {
        validate_after(request("sec-1"), move |tx| {
            let (_, timeline) = tx.get(ROOT, "timeline").unwrap().unwrap();
            let event = tx.insert_object(&timeline, 1, ObjType::Map).unwrap();
            tx.put(&event, "at", T0).unwrap();
            tx.put(&event, "by", "grid-1").unwrap();
            build(tx, &event);
        })
    };
    assert_eq!(
        message(with_event(|tx, e| tx.put(e, "type", "triaged").unwrap())),
        "`timeline[1].track` is missing"
    );
    assert_eq!(
        message(with_event(|tx, e| {
            tx.put(e, "type", "triaged").unwrap();
            tx.put(e, "track", "transfer").unwrap();
        })),
        "`timeline[1].department` is missing"
    );
    assert!(
        with_event(|tx, e| {
            tx.put(e, "type", "triaged").unwrap();
            tx.put(e, "track", "supervised").unwrap();
        })
        .is_ok()
    );
    assert_eq!(
        message(with_event(|tx, e| tx
            .put(e, "type", "called_back")
            .unwrap())),
        "`timeline[1].satisfaction` is missing"
    );
    assert_eq!(
        message(with_event(|tx, e| {
            tx.put(e, "type", "called_back").unwrap();
            tx.put(e, "satisfaction", "delighted").unwrap();
        })),
        "`timeline[1].satisfaction` is invalid: `delighted` is not a known satisfaction; \
         expected one of: satisfied, neutral, unsatisfied"
    );
    assert!(
        message(with_event(|tx, e| tx.put(e, "type", "escalated").unwrap()))
            .starts_with("`timeline[1].type` is invalid: `escalated` is not a known event type")
    );
    assert_eq!(
        message(with_event(|tx, e| {
            tx.put(e, "type", "handling").unwrap();
            tx.delete(e, "by").unwrap();
        })),
        "`timeline[1].by` is missing"
    );
    // An event out of place is the state machine's business, not the schema's.
    assert!(with_event(|tx, e| tx.put(e, "type", "closed").unwrap()).is_ok());
    assert_eq!(
        message(validate_after(request("sec-1"), |tx| {
            tx.put(ROOT, "origin", "rumour").unwrap()
        })),
        "`origin` is invalid: `rumour` is not a known request origin; expected one of: visit, \
         grid, hotline, station, other"
    );
}

#[test]
fn a_null_optional_field_counts_as_absent() {
    assert!(
        validate_after(request("sec-1"), |tx| {
            tx.put(ROOT, "household", ScalarValue::Null).unwrap()
        })
        .is_ok()
    );
    assert_eq!(
        message(validate_after(request("sec-1"), |tx| {
            tx.put(ROOT, "category", ScalarValue::Null).unwrap()
        })),
        "`category` is missing"
    );
}

#[test]
fn order_rules() {
    assert_eq!(
        message(validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "windowEnd", T0).unwrap()
        })),
        "`windowEnd` is invalid: it is before `windowStart`"
    );
    assert_eq!(
        message(validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "status", "assigned").unwrap()
        })),
        "`status` is invalid: an order that is `assigned` must have an `assignee`"
    );
    assert!(
        message(validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "status", "taken").unwrap()
        }))
        .starts_with("`status` is invalid: `taken` is not a known order status")
    );
    assert_eq!(
        message(validate_after(order("grid-1"), |tx| {
            let (_, claims) = tx.get(ROOT, "claims").unwrap().unwrap();
            let claim = tx.insert_object(&claims, 0, ObjType::Map).unwrap();
            tx.put(&claim, "volunteer", "vol-1").unwrap();
        })),
        "`claims[0].at` is missing"
    );
}

#[test]
fn station_log_and_visit_dates_are_real_calendar_dates() {
    assert_eq!(
        message(validate_after(station_log("staff-1"), |tx| {
            tx.put(ROOT, "date", "2026-02-30").unwrap()
        })),
        "`date` is invalid: 2026-02 has no day 30"
    );
    assert_eq!(
        message(validate_after(station_log("staff-1"), |tx| {
            let (_, entries) = tx.get(ROOT, "entries").unwrap().unwrap();
            let (_, first) = tx.get(&entries, 0).unwrap().unwrap();
            tx.put(&first, "peopleServed", -3).unwrap();
        })),
        "`entries[0].peopleServed` is invalid: -3 is negative"
    );
    // A visit off a listening day is valid: it is flagged elsewhere, never refused.
    assert!(validate(&visit("sec-1", "2026-03-06")).is_ok());
}
