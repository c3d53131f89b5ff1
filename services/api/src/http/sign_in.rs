//! What bounds sign-in: a throttle shared by every api process (Postgres,
//! `login_attempts`) and a cap on password checks running at once.
//!
//! Two keys are throttled per attempt: the account from this client address
//! (five free tries, then a wait that doubles up to five minutes) and the
//! client address alone (fifty, then up to a minute: one address trying
//! many accounts). An attacker elsewhere never slows the right password
//! from the user's own address, and no wait is longer than five minutes.
//! Attempts are counted as they start, so a burst in parallel gets no more
//! tries than one in a row.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use tickiti_store::PgConnection;
use tickiti_store::login_attempts::{self, Policy};
use tokio::sync::Semaphore;

use super::ApiError;

/// Attempts older than this are forgotten.
pub const WINDOW_SECS: i32 = 15 * 60;
/// One account from one client address.
const ACCOUNT: Policy = Policy {
    free: 5,
    max_wait_secs: 300,
    window_secs: WINDOW_SECS,
};
/// One client address, whatever the account.
const ADDRESS: Policy = Policy {
    free: 50,
    max_wait_secs: 60,
    window_secs: WINDOW_SECS,
};
/// How long a sign-in waits for a password-check slot before 503.
const HASH_WAIT: Duration = Duration::from_secs(2);

/// The sign-in address as every check uses it: trimmed, lower case.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn account_key(email: &str, client: &str) -> String {
    format!("account:{email}|{client}")
}

fn address_key(client: &str) -> String {
    format!("address:{client}")
}

/// Counts a sign-in attempt of `email` (normalized) from `client` (its
/// limit key), or answers 429 with `Retry-After`.
pub async fn begin(conn: &mut PgConnection, email: &str, client: &str) -> Result<(), ApiError> {
    for (key, policy) in [
        (address_key(client), ADDRESS),
        (account_key(email, client), ACCOUNT),
    ] {
        if let Err(wait) = login_attempts::begin(conn, &key, policy).await? {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMITED",
                "too many sign-in attempts; wait and retry",
            )
            .with_header(
                header::RETRY_AFTER,
                HeaderValue::from(u64::try_from(wait).unwrap_or(1)),
            ));
        }
    }
    Ok(())
}

/// The right password: the account's record goes, the address gets its try back.
pub async fn succeeded(conn: &mut PgConnection, email: &str, client: &str) -> Result<(), ApiError> {
    login_attempts::clear(conn, &account_key(email, client)).await?;
    login_attempts::refund(conn, &address_key(client)).await?;
    Ok(())
}

/// Password checks (argon2, about 19 MiB each) running at once are capped,
/// so a flood of sign-ins cannot take the api's memory or every core.
pub struct PasswordChecks {
    slots: Semaphore,
}

impl PasswordChecks {
    /// `concurrency` checks at once; 0: one per CPU.
    pub fn new(concurrency: usize) -> Self {
        let slots = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            concurrency
        };
        Self {
            slots: Semaphore::new(slots),
        }
    }

    /// Whether `password` matches `phc`; 503 when no slot frees up in time.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, ApiError> {
        let Ok(Ok(_slot)) = tokio::time::timeout(HASH_WAIT, self.slots.acquire()).await else {
            return Err(ApiError::busy("too many sign-ins at once; retry shortly"));
        };
        let verified =
            tokio::task::spawn_blocking(move || tickiti_crypto::verify_password(&password, &phc))
                .await
                .unwrap_or(false);
        Ok(verified)
    }
}
