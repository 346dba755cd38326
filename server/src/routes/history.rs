//! The trace of who did what (人过留痕): `/v1/documents/{id}/history`, `/v1/history` (an area
//! over a period), and `/v1/changes`, the changes feed for back-office systems.
//!
//! All three read the change log, one row per accepted chunk of changes: user, device, role,
//! the devices' clock and the server's, and a summary of what it did. The feed is resumable
//! from its cursor and never skips a change that commits late (see `storage::read_model`); it
//! answers at once when there are changes, else waits up to `wait` seconds for one (long poll),
//! or streams server-sent events when asked for `text/event-stream`, resuming from
//! `Last-Event-ID`.
//!
//! Both long-lived forms are registered in `LiveConnections` like websockets: revoking the
//! user or device (on any node) ends them at once. A stream also ends at its token's `exp`
//! and after `limits.sse_max_secs`; a long poll waits at most `limits.long_poll_max_secs` and
//! not past its token's `exp`. Pages stop at `limits.max_page_bytes` of JSON.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use lianxin_protocol::domain::{Kind, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{Authenticated, Identity};
use crate::error::ApiError;
use crate::live::StreamRegistration;
use crate::routes::read::{checked_area, date, fit, may_see, page_bytes, readable_kinds};
use crate::state::AppState;
use crate::storage::read_model::{ChangeFilter, ChangeRow};

/// Most changes in one answer.
const MAX_CHANGES: i64 = 1_000;
/// How often a waiting feed looks again even without a local notice (changes from other
/// processes, and the transaction horizon moving on).
const POLL: Duration = Duration::from_millis(500);

/// One accepted change.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChangeItem {
    /// Resume the feed after this change by passing it as `since`.
    pub cursor: String,
    pub document_id: String,
    /// The document's chunk sequence number this change was stored as.
    pub seq: i64,
    pub kind: Option<String>,
    pub area: Option<String>,
    pub user_id: String,
    pub device_id: Option<String>,
    /// The author's role when the change was accepted.
    pub role: Option<String>,
    /// Automerge changes in this chunk.
    pub changes: i32,
    /// The devices' clock (latest change), ms since the epoch, when they stamped it.
    pub client_time: Option<i64>,
    /// When the server stored it, ms since the epoch.
    pub server_time: i64,
    pub summary: String,
}

impl From<ChangeRow> for ChangeItem {
    fn from(row: ChangeRow) -> Self {
        Self {
            cursor: format!("{}-{}", row.tx, row.id),
            document_id: row.document_id,
            seq: row.seq,
            kind: row.kind,
            area: row.area,
            user_id: row.user_id,
            device_id: row.device_id,
            role: row.role,
            changes: row.changes,
            client_time: row.client_time,
            server_time: row.server_time,
            summary: row.summary,
        }
    }
}

/// A run of changes and where to resume.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesPage {
    pub changes: Vec<ChangeItem>,
    /// Pass as `since` next time (the last change's cursor, or the `since` given).
    pub next: String,
}

fn parse_cursor(cursor: Option<&str>) -> Result<(i64, i64), ApiError> {
    let Some(cursor) = cursor else {
        return Ok((0, 0));
    };
    cursor
        .split_once('-')
        .and_then(|(tx, id)| Some((tx.parse().ok()?, id.parse().ok()?)))
        .ok_or_else(|| ApiError::Invalid(format!("{cursor:?} is not a cursor")))
}

/// Which rows of the change log `identity` may see in `area`.
fn filter_for(identity: &Identity, area: String) -> Result<ChangeFilter, ApiError> {
    let role = identity.actor.role;
    let kinds = readable_kinds(role);
    if kinds.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "the role {role} reads no documents"
        )));
    }
    let department = if role == Role::DepartmentHandler {
        Some(identity.actor.department.clone().ok_or_else(|| {
            ApiError::Forbidden("a department handler without a department sees no requests".into())
        })?)
    } else {
        None
    };
    Ok(ChangeFilter {
        area,
        kinds,
        department,
        from: None,
        to: None,
    })
}

