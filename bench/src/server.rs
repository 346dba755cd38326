//! The server under test: a real `lianxin-server` process on loopback, over a fresh SQLite
//! file or a fresh Postgres database, with an area, users and devices registered, and tokens
//! signed with the HS256 secret it was started with.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use sqlx::Connection;

/// The area every benchmark document and user lives in.
pub const AREA: &str = "/city/street-1/community-1";
const SECRET: &str = "lianxin-bench-secret-not-for-production";

/// A running server process, and the further nodes on the same database that
/// [`Server::add_node`] started (Postgres only).
pub struct Server {
    child: Child,
    pub port: u16,
    pub backend: &'static str,
    data_dir: PathBuf,
    http: reqwest::Client,
    admin_token: String,
    exe: PathBuf,
    url: String,
    /// Further nodes: process and port.
    extra: Vec<(Child, u16)>,
}

impl Server {
    /// Starts `lianxin-server` (beside this binary) on a fresh database: SQLite when
    /// `postgres` is `None`, else a new database on that Postgres server.
    pub async fn start(
        postgres: Option<&str>,
        max_docs_in_memory: Option<u64>,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?
            .parent()
            .context("binary directory")?
            .join("lianxin-server");
        if !exe.exists() {
            bail!(
                "{} not found: build it with `cargo build --release -p lianxin-server`",
                exe.display()
            );
        }
        let tag = format!("{:08x}", rand::random::<u32>());
        let data_dir = std::env::temp_dir().join(format!("lianxin-bench-{tag}"));
        std::fs::create_dir_all(&data_dir)?;
        let (url, backend) = match postgres {
            None => (
                format!("sqlite:{}", data_dir.join("bench.db").display()),
                "sqlite",
            ),
            Some(admin) => {
                let name = format!("lianxin_bench_{tag}");
                let mut conn = sqlx::PgConnection::connect(admin).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await?;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
                (format!("{base}/{name}"), "postgres")
            }
        };
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let cli = |args: &[&str]| -> anyhow::Result<()> {
            let status = Command::new(&exe)
                .args(["--database-url", &url, "--data-dir"])
                .arg(&data_dir)
                .args(args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("lianxin-server {args:?} failed");
            }
            Ok(())
        };
        cli(&["migrate"])?;
        for (path, level) in [
            ("/city", "city"),
            ("/city/street-1", "street"),
            (AREA, "community"),
        ] {
            cli(&[
                "area", "add", "--path", path, "--name", path, "--level", level,
            ])?;
        }
        cli(&[
            "user", "add", "--id", "admin", "--name", "admin", "--role", "admin", "--area", "/city",
        ])?;
        cli(&["device", "add", "--id", "admin-desk", "--user", "admin"])?;
        let child = node_command(&exe, &url, &data_dir, port, max_docs_in_memory).spawn()?;
        let mut server = Self {
            child,
            port,
            backend,
            data_dir,
            http: reqwest::Client::new(),
            admin_token: String::new(),
            exe,
            url,
            extra: Vec::new(),
        };
        server.admin_token = server.token("admin", "admin-desk", "admin", "/city");
        server.wait_ready(port).await?;
        Ok(server)
    }

    async fn wait_ready(&self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = self
                .http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server on port {port} did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts one more node on the same (Postgres) database and waits until it is ready.
    pub async fn add_node(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.backend == "postgres", "several nodes need Postgres");
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let child = node_command(&self.exe, &self.url, &self.data_dir, port, None).spawn()?;
        self.extra.push((child, port));
        self.wait_ready(port).await
    }

    /// The sync URL of every node, the first one first.
    pub fn ws_urls(&self) -> Vec<String> {
        std::iter::once(self.port)
            .chain(self.extra.iter().map(|(_, port)| *port))
            .map(|port| format!("ws://127.0.0.1:{port}/v1/sync"))
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/v1/sync", self.port)
    }

    /// A token for `user` on `device`, signed as the server expects.
    pub fn token(&self, user: &str, device: &str, role: &str, area: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "sub": user, "role": role, "scope": area, "device": device,
            "iss": "lianxin", "aud": "lianxin-sync", "iat": now, "exp": now + 86_400,
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("signing")
    }

