//! Schema validation over real Automerge documents, written the way Rust and JavaScript clients
//! write them.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ROOT, ReadDoc, ScalarValue};

use super::*;
use crate::domain::fixtures::*;
use crate::domain::personal_number::PersonalNumber;

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
fn unknown_fields_are_refused_at_root_and_in_nested_maps() {
    assert_eq!(
        validate_after(request("sec-1"), |tx| {
            tx.put(ROOT, "priority", "high").unwrap()
        }),
        Err(SchemaError::UnknownField {
            field: "priority".to_owned(),
            kind: Kind::Request
        })
    );
    assert_eq!(
        message(validate_after(request("sec-1"), |tx| {
            let (_, timeline) = tx.get(ROOT, "timeline").unwrap().unwrap();
            let (_, first) = tx.get(&timeline, 0).unwrap().unwrap();
            tx.put(&first, "photo", "blob-7").unwrap();
        })),
        "`timeline[0].photo` is not a field of request documents (schema version 1 names every \
         field they may have)"
    );
    assert!(matches!(
        validate_after(order("grid-1"), |tx| {
            let (_, claims) = tx.get(ROOT, "claims").unwrap().unwrap();
            let claim = tx.insert_object(&claims, 0, ObjType::Map).unwrap();
            tx.put(&claim, "volunteer", "vol-1").unwrap();
            tx.put(&claim, "at", T0).unwrap();
            tx.put(&claim, "phoneModel", "x").unwrap();
        }),
        Err(SchemaError::UnknownField { field, .. }) if field == "claims[0].phoneModel"
    ));
    // Households too: their schema names every field.
    assert!(matches!(
        validate_after(household("sec-1"), |tx| {
            tx.put(ROOT, "floorPlan", "3 rooms").unwrap()
        }),
        Err(SchemaError::UnknownField { .. })
    ));
    // A key that is too long to quote is cut short in the message.
    let long = "k".repeat(10_000);
    let refused = message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
        tx.put(ROOT, long.as_str(), 1).unwrap()
    }));
    assert!(refused.len() < 200, "{refused}");
}

/// The spellings of residents' personal data that got past the old rule of four key names.
#[test]
fn personal_data_under_any_key_is_refused_outside_households() {
    for (key, value) in [
        ("residentName", "王秀兰"),
        ("mobile", "13912345678"),
        ("idCard", "11010519491231002X"),
        ("姓名", "王秀兰"),
    ] {
        assert_eq!(
            validate_after(visit("sec-1", "2026-03-05"), |tx| tx
                .put(ROOT, key, value)
                .unwrap()),
            Err(SchemaError::UnknownField {
                field: key.to_owned(),
                kind: Kind::Visit
            }),
            "{key}"
        );
    }
    // Nested, in a map of its own or in a map the schema has.
    assert!(matches!(
        validate_after(visit("sec-1", "2026-03-05"), |tx| {
            let extra = tx.put_object(ROOT, "住户", ObjType::Map).unwrap();
            tx.put(&extra, "姓名", "王秀兰").unwrap();
            tx.put(&extra, "电话", "13912345678").unwrap();
        }),
        Err(SchemaError::UnknownField { field, .. }) if field == "住户"
    ));
    assert!(matches!(
        validate_after(request("sec-1"), |tx| {
            let (_, timeline) = tx.get(ROOT, "timeline").unwrap().unwrap();
            let (_, first) = tx.get(&timeline, 0).unwrap().unwrap();
            tx.put(&first, "姓名", "王秀兰").unwrap();
            tx.put(&first, "电话", "13912345678").unwrap();
        }),
        Err(SchemaError::UnknownField { field, .. })
            if field == "timeline[0].姓名" || field == "timeline[0].电话"
    ));
    // The household's own key names say what they are.
    assert_eq!(
        message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "phone", "13800000000").unwrap()
        })),
        "`phone` is personal data, which only household documents may hold, not visit documents"
    );
    assert!(matches!(
        validate_after(order("grid-1"), |tx| {
            tx.put_object(ROOT, "residents", ObjType::List).unwrap();
        }),
        Err(SchemaError::PersonalData { .. })
    ));
    assert!(matches!(
        validate_after(station_log("staff-1"), |tx| {
            let (_, entries) = tx.get(ROOT, "entries").unwrap().unwrap();
            let (_, first) = tx.get(&entries, 0).unwrap().unwrap();
            tx.put(&first, "name", "王秀兰").unwrap();
        }),
        Err(SchemaError::PersonalData { field, .. }) if field == "entries[0].name"
    ));
    // In a household, personal data is the point.
    assert!(validate(&household("sec-1")).is_ok());
}