/// The history of one document.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentHistory {
    pub document_id: String,
    pub kind: Option<String>,
    pub area: Option<String>,
    pub changes: Vec<ChangeItem>,
}

/// Every accepted change of a document: who, on which device, in which role, when, and what.
#[utoipa::path(get, path = "/v1/documents/{id}/history", tag = "audit",
    params(("id" = String, Path, description = "Document ID")),
    security(("bearer" = [])),
    responses((status = 200, description = "The document's changes, oldest first", body = DocumentHistory),
              (status = 404, description = "No such document, or not one the caller may see")))]
pub async fn document_history(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DocumentHistory>, ApiError> {
    // Unknown and forbidden look alike, as on the sync connection.
    let hidden = || ApiError::NotFound(format!("no document {id}"));
    let rows = state.store.document_history(&id).await?;
    let (kind, area) = rows
        .iter()
        .find_map(|row| Some((row.kind.clone()?, row.area.clone()?)))
        .ok_or_else(hidden)?;
    let parsed: Kind = kind.parse().map_err(|_| hidden())?;
    if !may_see(&identity, parsed, &area) {
        return Err(hidden());
    }
    if identity.actor.role == Role::DepartmentHandler && parsed == Kind::Request {
        let transferred = state.store.request_department(&id).await?;
        if transferred.flatten() != identity.actor.department {
            return Err(hidden());
        }
    }
    Ok(Json(DocumentHistory {
        document_id: id,
        kind: Some(kind),
        area: Some(area),
        changes: rows.into_iter().map(ChangeItem::from).collect(),
    }))
}

/// Parameters of the area history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Area subtree (default: the caller's area).
    pub area: Option<String>,
    /// First day, `YYYY-MM-DD` (server time, local zone).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD`.
    pub to: Option<String>,
    /// A cursor from the previous page.
    pub after: Option<String>,
    /// At most this many changes (default and maximum 1,000).
    pub limit: Option<i64>,
    /// `json` (default) or `csv`.
    pub format: Option<crate::routes::read::Format>,
}

/// Every change to the documents of an area over a period that the caller may read.
#[utoipa::path(get, path = "/v1/history", params(HistoryParams), tag = "audit",
    security(("bearer" = [])),
    responses((status = 200, description = "Changes in cursor order", body = ChangesPage),
              (status = 200, description = "The same changes as CSV; the next cursor in `x-next-page`", body = String, content_type = "text/csv"),
              (status = 403, description = "Outside the caller's area")))]
pub async fn area_history(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    Query(params): Query<HistoryParams>,
) -> Result<Response, ApiError> {
    let area = checked_area(&identity, params.area.as_deref())?;
    let mut filter = filter_for(&identity, area)?;
    let zone = state.settings.documents.utc_offset_secs;
    filter.from = date(params.from.as_deref(), "from")?.map(|d| d.start_ms(zone));
    filter.to = date(params.to.as_deref(), "to")?.map(|d| d.end_ms(zone));
    let after = parse_cursor(params.after.as_deref())?;
    let limit = params.limit.unwrap_or(MAX_CHANGES).clamp(1, MAX_CHANGES);
    let rows = state.store.changes_after(after, &filter, limit).await?;
    let page = page(rows, params.after, page_bytes(&state));
    Ok(match params.format.unwrap_or_default() {
        crate::routes::read::Format::Json => Json(page).into_response(),
        crate::routes::read::Format::Csv => {
            crate::routes::read::csv(&page.changes, Some(page.next))
        }
    })
}

/// The page of `rows`, cut short at `budget` bytes of JSON (at least one change); `next`
/// resumes after the last change it holds.
fn page(rows: Vec<ChangeRow>, since: Option<String>, budget: usize) -> ChangesPage {
    let mut changes: Vec<ChangeItem> = rows.into_iter().map(ChangeItem::from).collect();
    fit(&mut changes, budget);
    let next = changes
        .last()
        .map(|c| c.cursor.clone())
        .or(since)
        .unwrap_or_else(|| "0-0".to_owned());
    ChangesPage { changes, next }
}

