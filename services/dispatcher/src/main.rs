//! `tickiti-dispatcher`: delivers webhooks until SIGTERM.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tickiti_dispatcher::Config;
use tokio_util::sync::CancellationToken;

// Every delivery allocates (bodies, headers, log rows) on many threads at
// once; glibc's allocator spent a fifth of the dispatcher's time there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tickiti's webhook dispatcher.
#[derive(Debug, Parser)]
#[command(name = "tickiti-dispatcher", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deliver webhooks until SIGTERM (the default; the image's CMD).
    Serve,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tickiti_telemetry::init("tickiti-dispatcher", tickiti_telemetry::Output::Stdout);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tickiti-dispatcher: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = tickiti_dispatcher::connect_database(&cli.config).await?;
    let listener = tokio::net::TcpListener::bind(cli.config.listen).await?;
    let shutdown = CancellationToken::new();
    let dispatcher = tickiti_dispatcher::serve(listener, db, cli.config, shutdown.clone())?;
    tokio::spawn(async move {
        tickiti_telemetry::shutdown_signal().await;
        tracing::info!(
            "shutting down: first attempts under way finish; unacked messages come back"
        );
        shutdown.cancel();
    });
    dispatcher.finished.await?
}
