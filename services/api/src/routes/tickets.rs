//! `/tickets`: create, list with filters and full text, read, change with
//! optimistic concurrency (`ETag`/`If-Match`), delete, and the audit trail.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;
use tickiti_domain::filter::TicketFilterParams;
use tickiti_domain::sla::{Happening, MetricClock};
use tickiti_domain::ticket::{BODY_MAX, SUBJECT_MAX, TAG_MAX, TAGS_MAX, normalize_tags};
pub use tickiti_domain::ticket::{ContactRef, TicketOut};
use tickiti_domain::{Ability, EventType, Priority, TicketStatus, Validation, Visibility, new_id};
use tickiti_store::tickets::Ticket;
use tickiti_store::{audit, contacts, messages, organizations, queues, sla_clocks, tickets, users};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::events::{EventBatch, emit};
use crate::http::extract::{Cursor, NoFilter, PageParams, nullable, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// The ticket routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tickets, create_ticket))
        .routes(routes!(get_ticket, update_ticket, delete_ticket))
        .routes(routes!(list_ticket_audit))
}

/// The contact of a new ticket, found by address or created.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    /// Address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Name (used when the contact is created).
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

/// A new ticket: `contact` or `contact_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketIn {
    /// Subject line.
    #[schema(min_length = 1, max_length = 500)]
    pub subject: String,
    /// The contact by address (found or created).
    pub contact: Option<ContactIn>,
    /// Or an existing contact.
    pub contact_id: Option<Uuid>,
    /// First message (from the contact, public).
    #[schema(min_length = 1, max_length = 200000)]
    pub message: Option<String>,
    /// Priority (default `normal`).
    pub priority: Option<Priority>,
    /// Queue.
    pub queue_id: Option<Uuid>,
    /// Assigned user.
    pub assignee_id: Option<Uuid>,
    /// Tags.
    #[schema(max_items = 50)]
    pub tags: Option<Vec<String>>,
}

/// Changes to a ticket; absent fields stay, `null` clears a nullable one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketPatch {
    /// Subject line.
    #[schema(min_length = 1, max_length = 500)]
    pub subject: Option<String>,
    /// Status.
    pub status: Option<TicketStatus>,
    /// Priority.
    pub priority: Option<Priority>,
    /// Queue (`null`: none).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Uuid>)]
    pub queue_id: Option<Option<Uuid>>,
    /// Assigned user (`null`: unassign).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Uuid>)]
    pub assignee_id: Option<Option<Uuid>>,
    /// Tags (replaces the list).
    #[schema(max_items = 50)]
    pub tags: Option<Vec<String>>,
}

const NOT_FOUND: &str = "TICKET_NOT_FOUND";

/// The ticket of the caller's organization, or 404 (also for another organization's id).
pub async fn find_ticket(
    conn: &mut PgConnection,
    principal: &Principal,
    raw_id: &str,
    lock: bool,
) -> ApiResult<Ticket> {
    let id = parse_id(raw_id, NOT_FOUND, "ticket")?;
    tickets::get(conn, principal.org(), id, lock)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "ticket"))
}

/// The `ETag` of a ticket version.
pub fn etag(version: i32) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// 412 `TICKET_CHANGED` (with the current ticket) unless `If-Match`, when
/// sent, names the ticket's current version.
pub fn check_if_match(headers: &HeaderMap, ticket: &Ticket) -> ApiResult<()> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let current = ticket.version.to_string();
    let matches = value.to_str().ok().is_some_and(|v| {
        v.split(',').any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/").trim_matches('"') == current
        })
    });
    if matches {
        return Ok(());
    }
    let current_ticket = serde_json::to_value(TicketOut::from(ticket.clone())).unwrap_or_default();
    Err(ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "TICKET_CHANGED",
        format!("the ticket changed since (it is at version {current}); review it and retry"),
    )
    .with_member("ticket", current_ticket)
    .with_header(header::ETAG, etag(ticket.version)))
}

