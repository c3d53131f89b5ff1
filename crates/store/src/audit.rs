//! The ticket audit trail: who changed what, and when.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// An audit row.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Ticket (may no longer exist).
    pub ticket_id: Uuid,
    /// Who did it; `None` for the system or a deleted user.
    pub actor_user_id: Option<Uuid>,
    /// What happened, e.g. `ticket.updated`.
    pub action: String,
    /// Field → `{"from", "to"}`, or other detail.
    pub changes: serde_json::Value,
    /// When.
    pub created_at: OffsetDateTime,
}

/// Records an audit entry.
pub async fn insert(
    conn: &mut PgConnection,
    organization_id: Uuid,
    ticket_id: Uuid,
    actor_user_id: Option<Uuid>,
    action: &str,
    changes: &serde_json::Value,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO ticket_audit (id, organization_id, ticket_id, actor_user_id, action, changes)
         VALUES ($1, $2, $3, $4, $5, $6)",
        tickiti_domain::new_id(),
        organization_id,
        ticket_id,
        actor_user_id,
        action,
        changes
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A page of a ticket's trail, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    ticket_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<AuditEntry>> {
    let rows = sqlx::query_as!(
        AuditEntry,
        "SELECT id, organization_id, ticket_id, actor_user_id, action, changes, created_at
         FROM ticket_audit
         WHERE organization_id = $1 AND ticket_id = $2 AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
        organization_id,
        ticket_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |a| a.id))
}
