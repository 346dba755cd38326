//! `lianxin-bench`: Lianxin's benchmark suite. It starts a real `lianxin-server` process on
//! loopback (SQLite, or Postgres with `--postgres URL`), drives it with real SDK clients in this
//! process, and prints one JSON line per figure, then a table. Run it with `bench/run`.
//!
//! Workloads (see `bench/RESULTS.md` for what each measures and the figures of this machine):
//!
//! - `A*`: Automerge itself, in process, on the same documents: create, save, load, sync.
//! - `W1`: one device creates N visit documents offline, then connects: time until the server
//!   has committed all N.
//! - `W2`: a fresh device with an empty store fetches all N.
//! - `W3`: 1% of the N edited on the first device: time until the second sees every edit;
//!   messages and bytes exchanged.
//! - `W4`: D devices each upload a handful of changes at once; accepted changes per second and
//!   p50 / p99 time from the edit to its arrival on a subscribed device.
//! - `W5`: the server's peak resident memory after the above.
//! - `W6`: C idle websocket connections: time to open them and the server's memory.
//! - `W4 (k nodes)`: W4 again with `--w4-nodes K` server processes on one Postgres, the devices
//!   spread over them and the subscriber on the first (most changes cross nodes).

mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT, ReadDoc};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use lianxin_client::{Client, ClientConfig, ClientEvent, DocumentId, Origin};
use lianxin_protocol::domain::builders::{self, Common, VisitInit};
use lianxin_protocol::domain::{AreaPath, LocalDate};
use serde_json::json;

use server::{AREA, Server};

#[derive(Debug, Parser)]
#[command(name = "lianxin-bench", about = "Lianxin benchmark suite")]
struct Args {
    /// Documents for W1–W3 and the Automerge figures.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Devices for W4.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Changes per device in W4.
    #[arg(long, default_value_t = 5)]
    changes: usize,
    /// W5 also after this many more documents are touched (uploaded by devices of 10,000
    /// each, one after the other); 0 skips it.
    #[arg(long, default_value_t = 0)]
    touch: usize,
    /// Idle connections for W6 (0 skips it).
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// After the one-node run, W4 again with 2, 3, … up to this many nodes on the same
    /// Postgres database (needs `--postgres`).
    #[arg(long, default_value_t = 1)]
    w4_nodes: usize,
    /// Run against Postgres: a URL of a server and database to create a fresh database from.
    #[arg(long)]
    postgres: Option<String>,
}

/// Collects figures, printing each as a JSON line.
struct Report {
    backend: &'static str,
    n: usize,
    rows: Vec<(String, String, f64, String)>,
}

impl Report {
    fn figure(&mut self, workload: &str, metric: &str, value: f64, unit: &str) {
        println!(
            "{}",
            json!({"workload": workload, "backend": self.backend, "n": self.n,
                   "metric": metric, "value": value, "unit": unit})
        );
        self.rows
            .push((workload.into(), metric.into(), value, unit.into()));
    }

    /// The server's peak and current resident memory, in MiB, as two figures.
    fn memory(&mut self, server: &Server, workload: &str, peak_metric: &str, now_metric: &str) {
        let (peak, now) = server.memory_kib();
        self.figure(workload, peak_metric, peak as f64 / 1024.0, "MiB");
        self.figure(workload, now_metric, now as f64 / 1024.0, "MiB");
    }

