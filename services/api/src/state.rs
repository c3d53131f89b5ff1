//! The state every handler shares.

use std::sync::Arc;

use sqlx::PgPool;
use tickiti_bus::Bus;

use crate::config::Config;
use crate::http::guard::{LoginThrottle, RateLimiter};

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Postgres pool.
    pub db: PgPool,
    /// RabbitMQ connection, supervised.
    pub bus: Bus,
    /// Settings.
    pub config: Arc<Config>,
    /// Per-token / per-IP request budget.
    pub rate_limiter: Arc<RateLimiter>,
    /// Slows down repeated failed logins.
    pub login_throttle: Arc<LoginThrottle>,
}

impl AppState {
    /// State from its parts.
    pub fn new(db: PgPool, bus: Bus, config: Config) -> Self {
        let rate_limiter = Arc::new(RateLimiter::new(config.rate_limit));
        Self {
            db,
            bus,
            config: Arc::new(config),
            rate_limiter,
            login_throttle: Arc::new(LoginThrottle::default()),
        }
    }
}
