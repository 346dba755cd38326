//! The `lianxin-server` command line: `serve`, `migrate`, and `token` (signs a development
//! token with the configured key). Flags override settings from the file and environment.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::auth::{Authenticator, TokenRequest};
use crate::settings::Settings;
use crate::startup::{Application, connect_store, shutdown_signal};
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
    /// Print a signed token (for development and tests).
    Token {
        #[arg(long)]
        sub: String,
        #[arg(long)]
        role: String,
        /// Area path the user is bound to, e.g. /jining/rencheng/street-1.
        #[arg(long)]
        scope: String,
        #[arg(long)]
        device: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
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
    telemetry::init(settings.log_format);
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
        Command::Token {
            sub,
            role,
            scope,
            device,
            ttl,
        } => {
            let auth = Authenticator::from_settings(&settings.auth, &settings.data_dir)?;
            let token = auth.issue(&TokenRequest {
                sub,
                role,
                scope,
                device,
                ttl_secs: ttl,
            })?;
            println!("{token}");
            Ok(())
        }
    }
}
