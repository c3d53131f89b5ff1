//! Organizations and their per-organization ticket number sequences.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// An organization row.
#[derive(Debug, Clone)]
pub struct Organization {
    /// Id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Prefix of ticket codes.
    pub code_prefix: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// Name of the sequence that numbers an organization's tickets. A sequence
/// per organization hands out numbers without a row lock, so concurrent
/// creates never queue behind each other (a rolled-back create leaves a gap,
/// as in most helpdesks).
pub fn sequence_name(organization_id: Uuid) -> String {
    format!("ticket_number_{}", organization_id.simple())
}

/// Inserts an organization and creates its ticket number sequence.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    code_prefix: &str,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO organizations (id, name, code_prefix) VALUES ($1, $2, $3)",
        id,
        name,
        code_prefix
    )
    .execute(&mut *conn)
    .await?;
    // DDL takes no bind parameters; the name is built from a UUID's hex digits only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE SEQUENCE {}",
        sequence_name(id)
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The next ticket number of an organization and its code prefix, in one round trip.
pub async fn next_ticket_number(
    conn: &mut PgConnection,
    organization_id: Uuid,
) -> Result<Option<(i64, String)>> {
    let row = sqlx::query!(
        r#"SELECT nextval($2::text::regclass) AS "number!", code_prefix FROM organizations WHERE id = $1"#,
        organization_id,
        sequence_name(organization_id)
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.number, r.code_prefix)))
}

/// An organization by id.
pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<Organization>> {
    let org = sqlx::query_as!(
        Organization,
        "SELECT id, name, code_prefix, created_at FROM organizations WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(org)
}

/// Every organization's id (install-wide events go to each one's admins).
pub async fn ids(conn: &mut PgConnection) -> Result<Vec<Uuid>> {
    let ids = sqlx::query_scalar!("SELECT id FROM organizations ORDER BY id")
        .fetch_all(conn)
        .await?;
    Ok(ids)
}