#[test]
fn free_text_is_searched_for_phone_and_id_numbers_outside_households() {
    let refused = validate_after(visit("sec-1", "2026-03-05"), |tx| {
        tx.put(ROOT, "heard", "王阿姨说请回电 139-1234-5678")
            .unwrap()
    });
    assert_eq!(
        refused,
        Err(SchemaError::PersonalText {
            field: "heard".to_owned(),
            found: PersonalNumber::MobilePhone,
            kind: Kind::Visit
        })
    );
    let said = message(refused);
    assert_eq!(
        said,
        "`heard` contains what looks like a mobile phone number, which is personal data that \
         only household documents may hold, not visit documents"
    );
    assert!(!said.contains("5678"), "never echoes the number: {said}");
    // As a Text object, in a nested field, and an ID number.
    assert!(matches!(
        validate_after(request("sec-1"), |tx| {
            let (_, timeline) = tx.get(ROOT, "timeline").unwrap().unwrap();
            let (_, first) = tx.get(&timeline, 0).unwrap().unwrap();
            put_text(tx, &first, "note", "身份证 11010519491231002X");
        }),
        Err(SchemaError::PersonalText { field, found: PersonalNumber::ResidentId, .. })
            if field == "timeline[0].note"
    ));
    // Codes are searched too; identifiers are not (user IDs may be phone numbers).
    assert!(matches!(
        validate_after(order("grid-1"), |tx| {
            tx.put(ROOT, "serviceKind", "call 13912345678").unwrap()
        }),
        Err(SchemaError::PersonalText { .. })
    ));
    assert!(
        validate_after(visit("sec-1", "2026-03-05"), |tx| {
            let (_, visitors) = tx.get(ROOT, "visitors").unwrap().unwrap();
            tx.insert(&visitors, 0, "13912345678").unwrap();
        })
        .is_ok()
    );
    // A household's fields may hold them.
    assert!(
        validate_after(household("sec-1"), |tx| {
            tx.put(ROOT, "address", "3-2-401，联系 13912345678")
                .unwrap()
        })
        .is_ok()
    );
    // Numbers that are neither pass.
    assert!(
        validate_after(visit("sec-1", "2026-03-05"), |tx| {
            tx.put(ROOT, "heard", "3 号楼 2 单元，12 户，工单 202603051234567")
                .unwrap()
        })
        .is_ok()
    );
}

#[test]
fn a_conflict_cannot_hide_what_the_shape_refuses() {
    let stored = visit("sec-1", "2026-03-05");
    let mut a = device(&stored, 2);
    let mut b = device(&stored, 3);
    edit(&mut a, |tx| {
        let heard = tx.put_object(ROOT, "heard", ObjType::Map).unwrap();
        tx.put(&heard, "name", "王秀兰").unwrap();
    });
    edit(&mut b, |tx| {
        tx.put(ROOT, "heard", "nothing to see").unwrap()
    });
    let merged = received(&received(&stored, &a), &b);
    assert_eq!(merged.get_all(ROOT, "heard").unwrap().len(), 2);
    assert_eq!(
        validate(&merged),
        Err(SchemaError::WrongType {
            field: "heard".to_owned(),
            expected: "a string"
        })
    );
    // A phone number in the losing string is found too, whichever side wins.
    let mut a = device(&stored, 2);
    let mut b = device(&stored, 3);
    edit(&mut a, |tx| {
        tx.put(ROOT, "heard", "回电 13912345678").unwrap()
    });
    edit(&mut b, |tx| {
        tx.put(ROOT, "heard", "nothing to see").unwrap()
    });
    let merged = received(&received(&stored, &a), &b);
    assert!(matches!(
        validate(&merged),
        Err(SchemaError::PersonalText { .. })
    ));
}

#[test]
fn strings_and_lists_are_held_to_their_limits() {
    let limits = SchemaLimits::default();
    assert_eq!(limits.max_text_bytes, 8 * 1024);
    let with = |text: String| {
        validate_after(visit("sec-1", "2026-03-05"), move |tx| {
            tx.put(ROOT, "heard", text.as_str()).unwrap()
        })
    };
    assert!(with("a".repeat(8 * 1024)).is_ok());
    assert_eq!(
        message(with("a".repeat(8 * 1024 + 1))),
        "`heard` is longer than 8192 bytes, the limit for this field"
    );
    // Bytes of UTF-8, not characters: 2,731 Chinese characters are 8,193 bytes.
    assert!(with("好".repeat(2_730)).is_ok());
    assert!(matches!(
        with("好".repeat(2_731)),
        Err(SchemaError::TooLong { field, max: 8192 }) if field == "heard"
    ));
    // The same for Text objects, measured without being read when far too long.
    let with_text = |text: String| {
        validate_after(visit("sec-1", "2026-03-05"), move |tx| {
            put_text(tx, &ROOT, "heard", &text)
        })
    };
    assert!(with_text("好".repeat(2_730)).is_ok());
    assert!(matches!(
        with_text("好".repeat(2_731)),
        Err(SchemaError::TooLong { .. })
    ));
    assert!(matches!(
        with_text("a".repeat(20_000)),
        Err(SchemaError::TooLong { .. })
    ));
    // Identifiers and codes are short.
    assert_eq!(
        message(validate_after(visit("sec-1", "2026-03-05"), |tx| {
            let (_, visitors) = tx.get(ROOT, "visitors").unwrap().unwrap();
            tx.insert(&visitors, 0, "v".repeat(257)).unwrap();
        })),
        "`visitors[0]` is longer than 256 bytes, the limit for this field"
    );
    assert!(matches!(
        validate_after(household("sec-1"), |tx| {
            let (_, residents) = tx.get(ROOT, "residents").unwrap().unwrap();
            let (_, first) = tx.get(&residents, 0).unwrap().unwrap();
            tx.put(&first, "name", "王".repeat(100)).unwrap();
        }),
        Err(SchemaError::TooLong { field, max: 256 }) if field == "residents[0].name"
    ));
    // Lists.
    let many = validate_after(visit("sec-1", "2026-03-05"), |tx| {
        let (_, requests) = tx.get(ROOT, "requests").unwrap().unwrap();
        for index in 0..1_000 {
            tx.insert(&requests, index, format!("req-{index}")).unwrap();
        }
    });
    assert_eq!(
        message(many),
        "`requests` has more than 1000 items, the limit for a list"
    );
    // Other limits, as a server configures them.
    let small = SchemaLimits {
        max_text_bytes: 10,
        max_list_items: 1,
        ..SchemaLimits::default()
    };
    let doc = visit("sec-1", "2026-03-05");
    assert!(matches!(
        validate_with(&doc, &small),
        Err(SchemaError::TooLong { .. } | SchemaError::TooMany { .. })
    ));
    assert!(validate_with(&doc, &limits).is_ok());
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
