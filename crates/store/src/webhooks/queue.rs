//! Deliveries waiting for their work message, and the sweeper's selections.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// A delivery waiting for its work message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queueable {
    /// Delivery id.
    pub id: Uuid,
    /// Its endpoint.
    pub endpoint_id: Uuid,
    /// Its organization.
    pub organization_id: Uuid,
    /// The attempt its next work message is for.
    pub attempt: i32,
    /// When that attempt is due.
    pub due_at: Option<OffsetDateTime>,
}

/// Locks the not-yet-queued deliveries among `ids`.
pub async fn unqueued_by_ids(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Queueable>> {
    let rows = sqlx::query_as!(
        Queueable,
        r#"SELECT id, endpoint_id, organization_id, attempt + 1 AS "attempt!", next_attempt_at AS due_at FROM webhook_deliveries
         WHERE id = ANY($1) AND queued_at IS NULL AND status IN ('pending', 'retrying')
         FOR UPDATE SKIP LOCKED"#,
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Locks deliveries left unqueued for longer than `grace_ms` (a dispatcher
/// died between its commit and its publish): the sweeper queues them.
pub async fn unqueued_stale(
    conn: &mut PgConnection,
    grace_ms: i64,
    limit: i64,
) -> Result<Vec<Queueable>> {
    let rows = sqlx::query_as!(
        Queueable,
        r#"SELECT id, endpoint_id, organization_id, attempt + 1 AS "attempt!", next_attempt_at AS due_at FROM webhook_deliveries
         WHERE queued_at IS NULL AND status IN ('pending', 'retrying')
           AND updated_at < now() - make_interval(secs => $1::bigint / 1000.0)
         ORDER BY created_at LIMIT $2
         FOR UPDATE SKIP LOCKED"#,
        grace_ms,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Locks deliveries whose claim ran out without an answer being recorded
/// and that were not queued since (their sender died mid-attempt): the
/// sweeper queues the same attempt again, which a worker may take over.
pub async fn expired_claims(conn: &mut PgConnection, limit: i64) -> Result<Vec<Queueable>> {
    let rows = sqlx::query_as!(
        Queueable,
        r#"SELECT id, endpoint_id, organization_id, attempt AS "attempt!", now() AS due_at FROM webhook_deliveries
         WHERE locked_until < now() AND status IN ('pending', 'retrying')
           AND (queued_at IS NULL OR queued_at < locked_until)
         ORDER BY locked_until LIMIT $1
         FOR UPDATE SKIP LOCKED"#,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Notes that the work messages of these deliveries were confirmed by the broker.
pub async fn mark_queued(conn: &mut PgConnection, ids: &[Uuid]) -> Result<()> {
    sqlx::query!(
        "UPDATE webhook_deliveries SET queued_at = now() WHERE id = ANY($1)",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}
