//! Time spent on tickets.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A time entry row.
#[derive(Debug, Clone)]
pub struct TimeEntry {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// Who spent the time.
    pub user_id: Uuid,
    /// Minutes spent.
    pub minutes: i32,
    /// What was done.
    pub note: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Inserts a time entry.
pub async fn insert(conn: &mut PgConnection, entry: &TimeEntry) -> Result<TimeEntry> {
    let row = sqlx::query_as!(
        TimeEntry,
        "INSERT INTO time_entries (id, organization_id, ticket_id, user_id, minutes, note)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, organization_id, ticket_id, user_id, minutes, note, created_at, updated_at",
        entry.id,
        entry.organization_id,
        entry.ticket_id,
        entry.user_id,
        entry.minutes,
        entry.note
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// A time entry of the organization, locked until the transaction ends.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<TimeEntry>> {
    let row = sqlx::query_as!(
        TimeEntry,
        "SELECT id, organization_id, ticket_id, user_id, minutes, note, created_at, updated_at
         FROM time_entries WHERE organization_id = $1 AND id = $2 FOR UPDATE",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of a ticket's time entries, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    ticket_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<TimeEntry>> {
    let rows = sqlx::query_as!(
        TimeEntry,
        "SELECT id, organization_id, ticket_id, user_id, minutes, note, created_at, updated_at
         FROM time_entries
         WHERE organization_id = $1 AND ticket_id = $2 AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
        organization_id,
        ticket_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |e| e.id))
}

/// Writes an entry's editable fields back.
pub async fn save(conn: &mut PgConnection, entry: &TimeEntry) -> Result<TimeEntry> {
    let row = sqlx::query_as!(
        TimeEntry,
        "UPDATE time_entries SET minutes = $3, note = $4, user_id = $5, updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, ticket_id, user_id, minutes, note, created_at, updated_at",
        entry.organization_id,
        entry.id,
        entry.minutes,
        entry.note,
        entry.user_id
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// Deletes an entry; the deleted row, if there was one.
pub async fn delete(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<TimeEntry>> {
    let row = sqlx::query_as!(
        TimeEntry,
        "DELETE FROM time_entries WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, ticket_id, user_id, minutes, note, created_at, updated_at",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}