/// A ticket answer with its `ETag`.
fn with_etag(status: StatusCode, ticket: TicketOut) -> Response {
    let tag = etag(ticket.version);
    (status, [(header::ETAG, tag)], axum::Json(ticket)).into_response()
}

async fn check_queue(
    conn: &mut PgConnection,
    org: Uuid,
    queue_id: Option<Uuid>,
    v: &mut Validation,
) -> ApiResult<()> {
    if let Some(id) = queue_id
        && queues::get(conn, org, id).await?.is_none()
    {
        v.error("queue_id", "no such queue");
    }
    Ok(())
}

async fn check_assignee(
    conn: &mut PgConnection,
    org: Uuid,
    user_id: Option<Uuid>,
    v: &mut Validation,
) -> ApiResult<()> {
    if let Some(id) = user_id
        && users::get(conn, org, id).await?.is_none()
    {
        v.error("assignee_id", "no such user");
    }
    Ok(())
}

fn check_tags(tags: &[String], v: &mut Validation) {
    if tags.len() > TAGS_MAX {
        v.error("tags", format!("at most {TAGS_MAX} tags"));
    }
    for (i, tag) in tags.iter().enumerate() {
        v.text(&format!("tags[{i}]"), tag, 1, TAG_MAX);
    }
}

/// List tickets, last activity first (or in the order `sort` names).
#[utoipa::path(get, path = "/tickets", tag = "tickets",
    params(PageParams, TicketFilterParams),
    responses((status = 200, body = ListOut<TicketOut>), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_tickets(
    State(state): State<AppState>,
    principal: Principal,
    query: ListQuery<TicketFilterParams>,
) -> ApiResult<axum::Json<ListOut<TicketOut>>> {
    principal.require(Ability::TicketsRead)?;
    let filter = query.filter.parse().map_err(ApiError::validation)?;
    let after = Cursor::ticket_key(query.cursor, filter.order)?;
    let mut conn = state.db.acquire().await?;
    let page = tickets::list(
        &mut conn,
        principal.org(),
        &filter,
        principal.user.id,
        after,
        query.limit,
    )
    .await?;
    // The cursor carries the last row's sort value, so it follows the order.
    let next_cursor = page.next_after.and_then(|_| {
        let last = page.items.last()?;
        Some(Cursor::Key(filter.order, tickets::TicketKey::of(filter.order, last)).encode())
    });
    Ok(axum::Json(ListOut {
        data: page.items.into_iter().map(TicketOut::from).collect(),
        next_cursor,
    }))
}

/// Create a ticket.
#[utoipa::path(post, path = "/tickets", tag = "tickets", request_body = TicketIn,
    params(("Idempotency-Key" = Option<String>, Header, pattern = r"^[!-~]{1,255}$", description = "Replays the first answer for the same key and body (1 to 255 visible ASCII characters)")),
    responses((status = 201, body = TicketOut), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_ticket(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Json(input): Json<TicketIn>,
) -> ApiResult<Response> {
    principal.require(Ability::CreateTicket)?;
    let org = principal.org();
    let mut v = Validation::new();
    v.text("subject", &input.subject, 1, SUBJECT_MAX);
    match (&input.contact, input.contact_id) {
        (Some(contact), None) => {
            v.email("contact.email", contact.email.trim());
            v.optional_text("contact.name", contact.name.as_deref(), 200);
        }
        (None, Some(_)) => {}
        _ => v.error("contact", "give exactly one of contact or contact_id"),
    }
    if let Some(message) = &input.message {
        v.text("message", message, 1, BODY_MAX);
    }
    let tags = input.tags.as_deref().unwrap_or_default();
    check_tags(tags, &mut v);

    // No transaction: the checks only read, the number is the sequence's
    // (a failed create leaves a gap, as a rolled-back one would), and the
    // opening is one atomic statement.
    let mut conn = state.db.acquire().await?;
    check_queue(&mut conn, org, input.queue_id, &mut v).await?;
    check_assignee(&mut conn, org, input.assignee_id, &mut v).await?;
    let given_contact = match input.contact_id {
        Some(id) => {
            let found = contacts::get(&mut conn, org, id).await?;
            if found.is_none() {
                v.error("contact_id", "no such contact");
            }
            found
        }
        None => None,
    };
    v.finish().map_err(ApiError::validation)?;

    // A new contact's address may be taken by a concurrent create between
    // the look-up and the write: the second try finds that contact.
    let mut retried = false;
    loop {
        let mut events = EventBatch::new(&principal);
        let (contact, is_new) = match (&given_contact, &input.contact) {
            (Some(contact), _) => (contact.clone(), false),
            (None, Some(c)) => {
                let email = c.email.trim();
                match contacts::find_by_email(&mut conn, org, email).await? {
                    Some(existing) => (existing, false),
                    None => {
                        let now = tickiti_domain::now();
                        let contact = contacts::Contact {
                            id: new_id(),
                            organization_id: org,
                            email: email.to_owned(),
                            name: c.name.as_deref().map(str::trim).map(str::to_owned),
                            company: None,
                            created_at: now,
                            updated_at: now,
                        };
                        events.push(
                            EventType::ContactCreated,
                            &super::contacts::ContactOut::from(contact.clone()),
                        )?;
                        (contact, true)
                    }
                }
            }
            (None, None) => return Err(ApiError::invalid_field("contact", "is required")),
        };
        let new = NewTicket {
            subject: input.subject.trim().to_owned(),
            priority: input.priority.unwrap_or(Priority::Normal),
            queue_id: input.queue_id,
            assignee_id: input.assignee_id,
            contact: &contact,
            tags: normalize_tags(tags),
            audit: json!({}),
        };
        let (ticket, clocks) = prepare_ticket(&mut conn, &principal, &new, &mut events).await?;
        let message = input.message.as_ref().map(|body| messages::Message {
            id: new_id(),
            organization_id: org,
            ticket_id: ticket.id,
            author_user_id: None,
            author_contact_id: Some(contact.id),
            visibility: Visibility::Public.as_str().to_owned(),
            body: body.clone(),
            created_at: ticket.created_at,
        });
        if let Some(message) = &message {
            events.extend(messages::events_of(message)?);
        }
        let mut opening = tickets::Opening {
            ticket: &ticket,
            new_contact: is_new.then_some(&contact),
            actor_user_id: Some(principal.user.id),
            audit: &new.audit,
            message: message.as_ref(),
            events: events.as_slice(),
            clocks: &clocks,
        };
        // Someone besides the creator may be told of it (its queue's
        // managers, its assignee): notifications are found against the
        // written ticket, so the opening and they share a transaction.
        // Otherwise the opening stays one statement.
        // Under an `Idempotency-Key` the opening joins the request's
        // transaction, so it commits with the stored answer.
        let notifies =
            ticket.queue_id.is_some() || ticket.assignee_id.is_some_and(|a| a != principal.user.id);
        let opened = if notifies || db.is_request_transaction() {
            opening.events = &[];
            let mut tx = db.begin().await?;
            let opened = tickets::open(&mut tx, &opening).await;
            if opened.is_ok() {
                events.append(&mut tx).await?;
                state.commit(tx).await?;
            }
            opened
        } else {
            let opened = tickets::open(&mut conn, &opening).await;
            if opened.is_ok() {
                state.events_written();
            }
            opened
        };
        match opened {
            Err(e) if !retried && is_new && e.is_conflict_on(contacts::EMAIL_KEY) => {
                retried = true;
                continue;
            }
            opened => opened?,
        }
        return Ok(with_etag(StatusCode::CREATED, TicketOut::from(ticket)));
    }
}

/// What opening a ticket takes (`POST /tickets`, `POST /intervention-tickets`).
pub struct NewTicket<'a> {
    /// Subject, trimmed.
    pub subject: String,
    /// Priority.
    pub priority: Priority,
    /// Queue (checked by the caller).
    pub queue_id: Option<Uuid>,
    /// Assignee (checked by the caller).
    pub assignee_id: Option<Uuid>,
    /// The contact, found or created.
    pub contact: &'a contacts::Contact,
    /// Tags, normalized.
    pub tags: Vec<String>,
    /// Detail of the `ticket.created` audit entry.
    pub audit: serde_json::Value,
}

/// Numbers a new ticket and builds its row, its service-level clocks and
/// its events (`ticket.created`, and `ticket.assigned` when assigned);
/// [`tickets::open`] writes them.
pub async fn prepare_ticket(
    conn: &mut PgConnection,
    principal: &Principal,
    new: &NewTicket<'_>,
    events: &mut EventBatch,
) -> ApiResult<(Ticket, Vec<MetricClock>)> {
    let org = principal.org();
    let (number, code_prefix) = organizations::next_ticket_number(conn, org)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let now = tickiti_domain::now();
    let mut ticket = Ticket {
        id: new_id(),
        organization_id: org,
        number,
        code: tickiti_domain::organization::ticket_code(&code_prefix, number),
        subject: new.subject.clone(),
        status: TicketStatus::New.as_str().to_owned(),
        priority: new.priority.as_str().to_owned(),
        queue_id: new.queue_id,
        assignee_id: new.assignee_id,
        contact_id: new.contact.id,
        contact_name: new.contact.name.clone(),
        contact_email: new.contact.email.clone(),
        tags: new.tags.clone(),
        version: 1,
        created_at: now,
        updated_at: now,
        sla: sqlx::types::Json(Vec::new()),
    };
    let clocks = sla_clocks::opening(conn, &ticket).await?;
    ticket.sla.0 = clocks.iter().map(sla_clocks::view).collect();
    let out = TicketOut::from(ticket.clone());
    events.push(EventType::TicketCreated, &out)?;
    if ticket.assignee_id.is_some() {
        events.push(EventType::TicketAssigned, &out)?;
    }
    Ok((ticket, clocks))
}

/// Read a ticket.
#[utoipa::path(get, path = "/tickets/{id}", tag = "tickets",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketOut, headers(("ETag" = String))), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn get_ticket(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    principal.require(Ability::TicketsRead)?;
    let mut conn = state.db.acquire().await?;
    let ticket = find_ticket(&mut conn, &principal, &id, false).await?;
    Ok(with_etag(StatusCode::OK, ticket.into()))
}

