//! Typed constructors that write well-formed documents inside an Automerge transaction, for the
//! client SDK, the server's own changes and tests.
//!
//! Each `init_*` writes the common fields (with `kind` and `schema` set here, never by the
//! caller) and the fields of one kind into the ROOT of an empty document. The `append_*` / `add_*`
//! functions add to an existing document the way the write rules expect: at the end of the list,
//! never in the middle. Strings are written as scalar strings, which every client reads.
//!
//! Builders shape data; they must not check permissions (the server does, on receipt) and never
//! read a clock: every time is an argument.

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, ROOT, Value};
use serde::{Deserialize, Serialize};

use super::area::AreaPath;
use super::date::LocalDate;
use super::event::{Event, EventKind};
use super::keys;
use super::kind::Kind;
use super::order_flow::{Claim, OrderStatus};
use super::origin::Origin;
use super::schema::SCHEMA_VERSION;

/// Why a builder could not write.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Automerge refused an operation.
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
    /// The document lacks the list being appended to: it is not of the expected kind.
    #[error("the document has no `{field}` list; is it {expected}?")]
    NoList {
        field: &'static str,
        expected: &'static str,
    },
}

/// The common fields of a new document, except `kind` and `schema`, which the builder sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Common {
    /// The node of the area tree the document belongs to.
    pub area: AreaPath,
    /// The creating user.
    pub created_by: String,
    /// When, in milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// One resident of a household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resident {
    pub name: String,
    pub phone: Option<String>,
    pub id_number: Option<String>,
}

/// The fields of a new household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseholdInit {
    pub address: String,
    pub residents: Vec<Resident>,
}

/// The fields of a new listening-day visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitInit {
    /// The household document's ID.
    pub household: String,
    pub date: LocalDate,
    /// User IDs of the visitors.
    pub visitors: Vec<String>,
    /// What the residents said.
    pub heard: String,
    pub people_received: u32,
    /// IDs of request documents raised during the visit.
    pub requests: Vec<String>,
}

/// The fields of a new request. Its timeline starts with a `collected` event by the creator at
/// the creation time, on `device`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInit {
    pub origin: Origin,
    /// The household document's ID, if the request concerns one.
    pub household: Option<String>,
    /// The visit document's ID, if raised during a visit.
    pub visit: Option<String>,
    pub category: String,
    pub description: String,
    /// The device the request was collected on.
    pub device: Option<String>,
}

/// The fields of a new volunteer service order. It starts `open`, unclaimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInit {
    /// A household document ID or user ID, never a name.
    pub requester: String,
    pub service_kind: String,
    pub window_start: i64,
    pub window_end: i64,
    pub place: String,
}

/// One entry of a station log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StationEntry {
    pub service_kind: String,
    pub people_served: u32,
    /// The serving user's ID.
    pub served_by: String,
}

/// The fields of a new station log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationLogInit {
    /// The station's ID.
    pub station: String,
    pub date: LocalDate,
    pub entries: Vec<StationEntry>,
}

/// An event to append to a request's timeline: an [`Event`] as the device records it.
pub type EventInit = Event;

/// A claim to append to an order: a [`Claim`] as the volunteer's device records it.
pub type ClaimInit = Claim;

fn put_common<T: Transactable>(tx: &mut T, kind: Kind, common: &Common) -> Result<(), BuildError> {
    tx.put(ROOT, keys::KIND, kind.as_str())?;
    tx.put(ROOT, keys::SCHEMA, i64::from(SCHEMA_VERSION))?;
    tx.put(ROOT, keys::AREA, common.area.as_str())?;
    tx.put(ROOT, keys::CREATED_BY, common.created_by.as_str())?;
    tx.put(ROOT, keys::CREATED_AT, common.created_at)?;
    Ok(())
}

fn put_opt<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: Option<&String>,
) -> Result<(), BuildError> {
    if let Some(value) = value {
        tx.put(obj, key, value.as_str())?;
    }
    Ok(())
}

fn put_strings<T: Transactable>(
    tx: &mut T,
    key: &str,
    values: &[String],
) -> Result<(), BuildError> {
    let list = tx.put_object(ROOT, key, ObjType::List)?;
    for (index, value) in values.iter().enumerate() {
        tx.insert(&list, index, value.as_str())?;
    }
    Ok(())
}

