//! An endpoint's delivery log, and the deliveries a person asks for: `test`, `resend`, `recover`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tickiti_domain::webhook::DeliveryStatus;
use tickiti_domain::{Ability, EventEnvelope, EventType};
use tickiti_store::webhooks::{self, Delivery};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DELIVERY_NOT_FOUND, find_endpoint, refuse_disabled};
use crate::http::extract::{Cursor, NoFilter, PageParams, parse_id};
use crate::http::{ApiError, ApiResult, Db, Json, ListOut, ListQuery, Principal};
use crate::state::AppState;

/// A delivery as the log shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// Id: the `X-Tickiti-Delivery` header, stable across retries.
    pub id: Uuid,
    /// The endpoint.
    pub webhook_id: Uuid,
    /// Event type.
    pub event: String,
    /// The event's id.
    pub event_id: Uuid,
    /// `pending`, `success`, `retrying` or `failed`.
    #[schema(value_type = String)]
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt: i32,
    /// Last attempt's HTTP status.
    pub response_code: Option<i32>,
    /// Last attempt's duration.
    pub response_time_ms: Option<i32>,
    /// Last attempt's error.
    pub error: Option<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When the next attempt is due (`null` when none is).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        let status = d.status.parse().unwrap_or(DeliveryStatus::Pending);
        let waiting = matches!(status, DeliveryStatus::Pending | DeliveryStatus::Retrying);
        DeliveryOut {
            id: d.id,
            webhook_id: d.endpoint_id,
            event: d.event_type,
            event_id: d.event_id,
            status,
            attempt: d.attempt,
            response_code: d.response_code,
            response_time_ms: d.response_time_ms,
            error: d.error,
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at.filter(|_| waiting),
        }
    }
}

/// `POST /webhooks/{id}/recover`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// Resend every failed delivery created since then (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
}

/// What `recover` queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoverOut {
    /// How many failed deliveries are sent again.
    pub recovered: usize,
    /// Their ids.
    pub delivery_ids: Vec<Uuid>,
}

/// Send `test.ping` to the endpoint now; answers with the (pending) delivery.
#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks", params(("id" = Uuid, Path)),
    responses((status = 202, body = DeliveryOut), (status = 404, body = crate::http::error::Problem),
              (status = 409, description = "WEBHOOK_DISABLED", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn test_webhook(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryOut>)> {
    principal.require(Ability::WebhooksManage)?;
    let endpoint = find_endpoint(&state, principal.org(), &id).await?;
    refuse_disabled(&endpoint)?;
    let envelope = EventEnvelope::new(
        EventType::TestPing,
        principal.org(),
        serde_json::json!({
            "webhook_id": endpoint.id,
            "message": "This is a test delivery from Tickiti.",
        }),
    );
    let payload = serde_json::to_value(&envelope).map_err(|e| ApiError::internal(&e))?;
    let mut tx = db.begin().await?;
    let delivery = webhooks::insert_manual(
        &mut tx,
        principal.org(),
        endpoint.id,
        envelope.id,
        EventType::TestPing.as_str(),
        &payload,
    )
    .await?;
    webhooks::request_dispatch(&mut tx, principal.org(), &[delivery.id]).await?;
    state.commit(tx).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery.into())))
}

/// The endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = ListOut<DeliveryOut>), (status = 404, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn list_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    query: ListQuery<NoFilter>,
) -> ApiResult<axum::Json<ListOut<DeliveryOut>>> {
    principal.require(Ability::WebhooksManage)?;
    let before = Cursor::after_id(query.cursor)?;
    let endpoint = find_endpoint(&state, principal.org(), &id).await?;
    let mut conn = state.db.acquire().await?;
    let page =
        webhooks::list_deliveries(&mut conn, principal.org(), endpoint.id, before, query.limit)
            .await?;
    Ok(axum::Json(ListOut::from_page(page, DeliveryOut::from)))
}

/// Make a new attempt of a delivery now, whatever its state.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/resend", tag = "webhooks",
    params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses((status = 202, body = DeliveryOut), (status = 404, body = crate::http::error::Problem),
              (status = 409, description = "WEBHOOK_DISABLED", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn resend_delivery(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path((id, delivery_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, axum::Json<DeliveryOut>)> {
    principal.require(Ability::WebhooksManage)?;
    let endpoint = find_endpoint(&state, principal.org(), &id).await?;
    let delivery_id = parse_id(&delivery_id, DELIVERY_NOT_FOUND, "delivery")?;
    refuse_disabled(&endpoint)?;
    let mut tx = db.begin().await?;
    let delivery = webhooks::resend(&mut tx, principal.org(), endpoint.id, delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found(DELIVERY_NOT_FOUND, "delivery"))?;
    webhooks::request_dispatch(&mut tx, principal.org(), &[delivery.id]).await?;
    state.commit(tx).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(delivery.into())))
}

/// Resend every failed delivery of the endpoint created since `since`.
#[utoipa::path(post, path = "/webhooks/{id}/recover", tag = "webhooks", request_body = RecoverIn, params(("id" = Uuid, Path)),
    responses((status = 202, body = RecoverOut), (status = 404, body = crate::http::error::Problem),
              (status = 409, description = "WEBHOOK_DISABLED", body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn recover_webhook(
    State(state): State<AppState>,
    db: Db,
    principal: Principal,
    Path(id): Path<String>,
    Json(input): Json<RecoverIn>,
) -> ApiResult<(StatusCode, axum::Json<RecoverOut>)> {
    principal.require(Ability::WebhooksManage)?;
    let endpoint = find_endpoint(&state, principal.org(), &id).await?;
    refuse_disabled(&endpoint)?;
    let mut tx = db.begin().await?;
    let ids = webhooks::recover(&mut tx, principal.org(), endpoint.id, input.since).await?;
    // One command per chunk keeps each message small.
    for chunk in ids.chunks(500) {
        webhooks::request_dispatch(&mut tx, principal.org(), chunk).await?;
    }
    state.commit(tx).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(RecoverOut {
            recovered: ids.len(),
            delivery_ids: ids,
        }),
    ))
}