/// Parameters of the changes feed.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// Area subtree (default: the caller's area).
    pub area: Option<String>,
    /// Resume after this cursor (default: from the beginning).
    pub since: Option<String>,
    /// At most this many changes per answer (default and maximum 1,000).
    pub limit: Option<i64>,
    /// Long poll: wait up to this many seconds (at most `limits.long_poll_max_secs`, 30 by
    /// default, and not past the token's `exp`) for a change when there is none.
    pub wait: Option<u64>,
}

/// Why the server ended a stream of the feed: the data of its last event, `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `limits.sse_max_secs` passed: reconnect with `Last-Event-ID`.
    Lifetime,
    /// The token's `exp` passed: reconnect with a fresh token.
    TokenExpired,
    /// The server is draining: reconnect (to another node).
    Draining,
    /// The user or device was revoked: do not reconnect.
    Revoked,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Lifetime => "lifetime",
            End::TokenExpired => "token-expired",
            End::Draining => "draining",
            End::Revoked => "revoked",
        }
    }
}

/// When a long-lived answer for a token expiring at `exp` (seconds since the epoch) must end
/// at the latest, given its own longest life `max`, and why then.
fn ends_at(exp: u64, max: Duration) -> (tokio::time::Instant, End) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token_left = Duration::from_secs(exp.saturating_sub(now));
    let start = tokio::time::Instant::now();
    if token_left < max {
        (start + token_left, End::TokenExpired)
    } else {
        (start + max, End::Lifetime)
    }
}

/// The changes feed: accepted changes in the caller's area, in cursor order, resumable.
///
/// With `Accept: text/event-stream` the answer is a stream of server-sent events (`change`,
/// with the cursor as the event ID), resumable with `Last-Event-ID`. The server ends a stream
/// with an `end` event whose data says why, and whose ID is the cursor to resume from:
/// `lifetime` (after `limits.sse_max_secs`, 10 minutes by default) or `draining` (the node
/// is shutting down): reconnect with `Last-Event-ID`; `token-expired` (at the token's
/// `exp`): reconnect with a fresh token; `revoked` (the user or device was revoked, on any
/// node; within a second or so): do not reconnect, the token is refused from now on.
///
/// A long poll (`wait`) likewise answers 401 at once when the user or device is revoked
/// while it waits, and an empty page at its deadline or when the node drains.
///
/// Answers are cut short at `limits.max_page_bytes` of JSON (at least one change); `next`
/// resumes after the last change given.
#[utoipa::path(get, path = "/v1/changes", params(FeedParams), tag = "audit",
    security(("bearer" = [])),
    responses((status = 200, description = "Changes after the cursor", body = ChangesPage),
              (status = 200, description = "A stream of `change` events, ended by an `end` event naming why", body = ChangeItem, content_type = "text/event-stream"),
              (status = 400, description = "A malformed cursor"),
              (status = 401, description = "No valid token, or revoked while waiting")))]
