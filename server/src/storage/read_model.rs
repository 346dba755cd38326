//! The supervisor read model in SQL: projection rows written in the transaction that stores a
//! change, the change log that is both the audit trail and the changes feed, and the queries
//! and statistics that read them.
//!
//! Like the rest of `storage`, every statement is plain SQL both backends accept, written once
//! in the `read_model_impl!` macro. Optional filters are written as `($n IS NULL OR col = $n)`,
//! so every query is one static statement. Area subtrees are `area = $1 OR area LIKE $1 || '/%'`
//! (area paths cannot hold `LIKE` wildcards, see `routes::admin::valid_area_path`).
//!
//! # The changes feed cursor
//!
//! A feed cursor must never skip a change that commits after a later-numbered one. `id` comes
//! from a sequence taken at insert time, so on Postgres two transactions can commit in the
//! opposite order of their ids. Each row therefore also records its transaction ID (`tx`), and
//! the feed returns rows in `(tx, id)` order only below the transaction horizon
//! (`pg_snapshot_xmin` of the reader's snapshot): every transaction below it has finished, and
//! every transaction that has not yet written will get a larger ID, so no row can ever appear
//! below a cursor taken from rows the feed served. SQLite has one writer at a time, so `id`
//! order is commit order; there `tx` is always 0 and the horizon is unbounded.

use serde::{Deserialize, Serialize};

use lianxin_protocol::domain::Projected;

/// Who made an accepted change.
#[derive(Debug, Clone)]
pub struct Author<'a> {
    pub user: &'a str,
    pub device: Option<&'a str>,
    pub role: &'a str,
}

/// What an accepted chunk of changes does to the read model, written in the chunk's
/// transaction.
#[derive(Debug, Clone)]
pub struct ChangeRecord<'a> {
    /// The document's state after the change; `None` for an untyped document.
    pub projected: Option<&'a Projected>,
    pub author: Author<'a>,
    /// How many Automerge changes the chunk holds.
    pub changes: i32,
    /// The latest time the devices stamped on those changes, in ms since the epoch.
    pub client_time: Option<i64>,
    /// What the change did, in words.
    pub summary: String,
}

/// Rows of a list query: an area subtree and a page.
#[derive(Debug, Clone)]
pub struct Scope {
    pub area: String,
    /// Keyset page: rows after this (`created_at`, `document_id`).
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// A household. `residents` is JSON text (personal data; the API redacts it).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HouseholdRow {
    pub document_id: String,
    pub area: String,
    pub created_by: String,
    pub created_at: i64,
    pub address: String,
    pub residents: String,
    pub resident_count: i32,
}

/// A listening-day visit. `visitors` and `requests` are JSON lists of IDs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VisitRow {
    pub document_id: String,
    pub area: String,
    pub created_by: String,
    pub created_at: i64,
    pub household: String,
    pub visit_date: String,
    pub visitors: String,
    pub heard: String,
    pub people_received: i64,
    pub requests: String,
    pub on_listening_day: bool,
}

/// Filters of the visit list.
#[derive(Debug, Clone, Default)]
pub struct VisitFilter {
    pub from: Option<String>,
    pub to: Option<String>,
    pub household: Option<String>,
}

/// A request and where its loop stands; `overdue` is computed at the query's `now`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RequestRow {
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
    pub due_at: Option<i64>,
    pub overdue: bool,
}

/// Filters of the request list. `collected_*` bound `collected_at` (ms, inclusive).
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub status: Option<String>,
    pub track: Option<String>,
    pub category: Option<String>,
    pub department: Option<String>,
    pub origin: Option<String>,
    /// Only requests whose work is not done (not resolved, called back or closed).
    pub open: bool,
    /// Only requests past their deadline at `now`.
    pub overdue: bool,
    pub collected_from: Option<i64>,
    pub collected_to: Option<i64>,
    pub now: i64,
}

/// One event of a request's timeline.
#[derive(Debug, Clone, sqlx::FromRow, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventRow {
    #[serde(skip)]
    pub document_id: String,
    pub idx: i32,
    #[sqlx(rename = "event_type")]
    #[serde(rename = "type")]
    pub event_type: String,
    pub at: i64,
    #[sqlx(rename = "by_user")]
    pub by: String,
    pub device: Option<String>,
    pub note: Option<String>,
    pub track: Option<String>,
    pub department: Option<String>,
    pub satisfaction: Option<String>,
    /// Whether the state machine ignored this event where it landed.
    pub ignored: bool,
}

/// An order.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub document_id: String,
    pub area: String,
    pub created_by: String,
    pub created_at: i64,
    pub requester: String,
    pub service_kind: String,
    pub window_start: i64,
    pub window_end: i64,
    pub place: String,
    pub status: String,
    pub assignee: Option<String>,
    pub claim_count: i32,
    pub taken_at: Option<i64>,
}

/// Filters of the order list; `placed_*` bound `created_at` (ms, inclusive).
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<String>,
    pub service_kind: Option<String>,
    pub volunteer: Option<String>,
    pub placed_from: Option<i64>,
    pub placed_to: Option<i64>,
}

/// Orders grouped by one column: how many, how many taken, and the total time from placing to
/// taking over the taken ones.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderGroupRow {
    pub key: Option<String>,
    pub orders: i64,
    pub taken: i64,
    pub done: i64,
    pub take_ms_total: i64,
}

/// What to group orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderGrouping {
    Status,
    ServiceKind,
    Volunteer,
}

