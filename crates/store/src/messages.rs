//! Messages of a ticket's conversation. [`post`] is how every message is
//! posted (a reply in the app, an intervention's rendered response, an
//! epilog's final answer): whoever calls it, the ticket's version moves,
//! its clocks see the reply, mentions are recorded and the same events are
//! written.

use std::collections::HashSet;

use sqlx::PgConnection;
use tickiti_domain::mention::{MentionOut, mention_tokens, name_handle};
use tickiti_domain::message::MessageOut;
use tickiti_domain::sla::Happening;
use tickiti_domain::ticket::BODY_MAX;
use tickiti_domain::{EventEnvelope, EventType, Visibility, new_id};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::tickets::Ticket;
use crate::{Page, Result, mentions, sla_clocks, tickets, users};

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

impl From<Message> for MessageOut {
    fn from(m: Message) -> Self {
        MessageOut {
            id: m.id,
            ticket_id: m.ticket_id,
            visibility: m.visibility.parse().unwrap_or(Visibility::Internal),
            body: m.body,
            author_user_id: m.author_user_id,
            author_contact_id: m.author_contact_id,
            created_at: m.created_at,
        }
    }
}

/// Who writes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Author {
    /// A colleague (never mentioned by their own message).
    Staff(Uuid),
    /// The ticket's contact.
    Contact(Uuid),
    /// Tickiti itself, on a remote's behalf (an epilog's final answer).
    System,
}

/// A message to post.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// Who writes it.
    pub author: Author,
    /// Who sees it.
    pub visibility: Visibility,
    /// Text; cut to [`BODY_MAX`] characters (a rendered template may run over).
    pub body: String,
}

/// What [`post`] wrote.
#[derive(Debug)]
pub struct Posted {
    /// The message.
    pub message: Message,
    /// The ticket's new version (its ETag).
    pub version: i32,
    /// Its events (the message's, then one per mention), for the caller's
    /// outbox append with the rest of its change.
    pub events: Vec<EventEnvelope>,
}

/// Posts a message on `ticket` (locked by the caller's transaction): the
/// message, the ticket's new version, the service-level clocks moved by a
/// public reply, and a mention of every colleague the body names by e-mail
/// or name handle.
pub async fn post(conn: &mut PgConnection, ticket: &Ticket, new: NewMessage) -> Result<Posted> {
    let (author_user_id, author_contact_id) = match new.author {
        Author::Staff(id) => (Some(id), None),
        Author::Contact(id) => (None, Some(id)),
        Author::System => (None, None),
    };
    let body = if new.body.chars().count() > BODY_MAX {
        new.body.chars().take(BODY_MAX).collect()
    } else {
        new.body
    };
    let message = insert(
        conn,
        &Message {
            id: new_id(),
            organization_id: ticket.organization_id,
            ticket_id: ticket.id,
            author_user_id,
            author_contact_id,
            visibility: new.visibility.as_str().to_owned(),
            body,
            created_at: OffsetDateTime::now_utc(),
        },
    )
    .await?;
    let version = tickets::touch(conn, ticket.organization_id, ticket.id)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    if new.visibility == Visibility::Public {
        let happening = match new.author {
            Author::Contact(_) => Happening::ContactMessage,
            Author::Staff(_) | Author::System => Happening::StaffReply,
        };
        sla_clocks::track(conn, ticket, happening).await?;
    }
    let mut events = events_of(&message)?;
    for mention in record_mentions(conn, &message).await? {
        events.push(crate::event(
            EventType::MentionCreated,
            mention.organization_id,
            &MentionOut::from(mention),
        )?);
    }
    Ok(Posted {
        message,
        version,
        events,
    })
}

/// The events of a new message: `message.created`, and for a public one
/// `ticket.message_created` (webhooks of the conversation).
pub fn events_of(message: &Message) -> Result<Vec<EventEnvelope>> {
    let out = MessageOut::from(message.clone());
    let mut events = vec![crate::event(
        EventType::MessageCreated,
        message.organization_id,
        &out,
    )?];
    if out.visibility == Visibility::Public {
        events.push(crate::event(
            EventType::TicketMessageCreated,
            message.organization_id,
            &out,
        )?);
    }
    Ok(events)
}

/// Records a mention for every colleague the body names by e-mail or by
/// name handle (the name without spaces); the author is never mentioned.
async fn record_mentions(
    conn: &mut PgConnection,
    message: &Message,
) -> Result<Vec<mentions::Mention>> {
    let tokens = mention_tokens(&message.body);
    if tokens.is_empty() {
        return Ok(Vec::new());
    }
    // Each colleague's address and handle are computed once and looked up
    // in a set: linear in colleagues plus mentions.
    let tokens: HashSet<String> = tokens.into_iter().collect();
    let directory = users::directory(conn, message.organization_id).await?;
    let mut recorded = Vec::new();
    for (user_id, ..) in directory.iter().filter(|(id, name, email)| {
        Some(*id) != message.author_user_id
            && (tokens.contains(&email.to_lowercase()) || tokens.contains(&name_handle(name)))
    }) {
        let mention = mentions::insert(
            conn,
            &mentions::Mention {
                id: new_id(),
                organization_id: message.organization_id,
                user_id: *user_id,
                ticket_id: message.ticket_id,
                message_id: message.id,
                author_user_id: message.author_user_id,
                created_at: message.created_at,
                acknowledged_at: None,
            },
        )
        .await?;
        recorded.push(mention);
    }
    Ok(recorded)
}

/// Inserts a message (posting one is [`post`]).
async fn insert(conn: &mut PgConnection, message: &Message) -> Result<Message> {
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
