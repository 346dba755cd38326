//! `/v1/households`, `/v1/visits`, `/v1/requests`, `/v1/orders`, `/v1/stations/summary`,
//! `/v1/listening-days`, `/v1/stats`: the supervisor read model, as JSON or CSV.
//!
//! Every query is scoped to the caller: `area` (default: the caller's own) must lie within the
//! caller's area, and each list needs a role that may read its kind (`domain::access`). A
//! department handler sees only the requests transferred to their department. Residents' names,
//! phone numbers and ID numbers are shown only to roles that may read household documents;
//! everyone else gets the household with `residents: null` and `redacted: true`.
//!
//! Lists are paginated by keyset: `limit` (at most 1,000) and `after`, the `next` token of the
//! previous page. A page also stops short of `limits.max_page_bytes` of JSON (at least one row),
//! with a `next` token. Figures and summaries are aggregates, not paged. `format=csv` returns the same rows as CSV (nested lists as JSON text).
//! Times are milliseconds since the Unix epoch; dates are local `YYYY-MM-DD`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lianxin_protocol::domain::{AreaPath, Kind, LocalDate, Role, access};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authenticated, Identity};
use crate::error::ApiError;
use crate::routes::admin::{area_within, valid_area_path};
use crate::state::AppState;
use crate::storage::read_model::{
    self, EventRow, OrderFilter, OrderGrouping, Period, RequestFilter, Scope, VisitFilter,
};

/// The most rows one page may hold.
const MAX_LIMIT: i64 = 1_000;
const DEFAULT_LIMIT: i64 = 100;

/// Output format of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Json,
    Csv,
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; absent on the last page. A page holds fewer than
    /// `limit` rows when it reached the server's byte budget (`limits.max_page_bytes`); `next`
    /// is then present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Parameters every list takes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Area subtree to list (default: the caller's area).
    pub area: Option<String>,
    /// Rows per page, 1 to 1,000 (default 100).
    pub limit: Option<i64>,
    /// The `next` token of the previous page.
    pub after: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<Format>,
}

/// A date range (local dates, inclusive).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DateRange {
    /// First day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD`.
    pub to: Option<String>,
}

impl DateRange {
    /// The range's days, checked, as `YYYY-MM-DD` (how the tables store dates).
    fn days(&self) -> Result<(Option<String>, Option<String>), ApiError> {
        let day = |value: &Option<String>, name| {
            date(value.as_deref(), name).map(|d| d.map(|d| d.to_string()))
        };
        Ok((day(&self.from, "from")?, day(&self.to, "to")?))
    }
}

/// The caller's view of the read model: area, role, zone.
struct Viewer<'a> {
    identity: &'a Identity,
    area: String,
}

impl<'a> Viewer<'a> {
    /// The caller, looking at `requested` (default: their own area), which must be theirs.
    fn new(identity: &'a Identity, requested: Option<&str>) -> Result<Self, ApiError> {
        let own = identity.user.area.as_str();
        let area = requested.unwrap_or(own).to_owned();
        if !valid_area_path(&area) {
            return Err(ApiError::Invalid(format!("{area:?} is not an area path")));
        }
        if !area_within(own, &area) {
            return Err(ApiError::Forbidden(format!(
                "{area} is outside your area {own}"
            )));
        }
        Ok(Self { identity, area })
    }

    fn role(&self) -> Role {
        self.identity.actor.role
    }

