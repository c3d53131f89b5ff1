//! Staff browser sessions (cookie value stored as SHA-256).

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;
use crate::users::User;

/// Inserts a session.
pub async fn insert(
    conn: &mut PgConnection,
    id_hash: &[u8],
    user_id: Uuid,
    organization_id: Uuid,
    csrf_token: &str,
    expires_at: OffsetDateTime,
) -> Result<()> {
    sqlx::query!(
        "INSERT INTO sessions (id_hash, user_id, organization_id, csrf_token, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        id_hash,
        user_id,
        organization_id,
        csrf_token,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The live session with this hash: its user and CSRF token.
pub async fn authenticate(
    conn: &mut PgConnection,
    id_hash: &[u8],
) -> Result<Option<(User, String)>> {
    let row = sqlx::query!(
        "SELECT s.csrf_token, u.id, u.organization_id, u.email, u.name, u.role,
                u.realtime_notifications, u.created_at, u.updated_at
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = $1 AND s.expires_at > now()",
        id_hash
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
            r.csrf_token,
        )
    }))
}

/// Ends a session.
pub async fn delete(conn: &mut PgConnection, id_hash: &[u8]) -> Result<()> {
    sqlx::query!("DELETE FROM sessions WHERE id_hash = $1", id_hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes expired sessions; how many.
pub async fn prune_expired(conn: &mut PgConnection) -> Result<u64> {
    let done = sqlx::query!("DELETE FROM sessions WHERE expires_at <= now()")
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}
