//! The Postgres backend: production storage, shareable by several server processes.
//! Connection set-up and change announcements (`NOTIFY` / `LISTEN`) live here; the statements
//! are shared with SQLite (`store_impl!`).
//!
//! Every append transaction ends with `pg_notify` on [`CHANNEL`], naming its documents, so the
//! announcement is delivered exactly when (and only if) the changes commit. A payload is
//! `lianxin/1 <instance>` followed by one line `<document> <seq> <area or ->` per document, in
//! as many notifications as it takes to stay under Postgres's 8,000-byte payload limit.

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use super::{ChangedDocument, PoolConfig, Revoked, StorageError};

/// The channel of change announcements.
pub const CHANNEL: &str = "lianxin_changes";

/// The channel of revocations: `lianxin/1 <instance>` then `user <id>` or `device <id>`.
pub const REVOCATIONS: &str = "lianxin_revocations";

/// First word of every payload: the format version.
const PAYLOAD_VERSION: &str = "lianxin/1";

/// Bytes of one payload, under Postgres's limit of 8,000.
const PAYLOAD_BYTES: usize = 7_000;

/// Documents in Postgres.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// This process's name in announcements.
    pub(super) instance: String,
}

impl PgStore {
    pub(super) async fn connect(url: &str, config: &PoolConfig) -> Result<Self, StorageError> {
        let mut options: sqlx::postgres::PgConnectOptions = url.parse()?;
        if let Some(name) = &config.application_name {
            options = options.application_name(name);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            instance: format!("{:016x}", rand::random::<u64>()),
        })
    }

    /// Announces `docs` in the append transaction `tx`: delivered when it commits.
    pub(super) async fn announce(
        &self,
        tx: &mut sqlx::PgConnection,
        docs: &[ChangedDocument],
    ) -> Result<(), StorageError> {
        for payload in payloads(&self.instance, docs) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(payload)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// Announces a revocation to every node.
    pub(super) async fn announce_revocation(&self, revoked: &Revoked) -> Result<(), StorageError> {
        let line = match revoked {
            Revoked::User(id) => format!("user {id}"),
            Revoked::Device(id) => format!("device {id}"),
        };
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(REVOCATIONS)
            .bind(format!("{PAYLOAD_VERSION} {}\n{line}", self.instance))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Starts listening for announcements on a connection of its own.
    pub(super) async fn listen(&self) -> Result<ChangeListener, StorageError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        // A lost connection must be reported at once (the caller catches up and makes a new
        // listener), not repaired silently inside the next receive.
        listener.eager_reconnect(false);
        listener.listen_all([CHANNEL, REVOCATIONS]).await?;
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut listener)
            .await?;
        Ok(ChangeListener { listener, backend })
    }
}

