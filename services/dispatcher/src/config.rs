//! Configuration from environment variables (CONTRACT §1); a flag may override each.

use std::net::SocketAddr;
use std::time::Duration;

use tickiti_domain::duration::parse_duration;
use tickiti_domain::webhook::{DEFAULT_RETRY_SCHEDULE, parse_schedule};

/// Deployment kind: production refuses to run without a master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    /// Local development and tests.
    Development,
    /// A real installation.
    Production,
}

/// The delay before each attempt (`WEBHOOK_RETRY_SCHEDULE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule(pub Vec<Duration>);

fn schedule(text: &str) -> Result<Schedule, String> {
    parse_schedule(text).map(Schedule)
}

/// Everything the dispatcher needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the health and metrics listener.
    #[arg(long, env = "DISPATCHER_LISTEN", default_value = "0.0.0.0:8070")]
    pub listen: SocketAddr,
    /// Postgres connection URL (the api's database; the api owns the schema).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tickiti"
    )]
    pub database_url: String,
    /// Size of the database connection pool.
    #[arg(
        long,
        env = "DISPATCHER_DATABASE_MAX_CONNECTIONS",
        default_value_t = 20
    )]
    pub database_max_connections: u32,
    /// RabbitMQ connection URL.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,
    /// Prefix of every exchange and queue name.
    #[arg(long, env = "TICKITI_BUS_PREFIX", default_value = "tickiti")]
    pub bus_prefix: String,
    /// `development` or `production`.
    #[arg(long, env = "TICKITI_ENV", value_enum, default_value = "development")]
    pub environment: Environment,
    /// 32 bytes, base64: opens the stored webhook secrets (same as the api's).
    #[arg(long, env = "TICKITI_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Delay before each attempt, comma-separated; its length is the attempt count.
    #[arg(long, env = "WEBHOOK_RETRY_SCHEDULE", default_value = DEFAULT_RETRY_SCHEDULE, value_parser = schedule)]
    pub retry_schedule: Schedule,
    /// A delivery succeeds on a 2xx within this time (connect included).
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Allow deliveries to loopback, private, link-local or metadata addresses.
    #[arg(
        long,
        env = "WEBHOOK_ALLOW_PRIVATE_NETWORKS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub allow_private_networks: bool,
    /// Finished deliveries and their attempts are deleted after this long.
    #[arg(long, env = "WEBHOOK_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub log_retention: Duration,
    /// Requests in flight at once, all endpoints together.
    #[arg(long, env = "DISPATCHER_CONCURRENCY", default_value_t = 128)]
    pub concurrency: usize,
    /// Requests in flight at once to one endpoint.
    #[arg(long, env = "DISPATCHER_ENDPOINT_CONCURRENCY", default_value_t = 8)]
    pub endpoint_concurrency: usize,
    /// Requests in flight at once for one organization, all its endpoints
    /// together: one tenant's hanging endpoints cannot take every slot
    /// (half of them by default; the other half stays for everyone else).
    #[arg(long, env = "DISPATCHER_ORG_CONCURRENCY", default_value_t = 64)]
    pub org_concurrency: usize,
    /// Most attempts of an intervention epilog call (CONTRACT §4).
    #[arg(long, env = "EPILOG_MAX_ATTEMPTS", default_value_t = 8)]
    pub epilog_max_attempts: u32,
    /// Delay before an epilog call's first retry; it doubles (with jitter) each attempt.
    #[arg(long, env = "EPILOG_RETRY_MIN", default_value = "5s", value_parser = parse_duration)]
    pub epilog_retry_min: Duration,
    /// Longest delay between two epilog attempts.
    #[arg(long, env = "EPILOG_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    pub epilog_retry_max: Duration,
    /// Where notification e-mail is sent (CONTRACT §8): `smtp://host:port`
    /// (plain, for a local relay or mail catcher), `smtp://host:port?tls=starttls`,
    /// `smtps://host:port`, with optional `user:password@`. Unset: no e-mail.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The notification e-mails' sender.
    #[arg(long, env = "SMTP_FROM", default_value = "Tickiti <tickiti@localhost>")]
    pub smtp_from: String,
    /// The staff app's address, for the links in e-mails.
    #[arg(
        long,
        env = "TICKITI_PUBLIC_URL",
        default_value = "http://localhost:8080"
    )]
    pub public_url: String,
    /// How long a notification's e-mail is held back; read in the app by
    /// then, it is not sent.
    #[arg(long, env = "NOTIFY_EMAIL_DELAY", default_value = "60s", value_parser = parse_duration)]
    pub notify_email_delay: Duration,
    /// How often this process reports in (worker health; silent for 60 s: reported down).
    #[arg(long, env = "WORKER_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
}

impl Config {
    /// The master key's bytes (the development key, with a warning, outside production).
    pub fn master_key_bytes(&self) -> anyhow::Result<[u8; 32]> {
        tickiti_crypto::seal::master_key(
            self.master_key.as_deref(),
            self.environment == Environment::Production,
        )
        .map_err(anyhow::Error::msg)
    }
}
