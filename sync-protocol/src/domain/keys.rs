//! The wire names of document fields, as the JavaScript and Rust clients spell them.
//!
//! A field name is written by builders and read by the schema, the flows and the write rules; a
//! typo in one of them would be a silent schema fork. Naming each once here makes a typo a
//! compile error. This module holds names only, never rules about them.

// Common ROOT fields, fixed at creation.
pub const KIND: &str = "kind";
pub const SCHEMA: &str = "schema";
pub const AREA: &str = "area";
pub const CREATED_BY: &str = "createdBy";
pub const CREATED_AT: &str = "createdAt";

/// The ROOT fields every document has, none of which may change after creation.
pub const COMMON: [&str; 5] = [KIND, SCHEMA, AREA, CREATED_BY, CREATED_AT];

/// Keys that hold residents' personal data in households. Every other kind's schema names none
/// of them, so they are refused there like any unknown key; a refusal names them as personal
/// data.
pub const PERSONAL: [&str; 4] = [NAME, PHONE, ID_NUMBER, RESIDENTS];

// household
pub const ADDRESS: &str = "address";
pub const RESIDENTS: &str = "residents";
pub const NAME: &str = "name";
pub const PHONE: &str = "phone";
pub const ID_NUMBER: &str = "idNumber";

// visit
pub const HOUSEHOLD: &str = "household";
pub const DATE: &str = "date";
pub const VISITORS: &str = "visitors";
pub const HEARD: &str = "heard";
pub const PEOPLE_RECEIVED: &str = "peopleReceived";
pub const REQUESTS: &str = "requests";

// request
pub const ORIGIN: &str = "origin";
pub const VISIT: &str = "visit";
pub const CATEGORY: &str = "category";
pub const DESCRIPTION: &str = "description";
pub const TIMELINE: &str = "timeline";

// request timeline event
pub const TYPE: &str = "type";
pub const AT: &str = "at";
pub const BY: &str = "by";
pub const DEVICE: &str = "device";
pub const NOTE: &str = "note";
pub const TRACK: &str = "track";
pub const DEPARTMENT: &str = "department";
pub const SATISFACTION: &str = "satisfaction";

// order
pub const REQUESTER: &str = "requester";
pub const SERVICE_KIND: &str = "serviceKind";
pub const WINDOW_START: &str = "windowStart";
pub const WINDOW_END: &str = "windowEnd";
pub const PLACE: &str = "place";
pub const CLAIMS: &str = "claims";
pub const VOLUNTEER: &str = "volunteer";
pub const ASSIGNEE: &str = "assignee";
pub const STATUS: &str = "status";

// station_log
pub const STATION: &str = "station";
pub const ENTRIES: &str = "entries";
pub const PEOPLE_SERVED: &str = "peopleServed";
pub const SERVED_BY: &str = "servedBy";
