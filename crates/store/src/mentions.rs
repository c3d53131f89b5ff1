//! Mentions of colleagues in messages.

use sqlx::PgConnection;
use tickiti_domain::mention::MentionOut;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

/// A mention row.
#[derive(Debug, Clone)]
pub struct Mention {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// The mentioned user.
    pub user_id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// Message that mentions.
    pub message_id: Uuid,
    /// Who wrote the message.
    pub author_user_id: Option<Uuid>,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// When the user acknowledged it.
    pub acknowledged_at: Option<OffsetDateTime>,
}

impl From<Mention> for MentionOut {
    fn from(m: Mention) -> Self {
        MentionOut {
            id: m.id,
            user_id: m.user_id,
            ticket_id: m.ticket_id,
            message_id: m.message_id,
            author_user_id: m.author_user_id,
            created_at: m.created_at,
            acknowledged_at: m.acknowledged_at,
        }
    }
}

/// Inserts a mention.
pub(crate) async fn insert(conn: &mut PgConnection, mention: &Mention) -> Result<Mention> {
    let created_at = sqlx::query_scalar!(
        "INSERT INTO mentions (id, organization_id, user_id, ticket_id, message_id, author_user_id)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
        mention.id,
        mention.organization_id,
        mention.user_id,
        mention.ticket_id,
        mention.message_id,
        mention.author_user_id
    )
    .fetch_one(conn)
    .await?;
    Ok(Mention {
        created_at,
        ..mention.clone()
    })
}

/// A page of a user's mentions: unacknowledged first, then newest first.
/// The cursor is an offset: the order mixes two keys and changes on ack.
pub async fn list_for_user(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Mention>, bool)> {
    let mut rows = sqlx::query_as!(
        Mention,
        "SELECT id, organization_id, user_id, ticket_id, message_id, author_user_id, created_at, acknowledged_at
         FROM mentions WHERE organization_id = $1 AND user_id = $2
         ORDER BY (acknowledged_at IS NULL) DESC, id DESC
         OFFSET $3 LIMIT $4",
        organization_id,
        user_id,
        offset,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(0);
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((rows, more))
}

/// Acknowledges a user's mention (idempotent); `None` when it is not theirs.
/// The flag says whether this call acknowledged it.
pub async fn acknowledge(
    conn: &mut PgConnection,
    organization_id: Uuid,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<(Mention, bool)>> {
    let changed = sqlx::query_as!(
        Mention,
        "UPDATE mentions SET acknowledged_at = now()
         WHERE organization_id = $1 AND user_id = $2 AND id = $3 AND acknowledged_at IS NULL
         RETURNING id, organization_id, user_id, ticket_id, message_id, author_user_id, created_at, acknowledged_at",
        organization_id,
        user_id,
        id
    )
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(mention) = changed {
        return Ok(Some((mention, true)));
    }
    let existing = sqlx::query_as!(
        Mention,
        "SELECT id, organization_id, user_id, ticket_id, message_id, author_user_id, created_at, acknowledged_at
         FROM mentions WHERE organization_id = $1 AND user_id = $2 AND id = $3",
        organization_id,
        user_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(existing.map(|m| (m, false)))
}
