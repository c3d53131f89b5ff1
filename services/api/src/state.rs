//! The state every handler shares.

use std::sync::Arc;

use sqlx::PgPool;
use tickiti_bus::Bus;
use tickiti_crypto::SecretBox;
use tokio::sync::Notify;

use crate::config::{Config, WebhookConfig};
use crate::http::Tx;
use crate::http::guard::RateLimiter;
use crate::http::sign_in::PasswordChecks;

/// Shared application state (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// Postgres pool.
    pub db: PgPool,
    /// RabbitMQ connection, supervised.
    pub bus: Bus,
    /// Settings.
    pub config: Arc<Config>,
    /// Per-caller request budget (its token or user, else its address).
    pub rate_limiter: Arc<RateLimiter>,
    /// Caps the password checks of sign-ins running at once.
    pub password_checks: Arc<PasswordChecks>,
    /// Rung after a commit that wrote events, to wake this process's outbox relay.
    pub outbox_signal: Arc<Notify>,
    /// Seals and opens stored secrets (webhook secrets) under the master key.
    pub secrets: Arc<SecretBox>,
    /// How webhook endpoint URLs are checked.
    pub webhooks: Arc<WebhookConfig>,
}

impl AppState {
    /// State from its parts; `master_key` is the checked `TICKITI_MASTER_KEY`.
    pub fn new(
        db: PgPool,
        bus: Bus,
        config: Config,
        master_key: [u8; 32],
        webhooks: WebhookConfig,
    ) -> Self {
        let rate_limiter = Arc::new(RateLimiter::new(config.rate_limit));
        let password_checks = Arc::new(PasswordChecks::new(config.access.login_hash_concurrency));
        Self {
            db,
            bus,
            config: Arc::new(config),
            rate_limiter,
            password_checks,
            outbox_signal: Arc::new(Notify::new()),
            secrets: Arc::new(SecretBox::new(master_key)),
            webhooks: Arc::new(webhooks),
        }
    }

    /// Commits a transaction that may have written events and wakes the relay.
    /// (An in-process signal instead of a `NOTIFY` trigger: `NOTIFY` takes a
    /// database-wide lock at commit and would serialize every write.)
    /// Inside an idempotent request the work is kept and the idempotency
    /// layer commits it with the answer, and wakes the relay then.
    pub async fn commit(&self, tx: Tx) -> Result<(), sqlx::Error> {
        if tx.commit().await? {
            self.events_written();
        }
        Ok(())
    }

    /// Wakes the relay after a statement outside a transaction wrote events.
    pub fn events_written(&self) {
        self.outbox_signal.notify_one();
    }
}
