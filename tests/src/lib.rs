//! Test harness for end-to-end tests: a real server bound to port 0 on loopback, over a fresh
//! database per test (a new Postgres database, or a new SQLite file), driven by the real
//! client SDK or by raw websockets.
//!
//! The Postgres server is named by `LIANXIN_TEST_DATABASE_URL` (set by `scripts/test`, which
//! starts a throwaway cluster), else `DATABASE_URL`, else the local default on port 5432.
//!
//! # Layout
//! This file: [`TestDb`], [`TestApp`], [`spawn_app`] and a raw websocket peer, [`RawPeer`],
//! for feeding the server bytes no real client would send. [`cluster`]: several real server
//! processes on one Postgres, a load balancer in front of them, and a Postgres of the test's
//! own to crash and restart.

pub mod cluster;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lianxin_protocol::{Message, PeerId, PeerMetadata, handshake};
use lianxin_server::auth::TokenRequest;
use lianxin_server::state::AppState;
use lianxin_server::{Application, Settings};
use secrecy::SecretString;
use sqlx::Connection;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

/// Which storage backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh, empty database for one test (and a data directory beside it).
#[derive(Debug)]
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    pub data_dir: PathBuf,
}

fn admin_url() -> String {
    std::env::var("LIANXIN_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        Self::create(backend, &admin_url()).await
    }

    /// A fresh Postgres database on the server of `admin` (a URL of any database there).
    pub async fn new_on(admin: &str) -> Self {
        Self::create(Backend::Postgres, admin).await
    }

    async fn create(backend: Backend, admin: &str) -> Self {
        let name = format!("lianxin_t_{}", uuid::Uuid::new_v4().simple());
        let data_dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&data_dir).expect("create test data dir");
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", data_dir.join("test.db").display()),
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(admin).await.unwrap_or_else(|e| {
                    panic!("cannot reach the test Postgres (set LIANXIN_TEST_DATABASE_URL or run scripts/test): {e}")
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
                format!("{base}/{name}")
            }
        };
        TestDb {
            backend,
            url,
            data_dir,
        }
    }
}

/// Polls `check` every 20 ms until it returns `Ok`; after `timeout`, fails with the reason its
/// last `Err` gave.
pub async fn until<F, Fut>(timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let Err(why) = check().await else {
            return;
        };
        assert!(tokio::time::Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

/// Settings for a test server on `db`: port 0, short idle times.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(SecretString::from(db.url.clone())),
        data_dir: db.data_dir.clone(),
        ..Settings::default()
    };
    settings.limits.document_idle_secs = 1;
    // Stopping a test server closes its connections at once.
    settings.cluster.drain_grace_secs = 0;
    settings.cluster.drain_secs = 0;
    // The sync-pipe tests use free-form documents; the field tests turn this off.
    settings.documents.allow_untyped = true;
    settings
}

/// Starts a server on `db`. The listener is bound before this returns, so clients can
/// connect at once: no sleeps.
pub async fn spawn_app(db: &TestDb) -> TestApp {
    spawn_app_with(test_settings(db)).await
}

/// Starts a server with the given settings.
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("build server");
    let addr = app.local_addr();
    let state = app.state().clone();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let handle = tokio::spawn(app.run_until(async move { token.cancelled().await }));
    TestApp {
        addr,
        state,
        shutdown,
        handle,
    }
}

impl TestApp {
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A valid token for user `sub` on device `device`, registering both (as a secretary in
    /// area `/test`) if needed.
    pub async fn token(&self, sub: &str, device: &str) -> String {
        self.token_as(sub, device, "secretary", "/test").await
    }

    /// A valid token for `sub` on `device`, registering the area, the user (with `role` in
    /// `area`) and the device if they do not exist yet.
    pub async fn token_as(&self, sub: &str, device: &str, role: &str, area: &str) -> String {
        token_in(&self.state.store, &self.state.auth, sub, device, role, area).await
    }

    /// Registers every area on the way to `area`, the user and the device (each only if
    /// missing).
    pub async fn register(&self, sub: &str, device: &str, role: &str, area: &str) {
        register_in(&self.state.store, sub, device, role, area).await;
    }

    /// Reads a counter from `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric_at(&self.http_url("/metrics"), name).await
    }

    /// The document as the server stored it, read straight from the database.
    pub async fn stored_doc(
        &self,
        id: lianxin_protocol::DocumentId,
    ) -> Option<automerge::Automerge> {
        stored_doc_in(&self.state.store, id).await
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle
            .await
            .expect("server task")
            .expect("server ran cleanly");
    }
}

/// Reads the metric `name` from the Prometheus text at `url`.
pub async fn metric_at(url: &str, name: &str) -> f64 {
    let text = reqwest::get(url)
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.parse().ok())?
        })
        .unwrap_or_else(|| panic!("metric {name} not found"))
}