    /// Registers a user with one device in [`AREA`] and returns a token for it.
    pub async fn person(&self, user: &str, role: &str) -> anyhow::Result<String> {
        self.person_in(user, role, AREA).await
    }

    /// Adds a grid below [`AREA`] (if it is not there yet) and returns its path.
    pub async fn grid(&self, name: &str) -> anyhow::Result<String> {
        let path = format!("{AREA}/{name}");
        let response = self
            .http
            .post(self.url("/v1/admin/areas"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"path": path, "name": name, "level": "grid"}))
            .send()
            .await?;
        if !response.status().is_success() && response.status().as_u16() != 409 {
            bail!("/v1/admin/areas: {}", response.text().await?);
        }
        Ok(path)
    }

    /// Registers a user with one device in `area` and returns a token for it.
    pub async fn person_in(&self, user: &str, role: &str, area: &str) -> anyhow::Result<String> {
        let device = format!("{user}-phone");
        for (path, body) in [
            (
                "/v1/admin/users",
                json!({"id": user, "name": user, "role": role, "area": area}),
            ),
            ("/v1/admin/devices", json!({"id": device, "user": user})),
        ] {
            let response = self
                .http
                .post(self.url(path))
                .bearer_auth(&self.admin_token)
                .json(&body)
                .send()
                .await?;
            if !response.status().is_success() && response.status().as_u16() != 409 {
                bail!("{path}: {}", response.text().await?);
            }
        }
        Ok(self.token(user, &device, role, area))
    }

    /// CPU seconds (user and system) the server processes (every node) have used so far.
    pub fn cpu_seconds(&self) -> f64 {
        std::iter::once(&self.child)
            .chain(self.extra.iter().map(|(child, _)| child))
            .map(|child| cpu_seconds(&format!("/proc/{}/stat", child.id())))
            .sum()
    }

    /// The server process's peak resident memory (VmHWM) and current (VmRSS), in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for (child, _) in &mut self.extra {
            let _ = child.kill();
            let _ = child.wait();
        }
        // SIGTERM first, so the server (or a profiler around it) shuts down cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// The command of one server process on `url`, listening on `port`. `LIANXIN_BENCH_WRAP` runs
/// it under a profiler, e.g. `valgrind --tool=massif --massif-out-file=/tmp/massif.out`.
fn node_command(
    exe: &PathBuf,
    url: &str,
    data_dir: &PathBuf,
    port: u16,
    max_docs_in_memory: Option<u64>,
) -> Command {
    let wrap = std::env::var("LIANXIN_BENCH_WRAP").unwrap_or_default();
    let mut words = wrap.split_whitespace();
    let mut command = match words.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(words).arg(exe);
            command
        }
        None => Command::new(exe),
    };
    command
        .args(["--database-url", url, "--data-dir"])
        .arg(data_dir)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .env("LIANXIN_AUTH__HS256_SECRET", SECRET)
        .env("LIANXIN_LIMITS__MAX_CONNECTIONS", "30000")
        // The bench's one administrator registers thousands of people as fast as the server
        // answers, which the per-user HTTP rate limit (200/s) is there to slow down; it is not
        // what the bench measures.
        .env("LIANXIN_LIMITS__HTTP_REQUESTS_PER_SECOND", "100000")
        .env("LIANXIN_CLUSTER__DRAIN_GRACE_SECS", "0")
        .env("LIANXIN_CLUSTER__DRAIN_SECS", "0")
        .env(
            "LIANXIN_DATABASE__MAX_CONNECTIONS",
            std::env::var("LIANXIN_BENCH_POOL").unwrap_or_else(|_| "16".into()),
        )
        .stdout(Stdio::null());
    if let Some(cap) = max_docs_in_memory {
        command.env("LIANXIN_LIMITS__MAX_DOCUMENTS_IN_MEMORY", cap.to_string());
    }
    command
}

/// CPU seconds (user and system) of the process whose `stat` file is `path`; 0 if unreadable.
pub fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after its closing ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // Linux reports these in USER_HZ, which is 100 on every architecture it supports.
    ticks as f64 / 100.0
}