/// Station services aggregated by station, service kind and period.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StationGroupRow {
    pub station: String,
    pub service_kind: String,
    pub period: String,
    pub services: i64,
    pub people_served: i64,
}

/// The length of a period in station and statistics summaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    Month,
}

/// Visits of one date in one area node (the area a visit document is filed under).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct VisitDayRow {
    pub visit_date: String,
    pub area: String,
    pub visits: i64,
    pub households_visited: i64,
    pub people_received: i64,
}

/// Distinct households visited over a date range, per area node.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AreaCountRow {
    pub area: String,
    pub count: i64,
}

/// The figures of one area subtree over one period (see `routes::read::stats`).
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct RequestFigures {
    pub collected: i64,
    pub handled: i64,
    pub resolved: i64,
    pub overdue: i64,
    pub called_back: i64,
    pub satisfied: i64,
}

/// Visit figures of an area subtree over a date range.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct VisitFigures {
    pub visits: i64,
    pub households_visited: i64,
    pub people_received: i64,
}

/// Order figures of an area subtree over a period.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct OrderFigures {
    pub placed: i64,
    pub taken: i64,
    pub done: i64,
    pub take_ms_total: i64,
}

/// Station figures of an area subtree over a date range.
#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct StationFigures {
    pub services: i64,
    pub beneficiaries: i64,
}

/// One row of the change log.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    pub id: i64,
    pub tx: i64,
    pub document_id: String,
    pub seq: i64,
    pub kind: Option<String>,
    pub area: Option<String>,
    pub user_id: String,
    pub device_id: Option<String>,
    pub role: Option<String>,
    pub changes: i32,
    pub client_time: Option<i64>,
    pub server_time: i64,
    pub summary: String,
}

