//! The supervisor read model through real devices, websockets and storage: statistics of a
//! seeded street equal the figures worked out by hand below; projected rows equal the merged
//! document and survive `reproject`; a supervisor sees only their area and no residents'
//! names; the audit trail names who did what; the changes feed delivers every change exactly
//! once while writers commit out of order; every route is in the OpenAPI document.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lianxin_client::{Client, DocumentId};
use lianxin_protocol::domain::builders::{
    self, Common, HouseholdInit, OrderInit, RequestInit, Resident, StationEntry, StationLogInit,
    VisitInit,
};
use lianxin_protocol::domain::{
    AreaPath, Claim, Event, EventKind, LocalDate, Origin, Satisfaction, Track,
};
use lianxin_tests::{Backend, TestApp, TestDb};
use serde_json::{Value, json};

use crate::field::{am, device, field_app};

const WAIT: Duration = Duration::from_secs(15);
const STREET: &str = "/city/street-1";
const COMMUNITY_A: &str = "/city/street-1/community-a";
const COMMUNITY_B: &str = "/city/street-1/community-b";
const GRID_1: &str = "/city/street-1/community-a/grid-1";
const GRID_2: &str = "/city/street-1/community-a/grid-2";
const GRID_3: &str = "/city/street-1/community-b/grid-3";
const HOUR: i64 = 3_600_000;

/// Milliseconds at `hour`:00 local time (+8) on 2026-`month`-`day`.
fn at(month: u8, day: u8, hour: i64) -> i64 {
    LocalDate::new(2026, month, day).unwrap().start_ms(8 * 3600) + hour * HOUR
}

