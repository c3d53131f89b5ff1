//! Queues: where tickets wait for a team.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A queue row.
#[derive(Debug, Clone)]
pub struct Queue {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Name, unique per organization (case-insensitive).
    pub name: String,
    /// What the queue is for.
    pub description: Option<String>,
    /// Its managers (seed 001's "inbox managers"): notified of its new
    /// tickets and of its escalations.
    pub manager_ids: Vec<Uuid>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Unique index on (organization, lower(name)).
pub const NAME_KEY: &str = "queues_name_key";

/// Inserts a queue.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    organization_id: Uuid,
    name: &str,
    description: Option<&str>,
    manager_ids: &[Uuid],
) -> Result<Queue> {
    let row = sqlx::query_as!(
        Queue,
        "INSERT INTO queues (id, organization_id, name, description, manager_ids) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, organization_id, name, description, manager_ids, created_at, updated_at",
        id,
        organization_id,
        name,
        description,
        manager_ids
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// A queue of the organization.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Queue>> {
    let row = sqlx::query_as!(
        Queue,
        "SELECT id, organization_id, name, description, manager_ids, created_at, updated_at
         FROM queues WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A queue of the organization by name (case-insensitive).
pub async fn find_by_name(
    conn: &mut PgConnection,
    organization_id: Uuid,
    name: &str,
) -> Result<Option<Queue>> {
    let row = sqlx::query_as!(
        Queue,
        "SELECT id, organization_id, name, description, manager_ids, created_at, updated_at
         FROM queues WHERE organization_id = $1 AND lower(name) = lower($2)",
        organization_id,
        name
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of queues, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Queue>> {
    let rows = sqlx::query_as!(
        Queue,
        "SELECT id, organization_id, name, description, manager_ids, created_at, updated_at
         FROM queues WHERE organization_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
        organization_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |q| q.id))
}

/// Changes a queue: `None` keeps a field (for the description, the inner
/// `None` clears it).
pub async fn update(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    name: Option<&str>,
    description: Option<Option<&str>>,
    manager_ids: Option<&[Uuid]>,
) -> Result<Option<Queue>> {
    let row = sqlx::query_as!(
        Queue,
        "UPDATE queues SET
            name = COALESCE($3, name),
            description = CASE WHEN $4 THEN $5 ELSE description END,
            manager_ids = COALESCE($6, manager_ids),
            updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, name, description, manager_ids, created_at, updated_at",
        organization_id,
        id,
        name,
        description.is_some(),
        description.flatten(),
        manager_ids
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Deletes a queue; whether it existed (`InUse` while tickets are in it).
pub async fn delete(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM queues WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
