//! Staff users.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A user row (without the password hash).
#[derive(Debug, Clone)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Sign-in address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// `admin` or `agent`.
    pub role: String,
    /// Quiet in-app notifications instead of e-mail.
    pub realtime_notifications: bool,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// A new user.
#[derive(Debug)]
pub struct NewUser<'a> {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Sign-in address.
    pub email: &'a str,
    /// Display name.
    pub name: &'a str,
    /// Argon2 PHC string.
    pub password_hash: &'a str,
    /// `admin` or `agent`.
    pub role: &'a str,
}

/// Unique index that refuses a second account for one e-mail address.
pub const EMAIL_KEY: &str = "users_email_key";

/// Inserts a user.
pub async fn insert(conn: &mut PgConnection, user: &NewUser<'_>) -> Result<User> {
    let row = sqlx::query_as!(
        User,
        "INSERT INTO users (id, organization_id, email, name, password_hash, role)
         VALUES ($1, $2, $3, $4, $5, $6)
         RETURNING id, organization_id, email, name, role, realtime_notifications, created_at, updated_at",
        user.id,
        user.organization_id,
        user.email,
        user.name,
        user.password_hash,
        user.role
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// A user and the password hash to check at sign-in, by e-mail (any organization).
pub async fn find_for_login(
    conn: &mut PgConnection,
    email: &str,
) -> Result<Option<(User, String)>> {
    let row = sqlx::query!(
        "SELECT id, organization_id, email, name, role, realtime_notifications, created_at, updated_at, password_hash
         FROM users WHERE lower(email) = lower($1)",
        email
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        (
            User {
                id: r.id,
                organization_id: r.organization_id,
                email: r.email,
                name: r.name,
                role: r.role,
                realtime_notifications: r.realtime_notifications,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            r.password_hash,
        )
    }))
}

/// A user of the organization by e-mail (for the admin command line).
pub async fn find_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<User>> {
    Ok(find_for_login(conn, email).await?.map(|(user, _)| user))
}

/// A user of the organization.
pub async fn get(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<Option<User>> {
    let row = sqlx::query_as!(
        User,
        "SELECT id, organization_id, email, name, role, realtime_notifications, created_at, updated_at
         FROM users WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of the organization's users, oldest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<User>> {
    let rows = sqlx::query_as!(
        User,
        "SELECT id, organization_id, email, name, role, realtime_notifications, created_at, updated_at
         FROM users WHERE organization_id = $1 AND ($2::uuid IS NULL OR id > $2)
         ORDER BY id LIMIT $3",
        organization_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |u| u.id))
}

/// Every user of the organization: id, name and e-mail (to resolve mentions).
pub async fn directory(
    conn: &mut PgConnection,
    organization_id: Uuid,
) -> Result<Vec<(Uuid, String, String)>> {
    let rows = sqlx::query!(
        "SELECT id, name, email FROM users WHERE organization_id = $1 ORDER BY id",
        organization_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.name, r.email)).collect())
}

/// Changes to a user; `None` keeps a field.
#[derive(Debug, Default)]
pub struct UserChanges<'a> {
    /// New display name.
    pub name: Option<&'a str>,
    /// New role.
    pub role: Option<&'a str>,
    /// New notification preference.
    pub realtime_notifications: Option<bool>,
}

/// Applies changes to a user of the organization; `None` when there is no such user.
pub async fn update(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    changes: &UserChanges<'_>,
) -> Result<Option<User>> {
    let row = sqlx::query_as!(
        User,
        "UPDATE users SET
            name = COALESCE($3, name),
            role = COALESCE($4, role),
            realtime_notifications = COALESCE($5, realtime_notifications),
            updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, email, name, role, realtime_notifications, created_at, updated_at",
        organization_id,
        id,
        changes.name,
        changes.role,
        changes.realtime_notifications
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// How many admins the organization has (the last one may not be demoted).
/// Locks the admin rows until the transaction ends, so two demotions cannot
/// both see "another admin remains".
pub async fn count_admins_locked(conn: &mut PgConnection, organization_id: Uuid) -> Result<i64> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM users WHERE organization_id = $1 AND role = 'admin' ORDER BY id FOR UPDATE",
        organization_id
    )
    .fetch_all(conn)
    .await?;
    Ok(i64::try_from(ids.len()).unwrap_or(i64::MAX))
}
