//! `tickiti-realtime`: serve (the default), migrate, or pair with a Tickiti install.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use tickiti_realtime::Config;
use tokio_util::sync::CancellationToken;

/// Tickiti's realtime service ("Tonic"): websocket fan-out, locks, resume.
#[derive(Debug, Parser)]
#[command(name = "tickiti-realtime", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (migrates first). The default.
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Confirm the pending pairing with the pin Tickiti showed; prints JSON.
    Pair {
        /// The 8-digit pin.
        pin: String,
    },
    /// Forget the current pairing (every browser token stops working); prints JSON.
    Unpair,
    /// Show whether this service is paired; prints JSON.
    Status,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands print their JSON answer on stdout, so their logs go to stderr.
    let output = match cli.command {
        None | Some(Command::Serve) => tickiti_telemetry::Output::Stdout,
        Some(_) => tickiti_telemetry::Output::Stderr,
    };
    tickiti_telemetry::init("tickiti-realtime", output);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tickiti-realtime: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = tickiti_realtime::connect_database(&cli.config).await?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            println!("{}", json!({ "status": "migrated" }));
            Ok(())
        }
        Command::Pair { pin } => {
            let install_id = tickiti_realtime::pairing::confirm(&db, &pin).await?;
            println!("{}", json!({ "install_id": install_id, "status": "bound" }));
            Ok(())
        }
        Command::Unpair => {
            let ended = tickiti_realtime::pairing::unpair_all(&db).await?;
            println!("{}", json!({ "status": "unbound", "ended": ended }));
            Ok(())
        }
        Command::Status => {
            let out = match tickiti_realtime::pairing::current(&db).await? {
                Some(binding) => json!({ "status": "bound", "install_id": binding.install_id }),
                None => json!({ "status": "unbound" }),
            };
            println!("{out}");
            Ok(())
        }
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(cli.config.listen).await?;
            let admin_listener = tokio::net::TcpListener::bind(cli.config.admin_listen).await?;
            let shutdown = CancellationToken::new();
            let realtime =
                tickiti_realtime::serve(listener, admin_listener, db, cli.config, shutdown.clone())
                    .await?;
            tokio::spawn(async move {
                tickiti_telemetry::shutdown_signal().await;
                tracing::info!("shutting down: closing sockets with 1001");
                shutdown.cancel();
            });
            realtime.finished.await?
        }
    }
}
