//! Typed settings: built-in defaults, then an optional TOML file, then `LIANXIN_*` environment
//! variables (nested keys with `__`, e.g. `LIANXIN_LIMITS__MAX_CONNECTIONS`), then the plain
//! `DATABASE_URL` variable, then command-line flags (applied by the caller).
//!
//! Secrets (database URL, HS256 secret) are `SecretString`s: they never appear in `Debug`
//! output or logs. This module reads configuration; it does not open files other than the
//! settings file, nor connect anywhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// All settings of one server process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `postgres://…` or `sqlite:…`. When absent, an SQLite file in `data_dir` is used.
    pub database_url: Option<SecretString>,
    /// Directory for the embedded database and the generated signing key.
    pub data_dir: PathBuf,
    /// `text` (default) or `json` log lines.
    pub log_format: LogFormat,
    pub auth: AuthSettings,
    pub limits: Limits,
    pub database: DatabaseSettings,
    pub documents: DocumentSettings,
    pub cluster: ClusterSettings,
}

/// Running as one of several nodes behind a load balancer (see `docs/deploy.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// This node's ID in logs and metrics. Default: host name and listening port.
    pub node_id: Option<String>,
    /// On SIGTERM, seconds between reporting not-ready on `/readyz` (new connections are
    /// refused from then on) and starting to close connections: time for the load balancer
    /// to notice and send new connections elsewhere.
    pub drain_grace_secs: u64,
    /// Seconds over which open connections are closed (code 1012, "service restart") after
    /// the grace period, spread evenly so devices reconnect to the other nodes gradually
    /// rather than all at once.
    pub drain_secs: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            node_id: None,
            drain_grace_secs: 5,
            drain_secs: 10,
        }
    }
}

impl Default for DocumentSettings {
    fn default() -> Self {
        Self {
            allow_untyped: false,
            listening_days: lianxin_protocol::domain::ListeningDays::default().days,
            due_times: lianxin_protocol::domain::DueTimes::default(),
            utc_offset_secs: lianxin_protocol::domain::SHANGHAI_OFFSET_SECS,
            limits: lianxin_protocol::domain::SchemaLimits::default(),
        }
    }
}

/// What documents the server accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DocumentSettings {
    /// Also accept documents that declare no `kind`, readable and writable by every registered
    /// device (a plain sync server). Off for field deployments: every document is then one of
    /// the field's kinds, checked against its schema, the area tree and the author's role.
    pub allow_untyped: bool,
    /// Days of the month that are listening days; visits on other days are accepted but
    /// flagged.
    pub listening_days: Vec<u8>,
    /// The deadline of each triage track (`same_day` or `{ within_ms = … }`), from which the
    /// read model computes due times and overdue requests.
    pub due_times: lianxin_protocol::domain::DueTimes,
    /// The local zone of dates and listening days, in seconds east of UTC (+8 by default).
    pub utc_offset_secs: i32,
    /// How long each string and list of a document may be, as keys of this section:
    /// `max_text_bytes` (free text such as a visit's `heard`; 8 KiB), `max_short_bytes`
    /// (identifiers, codes, residents' names and numbers; 256), `max_list_items` (1000) and
    /// `max_change_ops` (operations in one change; 100,000). Strings count bytes of UTF-8.
    #[serde(flatten)]
    pub limits: lianxin_protocol::domain::SchemaLimits,
}

impl DocumentSettings {
    /// The write rules' configuration these settings describe.
    pub fn rules(&self) -> lianxin_protocol::domain::CheckConfig {
        lianxin_protocol::domain::CheckConfig {
            listening_days: lianxin_protocol::domain::ListeningDays {
                days: self.listening_days.clone(),
            },
            limits: self.limits,
        }
    }

    /// The projection configuration these settings describe.
    pub fn projection(&self) -> lianxin_protocol::domain::ProjectionConfig {
        lianxin_protocol::domain::ProjectionConfig {
            listening_days: lianxin_protocol::domain::ListeningDays {
                days: self.listening_days.clone(),
            },
            due_times: self.due_times,
            utc_offset_secs: self.utc_offset_secs,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid default address"),
            database_url: None,
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Text,
            auth: AuthSettings::default(),
            limits: Limits::default(),
            database: DatabaseSettings::default(),
            documents: DocumentSettings::default(),
            cluster: ClusterSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How tokens are verified (and, for the `token` command, signed).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Shared HS256 secret. When neither this nor `public_key_file` is set, a secret is
    /// generated in the data directory on first start and reused afterwards.
    pub hs256_secret: Option<SecretString>,
    /// PEM public key for RS256 or EdDSA verification.
    pub public_key_file: Option<PathBuf>,
    /// PEM private key matching `public_key_file`, needed only to issue tokens.
    pub private_key_file: Option<PathBuf>,
    /// `RS256` or `EdDSA` when a public key file is given.
    pub algorithm: Option<String>,
    /// Allowed clock skew when checking `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Longest lifetime of a token (`exp - iat`) that is accepted, in seconds; longer ones,
    /// and tokens without `iat`, are refused with 401 (and `lianxin-server token` refuses to
    /// sign them).
    pub max_token_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "lianxin".into(),
            audience: "lianxin-sync".into(),
            hs256_secret: None,
            public_key_file: None,
            private_key_file: None,
            algorithm: None,
            leeway_secs: 30,
            max_token_ttl_secs: 30 * 24 * 3600,
        }
    }
}

