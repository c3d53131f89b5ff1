//! `/tickets/{id}/messages`: the conversation, with `@`-mentions.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tickiti_domain::message::MessageOut;
use tickiti_domain::ticket::BODY_MAX;
use tickiti_domain::{Ability, EventType, Validation, Visibility};
use tickiti_store::messages::{Author, NewMessage};
use tickiti_store::{audit, messages, tickets};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::tickets::{check_if_match, etag, find_ticket};
use crate::events::{EventBatch, emit};
use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The message routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_messages, create_message))
        .routes(routes!(delete_message))
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
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(input): Json<MessageIn>,
) -> ApiResult<Response> {
    principal.require(Ability::TicketsWrite)?;
    let mut v = Validation::new();
    v.text("body", &input.body, 1, BODY_MAX);
    v.finish().map_err(ApiError::validation)?;

    let mut tx = db.begin().await?;
    let ticket = find_ticket(&mut tx, &principal, &id, true).await?;
    check_if_match(&headers, &ticket)?;
    let posted = messages::post(
        &mut tx,
        &ticket,
        NewMessage {
            author: Author::Staff(principal.user.id),
            visibility: input.visibility.unwrap_or(Visibility::Public),
            body: input.body,
        },
    )
    .await?;
    let mut events = EventBatch::new(&principal);
    events.extend(posted.events);
    events.append(&mut tx).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        [(header::ETAG, etag(posted.version))],
        axum::Json(MessageOut::from(posted.message)),
    )
        .into_response())
}

/// Delete a message.
#[utoipa::path(delete, path = "/tickets/{id}/messages/{message_id}", tag = "messages",
    params(("id" = Uuid, Path), ("message_id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn delete_message(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path((id, message_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let message_id = parse_id(&message_id, "MESSAGE_NOT_FOUND", "message")?;
    let mut tx = db.begin().await?;
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