/// Change a ticket. With `If-Match`, a stale version answers 412 `TICKET_CHANGED`.
#[utoipa::path(patch, path = "/tickets/{id}", tag = "tickets", request_body = TicketPatch,
    params(("id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "The ETag last seen")),
    responses((status = 200, body = TicketOut), (status = 412, body = crate::http::error::Problem),
              (status = 404, body = crate::http::error::Problem), (status = 422, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn update_ticket(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<TicketPatch>,
) -> ApiResult<Response> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let mut v = Validation::new();
    if let Some(subject) = &patch.subject {
        v.text("subject", subject, 1, SUBJECT_MAX);
    }
    if let Some(tags) = &patch.tags {
        check_tags(tags, &mut v);
    }
    let mut tx = db.begin().await?;
    let before = find_ticket(&mut tx, &principal, &id, true).await?;
    check_if_match(&headers, &before)?;
    check_queue(&mut tx, org, patch.queue_id.flatten(), &mut v).await?;
    check_assignee(&mut tx, org, patch.assignee_id.flatten(), &mut v).await?;
    v.finish().map_err(ApiError::validation)?;

    let mut after = before.clone();
    if let Some(subject) = &patch.subject {
        after.subject = subject.trim().to_owned();
    }
    if let Some(status) = patch.status {
        after.status = status.as_str().to_owned();
    }
    if let Some(priority) = patch.priority {
        after.priority = priority.as_str().to_owned();
    }
    if let Some(queue_id) = patch.queue_id {
        after.queue_id = queue_id;
    }
    if let Some(assignee_id) = patch.assignee_id {
        after.assignee_id = assignee_id;
    }
    if let Some(tags) = &patch.tags {
        after.tags = normalize_tags(tags);
    }
    let changes = diff(&before, &after);
    if changes.is_empty() {
        tx.rollback().await?;
        return Ok(with_etag(StatusCode::OK, before.into()));
    }
    let mut saved = tickets::save(&mut tx, &after).await?;
    // Status, priority and queue move the service-level clocks.
    if (&before.status, &before.priority, before.queue_id)
        != (&saved.status, &saved.priority, saved.queue_id)
    {
        saved.sla.0 = sla_clocks::track(&mut tx, &saved, Happening::Changed).await?;
    }
    let out = TicketOut::from(saved.clone());
    audit::insert(
        &mut tx,
        org,
        saved.id,
        Some(principal.user.id),
        "ticket.updated",
        &serde_json::Value::Object(changes),
    )
    .await?;
    let mut events = EventBatch::new(&principal);
    events.push(EventType::TicketUpdated, &out)?;
    if before.assignee_id != saved.assignee_id && saved.assignee_id.is_some() {
        events.push(EventType::TicketAssigned, &out)?;
    }
    if before.status != saved.status {
        events.push(EventType::TicketStatusChanged, &out)?;
        if saved.status == TicketStatus::Closed.as_str() {
            events.push(EventType::TicketClosed, &out)?;
        }
    }
    events.append(&mut tx).await?;
    state.commit(tx).await?;
    Ok(with_etag(StatusCode::OK, out))
}

/// Field → `{"from", "to"}` for every editable field that differs.
fn diff(before: &Ticket, after: &Ticket) -> serde_json::Map<String, serde_json::Value> {
    let mut changes = serde_json::Map::new();
    let mut field = |name: &str, from: serde_json::Value, to: serde_json::Value| {
        if from != to {
            changes.insert(name.to_owned(), json!({ "from": from, "to": to }));
        }
    };
    field("subject", json!(before.subject), json!(after.subject));
    field("status", json!(before.status), json!(after.status));
    field("priority", json!(before.priority), json!(after.priority));
    field("queue_id", json!(before.queue_id), json!(after.queue_id));
    field(
        "assignee_id",
        json!(before.assignee_id),
        json!(after.assignee_id),
    );
    field("tags", json!(before.tags), json!(after.tags));
    changes
}

/// Delete a ticket with its messages, mentions and time entries (the audit trail stays).
#[utoipa::path(delete, path = "/tickets/{id}", tag = "tickets",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn delete_ticket(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let mut tx = db.begin().await?;
    let ticket = find_ticket(&mut tx, &principal, &id, true).await?;
    tickets::delete(&mut tx, org, ticket.id).await?;
    audit::insert(
        &mut tx,
        org,
        ticket.id,
        Some(principal.user.id),
        "ticket.deleted",
        &json!({}),
    )
    .await?;
    emit(
        &mut tx,
        &principal,
        EventType::TicketDeleted,
        &TicketOut::from(ticket),
    )
    .await?;
    state.commit(tx).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One entry of a ticket's audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditOut {
    /// Id.
    pub id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// Who did it.
    pub actor_user_id: Option<Uuid>,
    /// What happened, e.g. `ticket.updated`.
    pub action: String,
    /// Field → `{"from","to"}`, or other detail.
    pub changes: serde_json::Value,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// The ticket's audit trail, oldest first.
#[utoipa::path(get, path = "/tickets/{id}/audit", tag = "tickets",
    params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = ListOut<AuditOut>), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn list_ticket_audit(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<AuditOut>>> {
    principal.require(Ability::TicketsRead)?;
    let after = crate::http::extract::Cursor::after_id(query.cursor)?;
    let mut conn = state.db.acquire().await?;
    let ticket = find_ticket(&mut conn, &principal, &id, false).await?;
    let page = audit::list(&mut conn, principal.org(), ticket.id, after, query.limit).await?;
    Ok(axum::Json(ListOut::from_page(page, |a| AuditOut {
        id: a.id,
        ticket_id: a.ticket_id,
        actor_user_id: a.actor_user_id,
        action: a.action,
        changes: a.changes,
        created_at: a.created_at,
    })))
}
