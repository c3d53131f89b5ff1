//! SLA policies (CONTRACT §7), as the API wrote them.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A policy row.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Name, unique per organization (case-insensitive).
    pub name: String,
    /// Order of matching: the first matching policy applies.
    pub position: i32,
    /// Queues it applies to; empty: every queue.
    pub queue_ids: Vec<Uuid>,
    /// Business calendar; None: around the clock.
    pub calendar_id: Option<Uuid>,
    /// Statuses in which the clocks stop.
    pub pause_statuses: Vec<String>,
    /// `[{"priority","metric","within","warn_before"?}]`.
    pub targets: serde_json::Value,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Unique index on (organization, lower(name)).
pub const NAME_KEY: &str = "sla_policies_name_key";

/// A policy's columns to write.
#[derive(Debug, Clone)]
pub struct PolicyFields<'a> {
    /// Name.
    pub name: &'a str,
    /// Position.
    pub position: i32,
    /// Queues.
    pub queue_ids: &'a [Uuid],
    /// Calendar.
    pub calendar_id: Option<Uuid>,
    /// Pause statuses.
    pub pause_statuses: &'a [String],
    /// Targets.
    pub targets: &'a serde_json::Value,
}

/// Inserts a policy.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    organization_id: Uuid,
    f: &PolicyFields<'_>,
) -> Result<Policy> {
    let row = sqlx::query_as!(
        Policy,
        "INSERT INTO sla_policies (id, organization_id, name, position, queue_ids, calendar_id, pause_statuses, targets)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         RETURNING id, organization_id, name, position, queue_ids, calendar_id, pause_statuses, targets,
                   created_at, updated_at",
        id,
        organization_id,
        f.name,
        f.position,
        f.queue_ids,
        f.calendar_id,
        f.pause_statuses,
        f.targets
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// A policy of the organization.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Policy>> {
    let row = sqlx::query_as!(
        Policy,
        "SELECT id, organization_id, name, position, queue_ids, calendar_id, pause_statuses, targets,
                created_at, updated_at
         FROM sla_policies WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of policies, oldest first (their `position` says the matching order).
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Policy>> {
    let rows = sqlx::query_as!(
        Policy,
        "SELECT id, organization_id, name, position, queue_ids, calendar_id, pause_statuses, targets,
                created_at, updated_at
         FROM sla_policies WHERE organization_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
        organization_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |p| p.id))
}

/// Replaces a policy's fields (the caller merged the patch and checked the whole).
pub async fn update(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    f: &PolicyFields<'_>,
) -> Result<Option<Policy>> {
    let row = sqlx::query_as!(
        Policy,
        "UPDATE sla_policies SET name = $3, position = $4, queue_ids = $5, calendar_id = $6,
                pause_statuses = $7, targets = $8, updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, name, position, queue_ids, calendar_id, pause_statuses, targets,
                   created_at, updated_at",
        organization_id,
        id,
        f.name,
        f.position,
        f.queue_ids,
        f.calendar_id,
        f.pause_statuses,
        f.targets
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Deletes a policy; whether it existed.
pub async fn delete(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM sla_policies WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
