//! Configuration from environment variables (CONTRACT §1); a flag may override each.

use std::net::SocketAddr;
use std::time::Duration;

/// Deployment kind: production refuses unsafe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    /// Local development and tests.
    Development,
    /// A real installation.
    Production,
}

/// Everything the api needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "TICKITI_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tickiti"
    )]
    pub database_url: String,
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
    /// 32 bytes, base64: encrypts stored secrets (required in production).
    #[arg(long, env = "TICKITI_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Requests per token (or per IP without one), e.g. `600/min`, `20/sec`, `off`.
    #[arg(long, env = "API_RATE_LIMIT", default_value = "600/min", value_parser = parse_rate_limit)]
    pub rate_limit: RateLimit,
    /// Size of the database connection pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 20)]
    pub database_max_connections: u32,
    /// Where the realtime service is (CONTRACT §5).
    #[command(flatten)]
    pub realtime: RealtimeConfig,
}

/// The realtime service as the api sees it (CONTRACT §1, §5).
#[derive(Debug, Clone, clap::Args)]
pub struct RealtimeConfig {
    /// The realtime service's private listener (pairing).
    #[arg(
        long = "realtime-admin-url",
        env = "REALTIME_ADMIN_URL",
        default_value = "http://127.0.0.1:8091"
    )]
    pub admin_url: String,
    /// The websocket URL browsers use, e.g. `ws://localhost:8090/ws`.
    #[arg(
        long = "realtime-public-url",
        env = "REALTIME_PUBLIC_URL",
        default_value = "ws://localhost:8090/ws"
    )]
    pub public_url: String,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            admin_url: "http://127.0.0.1:8091".into(),
            public_url: "ws://localhost:8090/ws".into(),
        }
    }
}

/// Webhook settings of the api (CONTRACT §1): how endpoint URLs are checked.
///
/// Kept apart from [`Config`] so that code building a `Config` by hand keeps
/// compiling; `serve` uses the defaults, `serve_with` takes these.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookConfig {
    /// Allow endpoint URLs that resolve to loopback, private, link-local or
    /// metadata addresses (tests and local development only).
    #[arg(
        long,
        env = "WEBHOOK_ALLOW_PRIVATE_NETWORKS",
        default_value_t = false,
        action = clap::ArgAction::Set
    )]
    pub allow_private_networks: bool,
    /// Require https endpoint URLs (default: true when TICKITI_ENV=production).
    #[arg(long, env = "WEBHOOK_REQUIRE_HTTPS", action = clap::ArgAction::Set)]
    pub require_https: Option<bool>,
}

impl WebhookConfig {
    /// Whether endpoint URLs must be https in `environment`.
    pub fn https_required(&self, environment: Environment) -> bool {
        self.require_https
            .unwrap_or(environment == Environment::Production)
    }
}

/// A request budget: `count` per `period`, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// No limit (benchmarks).
    Off,
    /// At most `count` requests per `period`.
    Per {
        /// Requests allowed in a period.
        count: u32,
        /// The period.
        period: Duration,
    },
}

/// Parses `N/sec`, `N/min`, `N/hour` or `off`.
pub fn parse_rate_limit(text: &str) -> Result<RateLimit, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(RateLimit::Off);
    }
    let (count, unit) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: expected N/sec, N/min, N/hour or off"))?;
    let count: u32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?}: the count must be a positive integer"))?;
    let period = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        other => return Err(format!("{text:?}: unknown unit {other:?}")),
    };
    Ok(RateLimit::Per { count, period })
}

impl Config {
    /// Checks the settings that cannot be checked one by one; returns the
    /// master key's bytes.
    pub fn master_key_bytes(&self) -> anyhow::Result<[u8; 32]> {
        tickiti_crypto::seal::master_key(
            self.master_key.as_deref(),
            self.environment == Environment::Production,
        )
        .map_err(anyhow::Error::msg)
    }

    /// Whether session cookies must be `Secure` (HTTPS only).
    pub fn secure_cookies(&self) -> bool {
        self.environment == Environment::Production
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits() {
        assert_eq!(
            parse_rate_limit("600/min"),
            Ok(RateLimit::Per {
                count: 600,
                period: Duration::from_secs(60)
            })
        );
        assert_eq!(parse_rate_limit("off"), Ok(RateLimit::Off));
        assert!(parse_rate_limit("0/min").is_err());
        assert!(parse_rate_limit("10/fortnight").is_err());
        assert!(parse_rate_limit("ten").is_err());
    }
}