/// The payloads announcing `docs` (none for no documents).
fn payloads(instance: &str, docs: &[ChangedDocument]) -> Vec<String> {
    let header = format!("{PAYLOAD_VERSION} {instance}");
    let mut out = Vec::new();
    let mut current = String::new();
    for doc in docs {
        let line = format!(
            "\n{} {} {}",
            doc.id,
            doc.seq,
            doc.area.as_deref().unwrap_or("-")
        );
        if !current.is_empty() && current.len() + line.len() > PAYLOAD_BYTES {
            out.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(&header);
        }
        current.push_str(&line);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One announcement: which process appended, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The announcing process's [`instance`](super::Store::instance).
    pub origin: String,
    pub docs: Vec<ChangedDocument>,
}

/// A payload this version does not read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable change announcement: {0:?}")]
pub struct BadPayload(String);

impl std::str::FromStr for Announcement {
    type Err = BadPayload;

    fn from_str(payload: &str) -> Result<Self, BadPayload> {
        let bad = || BadPayload(payload.chars().take(120).collect());
        let mut lines = payload.lines();
        let (version, origin) = lines
            .next()
            .and_then(|h| h.split_once(' '))
            .ok_or_else(bad)?;
        if version != PAYLOAD_VERSION {
            return Err(bad());
        }
        let mut docs = Vec::new();
        for line in lines {
            let mut parts = line.split(' ');
            let (Some(id), Some(seq), Some(area), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            docs.push(ChangedDocument {
                id: id.parse().map_err(|_| bad())?,
                seq: seq.parse().map_err(|_| bad())?,
                area: (area != "-").then(|| area.to_owned()),
            });
        }
        Ok(Self {
            origin: origin.to_owned(),
            docs,
        })
    }
}

/// Reads a revocation payload.
fn parse_revocation(payload: &str) -> Option<Revoked> {
    let (header, line) = payload.split_once('\n')?;
    if header.split(' ').next() != Some(PAYLOAD_VERSION) {
        return None;
    }
    match line.split_once(' ')? {
        ("user", id) => Some(Revoked::User(id.to_owned())),
        ("device", id) => Some(Revoked::Device(id.to_owned())),
        _ => None,
    }
}

/// A connection listening for change announcements.
#[derive(Debug)]
pub struct ChangeListener {
    listener: PgListener,
    /// The server process of the listening connection: `PgListener` reconnects by itself
    /// (also inside a query), and a new backend means announcements may have been missed.
    backend: i32,
}

/// What the listener heard.
#[derive(Debug)]
pub enum Heard {
    Announcement(Announcement),
    /// A user or device was revoked (by any node, this one included).
    Revocation(Revoked),
    /// A notification on the channel that this version cannot read (logged, skipped).
    Unreadable(BadPayload),
}

impl ChangeListener {
    /// The next announcement. An error means the connection was lost: announcements may have
    /// been missed, so drop this listener, make a new one and catch up from the database.
    pub async fn recv(&mut self) -> Result<Heard, StorageError> {
        match self.listener.try_recv().await? {
            Some(notification) if notification.channel() == REVOCATIONS => {
                Ok(match parse_revocation(notification.payload()) {
                    Some(revoked) => Heard::Revocation(revoked),
                    None => Heard::Unreadable(BadPayload(notification.payload().to_owned())),
                })
            }
            Some(notification) => Ok(match notification.payload().parse() {
                Ok(announcement) => Heard::Announcement(announcement),
                Err(bad) => Heard::Unreadable(bad),
            }),
            None => Err(StorageError::ListenerLost),
        }
    }

    /// The oldest transaction still running, read on the listening connection (see
    /// [`super::Store::area_horizon`]); doubles as a check that the connection is alive and
    /// is still the one that started listening ([`StorageError::ListenerLost`] if not).
    pub async fn horizon(&mut self) -> Result<i64, StorageError> {
        let (horizon, backend): (i64, i32) = sqlx::query_as(
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, pg_backend_pid()",
        )
        .fetch_one(&mut self.listener)
        .await?;
        if backend != self.backend {
            return Err(StorageError::ListenerLost);
        }
        Ok(horizon)
    }
}

super::store_impl!(
    PgStore,
    sqlx::migrate!("../migrations/postgres"),
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
    "pg_current_xact_id()::text::bigint"
);

super::registry::registry_impl!(PgStore);

super::area::area_impl!(
    PgStore,
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
);

super::read_model::read_model_impl!(
    PgStore,
    sqlx::PgConnection,
    "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
);

#[cfg(test)]
mod tests {
    use lianxin_protocol::DocumentId;

    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_under_the_limit() {
        let docs: Vec<ChangedDocument> = (0..400)
            .map(|i| ChangedDocument {
                id: DocumentId::random(),
                seq: i,
                area: (i % 3 != 0).then(|| format!("city/street-{i}/community")),
            })
            .collect();
        let written = payloads("abc", &docs);
        assert!(written.len() > 1, "400 documents need several payloads");
        let mut heard = Vec::new();
        for payload in &written {
            assert!(payload.len() <= 8_000, "{}", payload.len());
            let announcement: Announcement = payload.parse().unwrap();
            assert_eq!(announcement.origin, "abc");
            heard.extend(announcement.docs);
        }
        assert_eq!(heard, docs);
        assert!(payloads("abc", &[]).is_empty());
        for bad in [
            "",
            "lianxin/2 x",
            "lianxin/1 x\nnot-an-id 1 -",
            "lianxin/1 x\n1 2",
        ] {
            assert!(bad.parse::<Announcement>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revocations_name_a_user_or_a_device() {
        assert_eq!(
            parse_revocation("lianxin/1 abc\nuser li si"),
            Some(Revoked::User("li si".into()))
        );
        assert_eq!(
            parse_revocation("lianxin/1 abc\ndevice wang-phone"),
            Some(Revoked::Device("wang-phone".into()))
        );
        for bad in [
            "",
            "lianxin/1 abc",
            "lianxin/2 abc\nuser li",
            "lianxin/1 abc\narea /x",
        ] {
            assert_eq!(parse_revocation(bad), None, "{bad:?}");
        }
    }
}
