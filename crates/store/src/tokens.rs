//! API tokens, stored as SHA-256 hashes.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::users::User;
use crate::{Page, Result};

/// A token row (never the secret).
#[derive(Debug, Clone)]
pub struct Token {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Label.
    pub name: String,
    /// First characters of the secret, to tell tokens apart.
    pub token_prefix: String,
    /// Abilities as spelled in the contract.
    pub abilities: Vec<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// Inserts a token.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    organization_id: Uuid,
    user_id: Uuid,
    name: &str,
    token_hash: &[u8],
    token_prefix: &str,
    abilities: &[String],
) -> Result<Token> {
    let row = sqlx::query_as!(
        Token,
        "INSERT INTO api_tokens (id, organization_id, user_id, name, token_hash, token_prefix, abilities)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id, organization_id, user_id, name, token_prefix, abilities, created_at",
        id,
        organization_id,
        user_id,
        name,
        token_hash,
        token_prefix,
        abilities
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// The token with this hash and its user.
pub async fn authenticate(
    conn: &mut PgConnection,
    token_hash: &[u8],
) -> Result<Option<(Token, User)>> {
    let row = sqlx::query!(
        "SELECT t.id, t.organization_id, t.user_id, t.name AS token_name, t.token_prefix, t.abilities,
                t.created_at AS token_created_at,
                u.email, u.name, u.role, u.realtime_notifications, u.created_at, u.updated_at
         FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1",
        token_hash
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        (
            Token {
                id: r.id,
                organization_id: r.organization_id,
                user_id: r.user_id,
                name: r.token_name,
                token_prefix: r.token_prefix,
                abilities: r.abilities,
                created_at: r.token_created_at,
            },
            User {
                id: r.user_id,
                organization_id: r.organization_id,
                email: r.email,
                name: r.name,
                role: r.role,
                realtime_notifications: r.realtime_notifications,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
        )
    }))
}

/// A page of a user's tokens, oldest first.
pub async fn list_for_user(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Page<Token>> {
    let rows = sqlx::query_as!(
        Token,
        "SELECT id, organization_id, user_id, name, token_prefix, abilities, created_at
         FROM api_tokens
         WHERE organization_id = $1 AND user_id = $2 AND ($3::uuid IS NULL OR id > $3)
         ORDER BY id LIMIT $4",
        organization_id,
        user_id,
        after,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |t| t.id))
}

/// Deletes a user's token; whether it existed.
pub async fn delete(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    id: Uuid,
) -> Result<bool> {
    let done = sqlx::query!(
        "DELETE FROM api_tokens WHERE organization_id = $1 AND user_id = $2 AND id = $3",
        organization_id,
        user_id,
        id
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