fn common(area: &str, user: &str, created_at: i64) -> Common {
    Common {
        area: AreaPath::new(area).unwrap(),
        created_by: user.into(),
        created_at,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One author on one device, writing documents with chosen times.
struct Author {
    client: Client,
    user: &'static str,
}

impl Author {
    async fn new(app: &TestApp, user: &'static str, role: &str, area: &str) -> Self {
        Self {
            client: device(app, user, role, area).await,
            user,
        }
    }

    async fn household(&self, area: &str, address: &str, names: &[&str]) -> DocumentId {
        let init = HouseholdInit {
            address: address.into(),
            residents: names
                .iter()
                .map(|name| Resident {
                    name: (*name).into(),
                    phone: Some("13800000000".into()),
                    id_number: None,
                })
                .collect(),
        };
        let common = common(area, self.user, at(1, 1, 9));
        self.synced(
            self.client
                .create(|tx| builders::init_household(tx, &common, &init).map_err(am))
                .await
                .unwrap(),
        )
        .await
    }

    async fn visit(&self, area: &str, household: DocumentId, day: u8, people: u32) -> DocumentId {
        self.visit_on(area, household, 1, day, people).await
    }

    async fn visit_on(
        &self,
        area: &str,
        household: DocumentId,
        month: u8,
        day: u8,
        people: u32,
    ) -> DocumentId {
        let init = VisitInit {
            household: household.to_string(),
            date: LocalDate::new(2026, month, day).unwrap(),
            visitors: vec![self.user.into()],
            heard: "heard".into(),
            people_received: people,
            requests: vec![],
        };
        let common = common(area, self.user, at(month, day, 10));
        self.synced(
            self.client
                .create(|tx| builders::init_visit(tx, &common, &init).map_err(am))
                .await
                .unwrap(),
        )
        .await
    }

    /// A request collected at `collected`, then the given events in order.
    async fn request(&self, area: &str, collected: i64, events: &[(EventKind, i64)]) -> DocumentId {
        let init = RequestInit {
            origin: Origin::Visit,
            household: None,
            visit: None,
            category: "repair".into(),
            description: "broken light in the stairwell".into(),
            device: Some(format!("{}-phone", self.user)),
        };
        let common = common(area, self.user, collected);
        let id = self
            .client
            .create(|tx| builders::init_request(tx, &common, &init).map_err(am))
            .await
            .unwrap();
        for (kind, when) in events {
            self.event(id, kind.clone(), *when).await;
        }
        self.synced(id).await
    }

    async fn event(&self, id: DocumentId, kind: EventKind, when: i64) {
        let event = Event {
            kind,
            at: when,
            by: self.user.into(),
            device: Some(format!("{}-phone", self.user)),
            note: None,
        };
        self.client
            .change(id, |tx| {
                builders::append_request_event(tx, &event).map_err(am)
            })
            .await
            .unwrap();
    }

    async fn synced(&self, id: DocumentId) -> DocumentId {
        self.client.wait_synced(id, WAIT).await.unwrap();
        id
    }
}

fn triaged(track: Track) -> EventKind {
    EventKind::Triaged {
        track,
        department: (track == Track::Transfer).then(|| "water-bureau".to_owned()),
    }
}

/// GETs `path` with `token`; returns the status and the JSON body (or the text as a string).
async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(app.http_url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    let (status, body) = get(app, token, path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// Polls `path` until `done` holds of its body.
async fn eventually(
    app: &TestApp,
    token: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let body = get_ok(app, token, path).await;
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The documents of the seeded street.
struct Street {
    requests: BTreeMap<&'static str, DocumentId>,
    households: Vec<DocumentId>,
}

/// A street with two communities and three grids, seeded through real devices:
///
/// - households: grid-1 H1 H2 H3, grid-2 H4 H5 (community A: 5); grid-3 H6 H7 (community B: 2);
/// - visits on the listening days 2026-01-05 (H1 2 people, H2 1, H4 3, H6 2) and 2026-01-15 (H1 1,
///   H5 2, H7 4), and one on 2026-02-05 (H3), outside January;
/// - requests collected in January in A: R1 immediate, resolved, called back satisfied, closed;
///   R2 immediate, left (overdue since the evening of the 5th); R3 transferred and being handled
///   (due 3 days after the 15th: overdue); R4 supervised, triaged just now (not overdue); in B:
///   R5 transferred, handled, resolved, called back unsatisfied; R6 only collected; and R7 in B,
///   collected in February;
/// - orders in A: O1 placed 2026-01-05 10:00 and claimed at 10:30 (assigned by the server), O2
///   placed 2026-01-15, unclaimed;
/// - station-1 in grid-1: 2026-01-05 haircut for 3 and consultation for 2; 2026-01-15 haircut
///   for 4.
async fn seed(app: &TestApp) -> Street {
    let sec_a = Author::new(app, "sec-a", "secretary", COMMUNITY_A).await;
    let sec_b = Author::new(app, "sec-b", "secretary", COMMUNITY_B).await;
    let h1 = sec_a.household(GRID_1, "1-1-101", &["王芳"]).await;
    let h2 = sec_a
        .household(GRID_1, "1-1-102", &["李雷", "韩梅梅"])
        .await;
    let h3 = sec_a.household(GRID_1, "1-1-103", &["张伟"]).await;
    let h4 = sec_a.household(GRID_2, "2-1-201", &["刘洋"]).await;
    let h5 = sec_a.household(GRID_2, "2-1-202", &["陈静"]).await;
    let h6 = sec_b.household(GRID_3, "3-1-301", &["杨帆"]).await;
    let h7 = sec_b.household(GRID_3, "3-1-302", &["赵敏"]).await;

    sec_a.visit(GRID_1, h1, 5, 2).await;
    sec_a.visit(GRID_1, h2, 5, 1).await;
    sec_a.visit(GRID_2, h4, 5, 3).await;
    sec_b.visit(GRID_3, h6, 5, 2).await;
    sec_a.visit(GRID_1, h1, 15, 1).await;
    sec_a.visit(GRID_2, h5, 15, 2).await;
    sec_b.visit(GRID_3, h7, 15, 4).await;
    sec_a.visit_on(GRID_1, h3, 2, 5, 1).await;

    let now = now_ms();
    let mut requests = BTreeMap::new();
    requests.insert(
        "R1",
        sec_a
            .request(
                GRID_1,
                at(1, 5, 9),
                &[
                    (triaged(Track::Immediate), at(1, 5, 10)),
                    (EventKind::Resolved, at(1, 5, 11)),
                    (
                        EventKind::CalledBack {
                            satisfaction: Satisfaction::Satisfied,
                        },
                        at(1, 6, 9),
                    ),
                    (EventKind::Closed, at(1, 6, 10)),
                ],
            )
            .await,
    );
    requests.insert(
        "R2",
        sec_a
            .request(
                GRID_1,
                at(1, 5, 9),
                &[(triaged(Track::Immediate), at(1, 5, 12))],
            )
            .await,
    );
    requests.insert(
        "R3",
        sec_a
            .request(
                GRID_2,
                at(1, 15, 9),
                &[
                    (triaged(Track::Transfer), at(1, 15, 10)),
                    (EventKind::Handling, at(1, 16, 9)),
                ],
            )
            .await,
    );
    requests.insert(
        "R4",
        sec_a
            .request(GRID_2, at(1, 15, 9), &[(triaged(Track::Supervised), now)])
            .await,
    );
    requests.insert(
        "R5",
        sec_b
            .request(
                GRID_3,
                at(1, 15, 9),
                &[
                    (triaged(Track::Transfer), at(1, 15, 10)),
                    (EventKind::Handling, at(1, 16, 9)),
                    (EventKind::Resolved, at(1, 17, 9)),
                    (
                        EventKind::CalledBack {
                            satisfaction: Satisfaction::Unsatisfied,
                        },
                        at(1, 18, 9),
                    ),
                ],
            )
            .await,
    );
    requests.insert("R6", sec_b.request(GRID_3, at(1, 25, 9), &[]).await);
    requests.insert("R7", sec_b.request(GRID_3, at(2, 5, 9), &[]).await);

    let worker = Author::new(app, "gw-a", "grid_worker", COMMUNITY_A).await;
    let order = |placed: i64| {
        (
            common(GRID_2, "gw-a", placed),
            OrderInit {
                requester: h4.to_string(),
                service_kind: "escort".into(),
                window_start: placed,
                window_end: placed + 4 * HOUR,
                place: "clinic".into(),
            },
        )
    };
    let (c1, o1) = order(at(1, 5, 10));
    let order_1 = worker
        .synced(
            worker
                .client
                .create(|tx| builders::init_order(tx, &c1, &o1).map_err(am))
                .await
                .unwrap(),
        )
        .await;
    let (c2, o2) = order(at(1, 15, 10));
    worker
        .synced(
            worker
                .client
                .create(|tx| builders::init_order(tx, &c2, &o2).map_err(am))
                .await
                .unwrap(),
        )
        .await;
    let volunteer = device(app, "vol-1", "volunteer", COMMUNITY_A).await;
    volunteer.fetch(order_1, WAIT).await.unwrap();
    let claim = Claim {
        volunteer: "vol-1".into(),
        device: Some("vol-1-phone".into()),
        at: at(1, 5, 10) + HOUR / 2,
    };
    volunteer
        .change(order_1, |tx| builders::append_claim(tx, &claim).map_err(am))
        .await
        .unwrap();
    volunteer.wait_synced(order_1, WAIT).await.unwrap();

    let staff = Author::new(app, "staff-a", "station_staff", GRID_1).await;
    for (day, entries) in [
        (5, vec![("haircut", 3), ("consultation", 2)]),
        (15, vec![("haircut", 4)]),
    ] {
        let log = StationLogInit {
            station: "station-1".into(),
            date: LocalDate::new(2026, 1, day).unwrap(),
            entries: entries
                .into_iter()
                .map(|(kind, people)| StationEntry {
                    service_kind: kind.into(),
                    people_served: people,
                    served_by: "staff-a".into(),
                })
                .collect(),
        };
        let common = common(GRID_1, "staff-a", at(1, day, 18));
        staff
            .synced(
                staff
                    .client
                    .create(|tx| builders::init_station_log(tx, &common, &log).map_err(am))
                    .await
                    .unwrap(),
            )
            .await;
    }
    Street {
        requests,
        households: vec![h1, h2, h3, h4, h5, h6, h7],
    }
}

/// The figures of one area in January, as worked out by hand from [`seed`].
fn expected(area: &str) -> Value {
    let (collected, handled, resolved, overdue, called_back, satisfied) = match area {
        STREET => (6, 3, 2, 2, 2, 1),
        COMMUNITY_A => (4, 2, 1, 2, 1, 1),
        COMMUNITY_B => (2, 1, 1, 0, 1, 0),
        _ => unreachable!(),
    };
    let (households, visited, visits, people) = match area {
        STREET => (7, 6, 7, 15),
        COMMUNITY_A => (5, 4, 5, 9),
        COMMUNITY_B => (2, 2, 2, 6),
        _ => unreachable!(),
    };
    let (services, beneficiaries, placed, taken, take) = match area {
        STREET | COMMUNITY_A => (3, 9, 2, 1, Some(HOUR / 2)),
        _ => (0, 0, 0, 0, None),
    };
    let rate = |a: i64, b: i64| {
        if b == 0 {
            Value::Null
        } else {
            json!(a as f64 / b as f64)
        }
    };
    json!({
        "area": area,
        "requestsCollected": collected,
        "requestsHandled": handled,
        "requestsResolved": resolved,
        "handlingRate": rate(handled, collected),
        "resolutionRate": rate(resolved, collected),
        "overdue": overdue,
        "calledBack": called_back,
        "satisfied": satisfied,
        "satisfactionRate": rate(satisfied, called_back),
        "households": households,
        "householdsVisited": visited,
        "coverage": rate(visited, households),
        "visits": visits,
        "peopleReceived": people,
        "stationServices": services,
        "beneficiaries": beneficiaries,
        "ordersPlaced": placed,
        "ordersTaken": taken,
        "ordersDone": 0,
        "meanMsToTake": take,
    })
}

const JANUARY: &str = "from=2026-01-01&to=2026-01-31";

/// Everything the read model answers about the street, for comparing before and after
/// `reproject`.
async fn everything(app: &TestApp, token: &str) -> Vec<Value> {
    let mut answers = Vec::new();
    for path in [
        format!("/v1/stats?area={STREET}&{JANUARY}&by=children"),
        format!("/v1/households?area={STREET}"),
        format!("/v1/visits?area={STREET}"),
        format!("/v1/requests?area={STREET}"),
        format!("/v1/orders?area={STREET}"),
        format!("/v1/stations/summary?area={STREET}&period=month"),
        format!("/v1/listening-days?area={STREET}&by=children"),
    ] {
        answers.push(get_ok(app, token, &path).await);
    }
    answers
}

async fn seeded_street_gives_the_figures_computed_by_hand(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = field_app(&db).await;
    let street = seed(&app).await;
    let supervisor = app.token_as("sup", "sup-desk", "supervisor", STREET).await;

    // The server assigns the claimed order right after the claim: wait for it.
    eventually(&app, &supervisor, "/v1/orders?status=assigned", |body| {
        body["items"]
            .as_array()
            .is_some_and(|items| items.len() == 1)
    })
    .await;

    let stats = get_ok(&app, &supervisor, &format!("/v1/stats?{JANUARY}")).await;
    assert_eq!(stats["items"], json!([expected(STREET)]));
    let split = get_ok(
        &app,
        &supervisor,
        &format!("/v1/stats?{JANUARY}&by=children"),
    )
    .await;
    assert_eq!(
        split["items"],
        json!([expected(COMMUNITY_A), expected(COMMUNITY_B)])
    );

    // Listening days: per day over the street, with coverage of its 7 households.
    let days = get_ok(&app, &supervisor, &format!("/v1/listening-days?{JANUARY}")).await;
    assert_eq!(
        days["items"],
        json!([
            {"date": "2026-01-05", "area": STREET, "listeningDay": true, "visits": 4,
             "householdsVisited": 4, "households": 7, "coverage": 4.0 / 7.0, "peopleReceived": 8},
            {"date": "2026-01-15", "area": STREET, "listeningDay": true, "visits": 3,
             "householdsVisited": 3, "households": 7, "coverage": 3.0 / 7.0, "peopleReceived": 7},
        ])
    );

    // Open and overdue requests, and one track.
    let ids = |body: &Value| -> BTreeSet<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["documentId"].as_str().unwrap().to_owned())
            .collect()
    };
    let named = |names: &[&str]| -> BTreeSet<String> {
        names
            .iter()
            .map(|n| street.requests[n].to_string())
            .collect()
    };
    let overdue = get_ok(&app, &supervisor, "/v1/requests?overdue=true").await;
    assert_eq!(ids(&overdue), named(&["R2", "R3"]));
    let open = get_ok(&app, &supervisor, "/v1/requests?open=true").await;
    assert_eq!(ids(&open), named(&["R2", "R3", "R4", "R6", "R7"]));
    let transfer = get_ok(&app, &supervisor, "/v1/requests?track=transfer").await;
    assert_eq!(ids(&transfer), named(&["R3", "R5"]));
    let r1 = get_ok(
        &app,
        &supervisor,
        &format!("/v1/requests?status=closed&{JANUARY}"),
    )
    .await;
    let timeline: Vec<&str> = r1["items"][0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        timeline,
        ["collected", "triaged", "resolved", "called_back", "closed"]
    );

    // Orders by volunteer, with the time from placing to taking.
    let by_volunteer = get_ok(&app, &supervisor, "/v1/orders/summary?by=volunteer").await;
    assert_eq!(
        by_volunteer["items"],
        json!([
            {"key": null, "orders": 1, "taken": 0, "done": 0, "meanMsToTake": null},
            {"key": "vol-1", "orders": 1, "taken": 1, "done": 0, "meanMsToTake": HOUR / 2},
        ])
    );
    // Station services by station, kind and month.
    let stations = get_ok(&app, &supervisor, "/v1/stations/summary?period=month").await;
    assert_eq!(
        stations["items"],
        json!([
            {"station": "station-1", "serviceKind": "consultation", "period": "2026-01",
             "services": 1, "peopleServed": 2},
            {"station": "station-1", "serviceKind": "haircut", "period": "2026-01",
             "services": 2, "peopleServed": 7},
        ])
    );

    // Pages: two households at a time reach all seven, each once.
    let secretary = app
        .token_as("sec-street", "sec-street-phone", "secretary", STREET)
        .await;
    let mut seen = Vec::new();
    let mut path = "/v1/households?limit=2".to_owned();
    loop {
        let page = get_ok(&app, &secretary, &path).await;
        seen.extend(ids(&page));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/households?limit=2&after={next}"),
            None => break,
        }
    }
    let all: BTreeSet<String> = street.households.iter().map(|h| h.to_string()).collect();
    assert_eq!(seen.len(), 7);
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), all);

    // CSV of a list: a header and one line per row.
    let response = reqwest::Client::new()
        .get(app.http_url("/v1/requests?format=csv&status=closed"))
        .bearer_auth(&supervisor)
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    let header: Vec<&str> = lines[0].split(',').collect();
    assert!(
        header.contains(&"documentId") && header.contains(&"status"),
        "{csv}"
    );
    assert!(
        lines[1].contains(&street.requests["R1"].to_string()),
        "{csv}"
    );
    assert!(lines[1].contains(",closed,"), "{csv}");

    // Rebuilding every projection from the stored documents gives the same answers.
    let admin = app.token_as("admin", "admin-desk", "admin", "/city").await;
    let before = everything(&app, &admin).await;
    let report = app
        .state
        .store
        .reproject_all(&app.state.settings.documents.projection(), true)
        .await
        .unwrap();
    assert_eq!(report.skipped, 0);
    assert_eq!(report.projected, 7 + 8 + 7 + 2 + 2);
    let after = everything(&app, &admin).await;
    assert_eq!(before, after);
}

