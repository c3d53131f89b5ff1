//! `tickiti-api`: serve (the default), migrate, or administer.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use tickiti_api::config::{Config, WebhookConfig};
use tickiti_domain::{Ability, Role};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Tickiti's REST API and outbox relay.
#[derive(Debug, Parser)]
#[command(name = "tickiti-api", version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(flatten)]
    webhooks: WebhookConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (migrates first). The default.
    Serve,
    /// Run the database migrations and exit.
    Migrate,
    /// Administration; prints JSON on stdout.
    #[command(subcommand)]
    Admin(Admin),
}

// The variants are the contract's command names (`create-org`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
enum Admin {
    /// Create an organization and its first admin.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        #[arg(long)]
        admin_password: String,
    },
    /// Add a user to an organization.
    CreateUser {
        #[arg(long)]
        org: Uuid,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        password: String,
        #[arg(long, default_value = "agent")]
        role: String,
    },
    /// Issue an API token for a user (the secret is printed this once).
    CreateToken {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Comma-separated abilities, e.g. `tickets:read,tickets:write` or `*`.
        #[arg(long, value_delimiter = ',')]
        abilities: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands print their JSON answer on stdout, so their logs go to stderr.
    let output = match cli.command {
        None | Some(Command::Serve) => tickiti_telemetry::Output::Stdout,
        Some(_) => tickiti_telemetry::Output::Stderr,
    };
    tickiti_telemetry::init("tickiti-api", output);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tickiti-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = tickiti_api::app::connect_database(&cli.config).await?;
    tickiti_store::migrate(&db).await?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            println!("{}", json!({ "status": "migrated" }));
            Ok(())
        }
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(cli.config.listen).await?;
            let shutdown = CancellationToken::new();
            let api =
                tickiti_api::serve_with(listener, db, cli.config, cli.webhooks, shutdown.clone())?;
            tokio::spawn(async move {
                tickiti_telemetry::shutdown_signal().await;
                tracing::info!("shutting down: finishing in-flight requests");
                shutdown.cancel();
            });
            api.finished.await?
        }
        Command::Admin(admin) => {
            let out = administer(&db, admin)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", e.code(), e.status()))?;
            println!("{out}");
            Ok(())
        }
    }
}

async fn administer(
    db: &sqlx::PgPool,
    admin: Admin,
) -> tickiti_api::http::ApiResult<serde_json::Value> {
    use tickiti_api::accounts;
    use tickiti_api::http::ApiError;
    Ok(match admin {
        Admin::CreateOrg {
            name,
            admin_email,
            admin_password,
        } => {
            let (org, user) =
                accounts::create_organization(db, &name, &admin_email, &admin_password).await?;
            json!({ "organization_id": org, "user_id": user })
        }
        Admin::CreateUser {
            org,
            email,
            name,
            password,
            role,
        } => {
            let role: Role = role.parse().map_err(|e: tickiti_domain::UnknownValue| {
                ApiError::invalid_field("role", e.to_string())
            })?;
            let user = accounts::create_user(db, org, &email, &name, &password, role).await?;
            json!({ "user_id": user })
        }
        Admin::CreateToken {
            email,
            name,
            abilities,
        } => {
            let abilities = abilities
                .iter()
                .map(|a| a.trim().parse::<Ability>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::invalid_field("abilities", e.to_string()))?;
            let (id, token) = accounts::create_token(db, &email, &name, &abilities).await?;
            json!({ "token_id": id, "token": token })
        }
    })
}
