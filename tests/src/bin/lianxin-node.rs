//! `lianxin-node`: the server's own command line (`lianxin_server::cli`), built inside this
//! crate so the scale-out tests can start real server processes (`CARGO_BIN_EXE_lianxin-node`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lianxin_server::cli::run().await
}