    fn table(&self) {
        println!(
            "\n| workload | metric | value | unit |  ({}, N = {}, {} cores)\n|---|---|---:|---|",
            self.backend,
            self.n,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        for (w, m, v, u) in &self.rows {
            println!("| {w} | {m} | {v:.3} | {u} |");
        }
    }
}

/// A visit of about 1.1 KB. Only the schema's fields: the server refuses any other (personal
/// data by allow-list), so what a field worker notes beyond them goes into `heard`.
fn visit(
    tx: &mut automerge::transaction::Transaction<'_>,
    i: usize,
    user: &str,
) -> Result<(), automerge::AutomergeError> {
    visit_in(tx, i, user, AREA)
}

/// What the residents of every bench visit said, and what the worker noted.
const HEARD: &str = "The lift in building 3 stops between floors; the stairwell light is out. \
    Building 3, unit 2, floor 4, room 401. Light rain; door-to-door; call back after the repair. \
    Topic: housing and public facilities. Worried but cooperative; Mandarin; about 25 minutes. \
    Facilities: the lift stops between floors 3 and 4 about twice a week. Safety: the stairwell \
    light on floor 4 has been out for ten days. Environment: refuse bins by the gate overflow \
    on weekends.";

/// A visit (see [`visit`]) in `area`.
fn visit_in(
    tx: &mut automerge::transaction::Transaction<'_>,
    i: usize,
    user: &str,
    area: &str,
) -> Result<(), automerge::AutomergeError> {
    let common = Common {
        area: AreaPath::new(area).expect("area"),
        created_by: user.into(),
        created_at: 1_767_578_400_000 + i as i64,
    };
    let init = VisitInit {
        household: format!("household-{i:06}"),
        date: LocalDate::new(2026, 1, 5).expect("date"),
        visitors: vec![user.into(), "partner-secretary".into()],
        heard: HEARD.into(),
        // W4 writes the time of each edit here (see `TICK`); zero means "not edited yet".
        people_received: 0,
        requests: (1..=3).map(|n| format!("request-{i:06}-{n}")).collect(),
    };
    builders::init_visit(tx, &common, &init).map_err(|_| automerge::AutomergeError::Fail)
}

/// The time of an edit, in ms, as W4 writes it: in `peopleReceived`, the one integer field of
/// a visit that a grid worker edits (the schema has no field of its own for it).
const TICK: &str = "peopleReceived";

fn seconds(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Automerge alone, in this process, on the same documents.
fn automerge_baseline(report: &mut Report, n: usize) -> anyhow::Result<()> {
    let start = Instant::now();
    let docs: Vec<Automerge> = (0..n)
        .map(|i| {
            let mut doc = Automerge::new();
            doc.transact(|tx| visit(tx, i, "bench-writer"))
                .map_err(|f| f.error)?;
            Ok(doc)
        })
        .collect::<Result<_, automerge::AutomergeError>>()?;
    report.figure("A", "create", seconds(start), "s");
    let start = Instant::now();
    let saved: Vec<Vec<u8>> = docs.iter().map(|d| d.save()).collect();
    report.figure("A", "save", seconds(start), "s");
    let bytes: usize = saved.iter().map(Vec::len).sum();
    report.figure("A", "bytes per document", (bytes / n.max(1)) as f64, "B");
    let start = Instant::now();
    let loaded: Vec<Automerge> = saved
        .iter()
        .map(|b| Automerge::load(b))
        .collect::<Result<_, _>>()?;
    report.figure("A", "load", seconds(start), "s");
    let start = Instant::now();
    for doc in &loaded {
        use automerge::sync::SyncDoc;
        let mut empty = Automerge::new();
        let (mut a, mut b) = (automerge::sync::State::new(), automerge::sync::State::new());
        loop {
            let mut quiet = true;
            if let Some(m) = doc.generate_sync_message(&mut a) {
                empty.receive_sync_message(&mut b, m)?;
                quiet = false;
            }
            if let Some(m) = empty.generate_sync_message(&mut b) {
                let mut d = doc.clone();
                d.receive_sync_message(&mut a, m)?;
                quiet = false;
            }
            if quiet {
                break;
            }
        }
    }
    report.figure("A", "in-memory sync to an empty peer", seconds(start), "s");
    Ok(())
}

async fn connected(server: &Server, user: &str, role: &str) -> anyhow::Result<Client> {
    let token = server.person(user, role).await?;
    let client = Client::in_memory(ClientConfig::default()).await?;
    client.connect(&server.ws_url(), &token).await?;
    Ok(client)
}

/// W4: D devices, each in its own grid uploading a handful of changes at once, watched by one
/// subscriber of the whole community on the first node. With several nodes, the devices are
/// spread over them round robin, so most changes reach the subscriber across nodes. Users are
/// named after `prefix`; figures are reported under `label`. Returns the devices (kept
/// connected until the memory figures are taken).
async fn w4(
    server: &Server,
    args: &Args,
    report: &mut Report,
    label: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(Client, DocumentId)>> {
    let wait = Duration::from_secs(600);
    let urls = server.ws_urls();
    let mut devices = Vec::with_capacity(args.devices);
    for d in 0..args.devices {
        let user = format!("{prefix}-{d}");
        let grid = server.grid(&format!("{prefix}-grid-{d}")).await?;
        let token = server.person_in(&user, "grid_worker", &grid).await?;
        let client = Client::in_memory(ClientConfig::default()).await?;
        client.connect(&urls[d % urls.len()], &token).await?;
        let id = client.create(|tx| visit_in(tx, d, &user, &grid)).await?;
        client.wait_synced(id, wait).await?;
        devices.push((client, id));
    }
    let watcher = Arc::new(connected(server, &format!("{prefix}-watcher"), "secretary").await?);
    for (_, id) in &devices {
        watcher.fetch(*id, wait).await?;
    }
    let mut events = watcher.subscribe();
    let expected = args.devices * args.changes;
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let collector = {
        let watcher = watcher.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(expected);
            let mut last: HashMap<DocumentId, i64> = HashMap::new();
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    _ = &mut stopped => break,
                };
                match event {
                    Ok(ClientEvent::DocumentChanged {
                        id,
                        origin: Origin::Remote,
                        ..
                    }) => {
                        let now = now_ms();
                        let ticks = watcher
                            .read(id, |d| match d.get(ROOT, TICK) {
                                Ok(Some((v, _))) => v.as_i64().unwrap_or(0),
                                _ => 0,
                            })
                            .unwrap_or(0);
                        // One event may bring several edits; each edit stores its own time in
                        // `TICK`, so the latest is the one measured, the others count as seen.
                        let seen = last.entry(id).or_insert(0);
                        if ticks > *seen {
                            *seen = ticks;
                            latencies.push(now - ticks);
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                }
            }
            latencies
        })
    };
    let (server_cpu, bench_cpu) = (server.cpu_seconds(), server::cpu_seconds("/proc/self/stat"));
    let start = Instant::now();
    let mut uploads = Vec::new();
    for (client, id) in devices {
        let changes = args.changes;
        uploads.push(tokio::spawn(async move {
            for _ in 0..changes {
                let stamp = now_ms();
                client.change(id, |tx| tx.put(ROOT, TICK, stamp)).await?;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            client.wait_up_to_date(Duration::from_secs(600)).await?;
            anyhow::Ok((client, id))
        }));
    }
    let mut finished = Vec::new();
    for upload in uploads {
        finished.push(upload.await??);
    }
    let elapsed = seconds(start);
    let server_cpu = server.cpu_seconds() - server_cpu;
    let bench_cpu = server::cpu_seconds("/proc/self/stat") - bench_cpu;
    // Every device's last edit has reached the subscriber: then stop measuring.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = finished.iter().all(|(client, id)| {
            let tick = |c: &Client| {
                c.read(*id, |d| match d.get(ROOT, TICK) {
                    Ok(Some((v, _))) => v.as_i64().unwrap_or(0),
                    _ => 0,
                })
                .unwrap_or(-1)
            };
            tick(client) == tick(&watcher)
        });
        if all {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the subscriber did not see every change"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(());
    report.figure(label, "devices", args.devices as f64, "");
    report.figure(
        label,
        "accepted changes per second",
        expected as f64 / elapsed,
        "1/s",
    );
    let mut latencies = collector.await?;
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    report.figure(
        label,
        "edits measured at the subscriber",
        latencies.len() as f64,
        "",
    );
    report.figure(label, "p50 edit to arrival", pick(0.50) as f64, "ms");
    report.figure(label, "p99 edit to arrival", pick(0.99) as f64, "ms");
    // The devices run in this process on the same cores: what the server itself spends per
    // change says what it could take with the cores to itself.
    report.figure(
        label,
        "server CPU per accepted change",
        server_cpu * 1e3 / expected as f64,
        "ms",
    );
    report.figure(
        label,
        "devices' CPU (this process) per change",
        bench_cpu * 1e3 / expected as f64,
        "ms",
    );

    Ok(finished)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = Server::start(args.postgres.as_deref(), None).await?;
    let mut report = Report {
        backend: server.backend,
        n: args.n,
        rows: Vec::new(),
    };
    automerge_baseline(&mut report, args.n)?;
    let wait = Duration::from_secs(600);

    // W1: one device creates N documents offline, then syncs them up.
    let writer_token = server.person("writer", "secretary").await?;
    let writer = Client::in_memory(ClientConfig::default()).await?;
    let mut ids = Vec::with_capacity(args.n);
    let start = Instant::now();
    for i in 0..args.n {
        ids.push(writer.create(|tx| visit(tx, i, "writer")).await?);
    }
    report.figure("W1", "create offline on the device", seconds(start), "s");
    let start = Instant::now();
    writer.connect(&server.ws_url(), &writer_token).await?;
    writer.wait_up_to_date(wait).await?;
    report.figure("W1", "upload until all committed", seconds(start), "s");
    let sent = writer.stats();
    report.figure("W1", "messages sent", sent.messages_sent as f64, "");

    // W2: a fresh device pulls all N by area (one request, batches). For comparison, the
    // same by ID (one sync conversation per document, as stock automerge-repo peers do) runs
    // last, so that its ten thousand sessions weigh on no other figure.
    let reader_token = server.person("reader", "secretary").await?;
    let reader = Client::in_memory(ClientConfig::default()).await?;
    let start = Instant::now();
    reader.connect(&server.ws_url(), &reader_token).await?;
    reader.wait_up_to_date(wait).await?;
    report.figure("W2", "fresh pull of all, by area", seconds(start), "s");
    let have = reader.documents().len();
    anyhow::ensure!(
        have >= args.n,
        "W2: the reader has {have} of {} documents",
        args.n
    );
    report.figure(
        "W2",
        "messages received",
        reader.stats().messages_received as f64,
        "",
    );
    let (peak, _) = server.memory_kib();
    report.figure("W2", "server peak RSS", peak as f64 / 1024.0, "MiB");

    // W3: 1% edited on the writer; time until the reader has every edit.
    let edited: Vec<DocumentId> = ids.iter().copied().step_by(100).collect();
    let (w0, r0) = (writer.stats(), reader.stats());
    let start = Instant::now();
    for id in &edited {
        writer
            .change(*id, |tx| tx.put(ROOT, "heard", "lift repaired on Tuesday"))
            .await?;
    }
    let deadline = Instant::now() + wait;
    loop {
        let done = edited.iter().all(|id| {
            reader
                .read(*id, |d| {
                    d.get(ROOT, "heard")
                        .ok()
                        .flatten()
                        .is_some_and(|(v, _)| v.as_str() == Some("lift repaired on Tuesday"))
                })
                .unwrap_or(false)
        });
        if done {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "W3 never finished");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    report.figure("W3", "edits until all seen", seconds(start), "s");
    report.figure("W3", "documents edited", edited.len() as f64, "");
    let (w1, r1) = (writer.stats(), reader.stats());
    let messages = (w1.messages_sent - w0.messages_sent)
        + (w1.messages_received - w0.messages_received)
        + (r1.messages_sent - r0.messages_sent)
        + (r1.messages_received - r0.messages_received);
    let bytes = (w1.bytes_sent - w0.bytes_sent)
        + (w1.bytes_received - w0.bytes_received)
        + (r1.bytes_sent - r0.bytes_sent)
        + (r1.bytes_received - r0.bytes_received);
    report.figure(
        "W3",
        "messages (both devices, both ways)",
        messages as f64,
        "",
    );
    report.figure("W3", "bytes (both devices, both ways)", bytes as f64, "B");

    // W4 on one node.
    let finished = w4(&server, &args, &mut report, "W4", "field").await?;

    // W5: the server's memory after all of the above.
    report.memory(
        &server,
        "W5",
        "server peak RSS after W1-W4",
        "server RSS now",
    );
    drop(finished);

    // W5 again after touching many more documents: devices of 10,000 documents each upload
    // theirs one after the other.
    if args.touch > 0 {
        let start = Instant::now();
        let mut touched = 0;
        let mut round = 0;
        while touched < args.touch {
            let count = (args.touch - touched).min(10_000);
            let user = format!("toucher-{round}");
            let token = server.person(&user, "secretary").await?;
            // Uploading only: no area sync, which would bring it all that came before.
            let device = Client::in_memory(ClientConfig {
                area_sync: false,
                ..ClientConfig::default()
            })
            .await?;
            for i in 0..count {
                device
                    .create(|tx| visit(tx, 1_000_000 + touched + i, &user))
                    .await?;
            }
            device.connect(&server.ws_url(), &token).await?;
            device.wait_up_to_date(wait).await?;
            let rejected = device.rejected_changes().await?.len();
            anyhow::ensure!(rejected == 0, "W5: the server refused {rejected} uploads");
            device.disconnect().await;
            touched += count;
            round += 1;
        }
        report.figure(
            "W5",
            "documents touched in all",
            (args.n + touched) as f64,
            "",
        );
        report.figure("W5", "time to touch them", seconds(start), "s");
        report.memory(
            &server,
            "W5",
            "server peak RSS after touching them",
            "server RSS after touching them",
        );
    }

    // W4 again on 2, 3, … nodes sharing the database (fresh devices each time).
    let mut server = server;
    for nodes in 2..=args.w4_nodes {
        server.add_node().await?;
        let label = format!("W4 ({nodes} nodes)");
        let devices = w4(&server, &args, &mut report, &label, &format!("n{nodes}")).await?;
        drop(devices);
    }

    // W2 for comparison: the same pull by ID, document by document.
    let by_id_token = server.person("reader-by-id", "secretary").await?;
    let by_id = Client::in_memory(ClientConfig {
        area_sync: false,
        ..ClientConfig::default()
    })
    .await?;
    by_id.connect(&server.ws_url(), &by_id_token).await?;
    let start = Instant::now();
    let fetches = futures_util::stream::iter(ids.iter().copied())
        .map(|id| by_id.fetch(id, wait))
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    for fetched in fetches {
        fetched?;
    }
    report.figure("W2", "fresh pull of all, by ID", seconds(start), "s");
    by_id.disconnect().await;
    drop(by_id);

    // W6: idle connections.
    if args.connections > 0 {
        let token = server.person("idle", "volunteer").await?;
        let before = server.memory_kib().1;
        let start = Instant::now();
        let mut sockets = Vec::with_capacity(args.connections);
        for c in 0..args.connections {
            let mut request =
                tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                    server.ws_url(),
                )?;
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {token}").parse()?);
            let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
            let join = lianxin_protocol::Message::Join {
                sender_id: lianxin_protocol::PeerId::new(format!("idle-{c}"))?,
                supported_protocol_versions: vec!["1".into()],
                peer_metadata: None,
            };
            socket
                .send(tokio_tungstenite::tungstenite::Message::Binary(
                    join.encode().into(),
                ))
                .await?;
            socket.next().await.context("no peer answer")??;
            sockets.push(socket);
        }
        report.figure("W6", "connections", args.connections as f64, "");
        report.figure("W6", "time to open them", seconds(start), "s");
        let (_, after) = server.memory_kib();
        report.figure(
            "W6",
            "server RSS with them open",
            after as f64 / 1024.0,
            "MiB",
        );
        report.figure(
            "W6",
            "server RSS per connection",
            (after.saturating_sub(before)) as f64 * 1024.0 / args.connections as f64,
            "B",
        );
    }
    report.table();
    Ok(())
}