/// Limits enforced at the edge. Every one of them produces a typed error to the client.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest accepted websocket message, in bytes. Larger ones get an `error` message and
    /// the connection is closed with code 1009.
    pub max_message_bytes: usize,
    /// Largest stored size of one document (snapshot plus change log), in bytes.
    pub max_document_bytes: u64,
    /// Most concurrent websocket connections; more get HTTP 503 at the upgrade.
    pub max_connections: usize,
    /// Most documents one connection may have open at once.
    pub max_open_documents_per_connection: usize,
    /// Documents a connection keeps open when its client hears changed-docs notices (the
    /// Lianxin SDK): beyond this, the least recently used are closed and watched instead.
    pub keep_open_documents_per_connection: usize,
    /// Most Automerge documents loaded in memory in this process. Loading one more drops the
    /// least recently used from memory (its sessions stay; the store has everything).
    pub max_documents_in_memory: usize,
    /// Capacity of each connection's send queue. When it is full the client is too slow to
    /// keep up: it is disconnected (it resumes by syncing again on reconnect; nothing is lost).
    pub send_queue: usize,
    /// Seconds a client has to send `join` after the upgrade.
    pub handshake_timeout_secs: u64,
    /// Seconds one websocket send may take before the client counts as stalled.
    pub send_timeout_secs: u64,
    /// Seconds between websocket pings. A connection that has sent nothing (not even a pong)
    /// for three of these is closed as dead.
    pub keepalive_secs: u64,
    /// Seconds a document stays in memory after its last connection closed it.
    pub document_idle_secs: u64,
    /// Change chunks after which a document is compacted into a new snapshot.
    pub compact_after_chunks: usize,
    /// Bytes of documents after which an area-sync batch is closed (a larger document goes
    /// alone). Keep it well under `max_message_bytes` of the clients.
    pub area_batch_bytes: usize,
    /// Timeout of plain HTTP requests.
    pub http_timeout_secs: u64,
    /// Longest life of a server-sent-events stream of `/v1/changes`, in seconds; then the
    /// server ends it and the client reconnects from its cursor (`Last-Event-ID`). A stream
    /// also ends when its token expires, and at once when its user or device is revoked.
    pub sse_max_secs: u64,
    /// Longest wait of a `/v1/changes` long poll (`wait=`), in seconds.
    pub long_poll_max_secs: u64,
    /// Sustained HTTP requests per second allowed to one user (all their devices together);
    /// beyond it, and beyond `http_burst`, 429 with `Retry-After`.
    pub http_requests_per_second: u32,
    /// Requests one user may make at once above the sustained rate.
    pub http_burst: u32,
    /// Largest serialized size of one page of a list (`/v1/households`, `/v1/visits`,
    /// `/v1/requests`, `/v1/orders`, `/v1/history`, `/v1/changes`), in bytes. A page stops
    /// before the row that would pass it (it always holds at least one row) and carries its
    /// `next` token.
    pub max_page_bytes: usize,
    /// Operations (and changes) the Automerge chunks of one sync message may declare: what
    /// bounds Automerge's work on a message, since run-length encoding declares a million
    /// operations in three bytes. Over it: an `error` naming the limit.
    pub max_message_ops: u64,
    /// Bytes one connection's send queue may hold (besides `send_queue` messages); a client
    /// that lets more pile up is disconnected as too slow. One message is always let into an
    /// empty queue, but a document larger than this that waits in the queue behind another
    /// message makes the next one overflow it: keep it above the largest documents readers
    /// fetch (the schema limits keep field documents far below the default).
    pub max_outbox_bytes: usize,
    /// Largest ephemeral message relayed, in bytes; larger ones get an `error`.
    pub max_ephemeral_bytes: usize,
    /// Ephemeral messages one connection may send per second (sustained); more are dropped.
    pub ephemeral_per_second: u32,
    /// Ephemeral messages one connection may send in a burst.
    pub ephemeral_burst: u32,
    /// Malformed or refused-as-malformed messages a connection may send before it is closed
    /// (code 1008). Every one of them also gets an `error`.
    pub max_malformed_messages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_document_bytes: 64 * 1024 * 1024,
            max_connections: 25_000,
            max_open_documents_per_connection: 4_096,
            keep_open_documents_per_connection: 512,
            max_documents_in_memory: 2_000,
            send_queue: 1024,
            handshake_timeout_secs: 10,
            send_timeout_secs: 30,
            keepalive_secs: 30,
            document_idle_secs: 30,
            area_batch_bytes: 1024 * 1024,
            compact_after_chunks: 64,
            http_timeout_secs: 30,
            sse_max_secs: 600,
            long_poll_max_secs: 30,
            http_requests_per_second: 200,
            http_burst: 1000,
            max_page_bytes: 4 * 1024 * 1024,
            max_message_ops: 250_000,
            max_outbox_bytes: 16 * 1024 * 1024,
            max_ephemeral_bytes: 64 * 1024,
            ephemeral_per_second: 20,
            ephemeral_burst: 40,
            max_malformed_messages: 16,
        }
    }
}