/// The ROOT list at `field`, for appending.
fn root_list<T: Transactable>(
    tx: &T,
    field: &'static str,
    expected: &'static str,
) -> Result<ObjId, BuildError> {
    match tx.get(ROOT, field)? {
        Some((Value::Object(ObjType::List), id)) => Ok(id),
        _ => Err(BuildError::NoList { field, expected }),
    }
}

/// Writes a new household into the ROOT of an empty document.
pub fn init_household<T: Transactable>(
    tx: &mut T,
    common: &Common,
    init: &HouseholdInit,
) -> Result<(), BuildError> {
    put_common(tx, Kind::Household, common)?;
    tx.put(ROOT, keys::ADDRESS, init.address.as_str())?;
    let residents = tx.put_object(ROOT, keys::RESIDENTS, ObjType::List)?;
    for (index, resident) in init.residents.iter().enumerate() {
        let map = tx.insert_object(&residents, index, ObjType::Map)?;
        tx.put(&map, keys::NAME, resident.name.as_str())?;
        put_opt(tx, &map, keys::PHONE, resident.phone.as_ref())?;
        put_opt(tx, &map, keys::ID_NUMBER, resident.id_number.as_ref())?;
    }
    Ok(())
}

/// Writes a new listening-day visit into the ROOT of an empty document.
pub fn init_visit<T: Transactable>(
    tx: &mut T,
    common: &Common,
    init: &VisitInit,
) -> Result<(), BuildError> {
    put_common(tx, Kind::Visit, common)?;
    tx.put(ROOT, keys::HOUSEHOLD, init.household.as_str())?;
    tx.put(ROOT, keys::DATE, init.date.to_string())?;
    put_strings(tx, keys::VISITORS, &init.visitors)?;
    tx.put(ROOT, keys::HEARD, init.heard.as_str())?;
    tx.put(ROOT, keys::PEOPLE_RECEIVED, i64::from(init.people_received))?;
    put_strings(tx, keys::REQUESTS, &init.requests)?;
    Ok(())
}

/// Writes a new request into the ROOT of an empty document, with its `collected` event.
pub fn init_request<T: Transactable>(
    tx: &mut T,
    common: &Common,
    init: &RequestInit,
) -> Result<(), BuildError> {
    put_common(tx, Kind::Request, common)?;
    tx.put(ROOT, keys::ORIGIN, init.origin.as_str())?;
    put_opt(tx, &ROOT, keys::HOUSEHOLD, init.household.as_ref())?;
    put_opt(tx, &ROOT, keys::VISIT, init.visit.as_ref())?;
    tx.put(ROOT, keys::CATEGORY, init.category.as_str())?;
    tx.put(ROOT, keys::DESCRIPTION, init.description.as_str())?;
    tx.put_object(ROOT, keys::TIMELINE, ObjType::List)?;
    append_request_event(
        tx,
        &Event {
            kind: EventKind::Collected,
            at: common.created_at,
            by: common.created_by.clone(),
            device: init.device.clone(),
            note: None,
        },
    )
}

/// Writes a new order into the ROOT of an empty document: `open`, no claims, no assignee.
pub fn init_order<T: Transactable>(
    tx: &mut T,
    common: &Common,
    init: &OrderInit,
) -> Result<(), BuildError> {
    put_common(tx, Kind::Order, common)?;
    tx.put(ROOT, keys::REQUESTER, init.requester.as_str())?;
    tx.put(ROOT, keys::SERVICE_KIND, init.service_kind.as_str())?;
    tx.put(ROOT, keys::WINDOW_START, init.window_start)?;
    tx.put(ROOT, keys::WINDOW_END, init.window_end)?;
    tx.put(ROOT, keys::PLACE, init.place.as_str())?;
    tx.put_object(ROOT, keys::CLAIMS, ObjType::List)?;
    tx.put(ROOT, keys::STATUS, OrderStatus::Open.as_str())?;
    Ok(())
}

