//! Configuration from environment variables (CONTRACT §1); a flag may override each.

use std::net::SocketAddr;
use std::time::Duration;

use tickiti_domain::duration::parse_duration;

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
    /// Longest a statement of a request may run (Postgres `statement_timeout`);
    /// past it the answer is 503 `BUSY`. Migrations are not bounded.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub database_statement_timeout: Duration,
    /// Longest a request may take; past it the answer is 503 `TIMEOUT` and
    /// its transaction is rolled back.
    #[arg(long, env = "API_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Where the realtime service is (CONTRACT §5).
    #[command(flatten)]
    pub realtime: RealtimeConfig,
    /// Who the client is behind proxies, and how sign-ins are bounded.
    #[command(flatten)]
    pub access: AccessConfig,
    /// A dispatcher or realtime process silent for this long is reported
    /// down to admins (`system.worker_health`).
    #[arg(long, env = "WORKER_SILENCE", default_value = "60s", value_parser = parse_duration)]
    pub worker_silence: std::time::Duration,
}

/// Client addresses and sign-in bounds.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AccessConfig {
    /// Proxies whose `X-Forwarded-For` is believed (comma-separated
    /// addresses or CIDR ranges, e.g. `10.0.0.0/8,::1`). Empty: the peer
    /// address is the client.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: TrustedProxies,
    /// Password checks run at once (each takes about 19 MiB); 0: one per CPU.
    /// Sign-ins beyond this wait up to 2 s, then answer 503.
    #[arg(long, env = "LOGIN_HASH_CONCURRENCY", default_value_t = 0)]
    pub login_hash_concurrency: usize,
}

/// The reverse proxies in front of the api.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<ipnet::IpNet>);

/// Comma-separated addresses (single hosts) or CIDR ranges; empty: none.
pub fn parse_proxies(text: &str) -> Result<TrustedProxies, String> {
    let nets = text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("{item:?}: expected an IP address or a CIDR range such as 10.0.0.0/8")
                })
        })
        .collect::<Result<_, _>>()?;
    Ok(TrustedProxies(nets))
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

    #[test]
    fn trusted_proxies() {
        assert_eq!(parse_proxies(""), Ok(TrustedProxies::default()));
        assert_eq!(parse_proxies(" , "), Ok(TrustedProxies::default()));
        let parsed = parse_proxies("10.0.0.0/8, ::1,192.0.2.7").unwrap_or_default();
        let shown: Vec<String> = parsed.0.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        assert!(parse_proxies("10.0.0.0/33").is_err());
        assert!(parse_proxies("proxy.internal").is_err());
    }
}
