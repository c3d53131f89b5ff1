//! Configuration from environment variables (CONTRACT §1); a flag may override each.

use std::net::SocketAddr;
use std::time::Duration;

use tickiti_domain::duration::parse_duration;

use crate::limits;

/// Everything the realtime service needs to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the browsers' listener (`/ws`, `/healthz`, `/readyz`).
    #[arg(long, env = "REALTIME_LISTEN", default_value = "0.0.0.0:8090")]
    pub listen: SocketAddr,
    /// Address of the private listener (pairing, health, metrics). Never expose it publicly.
    #[arg(long, env = "REALTIME_ADMIN_LISTEN", default_value = "127.0.0.1:8091")]
    pub admin_listen: SocketAddr,
    /// Postgres connection URL of the realtime service's own database (created when missing).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/tickiti_realtime"
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
    /// Most sockets this process holds; more are refused with 503.
    #[arg(long, env = "REALTIME_MAX_CONNECTIONS", default_value_t = 50_000)]
    pub max_connections: usize,
    /// Frames each organization's ring keeps for resume.
    #[arg(long, env = "REALTIME_RING_FRAMES", default_value_t = 2048)]
    pub ring_frames: usize,
    /// Bytes each organization's ring keeps for resume.
    #[arg(long, env = "REALTIME_RING_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub ring_bytes: usize,
    /// No hello within this time closes with 4408 (the contract's 5 s; tests shorten it).
    #[arg(long, env = "REALTIME_HELLO_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub hello_timeout: Duration,
    /// The server pings this often (the contract's 25 s; tests shorten it).
    #[arg(long, env = "REALTIME_PING_INTERVAL", default_value = "25s", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// No frame and no pong for this long closes with 1001 (the contract's 60 s; tests shorten it).
    #[arg(long, env = "REALTIME_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// How often this process reports in (worker health; silent for 60 s: reported down).
    #[arg(long, env = "WORKER_HEARTBEAT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,
}

impl Config {
    /// The defaults with a database, a broker and a prefix (tests, benchmarks).
    pub fn for_test(database_url: &str, amqp_url: &str, prefix: &str) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.to_owned(),
            amqp_url: amqp_url.to_owned(),
            bus_prefix: prefix.to_owned(),
            max_connections: 50_000,
            ring_frames: 2048,
            ring_bytes: 4 * 1024 * 1024,
            hello_timeout: limits::HELLO_TIMEOUT,
            ping_interval: limits::PING_INTERVAL,
            idle_timeout: limits::IDLE_TIMEOUT,
            heartbeat_interval: Duration::from_secs(10),
        }
    }

    /// The socket timing these settings give.
    pub fn timing(&self) -> limits::Timing {
        limits::Timing {
            hello_timeout: self.hello_timeout,
            ping_interval: self.ping_interval,
            idle_timeout: self.idle_timeout,
        }
    }
}