impl Limits {
    /// What the Automerge chunks of one sync message may cost once decoded.
    pub fn chunk_budget(&self) -> lianxin_protocol::chunk::Budget {
        lianxin_protocol::chunk::Budget {
            max_inflated_bytes: self.max_message_bytes,
            max_ops: self.max_message_ops,
        }
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }
    pub fn send_timeout(&self) -> Duration {
        Duration::from_secs(self.send_timeout_secs)
    }
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs.max(1))
    }
    pub fn document_idle(&self) -> Duration {
        Duration::from_secs(self.document_idle_secs)
    }
}

/// Connection pool settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_secs: 5,
        }
    }
}

/// Errors while reading settings.
#[derive(Debug, thiserror::Error)]
#[error("invalid settings: {0}")]
pub struct SettingsError(#[from] Box<figment::Error>);

impl Settings {
    /// Loads defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            .merge(Env::prefixed("LIANXIN_").split("__"))
            .merge(Env::raw().only(&["DATABASE_URL"]));
        figment.extract().map_err(|e| SettingsError(Box::new(e)))
    }

    /// This node's ID: `cluster.node_id`, else the host name and the configured port.
    pub fn node_id(&self) -> String {
        self.cluster
            .node_id
            .clone()
            .unwrap_or_else(|| crate::cluster::default_node_id(self.listen.port()))
    }

    /// The database URL in effect: the configured one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> SecretString {
        match &self.database_url {
            Some(url) if !url.expose_secret().is_empty() => url.clone(),
            _ => {
                let path = self.data_dir.join("lianxin.db");
                SecretString::from(format!("sqlite://{}", path.display()))
            }
        }
    }
}

/// Shows a database URL with any password replaced, for logs.
pub fn redacted_url(url: &SecretString) -> String {
    let raw = url.expose_secret();
    match (raw.find("://"), raw.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &raw[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &raw[..scheme_end], user, &raw[at + 1..])
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail closures return figment::Error.
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_password_but_keeps_host() {
        let url = SecretString::from("postgres://app:hunter2@db:5432/lianxin".to_string());
        let shown = redacted_url(&url);
        assert!(!shown.contains("hunter2"));
        assert_eq!(shown, "postgres://app:***@db:5432/lianxin");
    }

    #[test]
    fn file_then_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "lianxin.toml",
                "listen = \"0.0.0.0:9000\"\n[limits]\nmax_connections = 10\nsend_queue = 7\n",
            )?;
            jail.set_env("LIANXIN_LIMITS__MAX_CONNECTIONS", "20");
            jail.set_env("DATABASE_URL", "postgres://u:p@db/lianxin");
            let settings = Settings::load(Some(Path::new("lianxin.toml"))).expect("loads");
            assert_eq!(settings.listen.port(), 9000);
            assert_eq!(settings.limits.max_connections, 20, "env beats file");
            assert_eq!(settings.limits.send_queue, 7, "file beats default");
            assert_eq!(
                settings.limits.max_message_bytes,
                Limits::default().max_message_bytes
            );
            assert_eq!(
                settings.effective_database_url().expose_secret(),
                "postgres://u:p@db/lianxin"
            );
            Ok(())
        });
    }

    #[test]
    fn document_limits_are_keys_of_the_documents_section() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "lianxin.toml",
                "[documents]\nmax_text_bytes = 4096\nlistening_days = [1]\n",
            )?;
            jail.set_env("LIANXIN_DOCUMENTS__MAX_LIST_ITEMS", "50");
            let settings = Settings::load(Some(Path::new("lianxin.toml"))).expect("loads");
            let limits = settings.documents.rules().limits;
            assert_eq!(limits.max_text_bytes, 4096);
            assert_eq!(limits.max_list_items, 50);
            assert_eq!(
                limits.max_short_bytes,
                lianxin_protocol::domain::SchemaLimits::default().max_short_bytes
            );
            assert_eq!(settings.documents.listening_days, [1]);
            Ok(())
        });
    }

    #[test]
    fn no_database_url_means_sqlite_in_the_data_dir() {
        let settings = Settings {
            data_dir: PathBuf::from("/var/lib/lianxin"),
            ..Settings::default()
        };
        assert_eq!(
            settings.effective_database_url().expose_secret(),
            "sqlite:///var/lib/lianxin/lianxin.db"
        );
    }

    #[test]
    fn a_bad_value_is_a_clear_error() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LIANXIN_LIMITS__MAX_CONNECTIONS", "many");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.to_lowercase().contains("max_connections"), "{err}");
            assert!(
                err.contains("LIANXIN_"),
                "names where the value came from: {err}"
            );
            Ok(())
        });
    }

    #[test]
    fn debug_never_prints_the_database_url() {
        let settings = Settings {
            database_url: Some(SecretString::from("postgres://a:secretpw@h/d".to_string())),
            ..Settings::default()
        };
        assert!(!format!("{settings:?}").contains("secretpw"));
    }
}
