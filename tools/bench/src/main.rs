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
mod report;
mod scale;
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
    /// HTTP client (target: ≥ 70 %), and commit → first attempt latency.
    Webhooks(webhooks::Args),
    /// The read path through the api at N tickets (1 000 000 by default)
    /// against the same at 10 000 in the same run (target: p99 ≤ 2×).
    Scale(scale::Args),
    /// Every scenario in turn, then one table of every measure against its
    /// target (and, with --json, the same rows in a file).
    All(AllArgs),
}

/// Options of `all`.
#[derive(Debug, clap::Args)]
struct AllArgs {
    /// Shorter runs and smaller loads (each scenario still three rounds where
    /// it has rounds): a check that every target is in reach, in minutes.
    #[arg(long)]
    quick: bool,
    /// Also write the rows as `{"rows": [...]}` to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Where the scratch databases and the bus live.
    #[command(flatten)]
    servers: spawn::Servers,
}

/// A scenario's options as if given on its command line (its defaults for
/// the rest).
fn scenario_args<T: clap::Args + clap::FromArgMatches>(argv: &[String]) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new("scenario").no_binary_name(true));
    let matches = command.try_get_matches_from(argv)?;
    Ok(T::from_arg_matches(&matches)?)
}

async fn all(args: AllArgs) -> anyhow::Result<()> {
    let servers = [
        "--database-url".to_owned(),
        args.servers.database_url.clone(),
        "--amqp-url".to_owned(),
        args.servers.amqp_url.clone(),
    ];
    let with_servers = |rest: &[&str]| -> Vec<String> {
        rest.iter()
            .map(|s| (*s).to_owned())
            .chain(servers.iter().cloned())
            .collect()
    };
    let (api_create, webhooks, realtime, scale) = if args.quick {
        (
            with_servers(&["--spawn", "--duration", "5", "--warmup", "1"]),
            // The full backlog still: a small one times mostly the start.
            with_servers(&["--duration", "5"]),
            with_servers(&[
                "--clients",
                "2000",
                "--orgs",
                "20",
                "--rate",
                "100",
                "--duration",
                "10",
            ]),
            with_servers(&["--quick"]),
        )
    } else {
        (
            with_servers(&["--spawn"]),
            with_servers(&[]),
            with_servers(&[
                "--clients",
                "10000",
                "--orgs",
                "100",
                "--rate",
                "200",
                "--duration",
                "20",
            ]),
            with_servers(&[]),
        )
    };
    let mut rows = Vec::new();
    eprintln!("==> api-create {}", api_create.join(" "));
    rows.extend(api_create::run(scenario_args(&api_create)?).await?);
    eprintln!("==> webhooks {}", webhooks.join(" "));
    rows.extend(webhooks::run(scenario_args(&webhooks)?).await?);
    eprintln!("==> realtime {}", realtime.join(" "));
    rows.extend(realtime::run(scenario_args(&realtime)?).await?);
    eprintln!("==> scale {}", scale.join(" "));
    rows.extend(scale::run(scenario_args(&scale)?).await?);
    println!();
    report::print_table(&rows);
    if let Some(path) = &args.json {
        report::write_json(path, &rows)?;
        eprintln!("rows written to {}", path.display());
    }
    Ok(())
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
        Command::ApiCreate(args) => api_create::run(args).await.map(drop),
        Command::Realtime(args) => realtime::run(args).await.map(drop),
        Command::Webhooks(args) => webhooks::run(args).await.map(drop),
        Command::Scale(args) => scale::run(args).await.map(drop),
        Command::All(args) => all(args).await,
    }
}
