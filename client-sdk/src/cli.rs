//! The `lianxin` command line: acts as one device over a store file (`login`, `doc`, `sync`,
//! `status`), and `simulate` runs many simulated devices against a server to check that they
//! converge (for demos, soak and load).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use automerge::transaction::{Transactable, Transaction};
use automerge::{AutoSerde, ObjId, ObjType, ROOT, ReadDoc, ScalarValue};
use clap::{Parser, Subcommand};
use rand::{Rng, SeedableRng};

use crate::{Client, ClientConfig, ClientEvent, DocumentId};

#[derive(Debug, Parser)]
#[command(
    name = "lianxin",
    version,
    about = "A Lianxin device from the command line"
)]
pub struct Cli {
    /// The device's store file.
    #[arg(long, global = true, default_value = "lianxin-device.db")]
    store: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Remember the server and token for `sync`.
    Login {
        /// Websocket URL of the sync endpoint, e.g. ws://127.0.0.1:8080/v1/sync.
        #[arg(long)]
        server: String,
        #[arg(long)]
        token: String,
    },
    /// Create, edit, read and list documents (all offline).
    #[command(subcommand)]
    Doc(DocCommand),
    /// Sync with the server until up to date (or keep syncing with --watch).
    Sync {
        #[arg(long)]
        watch: bool,
        /// Seconds to wait for "up to date".
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
    /// Show the store's state: server, documents, unsent changes.
    Status,
    /// Run simulated devices making offline edits and check that they converge.
    Simulate {
        #[arg(long, default_value_t = 5)]
        devices: usize,
        /// Edits per device.
        #[arg(long, default_value_t = 20)]
        edits: usize,
        /// Shared documents the devices edit.
        #[arg(long, default_value_t = 3)]
        docs: usize,
        #[arg(long)]
        server: String,
        #[arg(long)]
        token: String,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds to wait for convergence at the end.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum DocCommand {
    /// Create a document, optionally from a JSON object; prints its ID.
    Create {
        #[arg(long)]
        json: Option<String>,
    },
    /// Set KEY of a document to VALUE (JSON if it parses, else a string).
    Put {
        id: DocumentId,
        key: String,
        value: String,
    },
    /// Print a document as JSON.
    Get { id: DocumentId },
    /// List the documents in the store.
    List,
}

/// Parses the process's command line and runs it, printing to stdout.
pub async fn run() -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    run_with(std::env::args(), &mut out).await
}

/// Runs the command line `args` (the first is the program name), writing what it prints to
/// `out`. Lets tests drive the CLI in-process.
pub async fn run_with(
    args: impl IntoIterator<Item = String>,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(args)?;
    if let Command::Simulate {
        devices,
        edits,
        docs,
        server,
        token,
        seed,
        timeout,
    } = &cli.command
    {
        let report = simulate(&SimulateOptions {
            devices: *devices,
            edits: *edits,
            docs: *docs,
            server: server.clone(),
            token: token.clone(),
            seed: *seed,
            timeout: Duration::from_secs(*timeout),
        })
        .await?;
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        if !report.converged {
            bail!("devices did not converge");
        }
        return Ok(());
    }
    let client = Client::open(&cli.store, ClientConfig::default())
        .await
        .with_context(|| format!("opening {}", cli.store.display()))?;
    match cli.command {
        Command::Login { server, token } => {
            client.store().set_meta("server_url", &server).await?;
            client.store().set_meta("token", &token).await?;
            writeln!(out, "logged in to {server}")?;
        }
        Command::Doc(DocCommand::Create { json }) => {
            let value: serde_json::Value = match json {
                Some(text) => serde_json::from_str(&text).context("--json is not JSON")?,
                None => serde_json::json!({}),
            };
            let serde_json::Value::Object(fields) = value else {
                bail!("--json must be a JSON object");
            };
            let id = client
                .create(|tx| {
                    for (key, value) in &fields {
                        put_json(tx, &ROOT, key, value)?;
                    }
                    Ok(())
                })
                .await?;
            writeln!(out, "{id}")?;
        }
        Command::Doc(DocCommand::Put { id, key, value }) => {
            let value = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value));
            client
                .change(id, |tx| put_json(tx, &ROOT, &key, &value))
                .await?;
        }
        Command::Doc(DocCommand::Get { id }) => {
            let json = client.read(id, |doc| {
                serde_json::to_string_pretty(&AutoSerde::from(doc))
            })??;
            writeln!(out, "{json}")?;
        }
        Command::Doc(DocCommand::List) => {
            for id in client.documents() {
                writeln!(out, "{id}")?;
            }
        }
        Command::Sync { watch, timeout } => {
            let (server, token) = login(&client).await?;
            let mut events = client.subscribe();
            client.connect(&server, &token).await?;
            if watch {
                loop {
                    tokio::select! {
                        event = events.recv() => match event {
                            Ok(event) => writeln!(out, "{}", describe(&event))?,
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                writeln!(out, "({n} events skipped)")?;
                            }
                            Err(_) => break,
                        },
                        _ = tokio::signal::ctrl_c() => break,
                    }
                }
            } else {
                client
                    .wait_up_to_date(Duration::from_secs(timeout))
                    .await
                    .context("sync did not finish")?;
                let status = client.status();
                writeln!(
                    out,
                    "up to date: {} documents, {} unsent changes",
                    client.documents().len(),
                    status.unsent_changes
                )?;
            }
            client.disconnect().await;
        }
        Command::Status => {
            let server = client.store().get_meta("server_url").await?;
            let unsent: usize = client.status().unsent_changes;
            let report = serde_json::json!({
                "store": cli.store.display().to_string(),
                "server": server,
                "documents": client.documents().len(),
                "unsent_changes": unsent,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        Command::Simulate { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn login(client: &Client) -> anyhow::Result<(String, String)> {
    let server = client.store().get_meta("server_url").await?;
    let token = client.store().get_meta("token").await?;
    match (server, token) {
        (Some(server), Some(token)) => Ok((server, token)),
        _ => bail!("not logged in: run `lianxin login --server URL --token TOKEN` first"),
    }
}

fn describe(event: &ClientEvent) -> String {
    match event {
        ClientEvent::Status(s) => format!("status {:?} ({} unsent)", s.state, s.unsent_changes),
        ClientEvent::DocumentChanged {
            id,
            origin,
            patches,
        } => {
            format!("changed {id} ({origin:?}, {} patches)", patches.len())
        }
        ClientEvent::ServerError { message, .. } => format!("server error: {message}"),
        ClientEvent::TokenRejected { reason } => format!("token rejected: {reason}"),
        ClientEvent::ChangeRejected {
            document,
            change,
            reason,
            removed,
        } => format!("change {change} of {document} rejected ({removed} set aside): {reason}"),
    }
}

/// Where a JSON value goes: under a key of a map, or inserted at an index of a list.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Key(&'a str),
    Index(usize),
}

/// Writes a JSON value into an Automerge document under `key` of map `obj`.
pub fn put_json(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    value: &serde_json::Value,
) -> Result<(), automerge::AutomergeError> {
    write_json(tx, obj, Slot::Key(key), value)
}

fn write_json(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    slot: Slot<'_>,
    value: &serde_json::Value,
) -> Result<(), automerge::AutomergeError> {
    use serde_json::Value;
    let container = |tx: &mut Transaction<'_>, kind| match slot {
        Slot::Key(key) => tx.put_object(obj, key, kind),
        Slot::Index(i) => tx.insert_object(obj, i, kind),
    };
    match value {
        Value::Object(fields) => {
            let child = container(tx, ObjType::Map)?;
            for (k, v) in fields {
                write_json(tx, &child, Slot::Key(k), v)?;
            }
        }
        Value::Array(items) => {
            let child = container(tx, ObjType::List)?;
            for (i, item) in items.iter().enumerate() {
                write_json(tx, &child, Slot::Index(i), item)?;
            }
        }
        scalar => match slot {
            Slot::Key(key) => tx.put(obj, key, scalar_of(scalar))?,
            Slot::Index(i) => tx.insert(obj, i, scalar_of(scalar))?,
        },
    }
    Ok(())
}

fn scalar_of(value: &serde_json::Value) -> ScalarValue {
    use serde_json::Value;
    match value {
        Value::Null => ScalarValue::Null,
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ScalarValue::Int(i),
            (None, Some(f)) => ScalarValue::F64(f),
            _ => ScalarValue::Str(n.to_string().into()),
        },
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Array(_) | Value::Object(_) => unreachable!("containers are handled by the caller"),
    }
}

/// Settings of a simulation run.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    pub devices: usize,
    pub edits: usize,
    pub docs: usize,
    pub server: String,
    pub token: String,
    pub seed: u64,
    pub timeout: Duration,
}

/// What a simulation found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SimulateReport {
    pub devices: usize,
    pub edits: usize,
    pub documents: usize,
    pub converged: bool,
    /// Every device's edits present exactly once on every device.
    pub all_edits_present: bool,
    pub seconds: f64,
}

