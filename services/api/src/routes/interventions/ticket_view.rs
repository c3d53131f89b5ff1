//! A ticket's intervention: the view with every epilog attempt, and the staff submit.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tickiti_domain::intervention::{self, DATA_BAG_MAX, FieldType, PayloadStatus};
use tickiti_domain::{Ability, EventType, Validation, Visibility};
use tickiti_store::interventions::{self as store, Intervention, Payload};
use tickiti_store::messages::{Author, NewMessage};
use tickiti_store::tickets::Ticket;
use tickiti_store::{audit, messages};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::definitions::stored_fields;
use super::remote_tickets::data_bag_too_large;
use super::{MESSAGE_MAX, NOT_FOUND};
use crate::events::EventBatch;
use crate::http::{ApiError, ApiResult, Db, Json, Principal};
use crate::routes::tickets::{etag, find_ticket};
use crate::state::AppState;

/// A UI field as a ticket shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldOut {
    /// `text`, `checkbox`, `label` or `hr`.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// Key in the data bag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Caption as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// For `label`: the text with its `{{ data.KEY }}` / `{{ ticket.FIELD }}` tokens resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For `text` and `checkbox`: the value in the data bag.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub value: Option<serde_json::Value>,
}

/// An epilog call (one per submit that reached an enabled remote).
#[derive(Debug, Serialize, ToSchema)]
pub struct EpilogOut {
    /// Id; also the `Idempotency-Key` of each of its requests.
    pub id: Uuid,
    /// The staff response it reports.
    pub response_id: Uuid,
    /// `pending`, `retrying`, `succeeded` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempt: i32,
    /// When the next attempt is due (while `pending` or `retrying`).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: OffsetDateTime,
    /// The last attempt's problem.
    pub last_error: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<store::Epilog> for EpilogOut {
    fn from(e: store::Epilog) -> Self {
        EpilogOut {
            id: e.id,
            response_id: e.response_id,
            status: e.status,
            attempt: e.attempt,
            next_attempt_at: e.next_attempt_at,
            last_error: e.last_error,
            created_at: e.created_at,
        }
    }
}

/// One attempt of an epilog call, as logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct EpilogAttemptOut {
    /// Id.
    pub id: Uuid,
    /// The call.
    pub epilog_id: Uuid,
    /// 1-based attempt number within the call.
    pub attempt: i32,
    /// `ok`, `final_applied`, `final_already_applied`, `final_rejected`, `retry` or `gave_up`.
    pub outcome: String,
    /// HTTP status, when an answer came.
    pub response_code: Option<i32>,
    /// Duration of the request.
    pub response_time_ms: Option<i32>,
    /// Up to 4 KiB of the answer.
    pub response_body: Option<String>,
    /// What went wrong, or why it is retried.
    pub error: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<store::Attempt> for EpilogAttemptOut {
    fn from(a: store::Attempt) -> Self {
        EpilogAttemptOut {
            id: a.id,
            epilog_id: a.epilog_id,
            attempt: a.attempt,
            outcome: a.outcome,
            response_code: a.response_code,
            response_time_ms: a.response_time_ms,
            response_body: a.response_body,
            error: a.error,
            created_at: a.created_at,
        }
    }
}

/// A ticket's intervention: payload, status, fields and every epilog attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct TicketInterventionOut {
    /// Payload id.
    pub id: Uuid,
    /// The intervention's name.
    pub intervention: String,
    /// Its title.
    pub title: String,
    /// Ticket.
    pub ticket_id: Uuid,
    /// The remote's id.
    pub uid: String,
    /// The originator.
    pub originator_email_address: String,
    /// `pending`, `submitted` or `accepted`.
    pub status: PayloadStatus,
    /// The data bag.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// The staff response of the last submit.
    pub response_id: Option<Uuid>,
    /// The remote's final object, once applied.
    #[serde(rename = "final")]
    #[schema(value_type = Option<Object>)]
    pub final_object: Option<serde_json::Value>,
    /// UI fields, labels resolved.
    pub fields: Vec<FieldOut>,
    /// Epilog calls (one per submit), oldest first.
    pub epilogs: Vec<EpilogOut>,
    /// Every attempt of every epilog call, oldest first.
    pub epilog_attempts: Vec<EpilogAttemptOut>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last submit.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub submitted_at: Option<OffsetDateTime>,
    /// When the final object was applied.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<OffsetDateTime>,
}

