//! `lianxin-server`: see `cli.rs` for the commands.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lianxin_server::cli::run().await
}
