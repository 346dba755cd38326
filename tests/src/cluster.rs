//! Several real server processes on one Postgres, for the scale-out tests: [`Cluster`] starts
//! `lianxin-node` processes (the server's own command line, built by this crate) on loopback,
//! [`Balancer`] stands in for the load balancer in front of them, and [`PrivatePostgres`] is a
//! Postgres cluster of the test's own, which it may crash and restart without disturbing the
//! other tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lianxin_server::auth::Authenticator;
use lianxin_server::settings::AuthSettings;
use lianxin_server::storage::{PoolConfig, Store};
use secrecy::SecretString;
use tokio::task::JoinHandle;

use crate::{Backend, TestDb, metric_at, stored_doc_in, token_in};

/// A port free on loopback now (bound, then released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("bound").port()
}

/// One `lianxin-node` process.
pub struct NodeProcess {
    pub addr: SocketAddr,
    pub id: String,
    child: Child,
    log: PathBuf,
}

impl NodeProcess {
    /// The node's log so far (stderr), for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Server processes sharing one Postgres database, and what the test needs to act as their
/// administrator (register users, sign tokens).
pub struct Cluster {
    pub db: TestDb,
    /// The same database, for registering users and reading what is stored.
    pub store: Store,
    auth: Authenticator,
    secret: String,
    allow_untyped: bool,
    /// The `lianxin-node` executable (`env!("CARGO_BIN_EXE_lianxin-node")` in a test).
    bin: PathBuf,
    /// Extra environment of every node (settings overrides).
    env: Vec<(String, String)>,
    nodes: Vec<Option<NodeProcess>>,
    http: reqwest::Client,
}

impl Cluster {
    /// Starts `n` nodes of `bin` (the `lianxin-node` executable) on a fresh database of the
    /// test Postgres.
    pub async fn start(bin: &str, n: usize, allow_untyped: bool) -> Cluster {
        Self::start_on(bin, TestDb::new(Backend::Postgres).await, n, allow_untyped).await
    }

    /// Starts `n` nodes on `db` (a Postgres database).
    pub async fn start_on(bin: &str, db: TestDb, n: usize, allow_untyped: bool) -> Cluster {
        Self::start_with(bin, db, n, allow_untyped, &[]).await
    }

    /// Starts `n` nodes on `db` with extra environment variables (settings overrides such as
    /// `LIANXIN_CLUSTER__DRAIN_GRACE_SECS`).
    pub async fn start_with(
        bin: &str,
        db: TestDb,
        n: usize,
        allow_untyped: bool,
        env: &[(&str, &str)],
    ) -> Cluster {
        let secret = format!("cluster-test-{}", uuid::Uuid::new_v4().simple());
        let store = Store::connect(
            &SecretString::from(db.url.clone()),
            &PoolConfig {
                max_connections: 4,
                acquire_timeout: Duration::from_secs(5),
                application_name: Some("lianxin-test".into()),
            },
        )
        .await
        .expect("connect to the test database");
        store.migrate().await.expect("migrate");
        let auth = Authenticator::from_settings(
            &AuthSettings {
                hs256_secret: Some(SecretString::from(secret.clone())),
                ..AuthSettings::default()
            },
            &db.data_dir,
        )
        .expect("authenticator");
        let mut cluster = Cluster {
            db,
            store,
            auth,
            secret,
            allow_untyped,
            bin: PathBuf::from(bin),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            nodes: Vec::new(),
            http: reqwest::Client::new(),
        };
        for _ in 0..n {
            cluster.nodes.push(None);
            let i = cluster.nodes.len() - 1;
            cluster.launch(i).await;
        }
        cluster
    }

    /// Starts node `i` (again), on a new port, and waits until it is ready.
    pub async fn launch(&mut self, i: usize) {
        let port = free_port();
        let id = format!("node-{i}");
        let dir = self.db.data_dir.join(&id);
        std::fs::create_dir_all(&dir).expect("node data dir");
        let log = dir.join(format!("stderr-{port}.log"));
        let child = Command::new(&self.bin)
            .args(["--data-dir"])
            .arg(&dir)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", &self.db.url)
            .env("LIANXIN_AUTH__HS256_SECRET", &self.secret)
            .env(
                "LIANXIN_DOCUMENTS__ALLOW_UNTYPED",
                self.allow_untyped.to_string(),
            )
            .env("LIANXIN_CLUSTER__NODE_ID", &id)
            .env("LIANXIN_CLUSTER__DRAIN_GRACE_SECS", "0")
            .env("LIANXIN_CLUSTER__DRAIN_SECS", "1")
            .env("LIANXIN_LIMITS__DOCUMENT_IDLE_SECS", "1")
            .env("LIANXIN_DATABASE__MAX_CONNECTIONS", "8")
            .env(
                "RUST_LOG",
                std::env::var("LIANXIN_NODE_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("node log file"))
            .spawn()
            .expect("start lianxin-node");
        let node = NodeProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            id,
            child,
            log,
        };
        self.nodes[i] = Some(node);
        self.wait_ready(i, Duration::from_secs(30)).await;
    }

    fn node(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().expect("node is running")
    }

    /// Addresses of the nodes, in order (also of stopped ones: their old address).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().flatten().map(|n| n.addr).collect()
    }

    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://{}/v1/sync", self.node(i).addr)
    }

    pub fn http_url(&self, i: usize, path: &str) -> String {
        format!("http://{}{path}", self.node(i).addr)
    }