async fn load_view(
    conn: &mut sqlx::PgConnection,
    ticket: &Ticket,
    def: &Intervention,
    payload: Payload,
) -> ApiResult<TicketInterventionOut> {
    let context = store::template_context(ticket, def, &payload, &payload.data, None);
    let fields = stored_fields(&def.fields)
        .into_iter()
        .map(|f| FieldOut {
            text: (f.kind == FieldType::Label)
                .then(|| {
                    f.label
                        .as_deref()
                        .map(|l| intervention::resolve_label(l, &context))
                })
                .flatten(),
            value: f.key.as_ref().and_then(|k| payload.data.get(k).cloned()),
            kind: f.kind,
            key: f.key,
            label: f.label,
        })
        .collect();
    let epilogs = store::epilogs_of(conn, payload.id).await?;
    let epilogs = epilogs.into_iter().map(EpilogOut::from).collect();
    let epilog_attempts = store::attempts_of(conn, payload.id).await?;
    let epilog_attempts = epilog_attempts
        .into_iter()
        .map(EpilogAttemptOut::from)
        .collect();
    Ok(TicketInterventionOut {
        id: payload.id,
        intervention: payload.intervention,
        title: def.title.clone(),
        ticket_id: payload.ticket_id,
        uid: payload.uid,
        originator_email_address: payload.originator_email_address,
        status: payload.status.parse().unwrap_or(PayloadStatus::Pending),
        data: payload.data,
        response_id: payload.response_id,
        final_object: payload.final_object,
        fields,
        epilogs,
        epilog_attempts,
        created_at: payload.created_at,
        submitted_at: payload.submitted_at,
        accepted_at: payload.accepted_at,
    })
}

async fn find_payload(
    conn: &mut sqlx::PgConnection,
    org: Uuid,
    ticket_id: Uuid,
    lock: bool,
) -> ApiResult<(Payload, Intervention)> {
    let payload = store::payload_for_ticket(conn, org, ticket_id, lock)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention of this ticket"))?;
    let def = store::get(conn, org, payload.intervention_id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))?;
    Ok((payload, def))
}

