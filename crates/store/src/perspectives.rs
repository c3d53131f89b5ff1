//! Perspectives: saved ticket filters, shared or private to one user.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// A perspective row.
#[derive(Debug, Clone)]
pub struct Perspective {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Owner; `None` when shared with the whole organization.
    pub user_id: Option<Uuid>,
    /// Display name.
    pub name: String,
    /// The filter, in the ticket list's parameter names.
    pub filters: serde_json::Value,
    /// Sort position.
    pub position: i32,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Inserts the shared perspectives every organization starts with:
/// "All open", "Mine", "Unassigned" and "Escalated" (open tickets with a
/// breached service-level target not yet met).
pub async fn create_defaults(conn: &mut PgConnection, org: Uuid) -> Result<()> {
    const OPEN: &str = "new,open,pending,on_hold";
    let defaults = [
        ("All open", None, None),
        ("Mine", Some("me"), None),
        ("Unassigned", Some("none"), None),
        ("Escalated", None, Some("true")),
    ];
    let now = OffsetDateTime::now_utc();
    for (position, (name, assignee, escalated)) in (0..).zip(defaults) {
        let params = tickiti_domain::filter::TicketFilterParams {
            status: Some(OPEN.to_owned()),
            assignee_id: assignee.map(str::to_owned),
            escalated: escalated.map(str::to_owned),
            ..Default::default()
        };
        insert(
            conn,
            &Perspective {
                id: tickiti_domain::new_id(),
                organization_id: org,
                user_id: None,
                name: name.to_owned(),
                filters: serde_json::to_value(&params)
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
                position,
                created_at: now,
                updated_at: now,
            },
        )
        .await?;
    }
    Ok(())
}

/// Inserts a perspective.
/// Counts under a lock of the organization's perspectives held until the
/// transaction ends (so racing creates cannot both see room under a cap):
/// (the organization's in all, those of `user_id`, or the shared ones when None).
pub async fn count_for_insert(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Option<Uuid>,
) -> Result<(i64, i64)> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('perspectives:' || $1::uuid, 0))",
        organization_id
    )
    .execute(&mut *conn)
    .await?;
    let row = sqlx::query!(
        r#"SELECT count(*) AS "all!",
                  count(*) FILTER (WHERE user_id IS NOT DISTINCT FROM $2) AS "same_owner!"
           FROM perspectives WHERE organization_id = $1"#,
        organization_id,
        user_id
    )
    .fetch_one(conn)
    .await?;
    Ok((row.all, row.same_owner))
}

/// Inserts a perspective.
pub async fn insert(conn: &mut PgConnection, p: &Perspective) -> Result<Perspective> {
    let row = sqlx::query_as!(
        Perspective,
        "INSERT INTO perspectives (id, organization_id, user_id, name, filters, position)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, organization_id, user_id, name, filters, position, created_at, updated_at",
        p.id,
        p.organization_id,
        p.user_id,
        p.name,
        p.filters,
        p.position
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// The perspectives `user_id` sees: shared ones and their own, in order.
pub async fn list_visible(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
) -> Result<Vec<Perspective>> {
    let rows = sqlx::query_as!(
        Perspective,
        "SELECT id, organization_id, user_id, name, filters, position, created_at, updated_at
         FROM perspectives
         WHERE organization_id = $1 AND (user_id IS NULL OR user_id = $2)
         ORDER BY position, id",
        organization_id,
        user_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Every perspective of the organization, shared and private, in order.
pub async fn list_of_organization(
    conn: &mut PgConnection,
    organization_id: Uuid,
) -> Result<Vec<Perspective>> {
    let rows = sqlx::query_as!(
        Perspective,
        "SELECT id, organization_id, user_id, name, filters, position, created_at, updated_at
         FROM perspectives
         WHERE organization_id = $1
         ORDER BY position, id",
        organization_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// A perspective `user_id` can see, locked until the transaction ends.
pub async fn get_visible(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Perspective>> {
    let row = sqlx::query_as!(
        Perspective,
        "SELECT id, organization_id, user_id, name, filters, position, created_at, updated_at
         FROM perspectives
         WHERE organization_id = $1 AND (user_id IS NULL OR user_id = $2) AND id = $3
         FOR UPDATE",
        organization_id,
        user_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Writes a perspective's editable fields back.
pub async fn save(conn: &mut PgConnection, p: &Perspective) -> Result<Perspective> {
    let row = sqlx::query_as!(
        Perspective,
        "UPDATE perspectives SET name = $3, filters = $4, position = $5, updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, user_id, name, filters, position, created_at, updated_at",
        p.organization_id,
        p.id,
        p.name,
        p.filters,
        p.position
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// Deletes a perspective; whether it existed.
pub async fn delete(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM perspectives WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