    /// Fails unless the caller's role may read one of `kinds`.
    fn require(&self, kinds: &[Kind]) -> Result<(), ApiError> {
        if kinds
            .iter()
            .any(|kind| access::may_read(self.role(), *kind))
        {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the role {} may not read {}",
                self.role(),
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    fn scope(&self, params: &ListParams) -> Result<Scope, ApiError> {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::Invalid(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let after = match &params.after {
            None => None,
            Some(token) => Some(
                token
                    .split_once(':')
                    .and_then(|(at, id)| Some((at.parse().ok()?, id.to_owned())))
                    .ok_or_else(|| ApiError::Invalid(format!("{token:?} is not a page token")))?,
            ),
        };
        Ok(Scope {
            area: self.area.clone(),
            after,
            limit,
        })
    }
}

/// A date parameter, checked.
pub(crate) fn date(value: Option<&str>, name: &str) -> Result<Option<LocalDate>, ApiError> {
    value
        .map(|text| {
            text.parse::<LocalDate>()
                .map_err(|e| ApiError::Invalid(format!("{name}: {e}")))
        })
        .transpose()
}

/// The byte budget of one page of a list.
pub(crate) fn page_bytes(state: &AppState) -> usize {
    state.settings.limits.max_page_bytes
}

/// The local zone of the deployment.
fn offset(state: &AppState) -> i32 {
    state.settings.documents.utc_offset_secs
}

/// Millisecond bounds of a date range: from the start of `from` to the end of `to`.
fn ms_range(state: &AppState, range: &DateRange) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let zone = offset(state);
    let from = date(range.from.as_deref(), "from")?.map(|d| d.start_ms(zone));
    let to = date(range.to.as_deref(), "to")?.map(|d| d.end_ms(zone));
    Ok((from, to))
}

/// Bytes `value` takes as JSON, counted without building the text.
pub(crate) fn json_len<T: Serialize>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Keeps the longest run of `items` from the first whose JSON (with separators) fits in
/// `budget` bytes, but always the first item, however large; returns whether any were left
/// out (the page then needs a `next` token).
pub(crate) fn fit<T: Serialize>(items: &mut Vec<T>, budget: usize) -> bool {
    let mut total = 0usize;
    for (i, item) in items.iter().enumerate() {
        total = total.saturating_add(json_len(item) + 1);
        if total > budget && i > 0 {
            items.truncate(i);
            return true;
        }
    }
    false
}

/// The page of `items` as JSON or CSV; `key` gives the page token of an item. A page is cut
/// short at `budget` bytes of JSON (see [`fit`]), and then carries a `next` token too.
fn respond<T: Serialize>(
    mut items: Vec<T>,
    limit: i64,
    budget: usize,
    format: Option<Format>,
    key: impl Fn(&T) -> String,
) -> Response {
    let cut = fit(&mut items, budget);
    let next = (cut || items.len() as i64 == limit)
        .then(|| items.last().map(&key))
        .flatten();
    match format.unwrap_or_default() {
        Format::Json => Json(Page { items, next }).into_response(),
        Format::Csv => csv(&items, next),
    }
}

/// Rows as CSV: one column per field (in the JSON's order), nested values as JSON text. The
/// next page's token, if any, is in the `x-next-page` header.
pub(crate) fn csv<T: Serialize>(items: &[T], next: Option<String>) -> Response {
    let rows: Vec<serde_json::Map<String, serde_json::Value>> = items
        .iter()
        .filter_map(|item| match serde_json::to_value(item) {
            Ok(serde_json::Value::Object(map)) => Some(map),
            _ => None,
        })
        .collect();
    let mut out = String::new();
    if let Some(first) = rows.first() {
        let header: Vec<String> = first.keys().map(|k| csv_field(k)).collect();
        out.push_str(&header.join(","));
        out.push_str("\r\n");
        for row in &rows {
            let fields: Vec<String> = row
                .values()
                .map(|value| match value {
                    serde_json::Value::Null => String::new(),
                    serde_json::Value::String(s) => csv_field(s),
                    other => csv_field(&other.to_string()),
                })
                .collect();
            out.push_str(&fields.join(","));
            out.push_str("\r\n");
        }
    }
    let mut response = ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response();
    if let Some(next) = next
        && let Ok(value) = next.parse()
    {
        response.headers_mut().insert("x-next-page", value);
    }
    response
}

/// First characters that make a spreadsheet read a cell as a formula (or, for TAB and CR,
/// that some of them strip before looking again): the ASCII `=`, `+`, `-` and `@`, and the
/// fullwidth forms an IME types (`＝`, `＋`, `－`, `＠`), which some spreadsheets fold to ASCII.
const FORMULA_STARTS: [char; 10] = [
    '=', '+', '-', '@', '\t', '\r', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
];

/// One CSV field, quoted when it must be. A cell starting with one of [`FORMULA_STARTS`] is
/// prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(FORMULA_STARTS) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn ids(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn rate(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

// ---------------------------------------------------------------------------------------------
// Households

/// A resident of a household (personal data).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResidentItem {
    pub name: String,
    pub phone: Option<String>,
    pub id_number: Option<String>,
}

/// A household; `residents` is `null` and `redacted` true for roles that may not see residents.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HouseholdItem {
    pub document_id: String,
    pub area: String,
    pub created_by: String,
    pub created_at: i64,
    pub address: String,
    pub resident_count: i32,
    pub residents: Option<Vec<ResidentItem>>,
    pub redacted: bool,
}