/// The ticket's intervention: payload, status, resolved fields, epilog calls and attempts.
#[utoipa::path(get, path = "/tickets/{id}/intervention", tag = "interventions", params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketInterventionOut, headers(("ETag" = String, description = "The ticket's new ETag (the response is a message)"))),
              (status = 404, description = "TICKET_NOT_FOUND or INTERVENTION_NOT_FOUND", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn get_ticket_intervention(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TicketInterventionOut>> {
    principal.require(Ability::TicketsRead)?;
    // One snapshot: the payload's status and the attempt log agree even while
    // the dispatcher commits an attempt.
    let mut tx = state
        .db
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    let ticket = find_ticket(&mut tx, &principal, &id, false).await?;
    let (payload, def) = find_payload(&mut tx, principal.org(), ticket.id, false).await?;
    let view = load_view(&mut tx, &ticket, &def, payload).await?;
    tx.commit().await?;
    Ok(axum::Json(view))
}

/// A staff submit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitIn {
    /// The edited data bag (replaces the stored one; at most 32 KiB as JSON).
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
    /// The response text; required unless the intervention has a `public`
    /// template (which sees it as `message`).
    pub message: Option<String>,
}

/// Staff submit: stores the data bag, posts the response (the `public`
/// template, else `message`), emits `intervention.submitted` and queues the
/// epilog call (when the remote is enabled).
#[utoipa::path(post, path = "/tickets/{id}/intervention/submit", tag = "interventions", request_body = SubmitIn,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = TicketInterventionOut, headers(("ETag" = String, description = "The ticket's new ETag (the response is a message)"))),
              (status = 404, description = "TICKET_NOT_FOUND or INTERVENTION_NOT_FOUND", body = crate::http::error::Problem),
              (status = 409, description = "INTERVENTION_ACCEPTED", body = crate::http::error::Problem),
              (status = 413, description = "DATA_BAG_TOO_LARGE", body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED or TEMPLATE_RENDER_FAILED", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all, fields(ticket.id = %id))]
pub async fn submit_ticket_intervention(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(input): Json<SubmitIn>,
) -> ApiResult<Response> {
    principal.require(Ability::TicketsWrite)?;
    let org = principal.org();
    let data = serde_json::Value::Object(input.data);
    if intervention::data_bag_size(&data) > DATA_BAG_MAX {
        return Err(data_bag_too_large("data"));
    }
    let mut v = Validation::new();
    if let Some(message) = &input.message {
        v.text("message", message, 1, MESSAGE_MAX);
    }
    v.finish().map_err(ApiError::validation)?;

    let mut tx = db.begin().await?;
    let ticket = find_ticket(&mut tx, &principal, &id, true).await?;
    let (payload, def) = find_payload(&mut tx, org, ticket.id, true).await?;
    if payload.status == PayloadStatus::Accepted.as_str() {
        return Err(ApiError::conflict(
            "INTERVENTION_ACCEPTED",
            "the remote already accepted this intervention; it cannot be submitted again",
        ));
    }
    let body = match (&def.template_public, &input.message) {
        (Some(source), message) => {
            let mut extra = serde_json::Map::new();
            extra.insert("message".into(), json!(message));
            let context = store::template_context(&ticket, &def, &payload, &data, Some(&extra));
            intervention::render(source, &context).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "TEMPLATE_RENDER_FAILED",
                    format!("the public template failed to render: {e}"),
                )
            })?
        }
        (None, Some(message)) => message.clone(),
        (None, None) => {
            return Err(ApiError::invalid_field(
                "message",
                "is required: this intervention has no public template",
            ));
        }
    };
    if body.trim().is_empty() {
        return Err(ApiError::invalid_field("message", "the response is empty"));
    }
    let posted = messages::post(
        &mut tx,
        &ticket,
        NewMessage {
            author: Author::Staff(principal.user.id),
            visibility: Visibility::Public,
            body,
        },
    )
    .await?;
    let message = &posted.message;
    store::submit(&mut tx, payload.id, &data, message.id).await?;
    // Calls for an earlier response stop: the remote hears about the latest.
    store::supersede_epilogs(&mut tx, payload.id).await?;
    let epilog_id = if def.remote_enabled && def.remote_epilog_url.is_some() {
        let epilog_id = store::insert_epilog(&mut tx, org, payload.id, message.id, &data).await?;
        store::request_epilog(&mut tx, org, epilog_id).await?;
        Some(epilog_id)
    } else {
        None
    };
    audit::insert(
        &mut tx,
        org,
        ticket.id,
        Some(principal.user.id),
        "intervention.submitted",
        &json!({ "response_id": message.id, "epilog_id": epilog_id }),
    )
    .await?;
    let (payload, def) = find_payload(&mut tx, org, ticket.id, false).await?;
    let mut events = EventBatch::new(&principal);
    events.extend(posted.events);
    events.push(EventType::InterventionSubmitted, &payload)?;
    events.append(&mut tx).await?;
    let view = load_view(&mut tx, &ticket, &def, payload).await?;
    state.commit(tx).await?;
    Ok(([(header::ETAG, etag(posted.version))], axum::Json(view)).into_response())
}
