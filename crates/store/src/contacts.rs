//! Contacts: the people tickets are about.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A contact row.
#[derive(Debug, Clone)]
pub struct Contact {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Address, unique per organization (case-insensitive).
    pub email: String,
    /// Display name.
    pub name: Option<String>,
    /// Company.
    pub company: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// Unique index on (organization, lower(email)).
pub const EMAIL_KEY: &str = "contacts_email_key";

/// Inserts a contact.
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    organization_id: Uuid,
    email: &str,
    name: Option<&str>,
    company: Option<&str>,
) -> Result<Contact> {
    let row = sqlx::query_as!(
        Contact,
        "INSERT INTO contacts (id, organization_id, email, name, company) VALUES ($1, $2, $3, $4, $5)
         RETURNING id, organization_id, email, name, company, created_at, updated_at",
        id,
        organization_id,
        email,
        name,
        company
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// Finds the contact with this address or creates it, race-free: whether it was created.
pub async fn find_or_insert(
    conn: &mut PgConnection,
    organization_id: Uuid,
    email: &str,
    name: Option<&str>,
) -> Result<(Contact, bool)> {
    let inserted = sqlx::query_as!(
        Contact,
        "INSERT INTO contacts (id, organization_id, email, name) VALUES ($1, $2, $3, $4)
         ON CONFLICT (organization_id, lower(email)) DO NOTHING
         RETURNING id, organization_id, email, name, company, created_at, updated_at",
        tickiti_domain::new_id(),
        organization_id,
        email,
        name
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(contact) = inserted {
        return Ok((contact, true));
    }
    let existing = find_by_email(conn, organization_id, email)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok((existing, false))
}

/// The organization's contact with this address (case-insensitive).
pub async fn find_by_email(
    conn: &mut PgConnection,
    organization_id: Uuid,
    email: &str,
) -> Result<Option<Contact>> {
    let row = sqlx::query_as!(
        Contact,
        "SELECT id, organization_id, email, name, company, created_at, updated_at
         FROM contacts WHERE organization_id = $1 AND lower(email) = lower($2)",
        organization_id,
        email
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A contact of the organization.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Contact>> {
    let row = sqlx::query_as!(
        Contact,
        "SELECT id, organization_id, email, name, company, created_at, updated_at
         FROM contacts WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of contacts, newest first; `q` matches name, e-mail or company.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    q: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Page<Contact>> {
    let rows = sqlx::query_as!(
        Contact,
        r#"SELECT id, organization_id, email, name, company, created_at, updated_at
         FROM contacts
         WHERE organization_id = $1 AND ($2::uuid IS NULL OR id < $2)
           AND ($3::text IS NULL
                OR email ILIKE '%' || $3 || '%' OR name ILIKE '%' || $3 || '%' OR company ILIKE '%' || $3 || '%')
         ORDER BY id DESC LIMIT $4"#,
        organization_id,
        before,
        q.map(escape_like),
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |c| c.id))
}

/// Escapes `%`, `_` and `\` so user text matches literally in LIKE.
pub fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Changes to a contact: outer `None` keeps a field, inner `None` clears it.
#[derive(Debug, Default)]
pub struct ContactChanges<'a> {
    /// New address.
    pub email: Option<&'a str>,
    /// New name.
    pub name: Option<Option<&'a str>>,
    /// New company.
    pub company: Option<Option<&'a str>>,
}

/// Applies changes; `None` when there is no such contact.
pub async fn update(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    changes: &ContactChanges<'_>,
) -> Result<Option<Contact>> {
    let row = sqlx::query_as!(
        Contact,
        "UPDATE contacts SET
            email = COALESCE($3, email),
            name = CASE WHEN $4 THEN $5 ELSE name END,
            company = CASE WHEN $6 THEN $7 ELSE company END,
            updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, email, name, company, created_at, updated_at",
        organization_id,
        id,
        changes.email,
        changes.name.is_some(),
        changes.name.flatten(),
        changes.company.is_some(),
        changes.company.flatten()
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Deletes a contact; `None` when there is none, `InUse` while tickets refer to it.
pub async fn delete(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Contact>> {
    let row = sqlx::query_as!(
        Contact,
        "DELETE FROM contacts WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, email, name, company, created_at, updated_at",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}