/// Households of an area (for coverage); residents only for roles that may read households.
#[utoipa::path(get, path = "/v1/households", params(ListParams), tag = "read model",
    security(("bearer" = [])),
    responses((status = 200, description = "A page of households", body = Page<HouseholdItem>),
              (status = 200, description = "The same rows as CSV", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area or role")))]
pub async fn households(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    viewer.require(&[Kind::Household, Kind::Visit])?;
    let redact = !access::may_read(viewer.role(), Kind::Household);
    let scope = viewer.scope(&params)?;
    let rows = state.store.list_households(&scope).await?;
    let items: Vec<HouseholdItem> = rows
        .into_iter()
        .map(|row| HouseholdItem {
            residents: (!redact).then(|| serde_json::from_str(&row.residents).unwrap_or_default()),
            redacted: redact,
            document_id: row.document_id,
            area: row.area,
            created_by: row.created_by,
            created_at: row.created_at,
            address: row.address,
            resident_count: row.resident_count,
        })
        .collect();
    Ok(respond(
        items,
        scope.limit,
        page_bytes(&state),
        params.format,
        |h| format!("{}:{}", h.created_at, h.document_id),
    ))
}

// ---------------------------------------------------------------------------------------------
// Visits

/// A listening-day household visit.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VisitItem {
    pub document_id: String,
    pub area: String,
    pub created_by: String,
    pub created_at: i64,
    pub household: String,
    pub date: String,
    pub visitors: Vec<String>,
    pub heard: String,
    pub people_received: i64,
    pub requests: Vec<String>,
    pub on_listening_day: bool,
}

/// Filters of the visit list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VisitParams {
    /// Only visits of this household document.
    pub household: Option<String>,
}

/// Visits of an area, by visit date.
#[utoipa::path(get, path = "/v1/visits", params(ListParams, DateRange, VisitParams),
    tag = "read model", security(("bearer" = [])),
    responses((status = 200, description = "A page of visits", body = Page<VisitItem>),
              (status = 200, description = "The same rows as CSV", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area or role")))]
pub async fn visits(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
    Query(range): Query<DateRange>,
    Query(visit): Query<VisitParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    viewer.require(&[Kind::Visit])?;
    let scope = viewer.scope(&params)?;
    let (from, to) = range.days()?;
    let filter = VisitFilter {
        from,
        to,
        household: visit.household,
    };
    let rows = state.store.list_visits(&scope, &filter).await?;
    let items: Vec<VisitItem> = rows
        .into_iter()
        .map(|row| VisitItem {
            visitors: ids(&row.visitors),
            requests: ids(&row.requests),
            document_id: row.document_id,
            area: row.area,
            created_by: row.created_by,
            created_at: row.created_at,
            household: row.household,
            date: row.visit_date,
            heard: row.heard,
            people_received: row.people_received,
            on_listening_day: row.on_listening_day,
        })
        .collect();
    Ok(respond(
        items,
        scope.limit,
        page_bytes(&state),
        params.format,
        |v| format!("{}:{}", v.created_at, v.document_id),
    ))
}

// ---------------------------------------------------------------------------------------------
// Requests

/// A request, where its loop stands, and its timeline.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestItem {
    pub document_id: String,
    pub area: String,
    pub created_by: String,
    pub created_at: i64,
    pub origin: String,
    pub household: Option<String>,
    pub visit: Option<String>,
    pub category: String,
    pub description: String,
    pub status: String,
    pub track: Option<String>,
    pub department: Option<String>,
    pub satisfaction: Option<String>,
    pub collected_at: Option<i64>,
    pub triaged_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub closed_at: Option<i64>,
    /// The last millisecond the request is on time, once triaged.
    pub due_at: Option<i64>,
    /// Past its due time and not resolved, now.
    pub overdue: bool,
    pub timeline: Vec<EventRow>,
}

/// Filters of the request list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestParams {
    /// `collected`, `triaged`, `handling`, `resolved`, `called_back` or `closed`.
    pub status: Option<String>,
    /// `immediate`, `transfer` or `supervised`.
    pub track: Option<String>,
    pub category: Option<String>,
    pub department: Option<String>,
    /// `visit`, `grid`, `hotline`, `station` or `other`.
    pub origin: Option<String>,
    /// Only requests whose work is not done.
    pub open: Option<bool>,
    /// Only requests past their due time now.
    pub overdue: Option<bool>,
}

