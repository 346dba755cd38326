//! `lianxin`: one device over a store file, from the command line. See `cli.rs`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lianxin_client::cli::run().await
}
