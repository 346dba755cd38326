//! Projection: a document's merged state as a typed [`Record`], the rows a supervisor queries,
//! and [`describe`], the readable summary of what one change did to it.
//!
//! The server projects every document after every accepted change, in the same transaction that
//! stores the change, and can rebuild every projection from the stored documents alone
//! (`lianxin-server reproject`). Both paths call [`project`], so they give the same record. What
//! depends on configuration (listening days, due times, the local zone) is a
//! [`ProjectionConfig`] argument; nothing here reads a clock, so "overdue" is not part of a
//! record: a record carries its [`due_at`](RequestRecord::due_at) and the reader compares it with
//! its own now.
//!
//! Summaries name fields, events, statuses and people by their IDs, never residents' personal
//! data: a household's residents are summarised by their number.

use automerge::Automerge;
use serde::{Deserialize, Serialize};

use super::builders::{Resident, StationEntry};
use super::date::LocalDate;
use super::due::{DueTimes, due_at};
use super::event::{Event, EventKind};
use super::keys;
use super::kind::Kind;
use super::listening_day::ListeningDays;
use super::order_flow::{Claim, OrderStatus};
use super::origin::Origin;
use super::read::Node;
use super::request_flow::{Flow, status};
use super::schema::{DocInfo, SchemaError, read_info};
use super::wire_enum::clip;

/// What projecting depends on besides the document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectionConfig {
    /// Which days are listening days (a visit's [`on_listening_day`](VisitRecord)).
    pub listening_days: ListeningDays,
    /// The deadline of each triage track (a request's [`due_at`](RequestRecord::due_at)).
    pub due_times: DueTimes,
    /// The local zone, in seconds east of UTC.
    pub utc_offset_secs: i32,
}

/// A household: its address and residents (personal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HouseholdRecord {
    pub address: String,
    pub residents: Vec<Resident>,
}

/// A listening-day visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VisitRecord {
    /// The household document's ID.
    pub household: String,
    pub date: LocalDate,
    pub visitors: Vec<String>,
    pub heard: String,
    pub people_received: i64,
    /// IDs of the requests raised during the visit.
    pub requests: Vec<String>,
    /// Whether `date` is a listening day.
    pub on_listening_day: bool,
}

/// A request (诉求) with its timeline and where its loop stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub origin: Origin,
    pub household: Option<String>,
    pub visit: Option<String>,
    pub category: String,
    pub description: String,
    /// Status, track, department, satisfaction and the times of the loop's steps.
    #[serde(flatten)]
    pub flow: Flow,
    /// The last millisecond the request is on time, once triaged.
    pub due_at: Option<i64>,
    /// Every event, in timeline order; `flow.ignored` lists those the state machine ignored.
    pub timeline: Vec<Event>,
}

/// A volunteer service order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderRecord {
    pub requester: String,
    pub service_kind: String,
    pub window_start: i64,
    pub window_end: i64,
    pub place: String,
    pub status: OrderStatus,
    /// The volunteer the server gave the order to.
    pub assignee: Option<String>,
    pub claims: Vec<Claim>,
    /// When the assignee tapped "take" (their claim's time), by their device's clock.
    pub taken_at: Option<i64>,
}

/// One station's log of one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StationLogRecord {
    pub station: String,
    pub date: LocalDate,
    pub entries: Vec<StationEntry>,
}

/// The fields of a document of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    Household(HouseholdRecord),
    Visit(VisitRecord),
    Request(RequestRecord),
    Order(OrderRecord),
    StationLog(StationLogRecord),
}

impl Record {
    /// The kind of document this record is.
    pub fn kind(&self) -> Kind {
        match self {
            Record::Household(_) => Kind::Household,
            Record::Visit(_) => Kind::Visit,
            Record::Request(_) => Kind::Request,
            Record::Order(_) => Kind::Order,
            Record::StationLog(_) => Kind::StationLog,
        }
    }
}

/// A document's common fields and its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projected {
    pub info: DocInfo,
    pub record: Record,
}