/// Requests of an area (collected in the date range), with their timelines.
#[utoipa::path(get, path = "/v1/requests", params(ListParams, DateRange, RequestParams),
    tag = "read model", security(("bearer" = [])),
    responses((status = 200, description = "A page of requests", body = Page<RequestItem>),
              (status = 200, description = "The same rows as CSV", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area or role")))]
pub async fn requests(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
    Query(range): Query<DateRange>,
    Query(request): Query<RequestParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    viewer.require(&[Kind::Request])?;
    let scope = viewer.scope(&params)?;
    let (collected_from, collected_to) = ms_range(&state, &range)?;
    let mut filter = RequestFilter {
        status: request.status,
        track: request.track,
        category: request.category,
        department: request.department,
        origin: request.origin,
        open: request.open.unwrap_or(false),
        overdue: request.overdue.unwrap_or(false),
        collected_from,
        collected_to,
        now: read_model::now_ms(),
    };
    if viewer.role() == Role::DepartmentHandler {
        // Only what is transferred to their own department.
        let Some(department) = identity.actor.department.clone() else {
            return Err(ApiError::Forbidden(
                "a department handler without a department sees no requests".into(),
            ));
        };
        if filter.department.as_ref().is_some_and(|d| *d != department) {
            return Err(ApiError::Forbidden(format!(
                "you see only requests transferred to {department}"
            )));
        }
        filter.department = Some(department);
        filter.track = Some("transfer".into());
    }
    let rows = state.store.list_requests(&scope, &filter).await?;
    let docs: Vec<String> = rows.iter().map(|r| r.document_id.clone()).collect();
    let mut events = state.store.request_events(&docs).await?;
    let items: Vec<RequestItem> = rows
        .into_iter()
        .map(|row| {
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut events)
                .into_iter()
                .partition(|e| e.document_id == row.document_id);
            events = rest;
            RequestItem {
                document_id: row.document_id,
                area: row.area,
                created_by: row.created_by,
                created_at: row.created_at,
                origin: row.origin,
                household: row.household,
                visit: row.visit,
                category: row.category,
                description: row.description,
                status: row.status,
                track: row.track,
                department: row.department,
                satisfaction: row.satisfaction,
                collected_at: row.collected_at,
                triaged_at: row.triaged_at,
                resolved_at: row.resolved_at,
                closed_at: row.closed_at,
                due_at: row.due_at,
                overdue: row.overdue,
                timeline: mine,
            }
        })
        .collect();
    Ok(respond(
        items,
        scope.limit,
        page_bytes(&state),
        params.format,
        |r| format!("{}:{}", r.created_at, r.document_id),
    ))
}

// ---------------------------------------------------------------------------------------------
// Orders

/// A volunteer service order.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub document_id: String,
    pub area: String,
    pub created_by: String,
    /// When it was placed.
    pub created_at: i64,
    pub requester: String,
    pub service_kind: String,
    pub window_start: i64,
    pub window_end: i64,
    pub place: String,
    pub status: String,
    pub assignee: Option<String>,
    pub claim_count: i32,
    /// When the assignee took it (their claim's time).
    pub taken_at: Option<i64>,
    /// Time from placing to taking, in ms.
    pub taken_after_ms: Option<i64>,
}

/// Filters of the order list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderParams {
    /// `open`, `assigned`, `done` or `cancelled`.
    pub status: Option<String>,
    pub service_kind: Option<String>,
    /// The assigned volunteer's user ID.
    pub volunteer: Option<String>,
}

fn order_filter(
    state: &AppState,
    range: &DateRange,
    order: OrderParams,
) -> Result<OrderFilter, ApiError> {
    let (placed_from, placed_to) = ms_range(state, range)?;
    Ok(OrderFilter {
        status: order.status,
        service_kind: order.service_kind,
        volunteer: order.volunteer,
        placed_from,
        placed_to,
    })
}