async fn concurrent_edits_project_the_merged_document_everywhere(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = field_app(&db).await;
    let secretary = Author::new(&app, "sec-a", "secretary", COMMUNITY_A).await;
    let request = secretary.request(GRID_1, at(1, 5, 9), &[]).await;
    let worker = Author::new(&app, "gw-a", "grid_worker", COMMUNITY_A).await;
    worker.client.fetch(request, WAIT).await.unwrap();

    // Both offline: the secretary triages onto transfer, the grid worker onto immediate.
    secretary.client.disconnect().await;
    worker.client.disconnect().await;
    secretary
        .event(request, triaged(Track::Transfer), at(1, 5, 10))
        .await;
    worker
        .event(request, triaged(Track::Immediate), at(1, 5, 11))
        .await;
    let token = app
        .token_as("sec-a", "sec-a-phone", "secretary", COMMUNITY_A)
        .await;
    secretary
        .client
        .connect(&app.ws_url(), &token)
        .await
        .unwrap();
    let token = app
        .token_as("gw-a", "gw-a-phone", "grid_worker", COMMUNITY_A)
        .await;
    worker.client.connect(&app.ws_url(), &token).await.unwrap();
    secretary.synced(request).await;
    worker.synced(request).await;
    let flow = |client: &Client| {
        client
            .read(request, lianxin_protocol::domain::read_flow)
            .unwrap()
            .unwrap()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while flow(&secretary.client) != flow(&worker.client)
        || lianxin_protocol::domain::read_events(
            &secretary.client.read(request, |d| d.clone()).unwrap(),
        )
        .unwrap()
        .len()
            != 3
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "devices never converged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let merged = flow(&secretary.client);
    let events = secretary
        .client
        .read(request, lianxin_protocol::domain::read_events)
        .unwrap()
        .unwrap();

    // The projected row is the merged document: same status, track, department, timeline.
    let supervisor = app
        .token_as("sup-a", "sup-a-desk", "supervisor", COMMUNITY_A)
        .await;
    let listed = get_ok(&app, &supervisor, "/v1/requests").await;
    let row = &listed["items"][0];
    assert_eq!(row["documentId"], json!(request.to_string()));
    assert_eq!(row["status"], json!(merged.status.as_str()));
    assert_eq!(row["track"], json!(merged.track.map(|t| t.as_str())));
    assert_eq!(row["department"], json!(merged.department));
    let projected: Vec<(String, i64, String)> = row["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["at"].as_i64().unwrap(),
                e["by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let local: Vec<(String, i64, String)> = events
        .iter()
        .map(|e| (e.event_type().to_string(), e.at, e.by.clone()))
        .collect();
    assert_eq!(projected, local);

    // Rebuilt from the stored document: the same row.
    app.state
        .store
        .reproject_all(&app.state.settings.documents.projection(), true)
        .await
        .unwrap();
    assert_eq!(get_ok(&app, &supervisor, "/v1/requests").await, listed);

    // The audit trail: who (user, device, role) did what, in order.
    let history = get_ok(
        &app,
        &supervisor,
        &format!("/v1/documents/{request}/history"),
    )
    .await;
    let changes = history["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 3, "{history}");
    assert_eq!(changes[0]["userId"], "sec-a");
    assert_eq!(changes[0]["deviceId"], "sec-a-phone");
    assert_eq!(changes[0]["role"], "secretary");
    assert!(
        changes[0]["summary"]
            .as_str()
            .unwrap()
            .starts_with("collected request")
    );
    assert!(changes[0]["clientTime"].as_i64().is_some());
    let authors: BTreeSet<(&str, &str)> = changes[1..]
        .iter()
        .map(|c| {
            (
                c["userId"].as_str().unwrap(),
                c["summary"].as_str().unwrap(),
            )
        })
        .collect();
    let summaries: Vec<String> = authors.iter().map(|(u, s)| format!("{u}: {s}")).collect();
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("gw-a: event triaged to immediate by gw-a")),
        "{summaries:?}"
    );
    assert!(
        summaries
            .iter()
            .any(|s| s.starts_with("sec-a: event triaged to transfer (water-bureau) by sec-a")),
        "{summaries:?}"
    );
}

async fn a_supervisor_sees_only_their_area_and_no_residents(backend: Backend) {
    let db = TestDb::new(backend).await;
    let app = field_app(&db).await;
    let sec_a = Author::new(&app, "sec-a", "secretary", COMMUNITY_A).await;
    let sec_b = Author::new(&app, "sec-b", "secretary", COMMUNITY_B).await;
    let h_a = sec_a.household(GRID_1, "1-1-101", &["王芳"]).await;
    let h_b = sec_b.household(GRID_3, "3-1-301", &["杨帆"]).await;
    sec_a.visit(GRID_1, h_a, 5, 1).await;
    let r_b = sec_b.request(GRID_3, at(1, 5, 9), &[]).await;

    let sup_a = app
        .token_as("sup-a", "sup-a-desk", "supervisor", COMMUNITY_A)
        .await;
    // Nothing of community B, by default or by asking.
    let households = get_ok(&app, &sup_a, "/v1/households").await;
    let items = households["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["documentId"], json!(h_a.to_string()));
    assert_eq!(
        get_ok(&app, &sup_a, "/v1/requests").await["items"],
        json!([])
    );
    for path in [
        format!("/v1/requests?area={COMMUNITY_B}"),
        format!("/v1/stats?area={STREET}&{JANUARY}"),
        format!("/v1/changes?area={COMMUNITY_B}"),
    ] {
        let (status, body) = get(&app, &sup_a, &path).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, _) = get(&app, &sup_a, &format!("/v1/documents/{r_b}/history")).await;
    assert_eq!(
        status, 404,
        "another area's document looks like no document"
    );
    let stats = get_ok(&app, &sup_a, &format!("/v1/stats?{JANUARY}")).await;
    assert_eq!(stats["items"][0]["households"], 1);
    assert_eq!(stats["items"][0]["requestsCollected"], 0);

    // A supervisor gets the household without its residents; the secretary gets the names.
    assert_eq!(items[0]["residents"], Value::Null);
    assert_eq!(items[0]["redacted"], true);
    assert_eq!(items[0]["residentCount"], 1);
    assert!(!households.to_string().contains("王芳"));
    let changes = get_ok(&app, &sup_a, "/v1/changes").await;
    assert!(!changes.to_string().contains("王芳"), "{changes}");
    let secretary = app
        .token_as("sec-a", "sec-a-phone", "secretary", COMMUNITY_A)
        .await;
    let full = get_ok(&app, &secretary, "/v1/households").await;
    assert_eq!(full["items"][0]["residents"][0]["name"], "王芳");
    assert_eq!(full["items"][0]["redacted"], false);

    // A volunteer reads orders only.
    let volunteer = app
        .token_as("vol-1", "vol-1-phone", "volunteer", COMMUNITY_A)
        .await;
    let (status, _) = get(&app, &volunteer, "/v1/requests").await;
    assert_eq!(status, 403);
    let (status, _) = get(&app, &volunteer, "/v1/households").await;
    assert_eq!(status, 403);
    let (status, _) = get(&app, &volunteer, "/v1/orders").await;
    assert_eq!(status, 200);
    let _ = h_b;

    // A department handler sees the requests transferred to their department, nothing else,
    // in lists, document histories and the area history.
    let transferred = sec_a
        .request(
            GRID_1,
            at(1, 6, 9),
            &[(triaged(Track::Transfer), at(1, 6, 10))],
        )
        .await;
    let immediate = sec_a
        .request(
            GRID_1,
            at(1, 6, 9),
            &[(triaged(Track::Immediate), at(1, 6, 10))],
        )
        .await;
    app.state
        .store
        .create_user(&lianxin_server::storage::registry::User {
            id: "water-1".into(),
            name: "water-1".into(),
            role: "department_handler".into(),
            area: STREET.into(),
            department: Some("water-bureau".into()),
            revoked: false,
        })
        .await
        .unwrap();
    let handler = app
        .token_as("water-1", "water-1-desk", "department_handler", STREET)
        .await;
    let listed = get_ok(&app, &handler, "/v1/requests").await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["documentId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [transferred.to_string()]);
    let (status, _) = get(&app, &handler, "/v1/requests?department=parks").await;
    assert_eq!(status, 403);
    get_ok(
        &app,
        &handler,
        &format!("/v1/documents/{transferred}/history"),
    )
    .await;
    let (status, _) = get(
        &app,
        &handler,
        &format!("/v1/documents/{immediate}/history"),
    )
    .await;
    assert_eq!(status, 404);
    let history = get_ok(&app, &handler, "/v1/history?from=2020-01-01").await;
    let docs: BTreeSet<&str> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["documentId"].as_str().unwrap())
        .collect();
    assert_eq!(docs, BTreeSet::from([transferred.to_string().as_str()]));

    // The area history of community A for its supervisor: every change there, no other area's.
    let response = reqwest::Client::new()
        .get(app.http_url("/v1/history?format=csv"))
        .bearer_auth(&sup_a)
        .send()
        .await
        .unwrap();
    let csv = response.text().await.unwrap();
    assert!(
        csv.starts_with("cursor,documentId,") || csv.contains("summary"),
        "{csv}"
    );
    let history = get_ok(&app, &sup_a, "/v1/history").await;
    let areas: BTreeSet<&str> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["area"].as_str().unwrap())
        .collect();
    assert!(!areas.is_empty());
    assert!(
        areas.iter().all(|a| a.starts_with(COMMUNITY_A)),
        "{areas:?}"
    );
    let kinds: BTreeSet<&str> = history["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["request", "visit"]),
        "a supervisor's history shows no households"
    );
}

crate::both_backends!(
    seeded_street_gives_the_figures_computed_by_hand,
    concurrent_edits_project_the_merged_document_everywhere,
    a_supervisor_sees_only_their_area_and_no_residents,
);

/// Writers commit change-log rows in the opposite order of their ids (each holds its
/// transaction open for a random while), and a reader follows the feed from its cursor the
/// whole time. It must see every row exactly once: a cursor on ids alone would step over a row
/// that commits after a later-numbered one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changes_feed_delivers_every_change_once_while_writers_commit_out_of_order() {
    use sqlx::Connection;
    let db = TestDb::new(Backend::Postgres).await;
    let app = field_app(&db).await;
    let admin = app.token_as("admin", "admin-desk", "admin", "/city").await;

    // The plain case first: the row with the lower id commits last.
    let mut first = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut second = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let insert = "INSERT INTO change_log (document_id, seq, kind, area, user_id, changes, \
                  server_time, summary) VALUES ($1, 1, 'visit', '/city/street-1', 'w', 1, 0, 's')";
    let mut slow = first.begin().await.unwrap();
    sqlx::query(insert)
        .bind("slow")
        .execute(&mut *slow)
        .await
        .unwrap();
    let mut fast = second.begin().await.unwrap();
    sqlx::query(insert)
        .bind("fast")
        .execute(&mut *fast)
        .await
        .unwrap();
    fast.commit().await.unwrap();
    let page = get_ok(&app, &admin, "/v1/changes").await;
    assert_eq!(
        page["changes"],
        json!([]),
        "nothing is served past a transaction still open"
    );
    let cursor = page["next"].as_str().unwrap().to_owned();
    slow.commit().await.unwrap();
    // Both now, in as many answers as the horizon takes: it is the oldest transaction running
    // anywhere on the Postgres server, and other tests share it.
    let mut cursor = cursor;
    let mut docs: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while docs.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "feed stalled at {docs:?}"
        );
        let page = get_ok(&app, &admin, &format!("/v1/changes?since={cursor}&wait=1")).await;
        for change in page["changes"].as_array().unwrap() {
            docs.push(change["documentId"].as_str().unwrap().to_owned());
        }
        cursor = page["next"].as_str().unwrap().to_owned();
    }
    docs.sort();
    assert_eq!(docs, ["fast", "slow"]);

    // Then many writers at once, and a reader following along.
    const WRITERS: usize = 40;
    let mut writers = Vec::new();
    for n in 0..WRITERS {
        let url = db.url.clone();
        writers.push(tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let mut tx = conn.begin().await.unwrap();
            sqlx::query(insert)
                .bind(format!("doc-{n}"))
                .execute(&mut *tx)
                .await
                .unwrap();
            let hold = (n as u64 * 7919) % 200;
            tokio::time::sleep(Duration::from_millis(hold)).await;
            tx.commit().await.unwrap();
        }));
    }
    let mut seen: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while seen.len() < WRITERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "feed stalled at {seen:?}"
        );
        let page = get_ok(
            &app,
            &admin,
            &format!("/v1/changes?since={cursor}&limit=7&wait=1"),
        )
        .await;
        for change in page["changes"].as_array().unwrap() {
            seen.push(change["documentId"].as_str().unwrap().to_owned());
        }
        cursor = page["next"].as_str().unwrap().to_owned();
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let page = get_ok(&app, &admin, &format!("/v1/changes?since={cursor}")).await;
    assert_eq!(page["changes"], json!([]), "nothing more after everything");
    let distinct: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(
        distinct.len(),
        WRITERS,
        "each change exactly once: {seen:?}"
    );
    assert_eq!(seen.len(), WRITERS);
}

