//! Messages of a ticket's conversation.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A message row.
#[derive(Debug, Clone)]
pub struct Message {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// Staff author.
    pub author_user_id: Option<Uuid>,
    /// Contact author (inbound mail, interventions).
    pub author_contact_id: Option<Uuid>,
    /// `public` or `internal`.
    pub visibility: String,
    /// Text.
    pub body: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// Inserts a message.
pub async fn insert(conn: &mut PgConnection, message: &Message) -> Result<Message> {
    let created_at = sqlx::query_scalar!(
        "INSERT INTO messages (id, organization_id, ticket_id, author_user_id, author_contact_id, visibility, body)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at",
        message.id,
        message.organization_id,
        message.ticket_id,
        message.author_user_id,
        message.author_contact_id,
        message.visibility,
        message.body
    )
    .fetch_one(conn)
    .await?;
    Ok(Message {
        created_at,
        ..message.clone()
    })
}

/// A page of a ticket's messages, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    ticket_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Message>> {
    let rows = sqlx::query_as!(
        Message,
        "SELECT id, organization_id, ticket_id, author_user_id, author_contact_id, visibility, body, created_at
         FROM messages
         WHERE organization_id = $1 AND ticket_id = $2 AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
        organization_id,
        ticket_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |m| m.id))
}

/// Deletes a message of a ticket; the deleted row, if there was one.
pub async fn delete(
    conn: &mut PgConnection,
    organization_id: Uuid,
    ticket_id: Uuid,
    id: Uuid,
) -> Result<Option<Message>> {
    let row = sqlx::query_as!(
        Message,
        "DELETE FROM messages WHERE organization_id = $1 AND ticket_id = $2 AND id = $3
         RETURNING id, organization_id, ticket_id, author_user_id, author_contact_id, visibility, body, created_at",
        organization_id,
        ticket_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}
