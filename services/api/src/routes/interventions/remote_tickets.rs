//! `POST /intervention-tickets`: a remote system opens a ticket with an intervention.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tickiti_domain::intervention::{self, DATA_BAG_MAX, PayloadStatus, TemplateKind, UID_MAX};
use tickiti_domain::sla::Stage;
use tickiti_domain::ticket::SUBJECT_MAX;
use tickiti_domain::{Ability, EventType, Priority, Validation, Visibility, new_id};
use tickiti_store::interventions::{self as store, NewPayload};
use tickiti_store::messages::{Author, NewMessage};
use tickiti_store::{audit, contacts, messages, sla_clocks, tickets};
use utoipa::ToSchema;
use uuid::Uuid;

use super::NOT_FOUND;
use crate::events::EventBatch;
use crate::http::{ApiError, ApiResult, Db, Json, Principal};
use crate::routes::tickets::{NewTicket, prepare_ticket};
use crate::state::AppState;

/// The `data` member of an intervention ticket request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterventionDataIn {
    /// The data bag (at most 32 KiB as JSON).
    #[schema(value_type = Object)]
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// `POST /intervention-tickets` (seed 001 §2).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterventionTicketIn {
    /// The end user's address (the ticket's contact).
    #[schema(format = Email, max_length = 254)]
    pub originator_email_address: String,
    /// The intervention's name.
    pub intervention: String,
    /// The remote's unique id of this instance (unique per intervention).
    #[schema(min_length = 1, max_length = 255)]
    pub uid: String,
    /// `{"data": {...}}`.
    pub data: InterventionDataIn,
}

/// The answer to `POST /intervention-tickets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InterventionTicketOut {
    /// The new ticket.
    pub ticket_id: Uuid,
    /// Its per-organization number.
    pub ticket_number: i64,
    /// The intervention's name.
    pub intervention: String,
    /// The remote's id.
    pub uid: String,
    /// Always `pending` for a new ticket.
    pub status: PayloadStatus,
}

pub(super) fn data_bag_too_large(field: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "DATA_BAG_TOO_LARGE",
        format!("{field} is larger than {DATA_BAG_MAX} bytes of JSON"),
    )
}

/// Renders `source`; on failure a clear note instead (for the audit log) and the error.
fn render_or_note(
    kind: TemplateKind,
    source: &str,
    context: &serde_json::Value,
) -> (String, Option<String>) {
    match intervention::render(source, context) {
        Ok(text) => (text, None),
        Err(e) => {
            let note = format!("the {kind} template failed to render: {e}");
            (format!("[{note}]"), Some(note))
        }
    }
}

