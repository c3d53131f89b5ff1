//! Configuration from environment variables (CONTRACT §1); a flag may override each.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;

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

/// Development key used when none is configured outside production. Public: never for real data.
const DEVELOPMENT_MASTER_KEY: [u8; 32] = *b"tickiti-development-key-32-bytes";

impl Config {
    /// Checks the settings that cannot be checked one by one; returns the
    /// master key's bytes.
    pub fn master_key_bytes(&self) -> anyhow::Result<[u8; 32]> {
        match (&self.master_key, self.environment) {
            (Some(encoded), _) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|e| anyhow::anyhow!("TICKITI_MASTER_KEY is not base64: {e}"))?;
                <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    anyhow::anyhow!(
                        "TICKITI_MASTER_KEY must decode to 32 bytes, got {}",
                        bytes.len()
                    )
                })
            }
            (None, Environment::Production) => {
                anyhow::bail!("TICKITI_MASTER_KEY is required when TICKITI_ENV=production")
            }
            (None, Environment::Development) => {
                tracing::warn!(
                    "TICKITI_MASTER_KEY is not set: using the PUBLIC development key; stored secrets are NOT protected"
                );
                Ok(DEVELOPMENT_MASTER_KEY)
            }
        }
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