/// Orders of an area (placed in the date range).
#[utoipa::path(get, path = "/v1/orders", params(ListParams, DateRange, OrderParams),
    tag = "read model", security(("bearer" = [])),
    responses((status = 200, description = "A page of orders", body = Page<OrderItem>),
              (status = 200, description = "The same rows as CSV", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area or role")))]
pub async fn orders(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
    Query(range): Query<DateRange>,
    Query(order): Query<OrderParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    viewer.require(&[Kind::Order])?;
    let scope = viewer.scope(&params)?;
    let filter = order_filter(&state, &range, order)?;
    let rows = state.store.list_orders(&scope, &filter).await?;
    let items: Vec<OrderItem> = rows
        .into_iter()
        .map(|row| OrderItem {
            taken_after_ms: row.taken_at.map(|at| at - row.created_at),
            document_id: row.document_id,
            area: row.area,
            created_by: row.created_by,
            created_at: row.created_at,
            requester: row.requester,
            service_kind: row.service_kind,
            window_start: row.window_start,
            window_end: row.window_end,
            place: row.place,
            status: row.status,
            assignee: row.assignee,
            claim_count: row.claim_count,
            taken_at: row.taken_at,
        })
        .collect();
    Ok(respond(
        items,
        scope.limit,
        page_bytes(&state),
        params.format,
        |o| format!("{}:{}", o.created_at, o.document_id),
    ))
}

/// Orders counted by one field.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderGroupItem {
    /// The status, service kind or volunteer (none: not taken).
    pub key: Option<String>,
    pub orders: i64,
    pub taken: i64,
    pub done: i64,
    /// Mean time from placing to taking over the taken orders, in ms.
    pub mean_ms_to_take: Option<i64>,
}

/// How to group the order summary.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderGroupParams {
    /// `status`, `service_kind` or `volunteer`.
    pub by: OrderGrouping,
}

/// Orders of an area counted by status, service kind or volunteer, with time to take.
#[utoipa::path(get, path = "/v1/orders/summary",
    params(ListParams, DateRange, OrderParams, OrderGroupParams),
    tag = "read model", security(("bearer" = [])),
    responses((status = 200, description = "Groups", body = Page<OrderGroupItem>),
              (status = 200, description = "The same rows as CSV", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area or role")))]
pub async fn order_summary(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
    Query(range): Query<DateRange>,
    Query(order): Query<OrderParams>,
    Query(group): Query<OrderGroupParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    viewer.require(&[Kind::Order])?;
    let filter = order_filter(&state, &range, order)?;
    let rows = state
        .store
        .order_groups(&viewer.area, &filter, group.by)
        .await?;
    let items: Vec<OrderGroupItem> = rows
        .into_iter()
        .map(|row| OrderGroupItem {
            mean_ms_to_take: (row.taken > 0).then(|| row.take_ms_total / row.taken),
            key: row.key,
            orders: row.orders,
            taken: row.taken,
            done: row.done,
        })
        .collect();
    Ok(respond(items, i64::MAX, usize::MAX, params.format, |_| {
        String::new()
    }))
}

// ---------------------------------------------------------------------------------------------
// Stations

/// Services of one station, of one kind, in one period.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StationSummaryItem {
    pub station: String,
    pub service_kind: String,
    /// `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    pub services: i64,
    pub people_served: i64,
}

/// Filters of the station summary.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StationParams {
    pub station: Option<String>,
    /// `day` (default) or `month`.
    pub period: Option<Period>,
}

/// Station services aggregated by station, service kind and period.
#[utoipa::path(get, path = "/v1/stations/summary", params(ListParams, DateRange, StationParams),
    tag = "read model", security(("bearer" = [])),
    responses((status = 200, description = "Aggregates", body = Page<StationSummaryItem>),
              (status = 200, description = "The same rows as CSV", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area or role")))]
pub async fn station_summary(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
    Query(range): Query<DateRange>,
    Query(station): Query<StationParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    viewer.require(&[Kind::StationLog])?;
    let (from, to) = range.days()?;
    let rows = state
        .store
        .station_groups(
            &viewer.area,
            from.as_deref(),
            to.as_deref(),
            station.station.as_deref(),
            station.period.unwrap_or(Period::Day),
        )
        .await?;
    let items: Vec<StationSummaryItem> = rows
        .into_iter()
        .map(|row| StationSummaryItem {
            station: row.station,
            service_kind: row.service_kind,
            period: row.period,
            services: row.services,
            people_served: row.people_served,
        })
        .collect();
    Ok(respond(items, i64::MAX, usize::MAX, params.format, |_| {
        String::new()
    }))
}

// ---------------------------------------------------------------------------------------------
// Listening days

/// Visits of one day in one area node.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListeningDayItem {
    pub date: String,
    pub area: String,
    pub listening_day: bool,
    pub visits: i64,
    pub households_visited: i64,
    /// Households in the area node.
    pub households: i64,
    /// Households visited / households, when there are households.
    pub coverage: Option<f64>,
    pub people_received: i64,
}

/// How to split figures by area.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SplitParams {
    /// `area` (default): one row for the area; `children`: one per child node that has data.
    pub by: Option<Split>,
}

