//! Typed operations for the field workflows, on top of [`Client`]: record a visit, raise a
//! request and walk it around its loop, place / claim / complete an order, log a station's
//! services, and list documents by kind and area. Each writes a well-formed document with the
//! builders of `lianxin_protocol::domain`, so what the server's rules check is what these write.
//!
//! Every operation works offline like any edit; the server judges it when it syncs, and a
//! refused one comes back as `ClientEvent::ChangeRejected`.

use std::time::{SystemTime, UNIX_EPOCH};

use automerge::AutomergeError;
use automerge::transaction::Transaction;
use lianxin_protocol::DocumentId;
use lianxin_protocol::domain::builders::{
    self, BuildError, Common, OrderInit, RequestInit, StationEntry, StationLogInit, VisitInit,
};
use lianxin_protocol::domain::{
    AreaPath, Claim, Event, EventKind, Flow, Kind, LocalDate, OrderStatus, Track, order_flow,
    read_flow, read_info,
};

use crate::{Client, ClientError};

/// Who is acting on this device: the signed-in user, the device, and the user's area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub user: String,
    pub device: String,
    pub area: AreaPath,
}

/// Where an order stands, as this device sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderOutcome {
    pub status: OrderStatus,
    pub assignee: Option<String>,
    /// Whether this author claimed it.
    pub claimed: bool,
    /// Whether this author claimed it and someone else was assigned: the device lost.
    pub lost: bool,
}

/// The typed API of one author on a client.
pub struct Workflows<'a> {
    client: &'a Client,
    author: Author,
    now: fn() -> i64,
}

fn system_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Adapts a builder to the SDK's transaction closures (which speak `AutomergeError`), keeping
/// the builder's own, more telling error in `failure`.
fn keeping<'f>(
    failure: &'f mut Option<BuildError>,
    build: impl FnOnce(&mut Transaction<'_>) -> Result<(), BuildError> + 'f,
) -> impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError> + 'f {
    move |tx| {
        build(tx).map_err(|e| {
            *failure = Some(e);
            AutomergeError::Fail
        })
    }
}

/// The builder's error if it failed, else the SDK call's result.
fn builder_outcome<T>(
    result: Result<T, ClientError>,
    failure: Option<BuildError>,
) -> Result<T, ClientError> {
    match failure {
        Some(e) => Err(e.into()),
        None => result,
    }
}

impl Client {
    /// The typed workflows of `author` on this device.
    pub fn workflows(&self, author: Author) -> Workflows<'_> {
        Workflows {
            client: self,
            author,
            now: system_now,
        }
    }
}

impl<'a> Workflows<'a> {
    /// Uses `now` (milliseconds since the epoch) instead of the system clock, for tests.
    pub fn with_clock(mut self, now: fn() -> i64) -> Self {
        self.now = now;
        self
    }

    fn common(&self, area: &AreaPath) -> Common {
        Common {
            area: area.clone(),
            created_by: self.author.user.clone(),
            created_at: (self.now)(),
        }
    }