/// A change made on a device reaches a long-polling feed reader without polling again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_up_for_a_new_change() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = field_app(&db).await;
    let admin = app.token_as("admin", "admin-desk", "admin", "/city").await;
    let start = get_ok(&app, &admin, "/v1/changes").await;
    let cursor = start["next"].as_str().unwrap().to_owned();
    let waiting = {
        let url = app.http_url(&format!("/v1/changes?since={cursor}&wait=20"));
        let admin = admin.clone();
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(admin)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let secretary = Author::new(&app, "sec-a", "secretary", COMMUNITY_A).await;
    let household = secretary.household(GRID_1, "1-1-101", &["王芳"]).await;
    let page = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the long poll answered when the change committed")
        .unwrap();
    assert_eq!(
        page["changes"][0]["documentId"],
        json!(household.to_string())
    );
    assert_eq!(page["changes"][0]["kind"], "household");
}

/// The feed as server-sent events: each change an event whose ID is its cursor, and a stream
/// resumed with `Last-Event-ID` starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_streams_server_sent_events_and_resumes_from_the_last_id() {
    let db = TestDb::new(Backend::Postgres).await;
    let app = field_app(&db).await;
    let admin = app.token_as("admin", "admin-desk", "admin", "/city").await;
    let secretary = Author::new(&app, "sec-a", "secretary", COMMUNITY_A).await;
    let first = secretary.household(GRID_1, "1-1-101", &["王芳"]).await;
    let second = secretary.household(GRID_1, "1-1-102", &["李雷"]).await;

    /// Reads the stream until `count` `change` events arrived; returns (id, document) pairs.
    async fn read_events(
        app: &TestApp,
        token: &str,
        last_id: Option<&str>,
        count: usize,
    ) -> Vec<(String, String)> {
        let mut request = reqwest::Client::new()
            .get(app.http_url("/v1/changes"))
            .bearer_auth(token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        let mut response = request.send().await.unwrap();
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let mut text = String::new();
        let mut events = Vec::new();
        while events.len() < count {
            let chunk = tokio::time::timeout(WAIT, response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream stays open");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                let field = |name: &str| {
                    block
                        .lines()
                        .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
                };
                if field("event:").as_deref() == Some("change") {
                    let data: Value = serde_json::from_str(&field("data:").unwrap()).unwrap();
                    events.push((
                        field("id:").unwrap(),
                        data["documentId"].as_str().unwrap().to_owned(),
                    ));
                }
            }
        }
        events
    }

    let both = read_events(&app, &admin, None, 2).await;
    assert_eq!(
        both.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
        [first.to_string(), second.to_string()]
    );
    let resumed = read_events(&app, &admin, Some(&both[0].0), 1).await;
    assert_eq!(resumed, both[1..]);
}