/// Projects the typed document `doc`. Fails if it is not a well-typed document of its kind.
pub fn project(doc: &Automerge, config: &ProjectionConfig) -> Result<Projected, SchemaError> {
    let info = read_info(doc)?;
    let root = Node::root(doc);
    let record = match info.kind {
        Kind::Household => Record::Household(HouseholdRecord {
            address: root.req_string(keys::ADDRESS)?,
            residents: root
                .req_list(keys::RESIDENTS)?
                .maps()?
                .iter()
                .map(|resident| {
                    Ok(Resident {
                        name: resident.req_string(keys::NAME)?,
                        phone: resident.string(keys::PHONE)?,
                        id_number: resident.string(keys::ID_NUMBER)?,
                    })
                })
                .collect::<Result<_, SchemaError>>()?,
        }),
        Kind::Visit => {
            let date: LocalDate = root.req_parsed(keys::DATE)?;
            Record::Visit(VisitRecord {
                household: root.req_id(keys::HOUSEHOLD)?,
                date,
                visitors: root.req_list(keys::VISITORS)?.ids()?,
                heard: root.req_string(keys::HEARD)?,
                people_received: root.req_count(keys::PEOPLE_RECEIVED)?,
                requests: root.req_list(keys::REQUESTS)?.ids()?,
                on_listening_day: config.listening_days.includes(date),
            })
        }
        Kind::Request => {
            let timeline = root
                .req_list(keys::TIMELINE)?
                .maps()?
                .iter()
                .map(Event::read)
                .collect::<Result<Vec<_>, _>>()?;
            let flow = status(&timeline);
            Record::Request(RequestRecord {
                origin: root.req_parsed(keys::ORIGIN)?,
                household: root.opt_id(keys::HOUSEHOLD)?,
                visit: root.opt_id(keys::VISIT)?,
                category: root.req_id(keys::CATEGORY)?,
                description: root.req_string(keys::DESCRIPTION)?,
                due_at: due_at(&flow, &config.due_times, config.utc_offset_secs),
                flow,
                timeline,
            })
        }
        Kind::Order => {
            let claims = root
                .req_list(keys::CLAIMS)?
                .maps()?
                .iter()
                .map(Claim::read)
                .collect::<Result<Vec<_>, _>>()?;
            let assignee = root.opt_id(keys::ASSIGNEE)?;
            let taken_at = assignee.as_ref().and_then(|assignee| {
                claims
                    .iter()
                    .find(|claim| claim.volunteer == *assignee)
                    .map(|claim| claim.at)
            });
            Record::Order(OrderRecord {
                requester: root.req_id(keys::REQUESTER)?,
                service_kind: root.req_id(keys::SERVICE_KIND)?,
                window_start: root.req_int(keys::WINDOW_START)?,
                window_end: root.req_int(keys::WINDOW_END)?,
                place: root.req_string(keys::PLACE)?,
                status: root.req_parsed(keys::STATUS)?,
                assignee,
                claims,
                taken_at,
            })
        }
        Kind::StationLog => Record::StationLog(StationLogRecord {
            station: root.req_id(keys::STATION)?,
            date: root.req_parsed(keys::DATE)?,
            entries: root
                .req_list(keys::ENTRIES)?
                .maps()?
                .iter()
                .map(|entry| {
                    Ok(StationEntry {
                        service_kind: entry.req_id(keys::SERVICE_KIND)?,
                        people_served: u32::try_from(entry.req_count(keys::PEOPLE_SERVED)?)
                            .unwrap_or(u32::MAX),
                        served_by: entry.req_id(keys::SERVED_BY)?,
                    })
                })
                .collect::<Result<_, SchemaError>>()?,
        }),
    };
    Ok(Projected { info, record })
}