/// A remote system opens a ticket with an intervention (seed 001 §2).
/// `Idempotency-Key` is required.
#[utoipa::path(post, path = "/intervention-tickets", tag = "interventions", request_body = InterventionTicketIn,
    params(("Idempotency-Key" = String, Header, pattern = r"^[!-~]{1,255}$", description = "Required: a retried request with the same key and body gets the first answer (1 to 255 visible ASCII characters)")),
    responses((status = 201, body = InterventionTicketOut),
              (status = 400, description = "IDEMPOTENCY_KEY_REQUIRED", body = crate::http::error::Problem),
              (status = 409, description = "INTERVENTION_UID_EXISTS (with the existing `ticket_id`)", body = crate::http::error::Problem),
              (status = 413, description = "DATA_BAG_TOO_LARGE", body = crate::http::error::Problem),
              (status = 422, description = "VALIDATION_FAILED, UNKNOWN_INTERVENTION or INTERVENTION_DISABLED", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn create_intervention_ticket(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Json(input): Json<InterventionTicketIn>,
) -> ApiResult<(StatusCode, axum::Json<InterventionTicketOut>)> {
    principal.require(Ability::CreateTicket)?;
    let org = principal.org();
    let mut v = Validation::new();
    let email = input.originator_email_address.trim();
    v.email("originator_email_address", email);
    v.text("uid", &input.uid, 1, UID_MAX);
    v.text("intervention", &input.intervention, 1, 64);
    v.finish().map_err(ApiError::validation)?;
    let data = serde_json::Value::Object(input.data.data);
    if intervention::data_bag_size(&data) > DATA_BAG_MAX {
        return Err(data_bag_too_large("data.data"));
    }

    let mut tx = db.begin().await?;
    let def = store::get_by_name(&mut tx, org, &input.intervention)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "UNKNOWN_INTERVENTION",
                "no intervention has this name",
            )
        })?;
    if !def.enabled {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INTERVENTION_DISABLED",
            "this intervention is disabled and accepts no new tickets",
        ));
    }
    if let Some(ticket_id) = store::ticket_of_uid(&mut tx, def.id, &input.uid).await? {
        return Err(uid_exists(ticket_id));
    }
    let mut events = EventBatch::new(&principal);
    let (contact, created) = contacts::find_or_insert(&mut tx, org, email, None).await?;
    if created {
        events.push(
            EventType::ContactCreated,
            &crate::routes::contacts::ContactOut::from(contact.clone()),
        )?;
    }
    let subject: String = format!("{} ({})", def.title, input.uid)
        .chars()
        .take(SUBJECT_MAX)
        .collect();
    let new = NewTicket {
        subject,
        priority: Priority::Normal,
        queue_id: def.queue_id,
        assignee_id: None,
        contact: &contact,
        tags: Vec::new(),
        audit: json!({ "intervention": def.name, "uid": input.uid }),
    };
    let (ticket, clocks) = prepare_ticket(&mut tx, &principal, &new, &mut events).await?;
    // Its events go out with the rest of the batch below.
    tickets::open(
        &mut tx,
        &tickets::Opening {
            ticket: &ticket,
            new_contact: None,
            actor_user_id: Some(principal.user.id),
            audit: &new.audit,
            message: None,
            events: &[],
            clocks: &clocks,
        },
    )
    .await?;
    let now = ticket.created_at;
    let inserted = store::insert_payload(
        &mut tx,
        &NewPayload {
            organization_id: org,
            intervention_id: def.id,
            ticket_id: ticket.id,
            uid: &input.uid,
            originator_email: email,
            data: &data,
        },
    )
    .await;
    if let Err(e) = &inserted
        && e.is_conflict_on("intervention_payloads_uid_key")
    {
        // Another request with this uid committed first.
        tx.rollback().await?;
        let mut conn = state.db.acquire().await?;
        let ticket_id = store::ticket_of_uid(&mut conn, def.id, &input.uid).await?;
        return Err(uid_exists(ticket_id.unwrap_or_default()));
    }
    inserted?;
    if def.fma_inbox_managers && ticket.queue_id.is_some() {
        // Seed 001's "for manager attention": raised to the queue's
        // managers at once, as an escalation of its own stage.
        let escalation = sla_clocks::Escalation {
            id: new_id(),
            organization_id: org,
            ticket_id: ticket.id,
            metric: "intervention".to_owned(),
            cycle: 1,
            stage: Stage::ManagerAttention,
            policy_id: None,
            due_at: None,
            fired_at: now,
        };
        if sla_clocks::record_escalation(&mut tx, &escalation).await? {
            events.extend(sla_clocks::escalation_events(&mut tx, &escalation).await?);
        }
    }
    let payload = store::payload_for_ticket(&mut tx, org, ticket.id, false)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "intervention"))?;
    let context = store::template_context(&ticket, &def, &payload, &data, None);
    let (body, failed) = render_or_note(TemplateKind::Private, &def.template_private, &context);
    if let Some(note) = failed {
        audit::insert(
            &mut tx,
            org,
            ticket.id,
            None,
            "intervention.template_failed",
            &json!({ "template": "private", "error": note }),
        )
        .await?;
    }
    // Its internal note, written by whoever opened it (the remote's token).
    let posted = messages::post(
        &mut tx,
        &ticket,
        NewMessage {
            author: Author::Staff(principal.user.id),
            visibility: Visibility::Internal,
            body,
        },
    )
    .await?;
    events.extend(posted.events);
    events.push(EventType::InterventionCreated, &payload)?;
    events.append(&mut tx).await?;
    state.commit(tx).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(InterventionTicketOut {
            ticket_id: ticket.id,
            ticket_number: ticket.number,
            intervention: def.name,
            uid: input.uid,
            status: PayloadStatus::Pending,
        }),
    ))
}

fn uid_exists(ticket_id: Uuid) -> ApiError {
    ApiError::conflict(
        "INTERVENTION_UID_EXISTS",
        "a ticket with this uid exists for this intervention",
    )
    .with_member("ticket_id", json!(ticket_id))
}
