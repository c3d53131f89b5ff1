//! `/tickets/{id}/messages`: the conversation, with `@`-mentions.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use tickiti_domain::mention::{mention_tokens, name_handle};
use tickiti_domain::sla::Happening;
use tickiti_domain::ticket::BODY_MAX;
use tickiti_domain::{Ability, EventType, Validation, Visibility, new_id};
use tickiti_store::messages::Message;
use tickiti_store::{audit, mentions, messages, sla_clocks, tickets, users};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::mentions::MentionOut;
use super::tickets::{check_if_match, etag, find_ticket};
use crate::events::{EventBatch, emit};
use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The message routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_messages, create_message))
        .routes(routes!(delete_message))
}

/// A message as the API returns it (and as message events carry it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageOut {
    /// Id.
    pub id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// `public` (the contact sees it) or `internal` (staff only).
    pub visibility: Visibility,
    /// Text.
    pub body: String,
    /// Staff author.
    pub author_user_id: Option<Uuid>,
    /// Contact author.
    pub author_contact_id: Option<Uuid>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
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

/// A new message; the author is the caller.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    /// Text; `@name` or `@email` of a colleague mentions them.
    #[schema(min_length = 1, max_length = 200000)]
    pub body: String,
    /// Default `public`.
    pub visibility: Option<Visibility>,
}

/// A ticket's messages, oldest first.
#[utoipa::path(get, path = "/tickets/{id}/messages", tag = "messages",
    params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = ListOut<MessageOut>), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn list_messages(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<MessageOut>>> {
    principal.require(Ability::TicketsRead)?;
    let after = Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let ticket = find_ticket(&mut conn, &principal, &id, false).await?;
    let page = messages::list(&mut conn, principal.org(), ticket.id, after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, MessageOut::from)))
}

/// Post a message. With `If-Match`, a ticket that changed since (a
/// colleague replied) answers 412 `TICKET_CHANGED`.
#[utoipa::path(post, path = "/tickets/{id}/messages", tag = "messages", request_body = MessageIn,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The ticket's ETag last seen")),
    responses((status = 201, body = MessageOut, headers(("ETag" = String, description = "The ticket's new ETag"))),
              (status = 412, body = crate::http::error::Problem), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn create_message(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(input): Json<MessageIn>,
) -> ApiResult<Response> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let mut v = Validation::new();
    v.text("body", &input.body, 1, BODY_MAX);
    v.finish().map_err(ApiError::validation)?;

    let mut tx = state.db.begin().await?;
    let ticket = find_ticket(&mut tx, &principal, &id, true).await?;
    check_if_match(&headers, &ticket)?;
    let message = messages::insert(
        &mut tx,
        &Message {
            id: new_id(),
            organization_id: org,
            ticket_id: ticket.id,
            author_user_id: Some(principal.user.id),
            author_contact_id: None,
            visibility: input
                .visibility
                .unwrap_or(Visibility::Public)
                .as_str()
                .to_owned(),
            body: input.body,
            created_at: OffsetDateTime::now_utc(),
        },
    )
    .await?;
    let version = tickets::touch(&mut tx, org, ticket.id)
        .await?
        .ok_or_else(|| ApiError::not_found("TICKET_NOT_FOUND", "ticket"))?;
    if message.visibility == Visibility::Public.as_str() {
        sla_clocks::track(&mut tx, &ticket, Happening::StaffReply).await?;
    }
    let out = MessageOut::from(message.clone());
    let mut events = EventBatch::new(&principal);
    events.push(EventType::MessageCreated, &out)?;
    if out.visibility == Visibility::Public {
        events.push(EventType::TicketMessageCreated, &out)?;
    }
    record_mentions(&mut tx, &principal, &message, &mut events).await?;
    events.append(&mut tx).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        [(header::ETAG, etag(version))],
        axum::Json(out),
    )
        .into_response())
}

/// Creates a mention for every colleague the body names by e-mail or by
/// name handle (the name without spaces); the author is never mentioned.
async fn record_mentions(
    conn: &mut PgConnection,
    principal: &Principal,
    message: &Message,
    events: &mut EventBatch,
) -> ApiResult<()> {
    let tokens = mention_tokens(&message.body);
    if tokens.is_empty() {
        return Ok(());
    }
    // Each colleague's address and handle are computed once and looked up
    // in a set: linear in colleagues plus mentions.
    let tokens: std::collections::HashSet<String> = tokens.into_iter().collect();
    let directory = users::directory(conn, principal.org()).await?;
    let mentioned = directory.iter().filter(|(id, name, email)| {
        *id != principal.user.id
            && (tokens.contains(&email.to_lowercase()) || tokens.contains(&name_handle(name)))
    });
    for (user_id, ..) in mentioned {
        let mention = mentions::insert(
            conn,
            &mentions::Mention {
                id: new_id(),
                organization_id: principal.org(),
                user_id: *user_id,
                ticket_id: message.ticket_id,
                message_id: message.id,
                author_user_id: Some(principal.user.id),
                created_at: message.created_at,
                acknowledged_at: None,
            },
        )
        .await?;
        events.push(EventType::MentionCreated, &MentionOut::from(mention))?;
    }
    Ok(())
}

/// Delete a message.
#[utoipa::path(delete, path = "/tickets/{id}/messages/{message_id}", tag = "messages",
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn delete_message(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, message_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let message_id = parse_id(&message_id, "MESSAGE_NOT_FOUND", "message")?;
    let mut tx = state.db.begin().await?;
    let ticket = find_ticket(&mut tx, &principal, &id, true).await?;
    let deleted = messages::delete(&mut tx, org, ticket.id, message_id)
        .await?
        .ok_or_else(|| ApiError::not_found("MESSAGE_NOT_FOUND", "message"))?;
    tickets::touch(&mut tx, org, ticket.id).await?;
    audit::insert(
        &mut tx,
        org,
        ticket.id,
        Some(principal.user.id),
        "message.deleted",
        &json!({ "message_id": deleted.id }),
    )
    .await?;
    emit(
        &mut tx,
        &principal,
        EventType::MessageDeleted,
        &MessageOut::from(deleted),
    )
    .await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}