/// Every route the server serves is in `/openapi.json`, and every documented route is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_openapi_document() {
    let db = TestDb::new(Backend::Sqlite).await;
    let app = field_app(&db).await;
    let doc: Value = reqwest::get(app.http_url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let served: BTreeSet<String> = [
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /v1/sync",
        "GET /v1/admin/areas",
        "POST /v1/admin/areas",
        "GET /v1/admin/users",
        "POST /v1/admin/users",
        "POST /v1/admin/users/{id}/revoke",
        "GET /v1/admin/devices",
        "POST /v1/admin/devices",
        "POST /v1/admin/devices/{id}/revoke",
        "GET /v1/households",
        "GET /v1/visits",
        "GET /v1/requests",
        "GET /v1/orders",
        "GET /v1/orders/summary",
        "GET /v1/stations/summary",
        "GET /v1/listening-days",
        "GET /v1/stats",
        "GET /v1/documents/{id}/history",
        "GET /v1/history",
        "GET /v1/changes",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(documented, served);
    // And each documented route is really there: anything but 404 / 405 from the router.
    let client = reqwest::Client::new();
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let url = app.http_url(&path.replace("{id}", "x"));
        let response = client
            .request(method.parse().unwrap(), url)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!(
            status != 405,
            "{route} is documented but not served ({status})"
        );
        if status == 404 {
            // A handler's own 404 carries its JSON error; the router's has no body.
            let body = response.text().await.unwrap();
            assert!(
                body.contains("not_found"),
                "{route} is documented but not served"
            );
        }
    }
    assert!(doc["components"]["schemas"]["AreaStats"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