/// How to split figures by area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    #[default]
    Area,
    Children,
}

/// The node of `doc_area` that a row counts under: `area` itself, or the child of `area` that
/// contains `doc_area` (a document filed at `area` itself counts under `area`).
fn node_of(area: &str, doc_area: &str, split: Split) -> String {
    if split == Split::Area || doc_area == area {
        return area.to_owned();
    }
    let rest = if area == "/" {
        &doc_area[1..]
    } else {
        &doc_area[area.len() + 1..]
    };
    let child = rest.split('/').next().unwrap_or(rest);
    if area == "/" {
        format!("/{child}")
    } else {
        format!("{area}/{child}")
    }
}

/// Listening-day visits per day and area node, with coverage of the households in the node.
#[utoipa::path(get, path = "/v1/listening-days", params(ListParams, DateRange, SplitParams),
    tag = "read model", security(("bearer" = [])),
    responses((status = 200, description = "Per day and area", body = Page<ListeningDayItem>),
              (status = 200, description = "The same rows as CSV", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area or role")))]
pub async fn listening_days(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
    Query(range): Query<DateRange>,
    Query(split): Query<SplitParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    viewer.require(&[Kind::Visit])?;
    let split = split.by.unwrap_or_default();
    let (from, to) = range.days()?;
    let days = state
        .store
        .visit_days(&viewer.area, from.as_deref(), to.as_deref())
        .await?;
    let mut households = std::collections::BTreeMap::<String, i64>::new();
    for row in state.store.household_counts(&viewer.area).await? {
        *households
            .entry(node_of(&viewer.area, &row.area, split))
            .or_default() += row.count;
    }
    let listening = state.settings.documents.projection().listening_days;
    let mut rows = std::collections::BTreeMap::<(String, String), ListeningDayItem>::new();
    for day in days {
        let node = node_of(&viewer.area, &day.area, split);
        let item = rows
            .entry((day.visit_date.clone(), node.clone()))
            .or_insert_with(|| ListeningDayItem {
                listening_day: day
                    .visit_date
                    .parse::<LocalDate>()
                    .is_ok_and(|d| listening.includes(d)),
                date: day.visit_date.clone(),
                households: households.get(&node).copied().unwrap_or(0),
                area: node,
                visits: 0,
                households_visited: 0,
                coverage: None,
                people_received: 0,
            });
        item.visits += day.visits;
        // A household is filed under one area, so distinct counts add up across areas.
        item.households_visited += day.households_visited;
        item.people_received += day.people_received;
        item.coverage = rate(item.households_visited, item.households);
    }
    let items: Vec<ListeningDayItem> = rows.into_values().collect();
    Ok(respond(items, i64::MAX, usize::MAX, params.format, |_| {
        String::new()
    }))
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// The figures supervisors publish, for one area node over one period.
///
/// Each group of figures comes from one kind of document, and is given only to roles that may
/// read that kind across the area (`domain::access`); for other roles it is `null`. Request
/// figures need a role that reads every request of the area (a department handler reads only
/// those transferred to them, so gets none here); visit and household figures need visits;
/// station figures need station logs; order figures need orders.
#[derive(Debug, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AreaStats {
    pub area: String,
    /// Requests collected in the period.
    pub requests_collected: Option<i64>,
    /// Of those, how many someone has worked on (handling or beyond).
    pub requests_handled: Option<i64>,
    /// Of those, how many are resolved (resolved, called back or closed).
    pub requests_resolved: Option<i64>,
    /// handled / collected.
    pub handling_rate: Option<f64>,
    /// resolved / collected.
    pub resolution_rate: Option<f64>,
    /// Of those, how many are past their due time and not resolved, now.
    pub overdue: Option<i64>,
    /// Of those, how many residents were called back.
    pub called_back: Option<i64>,
    /// …and said they were satisfied.
    pub satisfied: Option<i64>,
    /// satisfied / called back.
    pub satisfaction_rate: Option<f64>,
    /// Households in the area (now).
    pub households: Option<i64>,
    /// Distinct households visited in the period.
    pub households_visited: Option<i64>,
    /// households visited / households.
    pub coverage: Option<f64>,
    pub visits: Option<i64>,
    pub people_received: Option<i64>,
    /// Station services logged in the period, and the people they served.
    pub station_services: Option<i64>,
    pub beneficiaries: Option<i64>,
    /// Orders placed in the period; of those taken by a volunteer and done.
    pub orders_placed: Option<i64>,
    pub orders_taken: Option<i64>,
    pub orders_done: Option<i64>,
    /// Mean time from placing to taking, over the taken orders, in ms.
    pub mean_ms_to_take: Option<i64>,
}

/// Which groups of figures of [`AreaStats`] a role is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FigureKinds {
    requests: bool,
    visits: bool,
    stations: bool,
    orders: bool,
}

impl FigureKinds {
    /// The groups whose kind `role` reads across its area. Request figures count every request
    /// of the area, so a department handler (who reads only transferred ones) gets none.
    fn of(role: Role) -> Self {
        Self {
            requests: access::may_read(role, Kind::Request) && role != Role::DepartmentHandler,
            visits: access::may_read(role, Kind::Visit),
            stations: access::may_read(role, Kind::StationLog),
            orders: access::may_read(role, Kind::Order),
        }
    }

    fn any(self) -> bool {
        self.requests || self.visits || self.stations || self.orders
    }
}

/// The period of the statistics (both required).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsPeriod {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, `YYYY-MM-DD`.
    pub to: String,
}