/// Runs `devices` in-memory devices that edit `docs` shared documents, going offline and
/// online at random, then brings them all online and checks that every device holds the same
/// heads and every edit exactly once.
pub async fn simulate(options: &SimulateOptions) -> anyhow::Result<SimulateReport> {
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(options.seed);
    let mut devices = Vec::new();
    for _ in 0..options.devices.max(1) {
        devices.push(Client::in_memory(ClientConfig::default()).await?);
    }
    // Device 0 creates the shared documents; the others fetch them.
    devices[0].connect(&options.server, &options.token).await?;
    let mut ids = Vec::new();
    for _ in 0..options.docs.max(1) {
        let id = devices[0]
            .create(|tx| tx.put_object(ROOT, "log", ObjType::List).map(|_| ()))
            .await?;
        devices[0].wait_synced(id, options.timeout).await?;
        ids.push(id);
    }
    for device in &devices[1..] {
        device.connect(&options.server, &options.token).await?;
        for id in &ids {
            device.fetch(*id, options.timeout).await?;
        }
    }
    // Random edits, with devices dropping off and coming back.
    let mut online = vec![true; devices.len()];
    for round in 0..options.edits {
        for (d, device) in devices.iter().enumerate() {
            if rng.random_bool(0.3) {
                if online[d] {
                    device.disconnect().await;
                } else {
                    device.connect(&options.server, &options.token).await?;
                }
                online[d] = !online[d];
            }
            let id = ids[rng.random_range(0..ids.len())];
            let entry = format!("device-{d}-edit-{round}");
            device
                .change(id, |tx| {
                    let log = match tx.get(ROOT, "log")? {
                        Some((_, log)) => log,
                        None => tx.put_object(ROOT, "log", ObjType::List)?,
                    };
                    let len = tx.length(&log);
                    tx.insert(&log, len, entry.as_str())?;
                    tx.put(ROOT, format!("last-{d}"), round as i64)?;
                    Ok(())
                })
                .await?;
        }
    }
    for (d, device) in devices.iter().enumerate() {
        if !online[d] {
            device.connect(&options.server, &options.token).await?;
        }
    }
    let deadline = Instant::now() + options.timeout;
    let mut converged = false;
    while Instant::now() < deadline {
        for device in &devices {
            for id in &ids {
                let _ = device.wait_synced(*id, Duration::from_millis(200)).await;
            }
        }
        converged = ids.iter().all(|id| {
            let mut first = devices[0].heads(*id).unwrap_or_default();
            first.sort();
            devices.iter().all(|d| {
                let mut heads = d.heads(*id).unwrap_or_default();
                heads.sort();
                heads == first
            })
        });
        if converged {
            break;
        }
    }
    let expected = options.devices.max(1) * options.edits;
    let all_edits_present = devices.iter().all(|device| {
        let mut entries = Vec::new();
        for id in &ids {
            let _ = device.read(*id, |doc| {
                if let Ok(Some((_, log))) = doc.get(ROOT, "log") {
                    for i in 0..doc.length(&log) {
                        if let Ok(Some((v, _))) = doc.get(&log, i) {
                            entries.push(v.to_string());
                        }
                    }
                }
            });
        }
        let unique: std::collections::HashSet<_> = entries.iter().collect();
        entries.len() == expected && unique.len() == expected
    });
    for device in &devices {
        device.disconnect().await;
    }
    Ok(SimulateReport {
        devices: devices.len(),
        edits: options.edits,
        documents: ids.len(),
        converged,
        all_edits_present,
        seconds: started.elapsed().as_secs_f64(),
    })
}
