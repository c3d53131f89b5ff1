//! The realtime service's own database: every statement it runs.
//!
//! The service keeps one table, `realtime_pairings` (CONTRACT §5); the rules
//! of pairing (the pin's lifetime, wrong-pin counting, who may unbind) live
//! in [`crate::pairing`], which calls these.
//!
//! Queries here are checked at run time (`sqlx::query_as::<_, T>` with
//! `FromRow`), not with `query!`: sqlx's macros check against one
//! `DATABASE_URL` per build, which is the api's database, and this one is
//! separate. The statements are few and static, and the tests run each one.

use std::time::Duration;

use sqlx::migrate::MigrateDatabase as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{FromRow, PgConnection, PgPool, Postgres};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::pairing::PairingView;

/// The realtime service's migrations (its own database, or beside the
/// api's: they are tracked in `_sqlx_realtime_migrations`).
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("../../migrations/realtime");
    migrator.dangerous_set_table_name("_sqlx_realtime_migrations");
    migrator
}

/// Opens (creating it when missing) the service's database, retrying for a
/// short window (CONTRACT §1), and runs the migrations.
pub async fn connect(database_url: &str) -> anyhow::Result<PgPool> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let attempt = async {
            if !Postgres::database_exists(database_url).await? {
                tracing::info!("creating the realtime database");
                Postgres::create_database(database_url).await?;
            }
            PgPoolOptions::new()
                .max_connections(5)
                .acquire_timeout(Duration::from_secs(5))
                .connect(database_url)
                .await
        };
        match attempt.await {
            Ok(pool) => {
                migrator().run(&pool).await?;
                return Ok(pool);
            }
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => anyhow::bail!("database unreachable at start-up: {error}"),
        }
    }
}

/// Whether the database answers within `within` (the readiness probe).
pub async fn answers(db: &PgPool, within: Duration) -> bool {
    tokio::time::timeout(within, sqlx::query("SELECT 1").execute(db))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// A pairing as it is stored.
#[derive(Debug, FromRow)]
pub struct PendingPairing {
    /// Install id.
    pub install_id: Uuid,
    /// argon2id hash of the pin.
    pub pin_hash: String,
    /// Wrong pins so far.
    pub attempts: i32,
    /// Until when the pin may be entered.
    pub expires_at: OffsetDateTime,
}

/// Marks any pending pairing replaced and inserts a new pending one, in one
/// transaction; false (and nothing changed) when `install_id` exists.
pub async fn insert_pending(
    db: &PgPool,
    install_id: Uuid,
    node_key: &[u8; 32],
    pin_hash: &str,
    expires_at: OffsetDateTime,
) -> Result<bool, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "UPDATE realtime_pairings SET state = 'replaced', ended_at = now(), pin_hash = ''
         WHERE state = 'pending'",
    )
    .execute(&mut *tx)
    .await?;
    let inserted = sqlx::query(
        "INSERT INTO realtime_pairings (install_id, node_key, pin_hash, state, expires_at)
         VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (install_id) DO NOTHING",
    )
    .bind(install_id)
    .bind(node_key.as_slice())
    .bind(pin_hash)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// A pairing by install id, with a pending one past its time shown as `expired`.
pub async fn view(db: &PgPool, install_id: Uuid) -> Result<Option<PairingView>, sqlx::Error> {
    sqlx::query_as::<_, PairingView>(
        "SELECT install_id,
                CASE WHEN state = 'pending' AND expires_at <= now() THEN 'expired' ELSE state END AS state,
                attempts, expires_at, bound_at
         FROM realtime_pairings WHERE install_id = $1",
    )
    .bind(install_id)
    .fetch_optional(db)
    .await
}

/// The bound pairing's install id and node key, if one is bound.
pub async fn bound(db: &PgPool) -> Result<Option<(Uuid, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT install_id, node_key FROM realtime_pairings WHERE state = 'bound'")
        .fetch_optional(db)
        .await
}

/// The pending pairing, locked until the transaction ends: concurrent
/// guesses wait for each other, so none is lost from the count.
pub async fn lock_pending(conn: &mut PgConnection) -> Result<Option<PendingPairing>, sqlx::Error> {
    sqlx::query_as::<_, PendingPairing>(
        "SELECT install_id, pin_hash, attempts, expires_at FROM realtime_pairings
         WHERE state = 'pending' FOR UPDATE",
    )
    .fetch_optional(conn)
    .await
}

/// Ends a pending pairing whose pin's time is over.
pub async fn expire(conn: &mut PgConnection, install_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE realtime_pairings SET state = 'expired', ended_at = now(), pin_hash = ''
         WHERE install_id = $1",
    )
    .bind(install_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records `attempts` wrong pins; `void` ends the pairing as `voided`.
pub async fn record_wrong_pin(
    conn: &mut PgConnection,
    install_id: Uuid,
    attempts: i32,
    void: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE realtime_pairings
         SET attempts = $2,
             state = CASE WHEN $3 THEN 'voided' ELSE state END,
             ended_at = CASE WHEN $3 THEN now() ELSE ended_at END,
             pin_hash = CASE WHEN $3 THEN '' ELSE pin_hash END
         WHERE install_id = $1",
    )
    .bind(install_id)
    .bind(attempts)
    .bind(void)
    .execute(conn)
    .await?;
    Ok(())
}

/// Binds `install_id`, unbinding whatever was bound before.
pub async fn bind(conn: &mut PgConnection, install_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE realtime_pairings SET state = 'unbound', ended_at = now() WHERE state = 'bound'",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE realtime_pairings SET state = 'bound', bound_at = now(), pin_hash = ''
         WHERE install_id = $1",
    )
    .bind(install_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The node key of pairing `install_id`, locked until the transaction ends.
pub async fn lock_node_key(
    conn: &mut PgConnection,
    install_id: Uuid,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT node_key FROM realtime_pairings WHERE install_id = $1 FOR UPDATE")
        .bind(install_id)
        .fetch_optional(conn)
        .await
}

/// Ends pairing `install_id` (bound: `unbound`, pending: `cancelled`), or
/// every bound or pending pairing when `install_id` is None; answers how
/// many ended.
pub async fn end(conn: &mut PgConnection, install_id: Option<Uuid>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE realtime_pairings
         SET state = CASE state WHEN 'bound' THEN 'unbound' ELSE 'cancelled' END,
             ended_at = now(), pin_hash = ''
         WHERE ($1::uuid IS NULL OR install_id = $1) AND state IN ('bound', 'pending')",
    )
    .bind(install_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
