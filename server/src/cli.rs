//! The `lianxin-server` command line: `serve`, `migrate`, `token` (signs a development token
//! with the configured key), and `area` / `user` / `device` to keep the registry from the
//! command line (for bootstrapping the first administrator, and for scripts). Flags override
//! settings from the file and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::auth::{Authenticator, TokenRequest};
use crate::routes::admin::{LEVELS, ROLES, valid_area_path};
use crate::settings::Settings;
use crate::startup::{Application, connect_store, shutdown_signal};
use crate::storage::registry::{Area, Device, User};
use crate::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "lianxin-server",
    version,
    about = "Lianxin offline-first sync server"
)]
pub struct Cli {
    /// Settings file (TOML). `LIANXIN_*` environment variables override it.
    #[arg(long, global = true, env = "LIANXIN_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: postgres://… or sqlite:…; default: SQLite in the data directory.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Directory for the embedded database and the generated signing key.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Bring the database schema up to date and exit.
    Migrate,
    /// Rebuild the read model's projections from the stored documents (one transaction per
    /// document; safe while servers run).
    Reproject {
        /// Delete every projection row first, so rows of documents that no longer project go.
        #[arg(long)]
        from_scratch: bool,
    },
    /// Print a signed token (for development and tests). Role and area default to the
    /// user's entry in the registry.
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        role: Option<String>,
        /// Area path the user is bound to, e.g. /jining/rencheng/street-1.
        #[arg(long)]
        scope: Option<String>,
        #[arg(long)]
        device: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// Manage the area tree.
    #[command(subcommand)]
    Area(AreaCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage devices.
    #[command(subcommand)]
    Device(DeviceCommand),
}

#[derive(Debug, Subcommand)]
enum AreaCommand {
    /// Add an area; its parent must exist.
    Add {
        #[arg(long)]
        path: String,
        #[arg(long)]
        name: String,
        /// city, district, street, community, compound, grid or building.
        #[arg(long)]
        level: String,
    },
    /// List areas at or below a path.
    List {
        #[arg(long, default_value = "/")]
        within: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[arg(long)]
        area: String,
        #[arg(long)]
        department: Option<String>,
    },
    List {
        #[arg(long, default_value = "/")]
        within: String,
    },
    /// Revoke a user: refused at the next connection (and at once on this node's API).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    List {
        #[arg(long, default_value = "/")]
        within: String,
    },
    Revoke {
        id: String,
    },
}

/// Parses the command line and runs the command.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(url) = cli.database_url {
        settings.database_url = Some(SecretString::from(url));
    }
    if let Some(dir) = cli.data_dir {
        settings.data_dir = dir;
    }
    if let Command::Serve {
        listen: Some(listen),
    } = &cli.command
    {
        settings.listen = *listen;
    }
    telemetry::init(settings.log_format, &settings.node_id());
    match cli.command {
        Command::Serve { listen } => {
            if let Some(listen) = listen {
                settings.listen = listen;
            }
            Application::build(settings)
                .await?
                .run_until(shutdown_signal())
                .await
        }
        Command::Migrate => {
            let store = connect_store(&settings).await?;
            store.migrate().await.context("running migrations")?;
            tracing::info!(storage = store.backend(), "migrations applied");
            Ok(())
        }
        Command::Reproject { from_scratch } => {
            let store = connect_store(&settings).await?;
            store.migrate().await.context("running migrations")?;
            let report = store
                .reproject_all(&settings.documents.projection(), from_scratch)
                .await
                .context("reprojecting")?;
            println!(
                "reprojected {} documents ({} untyped or unreadable skipped)",
                report.projected, report.skipped
            );
            Ok(())
        }
        Command::Token {
            sub,
            role,
            scope,
            device,
            ttl,
        } => {
            let registered = match (&role, &scope) {
                (Some(_), Some(_)) => None,
                _ => {
                    let store = connect_store(&settings).await?;
                    store.migrate().await?;
                    store.get_user(&sub).await?
                }
            };
            let pick = |given: Option<String>, from_registry: Option<String>, what: &str| {
                given.or(from_registry).with_context(|| {
                    format!("--{what} is required: user {sub} is not in the registry")
                })
            };
            let role = pick(role, registered.as_ref().map(|u| u.role.clone()), "role")?;
            let scope = pick(scope, registered.as_ref().map(|u| u.area.clone()), "scope")?;
            let auth = Authenticator::from_settings(&settings.auth, &settings.data_dir)?;
            let token = auth.issue(&TokenRequest {
                sub: sub.clone(),
                role,
                scope,
                device,
                ttl_secs: ttl,
            })?;
            println!("{token}");
            Ok(())
        }
        Command::Area(command) => {
            let store = connect_store(&settings).await?;
            store.migrate().await?;
            match command {
                AreaCommand::Add { path, name, level } => {
                    if !valid_area_path(&path) || !LEVELS.contains(&level.as_str()) {
                        bail!("invalid area path {path:?} or level {level:?}");
                    }
                    store.create_area(&Area { path, name, level }).await?;
                }
                AreaCommand::List { within } => {
                    for area in store.list_areas(&within).await? {
                        println!("{}\t{}\t{}", area.path, area.level, area.name);
                    }
                }
            }
            Ok(())
        }
        Command::User(command) => {
            let store = connect_store(&settings).await?;
            store.migrate().await?;
            match command {
                UserCommand::Add {
                    id,
                    name,
                    role,
                    area,
                    department,
                } => {
                    if !ROLES.contains(&role.as_str()) {
                        bail!("unknown role {role:?}; one of {}", ROLES.join(", "));
                    }
                    store
                        .create_user(&User {
                            id,
                            name,
                            role,
                            area,
                            department,
                            revoked: false,
                        })
                        .await?;
                }
                UserCommand::List { within } => {
                    for u in store.list_users(&within).await? {
                        let revoked = if u.revoked { "\trevoked" } else { "" };
                        println!("{}\t{}\t{}\t{}{revoked}", u.id, u.role, u.area, u.name);
                    }
                }
                UserCommand::Revoke { id } => {
                    if !store.revoke_user(&id).await? {
                        bail!("no user {id}");
                    }
                }
            }
            Ok(())
        }
        Command::Device(command) => {
            let store = connect_store(&settings).await?;
            store.migrate().await?;
            match command {
                DeviceCommand::Add { id, user, label } => {
                    store
                        .create_device(&Device {
                            id,
                            user_id: user,
                            label,
                            revoked: false,
                        })
                        .await?;
                }
                DeviceCommand::List { within } => {
                    for d in store.list_devices(&within).await? {
                        let revoked = if d.revoked { "\trevoked" } else { "" };
                        println!("{}\t{}\t{}{revoked}", d.id, d.user_id, d.label);
                    }
                }
                DeviceCommand::Revoke { id } => {
                    if !store.revoke_device(&id).await? {
                        bail!("no device {id}");
                    }
                }
            }
            Ok(())
        }
    }
}