/// The document `id` as stored in `store`.
pub async fn stored_doc_in(
    store: &lianxin_server::storage::Store,
    id: lianxin_protocol::DocumentId,
) -> Option<automerge::Automerge> {
    let stored = store.load(&id).await.expect("load from store")?;
    Some(stored.to_automerge().expect("stored document loads"))
}

/// A token signed by `auth` for `sub` on `device`, registering the area, the user (with `role`
/// in `area`) and the device in `store` if they do not exist yet.
pub async fn token_in(
    store: &lianxin_server::storage::Store,
    auth: &lianxin_server::auth::Authenticator,
    sub: &str,
    device: &str,
    role: &str,
    area: &str,
) -> String {
    register_in(store, sub, device, role, area).await;
    let user = store.get_user(sub).await.unwrap().unwrap();
    auth.issue(&TokenRequest {
        sub: sub.into(),
        role: user.role,
        scope: user.area,
        device: Some(device.into()),
        ttl_secs: 600,
    })
    .expect("issue token")
}

/// Registers every area on the way to `area`, the user (with `role` in `area`) and the device
/// in `store`, each only if missing.
pub async fn register_in(
    store: &lianxin_server::storage::Store,
    sub: &str,
    device: &str,
    role: &str,
    area: &str,
) {
    use lianxin_server::storage::registry::{Area, Device, RegistryError, User};
    let mut path = String::new();
    for segment in area.trim_start_matches('/').split('/') {
        path.push('/');
        path.push_str(segment);
        let created = store
            .create_area(&Area {
                path: path.clone(),
                name: segment.into(),
                level: "street".into(),
            })
            .await;
        assert!(
            matches!(created, Ok(()) | Err(RegistryError::Exists(_))),
            "{created:?}"
        );
    }
    let created = store
        .create_user(&User {
            id: sub.into(),
            name: sub.into(),
            role: role.into(),
            area: area.into(),
            department: None,
            revoked: false,
        })
        .await;
    assert!(
        matches!(created, Ok(()) | Err(RegistryError::Exists(_))),
        "{created:?}"
    );
    let created = store
        .create_device(&Device {
            id: device.into(),
            user_id: sub.into(),
            label: String::new(),
            revoked: false,
        })
        .await;
    assert!(
        matches!(created, Ok(()) | Err(RegistryError::Exists(_))),
        "{created:?}"
    );
}

/// A websocket peer that speaks raw protocol messages, for sending what no real client would.
pub struct RawPeer {
    pub peer_id: PeerId,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl RawPeer {
    /// Connects with `?token=` and completes the join handshake.
    pub async fn connect(app: &TestApp, token: &str) -> RawPeer {
        let url = format!("{}?token={}", app.ws_url(), token);
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connect");
        let peer_id = PeerId::new(format!("raw-{}", uuid::Uuid::new_v4().simple())).unwrap();
        let mut peer = RawPeer { peer_id, socket };
        let join = handshake::join(
            &peer.peer_id,
            PeerMetadata {
                is_ephemeral: true,
                ..PeerMetadata::default()
            },
        );
        peer.send(&join).await;
        match peer.recv().await {
            Some(Message::Peer { .. }) => peer,
            other => panic!("expected peer, got {other:?}"),
        }
    }

    pub async fn send(&mut self, message: &Message) {
        self.send_bytes(message.encode()).await;
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(WsMessage::Binary(bytes.into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(WsMessage::Text(text.into()))
            .await
            .expect("send");
    }

    /// The next protocol message, or `None` if the server closed the connection (or nothing
    /// came within 5 s).
    pub async fn recv(&mut self) -> Option<Message> {
        self.recv_frame()
            .await
            .map(|bytes| Message::decode(&bytes).expect("server sends decodable messages"))
    }

    /// The next binary frame; `None` on close or after 5 s.
    pub async fn recv_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .ok()??;
            match frame {
                Ok(WsMessage::Binary(bytes)) => return Some(bytes.to_vec()),
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the server to close the connection; returns the close code if any.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.socket.next())
                .await
                .ok()??;
            match frame {
                Ok(WsMessage::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }
}

/// A TCP proxy on loopback that forwards to `upstream` and can cut every connection through it
/// at once, for flaky-network tests.
pub struct FlakyProxy {
    pub addr: SocketAddr,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(upstream: SocketAddr) -> FlakyProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let registry = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(task.abort_handle());
            }
        });
        FlakyProxy {
            addr,
            connections,
            accept,
        }
    }

    /// The websocket URL of the sync endpoint through this proxy.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }

    /// Drops every connection through the proxy mid-stream; returns how many were cut.
    pub fn cut_all(&self) -> usize {
        let handles = std::mem::take(&mut *self.connections.lock().unwrap());
        let live = handles.iter().filter(|h| !h.is_finished()).count();
        for handle in handles {
            handle.abort();
        }
        live
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}
