//! Deliveries: one per endpoint and event, created by the fan-out or by a person (test, resend, recover).

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// A delivery row.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Id (stable across retries).
    pub id: Uuid,
    /// Endpoint.
    pub endpoint_id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// The event's id.
    pub event_id: Uuid,
    /// The event's type (its envelope is in `webhook_events`; only a sender
    /// needs it, see [`claim_attempt`]).
    pub event_type: String,
    /// `pending`, `success`, `retrying` or `failed`.
    pub status: String,
    /// Attempts started.
    pub attempt: i32,
    /// Asked for by a person (one attempt).
    pub manual: bool,
    /// When the next attempt is due.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Last attempt's HTTP status.
    pub response_code: Option<i32>,
    /// Last attempt's duration.
    pub response_time_ms: Option<i32>,
    /// Last attempt's error.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: OffsetDateTime,
}

/// Deletes a delivery and its attempts (its endpoint is gone).
pub async fn delete_delivery(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    sqlx::query!(
        "WITH gone AS (DELETE FROM webhook_deliveries WHERE id = $1 RETURNING id)
         DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM gone)",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deliveries to create waiting for their work message, as parallel arrays.
#[derive(Debug, Default)]
pub struct DeliveryColumns {
    /// Ids (see `tickiti_domain::webhook::delivery_id`).
    pub ids: Vec<Uuid>,
    /// Their endpoints.
    pub endpoint_ids: Vec<Uuid>,
    /// Their organizations.
    pub organization_ids: Vec<Uuid>,
    /// Their events.
    pub event_ids: Vec<Uuid>,
    /// Their events' types.
    pub event_types: Vec<String>,
}

impl DeliveryColumns {
    /// Adds one delivery.
    pub fn push(
        &mut self,
        id: Uuid,
        endpoint_id: Uuid,
        organization_id: Uuid,
        event_id: Uuid,
        event_type: &str,
    ) {
        self.ids.push(id);
        self.endpoint_ids.push(endpoint_id);
        self.organization_ids.push(organization_id);
        self.event_ids.push(event_id);
        self.event_types.push(event_type.to_owned());
    }
}

/// Which of these deliveries exist (the sweeper's check of a fan-out: a
/// primary-key probe each, cheaper than trying to insert them all).
pub async fn existing_deliveries(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let found = sqlx::query_scalar!("SELECT id FROM webhook_deliveries WHERE id = ANY($1)", ids)
        .fetch_all(conn)
        .await?;
    Ok(found)
}

/// Creates deliveries whose first attempt goes through the work queue (a
/// first attempt handed over, or one the sweeper found missing), unqueued;
/// a delivery that exists already is skipped. Returns the ids created: the
/// caller queues them once this is committed (a worker must find the row).
pub async fn insert_pending(conn: &mut PgConnection, rows: &DeliveryColumns) -> Result<Vec<Uuid>> {
    if rows.ids.is_empty() {
        return Ok(Vec::new());
    }
    let created = sqlx::query_scalar!(
        "INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type, next_attempt_at)
         SELECT d.*, now() FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[]) AS d
         ON CONFLICT DO NOTHING
         RETURNING id",
        &rows.ids,
        &rows.endpoint_ids,
        &rows.organization_ids,
        &rows.event_ids,
        &rows.event_types
    )
    .fetch_all(conn)
    .await?;
    Ok(created)
}

/// Creates a delivery a person asked for (`test.ping`): one attempt, now.
pub async fn insert_manual(
    conn: &mut PgConnection,
    organization_id: Uuid,
    endpoint_id: Uuid,
    event_id: Uuid,
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<Delivery> {
    let row = sqlx::query_as!(
        Delivery,
        r#"WITH stored AS (
             INSERT INTO webhook_events (id, organization_id, payload) VALUES ($4, $3, $6)
           )
         INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type, manual, next_attempt_at)
         VALUES ($1, $2, $3, $4, $5, true, now())
         RETURNING id, endpoint_id, organization_id, event_id, event_type, status, attempt, manual,
             next_attempt_at, response_code, response_time_ms, error, created_at"#,
        tickiti_domain::webhook::delivery_id(event_id, endpoint_id),
        endpoint_id,
        organization_id,
        event_id,
        event_type,
        payload
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// A delivery of the endpoint (of the organization).
pub async fn get_delivery(
    conn: &mut PgConnection,
    organization_id: Uuid,
    endpoint_id: Uuid,
    id: Uuid,
) -> Result<Option<Delivery>> {
    let row = sqlx::query_as!(
        Delivery,
        "SELECT id, endpoint_id, organization_id, event_id, event_type, status, attempt, manual,
             next_attempt_at, response_code, response_time_ms, error, created_at
         FROM webhook_deliveries WHERE organization_id = $1 AND endpoint_id = $2 AND id = $3",
        organization_id,
        endpoint_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of the endpoint's deliveries, newest first.
pub async fn list_deliveries(
    conn: &mut PgConnection,
    organization_id: Uuid,
    endpoint_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Page<Delivery>> {
    let rows = sqlx::query_as!(
        Delivery,
        "SELECT id, endpoint_id, organization_id, event_id, event_type, status, attempt, manual,
             next_attempt_at, response_code, response_time_ms, error, created_at
         FROM webhook_deliveries
         WHERE organization_id = $1 AND endpoint_id = $2 AND ($3::uuid IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4",
        organization_id,
        endpoint_id,
        before,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |d| d.id))
}

/// Makes a delivery due again now for one attempt, whatever its state (resend).
pub async fn resend(
    conn: &mut PgConnection,
    organization_id: Uuid,
    endpoint_id: Uuid,
    id: Uuid,
) -> Result<Option<Delivery>> {
    let row = sqlx::query_as!(
        Delivery,
        "UPDATE webhook_deliveries SET status = 'pending', manual = true, queued_at = NULL,
             locked_until = NULL, next_attempt_at = now(), updated_at = now()
         WHERE organization_id = $1 AND endpoint_id = $2 AND id = $3
         RETURNING id, endpoint_id, organization_id, event_id, event_type, status, attempt, manual,
             next_attempt_at, response_code, response_time_ms, error, created_at",
        organization_id,
        endpoint_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Makes every failed delivery of the endpoint created since `since` due again (recover); their ids.
pub async fn recover(
    conn: &mut PgConnection,
    organization_id: Uuid,
    endpoint_id: Uuid,
    since: OffsetDateTime,
) -> Result<Vec<Uuid>> {
    let ids = sqlx::query_scalar!(
        "UPDATE webhook_deliveries SET status = 'pending', manual = true, queued_at = NULL,
             locked_until = NULL, next_attempt_at = now(), updated_at = now()
         WHERE organization_id = $1 AND endpoint_id = $2 AND status = 'failed' AND created_at >= $3
         RETURNING id",
        organization_id,
        endpoint_id,
        since
    )
    .fetch_all(conn)
    .await?;
    Ok(ids)
}

/// Routing key of the command that asks the dispatcher to queue deliveries.
pub const DISPATCH_COMMAND: &str = "command.webhook.dispatch";

/// Writes a command to the outbox (same transaction as the delivery rows)
/// asking the dispatcher to queue these deliveries now. The relay publishes
/// it with publisher confirms like any event.
pub async fn request_dispatch(
    conn: &mut PgConnection,
    organization_id: Uuid,
    delivery_ids: &[Uuid],
) -> Result<()> {
    let mut fields = serde_json::Map::new();
    fields.insert("delivery_ids".into(), serde_json::json!(delivery_ids));
    crate::outbox::append_command(conn, organization_id, DISPATCH_COMMAND, fields).await
}