/// Writes a new station log into the ROOT of an empty document.
pub fn init_station_log<T: Transactable>(
    tx: &mut T,
    common: &Common,
    init: &StationLogInit,
) -> Result<(), BuildError> {
    put_common(tx, Kind::StationLog, common)?;
    tx.put(ROOT, keys::STATION, init.station.as_str())?;
    tx.put(ROOT, keys::DATE, init.date.to_string())?;
    tx.put_object(ROOT, keys::ENTRIES, ObjType::List)?;
    for entry in &init.entries {
        add_station_entry(tx, entry)?;
    }
    Ok(())
}

/// Appends `event` to the end of a request's timeline.
pub fn append_request_event<T: Transactable>(
    tx: &mut T,
    event: &EventInit,
) -> Result<(), BuildError> {
    let timeline = root_list(tx, keys::TIMELINE, "a request")?;
    let map = tx.insert_object(&timeline, tx.length(&timeline), ObjType::Map)?;
    tx.put(&map, keys::TYPE, event.event_type().as_str())?;
    tx.put(&map, keys::AT, event.at)?;
    tx.put(&map, keys::BY, event.by.as_str())?;
    put_opt(tx, &map, keys::DEVICE, event.device.as_ref())?;
    put_opt(tx, &map, keys::NOTE, event.note.as_ref())?;
    match &event.kind {
        EventKind::Triaged { track, department } => {
            tx.put(&map, keys::TRACK, track.as_str())?;
            put_opt(tx, &map, keys::DEPARTMENT, department.as_ref())?;
        }
        EventKind::CalledBack { satisfaction } => {
            tx.put(&map, keys::SATISFACTION, satisfaction.as_str())?;
        }
        EventKind::Collected | EventKind::Handling | EventKind::Resolved | EventKind::Closed => {}
    }
    Ok(())
}

/// Appends `claim` to the end of an order's claims.
pub fn append_claim<T: Transactable>(tx: &mut T, claim: &ClaimInit) -> Result<(), BuildError> {
    let claims = root_list(tx, keys::CLAIMS, "an order")?;
    let map = tx.insert_object(&claims, tx.length(&claims), ObjType::Map)?;
    tx.put(&map, keys::VOLUNTEER, claim.volunteer.as_str())?;
    put_opt(tx, &map, keys::DEVICE, claim.device.as_ref())?;
    tx.put(&map, keys::AT, claim.at)?;
    Ok(())
}

/// Appends `entry` to the end of a station log's entries.
pub fn add_station_entry<T: Transactable>(
    tx: &mut T,
    entry: &StationEntry,
) -> Result<(), BuildError> {
    let entries = root_list(tx, keys::ENTRIES, "a station log")?;
    let map = tx.insert_object(&entries, tx.length(&entries), ObjType::Map)?;
    tx.put(&map, keys::SERVICE_KIND, entry.service_kind.as_str())?;
    tx.put(&map, keys::PEOPLE_SERVED, i64::from(entry.people_served))?;
    tx.put(&map, keys::SERVED_BY, entry.served_by.as_str())?;
    Ok(())
}

/// Appends a request document's ID to a visit's `requests`.
pub fn link_visit_request<T: Transactable>(tx: &mut T, request: &str) -> Result<(), BuildError> {
    let requests = root_list(tx, keys::REQUESTS, "a visit")?;
    tx.insert(&requests, tx.length(&requests), request)?;
    Ok(())
}

/// The server's arbitration result: writes `assignee` and sets `status` to `assigned`, in one
/// change so no replica ever sees one without the other.
pub fn assign_order<T: Transactable>(tx: &mut T, volunteer: &str) -> Result<(), BuildError> {
    tx.put(ROOT, keys::ASSIGNEE, volunteer)?;
    tx.put(ROOT, keys::STATUS, OrderStatus::Assigned.as_str())?;
    Ok(())
}

/// Sets an order's `status` (`done` by the assignee, `cancelled` by whoever placed it).
pub fn set_order_status<T: Transactable>(
    tx: &mut T,
    status: OrderStatus,
) -> Result<(), BuildError> {
    tx.put(ROOT, keys::STATUS, status.as_str())?;
    Ok(())
}

#[cfg(test)]
mod tests;