/// Which change-log rows a reader may see.
#[derive(Debug, Clone)]
pub struct ChangeFilter {
    pub area: String,
    /// Kinds the reader may read.
    pub kinds: Vec<String>,
    /// For a department handler: only requests transferred to this department.
    pub department: Option<String>,
    /// Server-time bounds (ms, inclusive).
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// The statement fragments shared by the queries, as `concat!`-able literals.
macro_rules! sql {
    (area $n:literal) => {
        $crate::storage::read_model::sql!(area $n on "area")
    };
    (area $n:literal on $column:literal) => {
        concat!(
            "(", $column, " = $", $n, " OR ", $column, " LIKE $", $n, " || '/%' OR $", $n,
            " = '/')"
        )
    };
    (page $k:literal, $d:literal) => {
        concat!(
            "(CAST($",
            $k,
            " AS BIGINT) IS NULL OR created_at > $",
            $k,
            " OR (created_at = $",
            $k,
            " AND document_id > $",
            $d,
            "))"
        )
    };
}
pub(super) use sql;

/// The backend-independent read model. `$horizon` is the SQL expression of the transaction
/// horizon of the changes feed (see the module documentation).
macro_rules! read_model_impl {
    ($store:ty, $conn:ty, $horizon:literal) => {
        impl $store {
            /// Writes the projection of a document and its change-log row, inside the
            /// transaction that stores the change.
            pub(super) async fn write_change_record(
                conn: &mut $conn,
                doc: &str,
                seq: i64,
                record: &super::read_model::ChangeRecord<'_>,
            ) -> Result<(), sqlx::Error> {
                let (kind, area) = match record.projected {
                    Some(projected) => (
                        Some(projected.info.kind.as_str()),
                        Some(projected.info.area.as_str()),
                    ),
                    None => (None, None),
                };
                if let Some(projected) = record.projected {
                    Self::write_projection(conn, doc, seq, projected).await?;
                }
                sqlx::query(
                    "INSERT INTO change_log (document_id, seq, kind, area, user_id, device_id, \
                     role, changes, client_time, server_time, summary) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(doc)
                .bind(seq)
                .bind(kind)
                .bind(area)
                .bind(record.author.user)
                .bind(record.author.device)
                .bind(record.author.role)
                .bind(record.changes)
                .bind(record.client_time)
                .bind(super::read_model::now_ms())
                .bind(&record.summary)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }

            /// Upserts the projection rows of `doc` as of `seq`, unless rows of a later `seq`
            /// are there already. Child rows (events, entries) are replaced with the parent.
            pub(super) async fn write_projection(
                conn: &mut $conn,
                doc: &str,
                seq: i64,
                projected: &lianxin_protocol::domain::Projected,
            ) -> Result<(), sqlx::Error> {
                use lianxin_protocol::domain::Record;
                let info = &projected.info;
                let area = info.area.as_str();
                match &projected.record {
                    Record::Household(h) => {
                        sqlx::query(
                            "INSERT INTO households (document_id, seq, area, created_by, created_at, \
                             address, residents, resident_count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (document_id) DO UPDATE SET seq = excluded.seq, \
                             address = excluded.address, residents = excluded.residents, \
                             resident_count = excluded.resident_count \
                             WHERE households.seq <= excluded.seq",
                        )
                        .bind(doc)
                        .bind(seq)
                        .bind(area)
                        .bind(&info.created_by)
                        .bind(info.created_at)
                        .bind(&h.address)
                        .bind(super::read_model::to_json(&h.residents))
                        .bind(h.residents.len() as i32)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Record::Visit(v) => {
                        sqlx::query(
                            "INSERT INTO visits (document_id, seq, area, created_by, created_at, \
                             household, visit_date, visitors, heard, people_received, requests, \
                             on_listening_day) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                             ON CONFLICT (document_id) DO UPDATE SET seq = excluded.seq, \
                             household = excluded.household, visit_date = excluded.visit_date, \
                             visitors = excluded.visitors, heard = excluded.heard, \
                             people_received = excluded.people_received, requests = excluded.requests, \
                             on_listening_day = excluded.on_listening_day \
                             WHERE visits.seq <= excluded.seq",
                        )
                        .bind(doc)
                        .bind(seq)
                        .bind(area)
                        .bind(&info.created_by)
                        .bind(info.created_at)
                        .bind(&v.household)
                        .bind(v.date.to_string())
                        .bind(super::read_model::to_json(&v.visitors))
                        .bind(&v.heard)
                        .bind(v.people_received)
                        .bind(super::read_model::to_json(&v.requests))
                        .bind(v.on_listening_day)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Record::Request(r) => {
                        let written = sqlx::query(
                            "INSERT INTO requests (document_id, seq, area, created_by, created_at, \
                             origin, household, visit, category, description, status, track, \
                             department, satisfaction, collected_at, triaged_at, resolved_at, \
                             closed_at, due_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                             $11, $12, $13, $14, $15, $16, $17, $18, $19) \
                             ON CONFLICT (document_id) DO UPDATE SET seq = excluded.seq, \
                             origin = excluded.origin, household = excluded.household, \
                             visit = excluded.visit, category = excluded.category, \
                             description = excluded.description, status = excluded.status, \
                             track = excluded.track, department = excluded.department, \
                             satisfaction = excluded.satisfaction, \
                             collected_at = excluded.collected_at, triaged_at = excluded.triaged_at, \
                             resolved_at = excluded.resolved_at, closed_at = excluded.closed_at, \
                             due_at = excluded.due_at WHERE requests.seq <= excluded.seq",
                        )
                        .bind(doc)
                        .bind(seq)
                        .bind(area)
                        .bind(&info.created_by)
                        .bind(info.created_at)
                        .bind(r.origin.as_str())
                        .bind(&r.household)
                        .bind(&r.visit)
                        .bind(&r.category)
                        .bind(&r.description)
                        .bind(r.flow.status.as_str())
                        .bind(r.flow.track.map(|t| t.as_str()))
                        .bind(&r.flow.department)
                        .bind(r.flow.satisfaction.map(|s| s.as_str()))
                        .bind(r.flow.collected_at)
                        .bind(r.flow.triaged_at)
                        .bind(r.flow.resolved_at)
                        .bind(r.flow.closed_at)
                        .bind(r.due_at)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                        if written > 0 {
                            sqlx::query("DELETE FROM request_events WHERE document_id = $1")
                                .bind(doc)
                                .execute(&mut *conn)
                                .await?;
                            for (idx, event) in r.timeline.iter().enumerate() {
                                let row = super::read_model::event_columns(event);
                                sqlx::query(
                                    "INSERT INTO request_events (document_id, idx, event_type, at, \
                                     by_user, device, note, track, department, satisfaction, ignored) \
                                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                                )
                                .bind(doc)
                                .bind(idx as i32)
                                .bind(row.event_type)
                                .bind(event.at)
                                .bind(&event.by)
                                .bind(&event.device)
                                .bind(&event.note)
                                .bind(row.track)
                                .bind(row.department)
                                .bind(row.satisfaction)
                                .bind(r.flow.ignored.contains(&idx))
                                .execute(&mut *conn)
                                .await?;
                            }
                        }
                    }
                    Record::Order(o) => {
                        sqlx::query(
                            "INSERT INTO orders (document_id, seq, area, created_by, created_at, \
                             requester, service_kind, window_start, window_end, place, status, \
                             assignee, claim_count, taken_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, \
                             $9, $10, $11, $12, $13, $14) \
                             ON CONFLICT (document_id) DO UPDATE SET seq = excluded.seq, \
                             requester = excluded.requester, service_kind = excluded.service_kind, \
                             window_start = excluded.window_start, window_end = excluded.window_end, \
                             place = excluded.place, status = excluded.status, \
                             assignee = excluded.assignee, claim_count = excluded.claim_count, \
                             taken_at = excluded.taken_at WHERE orders.seq <= excluded.seq",
                        )
                        .bind(doc)
                        .bind(seq)
                        .bind(area)
                        .bind(&info.created_by)
                        .bind(info.created_at)
                        .bind(&o.requester)
                        .bind(&o.service_kind)
                        .bind(o.window_start)
                        .bind(o.window_end)
                        .bind(&o.place)
                        .bind(o.status.as_str())
                        .bind(&o.assignee)
                        .bind(o.claims.len() as i32)
                        .bind(o.taken_at)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Record::StationLog(l) => {
                        let written = sqlx::query(
                            "INSERT INTO station_logs (document_id, seq, area, created_by, \
                             created_at, station, log_date) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                             ON CONFLICT (document_id) DO UPDATE SET seq = excluded.seq, \
                             station = excluded.station, log_date = excluded.log_date \
                             WHERE station_logs.seq <= excluded.seq",
                        )
                        .bind(doc)
                        .bind(seq)
                        .bind(area)
                        .bind(&info.created_by)
                        .bind(info.created_at)
                        .bind(&l.station)
                        .bind(l.date.to_string())
                        .execute(&mut *conn)
                        .await?
                        .rows_affected();
                        if written > 0 {
                            sqlx::query("DELETE FROM station_log_entries WHERE document_id = $1")
                                .bind(doc)
                                .execute(&mut *conn)
                                .await?;
                            for (idx, entry) in l.entries.iter().enumerate() {
                                sqlx::query(
                                    "INSERT INTO station_log_entries (document_id, idx, \
                                     service_kind, people_served, served_by) \
                                     VALUES ($1, $2, $3, $4, $5)",
                                )
                                .bind(doc)
                                .bind(idx as i32)
                                .bind(&entry.service_kind)
                                .bind(i64::from(entry.people_served))
                                .bind(&entry.served_by)
                                .execute(&mut *conn)
                                .await?;
                            }
                        }
                    }
                }
                Ok(())
            }

            /// Rewrites the projection of `doc` as of `seq`, in its own transaction (for
            /// `lianxin-server reproject`).
            pub(super) async fn reproject(
                &self,
                doc: &lianxin_protocol::DocumentId,
                seq: i64,
                projected: &lianxin_protocol::domain::Projected,
            ) -> Result<(), super::StorageError> {
                let mut tx = self.pool.begin().await?;
                let id = doc.to_string();
                Self::write_projection(&mut tx, &id, seq, projected).await?;
                // Who may read it, for area sync (appends write it themselves). Only the newest
                // state counts: a slower rewrite of an older `seq` leaves it alone.
                let readers = super::area::Readers::of(projected);
                sqlx::query(
                    "UPDATE documents SET kind = $2, area = $3, created_by = $4, \
                     transferred_to = $5 WHERE id = $1 AND last_seq <= $6",
                )
                .bind(&id)
                .bind(readers.kind)
                .bind(readers.area)
                .bind(readers.created_by)
                .bind(readers.transferred_to)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            /// Every stored document ID, in order.
            pub(super) async fn document_ids(&self) -> Result<Vec<String>, super::StorageError> {
                Ok(sqlx::query_scalar("SELECT id FROM documents ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            /// Deletes every projection row (before a full `reproject`).
            pub(super) async fn clear_projections(&self) -> Result<(), super::StorageError> {
                let mut tx = self.pool.begin().await?;
                for statement in [
                    "DELETE FROM households",
                    "DELETE FROM visits",
                    "DELETE FROM requests",
                    "DELETE FROM request_events",
                    "DELETE FROM orders",
                    "DELETE FROM station_logs",
                    "DELETE FROM station_log_entries",
                ] {
                    sqlx::query(statement).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn list_households(
                &self,
                scope: &super::read_model::Scope,
            ) -> Result<Vec<super::read_model::HouseholdRow>, super::StorageError> {
                let (after_at, after_id) = super::read_model::page(scope);
                Ok(sqlx::query_as(concat!(
                    "SELECT document_id, area, created_by, created_at, address, residents, \
                     resident_count FROM households WHERE ",
                    super::read_model::sql!(area 1),
                    " AND ",
                    super::read_model::sql!(page 2, 3),
                    " ORDER BY created_at, document_id LIMIT $4"
                ))
                .bind(&scope.area)
                .bind(after_at)
                .bind(after_id)
                .bind(scope.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            pub(super) async fn list_visits(
                &self,
                scope: &super::read_model::Scope,
                filter: &super::read_model::VisitFilter,
            ) -> Result<Vec<super::read_model::VisitRow>, super::StorageError> {
                let (after_at, after_id) = super::read_model::page(scope);
                Ok(sqlx::query_as(concat!(
                    "SELECT document_id, area, created_by, created_at, household, visit_date, \
                     visitors, heard, people_received, requests, on_listening_day FROM visits WHERE ",
                    super::read_model::sql!(area 1),
                    " AND ",
                    super::read_model::sql!(page 2, 3),
                    " AND (CAST($5 AS TEXT) IS NULL OR visit_date >= $5) \
                     AND (CAST($6 AS TEXT) IS NULL OR visit_date <= $6) \
                     AND (CAST($7 AS TEXT) IS NULL OR household = $7) \
                     ORDER BY created_at, document_id LIMIT $4"
                ))
                .bind(&scope.area)
                .bind(after_at)
                .bind(after_id)
                .bind(scope.limit)
                .bind(&filter.from)
                .bind(&filter.to)
                .bind(&filter.household)
                .fetch_all(&self.pool)
                .await?)
            }

            pub(super) async fn list_requests(
                &self,
                scope: &super::read_model::Scope,
                filter: &super::read_model::RequestFilter,
            ) -> Result<Vec<super::read_model::RequestRow>, super::StorageError> {
                let (after_at, after_id) = super::read_model::page(scope);
                Ok(sqlx::query_as(concat!(
                    "SELECT * FROM (SELECT document_id, area, created_by, created_at, origin, \
                     household, visit, category, description, status, track, department, \
                     satisfaction, collected_at, triaged_at, resolved_at, closed_at, due_at, \
                     (status IN ('collected', 'triaged', 'handling') AND due_at IS NOT NULL \
                     AND due_at < $5) AS overdue FROM requests) r WHERE ",
                    super::read_model::sql!(area 1),
                    " AND ",
                    super::read_model::sql!(page 2, 3),
                    " AND (CAST($6 AS TEXT) IS NULL OR status = $6) \
                     AND (CAST($7 AS TEXT) IS NULL OR track = $7) \
                     AND (CAST($8 AS TEXT) IS NULL OR category = $8) \
                     AND (CAST($9 AS TEXT) IS NULL OR department = $9) \
                     AND (CAST($10 AS TEXT) IS NULL OR origin = $10) \
                     AND (NOT $11 OR status NOT IN ('resolved', 'called_back', 'closed')) \
                     AND (NOT $12 OR overdue) \
                     AND (CAST($13 AS BIGINT) IS NULL OR collected_at >= $13) \
                     AND (CAST($14 AS BIGINT) IS NULL OR collected_at <= $14) \
                     ORDER BY created_at, document_id LIMIT $4"
                ))
                .bind(&scope.area)
                .bind(after_at)
                .bind(after_id)
                .bind(scope.limit)
                .bind(filter.now)
                .bind(&filter.status)
                .bind(&filter.track)
                .bind(&filter.category)
                .bind(&filter.department)
                .bind(&filter.origin)
                .bind(filter.open)
                .bind(filter.overdue)
                .bind(filter.collected_from)
                .bind(filter.collected_to)
                .fetch_all(&self.pool)
                .await?)
            }

            /// The timelines of `docs`, in (document, timeline) order.
            pub(super) async fn request_events(
                &self,
                docs: &[String],
            ) -> Result<Vec<super::read_model::EventRow>, super::StorageError> {
                let mut events = Vec::new();
                for doc in docs {
                    let rows: Vec<super::read_model::EventRow> = sqlx::query_as(
                        "SELECT document_id, idx, event_type, at, by_user, device, note, track, \
                         department, satisfaction, ignored FROM request_events \
                         WHERE document_id = $1 ORDER BY idx",
                    )
                    .bind(doc)
                    .fetch_all(&self.pool)
                    .await?;
                    events.extend(rows);
                }
                Ok(events)
            }

            pub(super) async fn list_orders(
                &self,
                scope: &super::read_model::Scope,
                filter: &super::read_model::OrderFilter,
            ) -> Result<Vec<super::read_model::OrderRow>, super::StorageError> {
                let (after_at, after_id) = super::read_model::page(scope);
                Ok(sqlx::query_as(concat!(
                    "SELECT document_id, area, created_by, created_at, requester, service_kind, \
                     window_start, window_end, place, status, assignee, claim_count, taken_at \
                     FROM orders WHERE ",
                    super::read_model::sql!(area 1),
                    " AND ",
                    super::read_model::sql!(page 2, 3),
                    " AND (CAST($5 AS TEXT) IS NULL OR status = $5) \
                     AND (CAST($6 AS TEXT) IS NULL OR service_kind = $6) \
                     AND (CAST($7 AS TEXT) IS NULL OR assignee = $7) \
                     AND (CAST($8 AS BIGINT) IS NULL OR created_at >= $8) \
                     AND (CAST($9 AS BIGINT) IS NULL OR created_at <= $9) \
                     ORDER BY created_at, document_id LIMIT $4"
                ))
                .bind(&scope.area)
                .bind(after_at)
                .bind(after_id)
                .bind(scope.limit)
                .bind(&filter.status)
                .bind(&filter.service_kind)
                .bind(&filter.volunteer)
                .bind(filter.placed_from)
                .bind(filter.placed_to)
                .fetch_all(&self.pool)
                .await?)
            }

            pub(super) async fn order_groups(
                &self,
                area: &str,
                filter: &super::read_model::OrderFilter,
                by: super::read_model::OrderGrouping,
            ) -> Result<Vec<super::read_model::OrderGroupRow>, super::StorageError> {
                use super::read_model::OrderGrouping as G;
                macro_rules! grouped {
                    ($column:literal) => {
                        concat!(
                            "SELECT ", $column, " AS key, COUNT(*) AS orders, \
                             CAST(COALESCE(SUM(CASE WHEN assignee IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS taken, \
                             CAST(COALESCE(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT) AS done, \
                             CAST(COALESCE(SUM(taken_at - created_at), 0) AS BIGINT) AS take_ms_total \
                             FROM orders WHERE ",
                            super::read_model::sql!(area 1),
                            " AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
                             AND (CAST($3 AS TEXT) IS NULL OR service_kind = $3) \
                             AND (CAST($4 AS TEXT) IS NULL OR assignee = $4) \
                             AND (CAST($5 AS BIGINT) IS NULL OR created_at >= $5) \
                             AND (CAST($6 AS BIGINT) IS NULL OR created_at <= $6) \
                             GROUP BY ", $column, " ORDER BY CASE WHEN ", $column,
                            " IS NULL THEN 0 ELSE 1 END, ", $column
                        )
                    };
                }
                let statement = match by {
                    G::Status => grouped!("status"),
                    G::ServiceKind => grouped!("service_kind"),
                    G::Volunteer => grouped!("assignee"),
                };
                Ok(sqlx::query_as(statement)
                    .bind(area)
                    .bind(&filter.status)
                    .bind(&filter.service_kind)
                    .bind(&filter.volunteer)
                    .bind(filter.placed_from)
                    .bind(filter.placed_to)
                    .fetch_all(&self.pool)
                    .await?)
            }

            pub(super) async fn station_groups(
                &self,
                area: &str,
                from: Option<&str>,
                to: Option<&str>,
                station: Option<&str>,
                period: super::read_model::Period,
            ) -> Result<Vec<super::read_model::StationGroupRow>, super::StorageError> {
                macro_rules! grouped {
                    ($period:literal) => {
                        concat!(
                            "SELECT l.station AS station, e.service_kind AS service_kind, ",
                            $period, " AS period, COUNT(*) AS services, \
                             CAST(COALESCE(SUM(e.people_served), 0) AS BIGINT) AS people_served \
                             FROM station_log_entries e \
                             JOIN station_logs l ON l.document_id = e.document_id WHERE ",
                            super::read_model::sql!(area 1 on "l.area"),
                            " AND (CAST($2 AS TEXT) IS NULL OR l.log_date >= $2) \
                             AND (CAST($3 AS TEXT) IS NULL OR l.log_date <= $3) \
                             AND (CAST($4 AS TEXT) IS NULL OR l.station = $4) \
                             GROUP BY l.station, e.service_kind, ", $period,
                            " ORDER BY l.station, e.service_kind, ", $period
                        )
                    };
                }
                let statement = match period {
                    super::read_model::Period::Day => grouped!("l.log_date"),
                    super::read_model::Period::Month => grouped!("SUBSTR(l.log_date, 1, 7)"),
                };
                Ok(sqlx::query_as(statement)
                    .bind(area)
                    .bind(from)
                    .bind(to)
                    .bind(station)
                    .fetch_all(&self.pool)
                    .await?)
            }

            pub(super) async fn visit_days(
                &self,
                area: &str,
                from: Option<&str>,
                to: Option<&str>,
            ) -> Result<Vec<super::read_model::VisitDayRow>, super::StorageError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT visit_date, area, COUNT(*) AS visits, \
                     COUNT(DISTINCT household) AS households_visited, \
                     CAST(COALESCE(SUM(people_received), 0) AS BIGINT) AS people_received \
                     FROM visits WHERE ",
                    super::read_model::sql!(area 1),
                    " AND (CAST($2 AS TEXT) IS NULL OR visit_date >= $2) \
                     AND (CAST($3 AS TEXT) IS NULL OR visit_date <= $3) \
                     GROUP BY visit_date, area ORDER BY visit_date, area"
                ))
                .bind(area)
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Distinct households visited over the range, per area node.
            pub(super) async fn households_visited(
                &self,
                area: &str,
                from: Option<&str>,
                to: Option<&str>,
            ) -> Result<Vec<super::read_model::AreaCountRow>, super::StorageError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT area, COUNT(DISTINCT household) AS count FROM visits WHERE ",
                    super::read_model::sql!(area 1),
                    " AND (CAST($2 AS TEXT) IS NULL OR visit_date >= $2) \
                     AND (CAST($3 AS TEXT) IS NULL OR visit_date <= $3) \
                     GROUP BY area ORDER BY area"
                ))
                .bind(area)
                .bind(from)
                .bind(to)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Households per area node of the subtree.
            pub(super) async fn household_counts(
                &self,
                area: &str,
            ) -> Result<Vec<super::read_model::AreaCountRow>, super::StorageError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT area, COUNT(*) AS count FROM households WHERE ",
                    super::read_model::sql!(area 1),
                    " GROUP BY area ORDER BY area"
                ))
                .bind(area)
                .fetch_all(&self.pool)
                .await?)
            }

            pub(super) async fn request_figures(
                &self,
                area: &str,
                from_ms: i64,
                to_ms: i64,
                now_ms: i64,
            ) -> Result<super::read_model::RequestFigures, super::StorageError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT COUNT(*) AS collected, \
                     CAST(COALESCE(SUM(CASE WHEN status IN ('handling', 'resolved', 'called_back', 'closed') THEN 1 ELSE 0 END), 0) AS BIGINT) AS handled, \
                     CAST(COALESCE(SUM(CASE WHEN status IN ('resolved', 'called_back', 'closed') THEN 1 ELSE 0 END), 0) AS BIGINT) AS resolved, \
                     CAST(COALESCE(SUM(CASE WHEN status IN ('collected', 'triaged', 'handling') AND due_at < $4 THEN 1 ELSE 0 END), 0) AS BIGINT) AS overdue, \
                     CAST(COALESCE(SUM(CASE WHEN satisfaction IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS called_back, \
                     CAST(COALESCE(SUM(CASE WHEN satisfaction = 'satisfied' THEN 1 ELSE 0 END), 0) AS BIGINT) AS satisfied \
                     FROM requests WHERE ",
                    super::read_model::sql!(area 1),
                    " AND collected_at >= $2 AND collected_at <= $3"
                ))
                .bind(area)
                .bind(from_ms)
                .bind(to_ms)
                .bind(now_ms)
                .fetch_one(&self.pool)
                .await?)
            }

            pub(super) async fn visit_figures(
                &self,
                area: &str,
                from: &str,
                to: &str,
            ) -> Result<super::read_model::VisitFigures, super::StorageError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT COUNT(*) AS visits, COUNT(DISTINCT household) AS households_visited, \
                     CAST(COALESCE(SUM(people_received), 0) AS BIGINT) AS people_received \
                     FROM visits WHERE ",
                    super::read_model::sql!(area 1),
                    " AND visit_date >= $2 AND visit_date <= $3"
                ))
                .bind(area)
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool)
                .await?)
            }

            pub(super) async fn order_figures(
                &self,
                area: &str,
                from_ms: i64,
                to_ms: i64,
            ) -> Result<super::read_model::OrderFigures, super::StorageError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT COUNT(*) AS placed, \
                     CAST(COALESCE(SUM(CASE WHEN assignee IS NULL THEN 0 ELSE 1 END), 0) AS BIGINT) AS taken, \
                     CAST(COALESCE(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END), 0) AS BIGINT) AS done, \
                     CAST(COALESCE(SUM(taken_at - created_at), 0) AS BIGINT) AS take_ms_total \
                     FROM orders WHERE ",
                    super::read_model::sql!(area 1),
                    " AND created_at >= $2 AND created_at <= $3"
                ))
                .bind(area)
                .bind(from_ms)
                .bind(to_ms)
                .fetch_one(&self.pool)
                .await?)
            }

            pub(super) async fn station_figures(
                &self,
                area: &str,
                from: &str,
                to: &str,
            ) -> Result<super::read_model::StationFigures, super::StorageError> {
                Ok(sqlx::query_as(concat!(
                    "SELECT COUNT(*) AS services, \
                     CAST(COALESCE(SUM(e.people_served), 0) AS BIGINT) AS beneficiaries \
                     FROM station_log_entries e \
                     JOIN station_logs l ON l.document_id = e.document_id WHERE ",
                    super::read_model::sql!(area 1 on "l.area"),
                    " AND l.log_date >= $2 AND l.log_date <= $3"
                ))
                .bind(area)
                .bind(from)
                .bind(to)
                .fetch_one(&self.pool)
                .await?)
            }

            /// The department a request is transferred to (`Some(None)`: not transferred;
            /// `None`: no such request).
            pub(super) async fn request_department(
                &self,
                doc: &str,
            ) -> Result<Option<Option<String>>, super::StorageError> {
                let row: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT CASE WHEN track = 'transfer' THEN department END FROM requests \
                     WHERE document_id = $1",
                )
                .bind(doc)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(department,)| department))
            }

            /// The change log of one document, oldest first.
            pub(super) async fn document_history(
                &self,
                doc: &str,
            ) -> Result<Vec<super::read_model::ChangeRow>, super::StorageError> {
                Ok(sqlx::query_as(
                    "SELECT id, tx, document_id, seq, kind, area, user_id, device_id, role, \
                     changes, client_time, server_time, summary FROM change_log \
                     WHERE document_id = $1 ORDER BY seq",
                )
                .bind(doc)
                .fetch_all(&self.pool)
                .await?)
            }

            /// Change-log rows after the cursor (`tx`, `id`) that `filter` lets through, in
            /// cursor order, up to `limit`, and only below the transaction horizon.
            pub(super) async fn changes_after(
                &self,
                after: (i64, i64),
                filter: &super::read_model::ChangeFilter,
                limit: i64,
            ) -> Result<Vec<super::read_model::ChangeRow>, super::StorageError> {
                let kinds = filter.kinds.join(",");
                Ok(sqlx::query_as(concat!(
                    "SELECT id, tx, document_id, seq, kind, area, user_id, device_id, role, \
                     changes, client_time, server_time, summary FROM change_log \
                     WHERE (tx > $1 OR (tx = $1 AND id > $2)) AND tx < ",
                    $horizon,
                    " AND ",
                    super::read_model::sql!(area 3),
                    " AND ',' || $4 || ',' LIKE '%,' || kind || ',%' \
                     AND (CAST($5 AS TEXT) IS NULL OR kind <> 'request' OR document_id IN \
                       (SELECT document_id FROM requests WHERE track = 'transfer' AND department = $5)) \
                     AND (CAST($6 AS BIGINT) IS NULL OR server_time >= $6) \
                     AND (CAST($7 AS BIGINT) IS NULL OR server_time <= $7) \
                     ORDER BY tx, id LIMIT $8"
                ))
                .bind(after.0)
                .bind(after.1)
                .bind(&filter.area)
                .bind(kinds)
                .bind(&filter.department)
                .bind(filter.from)
                .bind(filter.to)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
pub(super) use read_model_impl;

/// `value` as JSON text (lists of IDs and residents in projection rows).
pub(super) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// The keyset page bounds of `scope` as bind values.
pub(super) fn page(scope: &Scope) -> (Option<i64>, String) {
    match &scope.after {
        Some((at, id)) => (Some(*at), id.clone()),
        None => (None, String::new()),
    }
}

/// The type-specific columns of a timeline event.
pub(super) struct EventColumns {
    pub event_type: &'static str,
    pub track: Option<&'static str>,
    pub department: Option<String>,
    pub satisfaction: Option<&'static str>,
}

pub(super) fn event_columns(event: &lianxin_protocol::domain::Event) -> EventColumns {
    use lianxin_protocol::domain::EventKind;
    let mut columns = EventColumns {
        event_type: event.event_type().as_str(),
        track: None,
        department: None,
        satisfaction: None,
    };
    match &event.kind {
        EventKind::Triaged { track, department } => {
            columns.track = Some(track.as_str());
            columns.department = department.clone();
        }
        EventKind::CalledBack { satisfaction } => {
            columns.satisfaction = Some(satisfaction.as_str())
        }
        _ => {}
    }
    columns
}

/// The server's clock, in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

use super::{StorageError, Store, dispatch};

/// What `reproject_all` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReprojectReport {
    /// Documents whose projection was written.
    pub projected: usize,
    /// Untyped documents, and documents that no longer load or project.
    pub skipped: usize,
}

impl Store {
    /// Rebuilds every projection from the stored documents with
    /// [`lianxin_protocol::domain::project`], the function the live path uses, each document in
    /// its own transaction as of its `last_seq`. With `from_scratch`, every projection row is
    /// deleted first.
    pub async fn reproject_all(
        &self,
        config: &lianxin_protocol::domain::ProjectionConfig,
        from_scratch: bool,
    ) -> Result<ReprojectReport, StorageError> {
        if from_scratch {
            self.clear_projections().await?;
        }
        let mut report = ReprojectReport::default();
        for id in self.document_ids().await? {
            let Ok(doc_id) = id.parse::<lianxin_protocol::DocumentId>() else {
                report.skipped += 1;
                continue;
            };
            let Some(stored) = self.load(&doc_id).await? else {
                continue;
            };
            let seq = stored.last_seq;
            let config = config.clone();
            let projected = tokio::task::spawn_blocking(move || {
                let doc = stored.to_automerge().ok()?;
                lianxin_protocol::domain::project(&doc, &config).ok()
            })
            .await
            .ok()
            .flatten();
            match projected {
                Some(projected) => {
                    self.reproject(&doc_id, seq, &projected).await?;
                    report.projected += 1;
                }
                None => report.skipped += 1,
            }
        }
        Ok(report)
    }

    /// Rewrites the projection of `doc` as of `seq` (see `reproject`).
    pub async fn reproject(
        &self,
        doc: &lianxin_protocol::DocumentId,
        seq: i64,
        projected: &Projected,
    ) -> Result<(), StorageError> {
        dispatch!(self, s => s.reproject(doc, seq, projected).await)
    }

    /// Every stored document ID.
    pub async fn document_ids(&self) -> Result<Vec<String>, StorageError> {
        dispatch!(self, s => s.document_ids().await)
    }

    /// Deletes every projection row.
    pub async fn clear_projections(&self) -> Result<(), StorageError> {
        dispatch!(self, s => s.clear_projections().await)
    }

    pub async fn list_households(&self, scope: &Scope) -> Result<Vec<HouseholdRow>, StorageError> {
        dispatch!(self, s => s.list_households(scope).await)
    }

    pub async fn list_visits(
        &self,
        scope: &Scope,
        filter: &VisitFilter,
    ) -> Result<Vec<VisitRow>, StorageError> {
        dispatch!(self, s => s.list_visits(scope, filter).await)
    }

    pub async fn list_requests(
        &self,
        scope: &Scope,
        filter: &RequestFilter,
    ) -> Result<Vec<RequestRow>, StorageError> {
        dispatch!(self, s => s.list_requests(scope, filter).await)
    }

    pub async fn request_events(&self, docs: &[String]) -> Result<Vec<EventRow>, StorageError> {
        dispatch!(self, s => s.request_events(docs).await)
    }

    pub async fn list_orders(
        &self,
        scope: &Scope,
        filter: &OrderFilter,
    ) -> Result<Vec<OrderRow>, StorageError> {
        dispatch!(self, s => s.list_orders(scope, filter).await)
    }

    pub async fn order_groups(
        &self,
        area: &str,
        filter: &OrderFilter,
        by: OrderGrouping,
    ) -> Result<Vec<OrderGroupRow>, StorageError> {
        dispatch!(self, s => s.order_groups(area, filter, by).await)
    }

    pub async fn station_groups(
        &self,
        area: &str,
        from: Option<&str>,
        to: Option<&str>,
        station: Option<&str>,
        period: Period,
    ) -> Result<Vec<StationGroupRow>, StorageError> {
        dispatch!(self, s => s.station_groups(area, from, to, station, period).await)
    }

    pub async fn visit_days(
        &self,
        area: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<VisitDayRow>, StorageError> {
        dispatch!(self, s => s.visit_days(area, from, to).await)
    }

    pub async fn households_visited(
        &self,
        area: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Vec<AreaCountRow>, StorageError> {
        dispatch!(self, s => s.households_visited(area, from, to).await)
    }

    pub async fn household_counts(&self, area: &str) -> Result<Vec<AreaCountRow>, StorageError> {
        dispatch!(self, s => s.household_counts(area).await)
    }

    pub async fn request_figures(
        &self,
        area: &str,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> Result<RequestFigures, StorageError> {
        dispatch!(self, s => s.request_figures(area, from_ms, to_ms, now_ms).await)
    }

    pub async fn visit_figures(
        &self,
        area: &str,
        from: &str,
        to: &str,
    ) -> Result<VisitFigures, StorageError> {
        dispatch!(self, s => s.visit_figures(area, from, to).await)
    }

    pub async fn order_figures(
        &self,
        area: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<OrderFigures, StorageError> {
        dispatch!(self, s => s.order_figures(area, from_ms, to_ms).await)
    }

    pub async fn station_figures(
        &self,
        area: &str,
        from: &str,
        to: &str,
    ) -> Result<StationFigures, StorageError> {
        dispatch!(self, s => s.station_figures(area, from, to).await)
    }

    pub async fn request_department(
        &self,
        doc: &str,
    ) -> Result<Option<Option<String>>, StorageError> {
        dispatch!(self, s => s.request_department(doc).await)
    }

    pub async fn document_history(&self, doc: &str) -> Result<Vec<ChangeRow>, StorageError> {
        dispatch!(self, s => s.document_history(doc).await)
    }

    pub async fn changes_after(
        &self,
        after: (i64, i64),
        filter: &ChangeFilter,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StorageError> {
        dispatch!(self, s => s.changes_after(after, filter, limit).await)
    }
}