/// A readable summary of what a change did: `before` is the record before it (`None` when the
/// change created the document), `after` the record after it.
///
/// New timeline events, claims and assignments are told as what happened; other fields as
/// "field: old → new" (quotes clipped), lists by their length. Residents are counted, never
/// named.
pub fn describe(before: Option<&Record>, after: &Record) -> String {
    let Some(before) = before.filter(|before| before.kind() == after.kind()) else {
        return describe_creation(after);
    };
    let mut parts = Vec::new();
    // Concurrent appends merge in an order of Automerge's choosing, so what is new is what
    // `after` has beyond `before`, wherever it landed in the list.
    match (before, after) {
        (Record::Request(old), Record::Request(new)) => {
            for event in added(&old.timeline, &new.timeline) {
                parts.push(describe_event(event));
            }
        }
        (Record::Order(old), Record::Order(new)) => {
            for claim in added(&old.claims, &new.claims) {
                parts.push(format!("claimed by {}", clip(&claim.volunteer)));
            }
        }
        _ => {}
    }
    let (Ok(old), Ok(new)) = (serde_json::to_value(before), serde_json::to_value(after)) else {
        return parts.join("; ");
    };
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
        for (key, value) in new {
            let previous = old.get(key).unwrap_or(&serde_json::Value::Null);
            if previous == value || matches!(key.as_str(), "timeline" | "claims" | "ignored") {
                continue;
            }
            parts.push(describe_field(key, previous, value));
        }
    }
    if parts.is_empty() {
        "no change to the recorded fields".to_owned()
    } else {
        parts.join("; ")
    }
}

/// The items of `new` that are not in `old`, counting duplicates: each item of `old` accounts
/// for one equal item of `new`.
fn added<'a, T: PartialEq>(old: &[T], new: &'a [T]) -> Vec<&'a T> {
    let mut unmatched: Vec<&T> = old.iter().collect();
    new.iter()
        .filter(|item| match unmatched.iter().position(|o| o == item) {
            Some(at) => {
                unmatched.swap_remove(at);
                false
            }
            None => true,
        })
        .collect()
}

fn describe_creation(record: &Record) -> String {
    match record {
        Record::Household(household) => format!(
            "created household at {} with {} residents",
            clip(&household.address),
            household.residents.len()
        ),
        Record::Visit(visit) => format!(
            "recorded visit to household {} on {}: {} people received, {} requests",
            clip(&visit.household),
            visit.date,
            visit.people_received,
            visit.requests.len()
        ),
        Record::Request(request) => format!(
            "collected request ({}, from {}); status {}",
            clip(&request.category),
            request.origin,
            request.flow.status
        ),
        Record::Order(order) => format!(
            "placed order for {} at {}; status {}",
            clip(&order.service_kind),
            clip(&order.place),
            order.status
        ),
        Record::StationLog(log) => format!(
            "opened log of station {} for {} with {} entries",
            clip(&log.station),
            log.date,
            log.entries.len()
        ),
    }
}

fn describe_event(event: &Event) -> String {
    let what = match &event.kind {
        EventKind::Triaged {
            track,
            department: Some(department),
        } => format!("triaged to {track} ({})", clip(department)),
        EventKind::Triaged { track, .. } => format!("triaged to {track}"),
        EventKind::CalledBack { satisfaction } => format!("called back: {satisfaction}"),
        other => other.event_type().to_string(),
    };
    format!("event {what} by {}", clip(&event.by))
}

