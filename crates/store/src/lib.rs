//! Postgres access for Tickiti, one module per aggregate.
//!
//! Every function takes a `&mut PgConnection`, so the caller decides the
//! transaction: a handler writes its change, its audit row and its outbox
//! event in one transaction. Every query names the organization, so no row
//! crosses from one organization to another. SQL is checked at compile time
//! against the migrations (`.sqlx/` holds the offline data).

pub mod audit;
pub mod calendars;
pub mod contacts;
pub mod idempotency;
pub mod interventions;
pub mod login_attempts;
pub mod mentions;
pub mod messages;
pub mod notifications;
pub mod organizations;
pub mod outbox;
pub mod perspectives;
pub mod queues;
pub mod realtime;
pub mod sessions;
pub mod sla_clocks;
pub mod sla_policies;
pub mod tickets;
pub mod time_entries;
pub mod tokens;
pub mod users;
pub mod webhooks;
pub mod worker_health;

pub use sqlx::{PgConnection, PgPool};

/// The migrations of the api's database, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/api");

/// An event about `data` (the resource as the API returns it), for the
/// outbox.
pub(crate) fn event(
    kind: tickiti_domain::EventType,
    organization_id: uuid::Uuid,
    data: &impl serde::Serialize,
) -> Result<tickiti_domain::EventEnvelope> {
    let data = serde_json::to_value(data).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    Ok(tickiti_domain::EventEnvelope::new(
        kind,
        organization_id,
        data,
    ))
}

/// Whether the database answers within `within` (readiness probes of every service).
pub async fn answers(pool: &PgPool, within: std::time::Duration) -> bool {
    tokio::time::timeout(within, sqlx::query("SELECT 1").execute(pool))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// The newest migration applied to this database (None: none yet).
pub async fn schema_version(pool: &PgPool) -> std::result::Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await
}

/// Lifts the statement time-out for the rest of the transaction on `conn`
/// (background work on a pool whose statements are bounded for requests).
pub async fn unbounded_statements(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SET LOCAL statement_timeout = 0")
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs the migrations on one connection of `pool` with no statement
/// time-out (an index on a large table takes as long as it takes), then
/// gives the connection back with its own setting.
pub async fn migrate(pool: &PgPool) -> std::result::Result<(), sqlx::migrate::MigrateError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0")
        .execute(&mut *conn)
        .await?;
    MIGRATOR.run(&mut *conn).await?;
    sqlx::query("RESET statement_timeout")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Opens a service's pool, retrying for a short window (CONTRACT §1: a
/// database that stays unreachable is a clear start-up error). Sessions run
/// with JIT compilation off: every statement here is short, and a plan
/// whose estimate crosses `jit_above_cost` (a count over a large
/// organization, say) would spend tens of milliseconds compiling for a
/// query that runs in one.
///
/// `statement_timeout` bounds every statement on the pool's connections
/// (None: unbounded); [`migrate`] lifts it for the migrations.
pub async fn connect(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<std::time::Duration>,
) -> std::result::Result<PgPool, sqlx::Error> {
    use std::time::Duration;

    let mut options = url
        .parse::<sqlx::postgres::PgConnectOptions>()?
        .options([("jit", "off")]);
    if let Some(limit) = statement_timeout {
        options = options.options([("statement_timeout", format!("{}ms", limit.as_millis()))]);
    }
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        // A broken connection surfaces as a query error anyway; a ping per
        // checkout would add a round trip to every request.
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match pool.clone().connect_with(options.clone()).await {
            Ok(pool) => return Ok(pool),
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// A database failure, with the constraint named when one was violated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint (named) refused the row.
    #[error("unique constraint {constraint} violated")]
    Conflict {
        /// The constraint or unique index name.
        constraint: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A foreign key (named) refused the change.
    #[error("foreign key {constraint} violated")]
    InUse {
        /// The constraint name.
        constraint: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// Anything else.
    #[error(transparent)]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let Some(db) = error.as_database_error() else {
            return StoreError::Database(error);
        };
        let constraint = db.constraint().unwrap_or_default().to_owned();
        if db.is_unique_violation() {
            StoreError::Conflict {
                constraint,
                source: error,
            }
        } else if db.is_foreign_key_violation() {
            StoreError::InUse {
                constraint,
                source: error,
            }
        } else {
            StoreError::Database(error)
        }
    }
}

impl StoreError {
    /// Whether a unique constraint with this name refused the row.
    pub fn is_conflict_on(&self, name: &str) -> bool {
        matches!(self, StoreError::Conflict { constraint, .. } if constraint == name)
    }
}

/// Store results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One page of a list and the id to continue after.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows.
    pub items: Vec<T>,
    /// The last row's id when more rows may follow.
    pub next_after: Option<uuid::Uuid>,
}

impl<T> Page<T> {
    /// Cuts `rows` (fetched with `limit + 1`) to `limit` and notes where to continue.
    pub fn from_rows(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> uuid::Uuid) -> Self {
        let limit = usize::try_from(limit).unwrap_or(0);
        let next_after = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(&id)
        } else {
            None
        };
        Page {
            items: rows,
            next_after,
        }
    }
}
