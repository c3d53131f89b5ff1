//! Business calendars (CONTRACT §7), as the API wrote them.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A calendar row.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Name, unique per organization (case-insensitive).
    pub name: String,
    /// IANA time zone.
    pub time_zone: String,
    /// `[{"weekday","start","end"}]`.
    pub hours: serde_json::Value,
    /// `[{"date","name"}]`.
    pub holidays: serde_json::Value,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Unique index on (organization, lower(name)).
pub const NAME_KEY: &str = "business_calendars_name_key";

/// A calendar's columns to write.
#[derive(Debug, Clone)]
pub struct CalendarFields<'a> {
    /// Name.
    pub name: &'a str,
    /// IANA time zone.
    pub time_zone: &'a str,
    /// Hours.
    pub hours: &'a serde_json::Value,
    /// Holidays.
    pub holidays: &'a serde_json::Value,
}

/// Inserts a calendar.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    organization_id: Uuid,
    fields: &CalendarFields<'_>,
) -> Result<Calendar> {
    let row = sqlx::query_as!(
        Calendar,
        "INSERT INTO business_calendars (id, organization_id, name, time_zone, hours, holidays)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, organization_id, name, time_zone, hours, holidays, created_at, updated_at",
        id,
        organization_id,
        fields.name,
        fields.time_zone,
        fields.hours,
        fields.holidays
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// A calendar of the organization.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Calendar>> {
    let row = sqlx::query_as!(
        Calendar,
        "SELECT id, organization_id, name, time_zone, hours, holidays, created_at, updated_at
         FROM business_calendars WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of calendars, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Calendar>> {
    let rows = sqlx::query_as!(
        Calendar,
        "SELECT id, organization_id, name, time_zone, hours, holidays, created_at, updated_at
         FROM business_calendars WHERE organization_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
        organization_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |c| c.id))
}

/// Replaces a calendar's fields (the caller merged the patch and checked the whole).
pub async fn update(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    fields: &CalendarFields<'_>,
) -> Result<Option<Calendar>> {
    let row = sqlx::query_as!(
        Calendar,
        "UPDATE business_calendars SET name = $3, time_zone = $4, hours = $5, holidays = $6,
                updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, name, time_zone, hours, holidays, created_at, updated_at",
        organization_id,
        id,
        fields.name,
        fields.time_zone,
        fields.hours,
        fields.holidays
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Deletes a calendar; whether it existed.
pub async fn delete(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM business_calendars WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