    /// The status `/readyz` of node `i` answers (0 if it does not answer).
    pub async fn readiness(&self, i: usize) -> u16 {
        match self
            .http
            .get(self.http_url(i, "/readyz"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
        {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits until node `i` says it is ready.
    pub async fn wait_ready(&mut self, i: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.readiness(i).await != 200 {
            let node = self.nodes[i].as_mut().expect("node");
            assert!(node.running(), "{} exited:\n{}", node.id, node.log_tail(40));
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not ready in {timeout:?}:\n{}",
                node.id,
                node.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills node `i` with SIGKILL: no draining, no goodbye.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.nodes[i].take() {
            let _ = node.child.kill();
            let _ = node.child.wait();
        }
    }

    /// Sends node `i` SIGTERM and waits for it to exit (it drains first); returns whether it
    /// exited cleanly.
    pub async fn terminate(&mut self, i: usize) -> bool {
        self.signal_term(i);
        self.wait_exit(i).await
    }

    /// Sends node `i` SIGTERM (it starts draining) and returns at once.
    pub fn signal_term(&self, i: usize) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.node(i).child.id().to_string()])
            .status();
    }

    /// Waits (up to 30 s) for node `i` to exit; returns whether it exited cleanly.
    pub async fn wait_exit(&mut self, i: usize) -> bool {
        let Some(mut node) = self.nodes[i].take() else {
            return false;
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                return status.success();
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cuts the connection on which node `i` listens for the other nodes' announcements
    /// (`pg_terminate_backend`, as a network cut would); returns how many were cut.
    pub async fn cut_listener(&self, i: usize) -> u64 {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&self.db.url)
            .await
            .expect("connect to the test database");
        let cut: Vec<(bool,)> = sqlx::query_as(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE '%pg_backend_pid()%'",
        )
        .bind(&self.node(i).id)
        .fetch_all(&mut conn)
        .await
        .expect("terminate the listener");
        cut.len() as u64
    }

    /// The log of node `i` so far.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i]
            .as_ref()
            .map(|n| n.log_tail(200))
            .unwrap_or_default()
    }

    /// Reads a metric of node `i` from `/metrics`.
    pub async fn metric(&self, i: usize, name: &str) -> f64 {
        metric_at(&self.http_url(i, "/metrics"), name).await
    }

    /// A token for `sub` on `device`, registering the area, user and device if missing.
    pub async fn token_as(&self, sub: &str, device: &str, role: &str, area: &str) -> String {
        token_in(&self.store, &self.auth, sub, device, role, area).await
    }

    /// The document as stored.
    pub async fn stored_doc(
        &self,
        id: lianxin_protocol::DocumentId,
    ) -> Option<automerge::Automerge> {
        stored_doc_in(&self.store, id).await
    }
}

/// A TCP load balancer on loopback: each new connection goes to the next upstream that accepts
/// it, round robin. A stopped node refuses connections and is skipped; a draining node answers
/// the websocket upgrade with 503 and the device retries, landing on another.
pub struct Balancer {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
    /// Connections made to each upstream.
    pub counts: Arc<Vec<AtomicUsize>>,
}

impl Balancer {
    pub async fn start(upstreams: Vec<SocketAddr>) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new(upstreams.iter().map(|_| AtomicUsize::new(0)).collect());
        let tally = counts.clone();
        let accept = tokio::spawn(async move {
            let next = AtomicUsize::new(0);
            while let Ok((mut inbound, _)) = listener.accept().await {
                let start = next.fetch_add(1, Ordering::Relaxed);
                let upstreams = upstreams.clone();
                let tally = tally.clone();
                tokio::spawn(async move {
                    for k in 0..upstreams.len() {
                        let i = (start + k) % upstreams.len();
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstreams[i]).await
                        {
                            tally[i].fetch_add(1, Ordering::Relaxed);
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Balancer {
            addr,
            accept,
            counts,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A Postgres cluster of the test's own (initdb into a temporary directory, on a free port),
/// which the test may crash and restart. Run as root, it runs as the `postgres` user, as
/// `initdb` requires.
pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    as_root: bool,
}

impl PrivatePostgres {
    /// Creates and starts the cluster; `None` when no Postgres server binaries are installed
    /// (`scripts/test` installs them).
    pub fn start() -> Option<PrivatePostgres> {
        let bin = pg_bin()?;
        let as_root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir =
            std::env::temp_dir().join(format!("lianxin-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let pg = PrivatePostgres {
            port: free_port(),
            bin,
            dir,
            as_root,
        };
        if as_root {
            let status = Command::new("chown")
                .args(["postgres:"])
                .arg(&pg.dir)
                .status()
                .expect("chown");
            assert!(status.success(), "chown the cluster dir to postgres");
        }
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        pg.pg_ctl_start();
        Some(pg)
    }

    /// The URL of its `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fresh database on this cluster, as a [`TestDb`].
    pub async fn database(&self) -> TestDb {
        TestDb::new_on(&self.admin_url()).await
    }

    /// Stops the server the hard way (`-m immediate`: like a crash, every connection cut) and
    /// returns; [`PrivatePostgres::start_again`] brings it back on the same port.
    pub fn crash(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    fn pg_ctl_start(&self) {
        let log = self.dir.join("log");
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-w",
                "-D",
                &self.data(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "start",
            ],
        );
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// The Postgres tool `tool` with `args`, as the `postgres` user when we are root.
    fn tool(&self, tool: &str, args: &[&str]) -> Command {
        let program = self.bin.join(tool);
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command.args(args);
        command
    }

    /// Runs `tool` with `args` and asserts that it succeeded.
    fn run(&self, tool: &str, args: &[&str]) {
        let output = self.tool(tool, args).output().expect("run a Postgres tool");
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        // Already stopped is fine: nothing to assert while cleaning up.
        let _ = self
            .tool("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The directory of `initdb` and `pg_ctl`: on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
fn pg_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            Path::new(&bin)
                .join("pg_ctl")
                .is_file()
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