    /// Runs a builder inside an edit, keeping its own error.
    async fn edit(
        &self,
        id: DocumentId,
        build: impl FnOnce(&mut Transaction<'_>) -> Result<(), BuildError>,
    ) -> Result<(), ClientError> {
        let mut failure = None;
        let result = self.client.change(id, keeping(&mut failure, build)).await;
        builder_outcome(result, failure)
    }

    /// Runs a builder to create a document, keeping its own error.
    async fn create(
        &self,
        build: impl FnOnce(&mut Transaction<'_>) -> Result<(), BuildError>,
    ) -> Result<DocumentId, ClientError> {
        let mut failure = None;
        let result = self.client.create(keeping(&mut failure, build)).await;
        builder_outcome(result, failure)
    }

    fn event(&self, kind: EventKind, note: Option<String>) -> Event {
        Event {
            kind,
            at: (self.now)(),
            by: self.author.user.clone(),
            device: Some(self.author.device.clone()),
            note,
        }
    }

    /// Records a listening-day household visit in `area`.
    pub async fn record_visit(
        &self,
        area: &AreaPath,
        visit: &VisitInit,
    ) -> Result<DocumentId, ClientError> {
        let common = self.common(area);
        self.create(|tx| builders::init_visit(tx, &common, visit))
            .await
    }

    /// Raises a request (诉求) in `area`; it starts `collected` by this author.
    pub async fn raise_request(
        &self,
        area: &AreaPath,
        request: &RequestInit,
    ) -> Result<DocumentId, ClientError> {
        let common = self.common(area);
        let mut request = request.clone();
        request.device = Some(self.author.device.clone());
        self.create(|tx| builders::init_request(tx, &common, &request))
            .await
    }

    /// Puts a request on a track (`department` for transfers).
    pub async fn triage(
        &self,
        request: DocumentId,
        track: Track,
        department: Option<String>,
    ) -> Result<(), ClientError> {
        let event = self.event(EventKind::Triaged { track, department }, None);
        self.edit(request, |tx| builders::append_request_event(tx, &event))
            .await
    }

    /// Adds a timeline event to a request (handling, resolved, called back, closed).
    pub async fn add_request_event(
        &self,
        request: DocumentId,
        kind: EventKind,
        note: Option<String>,
    ) -> Result<(), ClientError> {
        let event = self.event(kind, note);
        self.edit(request, |tx| builders::append_request_event(tx, &event))
            .await
    }

    /// Where a request stands: the state machine over its merged timeline.
    pub fn request_flow(&self, request: DocumentId) -> Result<Flow, ClientError> {
        self.client
            .read(request, read_flow)?
            .map_err(|e| ClientError::Schema(request, e))
    }

    /// Places a volunteer service order in `area`.
    pub async fn place_order(
        &self,
        area: &AreaPath,
        order: &OrderInit,
    ) -> Result<DocumentId, ClientError> {
        let common = self.common(area);
        self.create(|tx| builders::init_order(tx, &common, order))
            .await
    }

    /// Taps "take": adds this volunteer's claim. The server picks one winner among claims.
    pub async fn claim_order(&self, order: DocumentId) -> Result<(), ClientError> {
        let claim = Claim {
            volunteer: self.author.user.clone(),
            device: Some(self.author.device.clone()),
            at: (self.now)(),
        };
        self.edit(order, |tx| builders::append_claim(tx, &claim))
            .await
    }

    /// Marks an order this volunteer was assigned as done.
    pub async fn complete_order(&self, order: DocumentId) -> Result<(), ClientError> {
        self.edit(order, |tx| {
            builders::set_order_status(tx, OrderStatus::Done)
        })
        .await
    }

    /// The order's status and assignee, and whether this author lost it to someone else.
    pub fn order_outcome(&self, order: DocumentId) -> Result<OrderOutcome, ClientError> {
        self.client
            .read(order, |doc| {
                let status = order_flow::read_order_status(doc)?;
                let assignee = order_flow::read_assignee(doc)?;
                let claimed = order_flow::read_claims(doc)?
                    .iter()
                    .any(|c| c.volunteer == self.author.user);
                let lost = claimed && assignee.as_ref().is_some_and(|a| *a != self.author.user);
                Ok(OrderOutcome {
                    status,
                    assignee,
                    claimed,
                    lost,
                })
            })?
            .map_err(|e| ClientError::Schema(order, e))
    }

    /// Logs one service at a station on `date`, adding to that day's log (created on first
    /// use on this device).
    pub async fn log_station_service(
        &self,
        area: &AreaPath,
        station: &str,
        date: LocalDate,
        entry: &StationEntry,
    ) -> Result<DocumentId, ClientError> {
        let existing = self.list(Kind::StationLog, area).into_iter().find(|id| {
            self.client
                .read(*id, |doc| {
                    let text = |key: &str| match automerge::ReadDoc::get(doc, automerge::ROOT, key)
                    {
                        Ok(Some((automerge::Value::Scalar(s), _))) => match s.as_ref() {
                            automerge::ScalarValue::Str(s) => Some(s.to_string()),
                            _ => None,
                        },
                        _ => None,
                    };
                    text("station").as_deref() == Some(station)
                        && text("date").as_deref() == Some(date.to_string().as_str())
                })
                .unwrap_or(false)
        });
        match existing {
            Some(id) => {
                self.edit(id, |tx| builders::add_station_entry(tx, entry))
                    .await?;
                Ok(id)
            }
            None => {
                let common = self.common(area);
                let log = StationLogInit {
                    station: station.to_owned(),
                    date,
                    entries: vec![entry.clone()],
                };
                self.create(|tx| builders::init_station_log(tx, &common, &log))
                    .await
            }
        }
    }

    /// Documents of `kind` held on this device whose area is inside `area`.
    pub fn list(&self, kind: Kind, area: &AreaPath) -> Vec<DocumentId> {
        self.client
            .documents()
            .into_iter()
            .filter(|id| {
                self.client
                    .read(*id, |doc| {
                        read_info(doc)
                            .is_ok_and(|info| info.kind == kind && area.contains(&info.area))
                    })
                    .unwrap_or(false)
            })
            .collect()
    }
}