pub async fn changes(
    State(state): State<AppState>,
    Authenticated(identity): Authenticated,
    headers: HeaderMap,
    Query(params): Query<FeedParams>,
) -> Result<Response, ApiError> {
    let area = checked_area(&identity, params.area.as_deref())?;
    let filter = filter_for(&identity, area)?;
    let limit = params.limit.unwrap_or(MAX_CHANGES).clamp(1, MAX_CHANGES);
    let wants_stream = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(params.since.clone());
    let after = parse_cursor(resume.as_deref())?;
    let live = state
        .live
        .register_stream(&identity.user.id, &identity.device.id);
    let waits = wants_stream || params.wait.is_some_and(|w| w > 0);
    if waits && !still_active(&state, &identity).await? {
        return Err(revoked());
    }
    let limits = &state.settings.limits;
    if wants_stream {
        let (until, why) = ends_at(
            identity.claims.exp,
            Duration::from_secs(limits.sse_max_secs),
        );
        let feed = Feed {
            state: state.clone(),
            filter,
            after,
            limit,
            pending: VecDeque::new(),
            live,
            until,
            at_deadline: why,
            ended: false,
        };
        return Ok(Sse::new(event_stream(feed))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let wait = Duration::from_secs(params.wait.unwrap_or(0).min(limits.long_poll_max_secs));
    let (deadline, _) = ends_at(identity.claims.exp, wait);
    let budget = page_bytes(&state);
    loop {
        // Register for the notice before looking, so a commit in between is not missed.
        let notified = state.changes.notified();
        let rows = state.store.changes_after(after, &filter, limit).await?;
        if live.cut.revoked.is_cancelled() {
            return Err(revoked());
        }
        if !rows.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(Json(page(rows, params.since, budget)).into_response());
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = live.cut.revoked.cancelled() => return Err(revoked()),
            _ = live.cut.drained.cancelled() => {
                return Ok(Json(page(Vec::new(), params.since, budget)).into_response());
            }
            _ = state.shutdown.cancelled() => {
                return Ok(Json(page(Vec::new(), params.since, budget)).into_response());
            }
        }
    }
}

/// Whether the caller's user and device are still active, read again once the stream is
/// registered: a revocation that landed between the token check and the registration cut
/// nothing, and would otherwise leave the stream open for its whole life.
async fn still_active(state: &AppState, identity: &Identity) -> Result<bool, ApiError> {
    let user = state.store.get_user(&identity.user.id).await?;
    let device = state.store.get_device(&identity.device.id).await?;
    Ok(user.is_some_and(|u| !u.revoked) && device.is_some_and(|d| !d.revoked))
}

fn revoked() -> ApiError {
    ApiError::Unauthorized("the user or device was revoked".into())
}

/// One server-sent-events stream of the feed.
struct Feed {
    state: AppState,
    filter: ChangeFilter,
    /// The cursor of the last change sent.
    after: (i64, i64),
    limit: i64,
    /// Changes read and not sent yet.
    pending: VecDeque<ChangeRow>,
    /// Registered for revocation and draining until the stream is dropped.
    live: StreamRegistration,
    /// When the stream ends at the latest, and why then.
    until: tokio::time::Instant,
    at_deadline: End,
    /// The `end` event was sent.
    ended: bool,
}

impl Feed {
    /// Why the stream must end now, if it must.
    fn must_end(&self) -> Option<End> {
        if self.live.cut.revoked.is_cancelled() {
            Some(End::Revoked)
        } else if self.live.cut.drained.is_cancelled() {
            Some(End::Draining)
        } else if tokio::time::Instant::now() >= self.until {
            Some(self.at_deadline)
        } else {
            None
        }
    }

    /// The last event: why the stream ends, with the cursor to resume from as its ID.
    fn end(&mut self, why: End) -> Event {
        self.ended = true;
        tracing::debug!(why = why.as_str(), "changes stream ended by the server");
        Event::default()
            .event("end")
            .id(format!("{}-{}", self.after.0, self.after.1))
            .data(why.as_str())
    }
}

/// Server-sent events of the feed from its cursor on, until the client goes, the server stops,
/// or [`Feed::must_end`] says so (revoked, draining, token expired, lifetime over).
fn event_stream(feed: Feed) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(feed, |mut feed| async move {
        if feed.ended {
            return None;
        }
        loop {
            // Checked before every change, so a revoked reader gets nothing more even from a
            // batch already read.
            if let Some(why) = feed.must_end() {
                let event = feed.end(why);
                return Some((Ok(event), feed));
            }
            if let Some(row) = feed.pending.pop_front() {
                feed.after = (row.tx, row.id);
                let item = ChangeItem::from(row);
                let event = Event::default()
                    .event("change")
                    .id(item.cursor.clone())
                    .json_data(&item)
                    .unwrap_or_else(|_| Event::default().comment("unencodable change"));
                return Some((Ok(event), feed));
            }
            let notified = feed.state.changes.notified();
            match feed
                .state
                .store
                .changes_after(feed.after, &feed.filter, feed.limit)
                .await
            {
                Ok(rows) if !rows.is_empty() => {
                    feed.pending.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "changes feed: reading failed; retrying"),
            }
            let cut = feed.live.cut.clone();
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = tokio::time::sleep_until(feed.until) => {}
                _ = cut.revoked.cancelled() => {}
                _ = cut.drained.cancelled() => {}
                _ = feed.state.shutdown.cancelled() => return None,
            }
        }
    })
}