/// Statistics of the area (or of each child node) over a period.
///
/// Only the figures of kinds the caller's role may read are given; the others are `null`:
/// request figures for roles that read every request of the area (not department handlers),
/// visit, household and coverage figures for roles that read visits, station figures for
/// roles that read station logs, order figures for roles that read orders. A role that reads
/// none of them gets 403.
#[utoipa::path(get, path = "/v1/stats", params(ListParams, StatsPeriod, SplitParams),
    tag = "read model", security(("bearer" = [])),
    responses((status = 200, description = "One row per area node; figures the caller's role may not read are null", body = Page<AreaStats>),
              (status = 200, description = "The same rows as CSV (empty cells for figures the role may not read)", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area, or a role that reads none of the figures")))]
pub async fn stats(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<ListParams>,
    Query(period): Query<StatsPeriod>,
    Query(split): Query<SplitParams>,
) -> Result<Response, ApiError> {
    let viewer = Viewer::new(&identity, params.area.as_deref())?;
    let shown = FigureKinds::of(viewer.role());
    if !shown.any() {
        return Err(ApiError::Forbidden(format!(
            "the role {} reads none of the figures",
            viewer.role()
        )));
    }
    let from = date(Some(&period.from), "from")?.expect("given");
    let to = date(Some(&period.to), "to")?.expect("given");
    let nodes: Vec<String> = match split.by.unwrap_or_default() {
        Split::Area => vec![viewer.area.clone()],
        Split::Children => {
            let depth = viewer.area.split('/').filter(|s| !s.is_empty()).count();
            state
                .store
                .list_areas(&viewer.area)
                .await?
                .into_iter()
                .filter(|a| a.path.split('/').filter(|s| !s.is_empty()).count() == depth + 1)
                .map(|a| a.path)
                .collect()
        }
    };
    let zone = offset(&state);
    let (from_ms, to_ms) = (from.start_ms(zone), to.end_ms(zone));
    let (from_day, to_day) = (from.to_string(), to.to_string());
    let now = read_model::now_ms();
    let mut items = Vec::with_capacity(nodes.len());
    for node in nodes {
        let store = &state.store;
        let mut item = AreaStats {
            area: node.clone(),
            ..AreaStats::default()
        };
        if shown.requests {
            let requests = store.request_figures(&node, from_ms, to_ms, now).await?;
            item.requests_collected = Some(requests.collected);
            item.requests_handled = Some(requests.handled);
            item.requests_resolved = Some(requests.resolved);
            item.handling_rate = rate(requests.handled, requests.collected);
            item.resolution_rate = rate(requests.resolved, requests.collected);
            item.overdue = Some(requests.overdue);
            item.called_back = Some(requests.called_back);
            item.satisfied = Some(requests.satisfied);
            item.satisfaction_rate = rate(requests.satisfied, requests.called_back);
        }
        if shown.visits {
            let visits = store.visit_figures(&node, &from_day, &to_day).await?;
            let households: i64 = store
                .household_counts(&node)
                .await?
                .iter()
                .map(|row| row.count)
                .sum();
            item.households = Some(households);
            item.households_visited = Some(visits.households_visited);
            item.coverage = rate(visits.households_visited, households);
            item.visits = Some(visits.visits);
            item.people_received = Some(visits.people_received);
        }
        if shown.stations {
            let stations = store.station_figures(&node, &from_day, &to_day).await?;
            item.station_services = Some(stations.services);
            item.beneficiaries = Some(stations.beneficiaries);
        }
        if shown.orders {
            let orders = store.order_figures(&node, from_ms, to_ms).await?;
            item.orders_placed = Some(orders.placed);
            item.orders_taken = Some(orders.taken);
            item.orders_done = Some(orders.done);
            item.mean_ms_to_take = (orders.taken > 0).then(|| orders.take_ms_total / orders.taken);
        }
        items.push(item);
    }
    Ok(respond(items, i64::MAX, usize::MAX, params.format, |_| {
        String::new()
    }))
}

/// The area `requested` (default: the caller's own), checked to be an area path within the
/// caller's area (used by the history routes too).
pub(crate) fn checked_area(
    identity: &Identity,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    Viewer::new(identity, requested).map(|viewer| viewer.area)
}

/// Kinds `role` may read, as wire names.
pub(crate) fn readable_kinds(role: Role) -> Vec<String> {
    Kind::ALL
        .iter()
        .filter(|kind| access::may_read(role, **kind))
        .map(|kind| kind.as_str().to_owned())
        .collect()
}

/// Whether `identity` may read a document of `kind` in `area` (without the creator rule).
pub(crate) fn may_see(identity: &Identity, kind: Kind, area: &str) -> bool {
    AreaPath::new(area).is_ok_and(|area| identity.actor.area.contains(&area))
        && access::may_read(identity.actor.role, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_count_under_the_area_or_its_child() {
        assert_eq!(node_of("/c/s", "/c/s/a/g1", Split::Children), "/c/s/a");
        assert_eq!(node_of("/c/s", "/c/s", Split::Children), "/c/s");
        assert_eq!(node_of("/c/s", "/c/s/a/g1", Split::Area), "/c/s");
        assert_eq!(node_of("/", "/c/s", Split::Children), "/c");
    }

    #[test]
    fn figures_follow_what_each_role_reads() {
        let all = FigureKinds {
            requests: true,
            visits: true,
            stations: true,
            orders: true,
        };
        assert_eq!(FigureKinds::of(Role::Supervisor), all);
        assert_eq!(FigureKinds::of(Role::Admin), all);
        assert_eq!(
            FigureKinds::of(Role::Secretary),
            FigureKinds {
                requests: true,
                visits: true,
                stations: false,
                orders: false,
            }
        );
        assert_eq!(
            FigureKinds::of(Role::Volunteer),
            FigureKinds {
                requests: false,
                visits: false,
                stations: false,
                orders: true,
            }
        );
        assert!(!FigureKinds::of(Role::DepartmentHandler).any());
    }

    #[test]
    fn csv_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_defused() {
        for (cell, expected) in [
            ("+1+1", "'+1+1"),
            ("-1+1", "'-1+1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1+1", "'\t=1+1"),
            ("\r=1+1", "\"'\r=1+1\""),
            ("＝1+1", "'＝1+1"),
            ("＋1", "'＋1"),
            ("－1", "'－1"),
            ("＠SUM(A1)", "'＠SUM(A1)"),
        ] {
            assert_eq!(csv_field(cell), expected, "{cell:?}");
        }
        // Inside a cell they are harmless.
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("电话＝无"), "电话＝无");
    }
}