fn describe_field(key: &str, old: &serde_json::Value, new: &serde_json::Value) -> String {
    use serde_json::Value;
    let show = |value: &Value| match value {
        Value::Null => "none".to_owned(),
        Value::String(s) => clip(s),
        Value::Array(items) => format!("{} items", items.len()),
        Value::Object(_) => "…".to_owned(),
        other => other.to_string(),
    };
    format!("{key}: {} → {}", show(old), show(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::builders::{self, Common, HouseholdInit, OrderInit, RequestInit};
    use crate::domain::date::SHANGHAI_OFFSET_SECS;
    use crate::domain::event::Track;
    use crate::domain::request_flow::Status;
    use crate::domain::{AreaPath, OrderStatus};
    use automerge::Automerge;

    fn config() -> ProjectionConfig {
        ProjectionConfig {
            utc_offset_secs: SHANGHAI_OFFSET_SECS,
            ..ProjectionConfig::default()
        }
    }

    fn common() -> Common {
        Common {
            area: AreaPath::new("/city/street/community-a/grid-1").unwrap(),
            created_by: "sec-1".to_owned(),
            created_at: 1_700_000_000_000,
        }
    }

    #[test]
    fn a_request_projects_its_flow_and_deadline_and_a_change_is_described() {
        let mut doc = Automerge::new();
        doc.transact(|tx| {
            builders::init_request(
                tx,
                &common(),
                &RequestInit {
                    origin: Origin::Visit,
                    household: Some("hh-1".into()),
                    visit: None,
                    category: "water".into(),
                    description: "leaking pipe".into(),
                    device: Some("phone-1".into()),
                },
            )
        })
        .unwrap();
        let before = project(&doc, &config()).unwrap();
        let Record::Request(request) = &before.record else {
            panic!("not a request: {before:?}")
        };
        assert_eq!(request.flow.status, Status::Collected);
        assert_eq!(request.due_at, None);

        let triaged_at = 1_700_000_100_000;
        doc.transact(|tx| {
            builders::append_request_event(
                tx,
                &Event {
                    kind: EventKind::Triaged {
                        track: Track::Transfer,
                        department: Some("water-bureau".into()),
                    },
                    at: triaged_at,
                    by: "sec-1".into(),
                    device: None,
                    note: None,
                },
            )
        })
        .unwrap();
        let after = project(&doc, &config()).unwrap();
        let Record::Request(request) = &after.record else {
            panic!("not a request")
        };
        assert_eq!(request.flow.status, Status::Triaged);
        assert_eq!(request.due_at, Some(triaged_at + 3 * 86_400_000));
        let summary = describe(Some(&before.record), &after.record);
        assert!(
            summary.contains("event triaged to transfer (water-bureau) by sec-1"),
            "{summary}"
        );
        assert!(summary.contains("status: collected → triaged"), "{summary}");
    }

    #[test]
    fn a_new_event_is_found_wherever_the_merge_put_it() {
        let event = |by: &str| Event {
            kind: EventKind::Handling,
            at: 1,
            by: by.into(),
            device: None,
            note: None,
        };
        let old = [event("a"), event("b")];
        let new = [event("a"), event("c"), event("b"), event("b")];
        let found: Vec<&str> = added(&old, &new).iter().map(|e| e.by.as_str()).collect();
        assert_eq!(found, ["c", "b"]);
    }

    #[test]
    fn household_summaries_count_residents_and_never_name_them() {
        let mut doc = Automerge::new();
        let init = HouseholdInit {
            address: "Building 3, Unit 2, Room 401".into(),
            residents: vec![Resident {
                name: "Wang Fang".into(),
                phone: Some("13800000000".into()),
                id_number: None,
            }],
        };
        doc.transact(|tx| builders::init_household(tx, &common(), &init))
            .unwrap();
        let first = project(&doc, &config()).unwrap().record;
        let created = describe(None, &first);
        assert_eq!(
            created,
            "created household at Building 3, Unit 2, Room 401 with 1 residents"
        );
        let mut more = first.clone();
        if let Record::Household(household) = &mut more {
            household.residents.push(Resident {
                name: "Li Lei".into(),
                phone: None,
                id_number: None,
            });
        }
        let changed = describe(Some(&first), &more);
        assert_eq!(changed, "residents: 1 items → 2 items");
        assert!(!changed.contains("Li Lei") && !created.contains("Wang"));
    }

    #[test]
    fn an_order_records_when_its_assignee_took_it() {
        let mut doc = Automerge::new();
        let init = OrderInit {
            requester: "hh-1".into(),
            service_kind: "escort".into(),
            window_start: 1,
            window_end: 2,
            place: "clinic".into(),
        };
        doc.transact(|tx| builders::init_order(tx, &common(), &init))
            .unwrap();
        for (volunteer, at) in [("vol-1", 1_000), ("vol-2", 2_000)] {
            doc.transact(|tx| {
                builders::append_claim(
                    tx,
                    &Claim {
                        volunteer: volunteer.into(),
                        device: None,
                        at,
                    },
                )
            })
            .unwrap();
        }
        let open = project(&doc, &config()).unwrap().record;
        doc.transact(|tx| builders::assign_order(tx, "vol-2"))
            .unwrap();
        let assigned = project(&doc, &config()).unwrap().record;
        let Record::Order(order) = &assigned else {
            panic!("not an order")
        };
        assert_eq!(order.status, OrderStatus::Assigned);
        assert_eq!(order.taken_at, Some(2_000));
        let summary = describe(Some(&open), &assigned);
        assert!(summary.contains("assignee: none → vol-2"), "{summary}");
    }
}
