//! `tickiti-bench`: the benchmarks behind the "Numbers to reach" table in
//! ARCHITECTURE.md. Build in release, or the numbers mean nothing:
//!
//! ```text
//! cargo run --release -p tickiti-bench -- api-create --spawn
//! ```

mod api_create;
mod load;
mod pgbench;
mod realtime;
mod spawn;
mod stats;
mod webhooks;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Benchmarks for Tickiti.
#[derive(Debug, Parser)]
#[command(name = "tickiti-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ticket creation through the api against pgbench's one-row insert rate
    /// at the same concurrency (target: ≥ 50 %).
    ApiCreate(api_create::Args),
    /// Event → websocket frame latency with N clients over K organizations,
    /// and the realtime process's memory per idle socket.
    Realtime(realtime::Args),
    /// Webhook deliveries per second through the dispatcher against a bare
    /// HTTP client (target: ≥ 50 %), and commit → first attempt latency.
    Webhooks(webhooks::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Quiet by default so the spawned api's logs do not drown the table; RUST_LOG overrides.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::ApiCreate(args) => api_create::run(args).await,
        Command::Realtime(args) => realtime::run(args).await,
        Command::Webhooks(args) => webhooks::run(args).await,
    }
}
