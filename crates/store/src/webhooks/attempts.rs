//! Attempts: claimed by number, finished in batches, listed for the delivery log.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::Delivery;
use crate::Result;

/// Takes attempt `attempt` of a delivery for `lease_ms`; the delivery and
/// its event's envelope, to send. `None` when that attempt is not due
/// (already made, finished, or another worker holds it): the work message
/// is a duplicate. A redelivered message may take over an attempt whose
/// worker vanished (its channel closed without an ack).
pub async fn claim_attempt(
    conn: &mut PgConnection,
    id: Uuid,
    attempt: i32,
    redelivered: bool,
    lease_ms: i64,
) -> Result<Option<(Delivery, serde_json::Value)>> {
    let row = sqlx::query!(
        r#"UPDATE webhook_deliveries d
         SET attempt = $2, locked_until = now() + make_interval(secs => $4::bigint / 1000.0), updated_at = now()
         FROM webhook_events e
         WHERE d.id = $1 AND e.id = d.event_id AND d.status IN ('pending', 'retrying')
           AND ((d.attempt = $2 - 1 AND d.locked_until IS NULL)
                OR (d.attempt = $2 AND d.locked_until IS NOT NULL AND ($3 OR d.locked_until < now())))
         RETURNING d.id, d.endpoint_id, d.organization_id, d.event_id, d.event_type, e.payload AS "payload!",
             d.status, d.attempt, d.manual, d.next_attempt_at, d.response_code, d.response_time_ms,
             d.error, d.created_at"#,
        id,
        attempt,
        redelivered,
        lease_ms
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| {
        let delivery = Delivery {
            id: r.id,
            endpoint_id: r.endpoint_id,
            organization_id: r.organization_id,
            event_id: r.event_id,
            event_type: r.event_type,
            status: r.status,
            attempt: r.attempt,
            manual: r.manual,
            next_attempt_at: r.next_attempt_at,
            response_code: r.response_code,
            response_time_ms: r.response_time_ms,
            error: r.error,
            created_at: r.created_at,
        };
        (delivery, r.payload)
    }))
}

/// A delivery a first attempt writes (see [`finish_attempts`]).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Its endpoint.
    pub endpoint_id: Uuid,
    /// Its organization.
    pub organization_id: Uuid,
    /// Its event.
    pub event_id: Uuid,
    /// Its event's type.
    pub event_type: String,
}

impl From<&Delivery> for NewDelivery {
    fn from(delivery: &Delivery) -> Self {
        Self {
            endpoint_id: delivery.endpoint_id,
            organization_id: delivery.organization_id,
            event_id: delivery.event_id,
            event_type: delivery.event_type.clone(),
        }
    }
}

/// What one attempt got, and the delivery's state after it.
#[derive(Debug, Clone)]
pub struct FinishedAttempt {
    /// Delivery.
    pub delivery_id: Uuid,
    /// The attempt's number.
    pub attempt: i32,
    /// Set for a first attempt sent straight from the fan-out: its
    /// delivery row does not exist yet and is created with this attempt.
    pub new_delivery: Option<NewDelivery>,
    /// The delivery's new status: `success`, `retrying` or `failed`.
    pub status: String,
    /// When `retrying`: when the next attempt is due.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// HTTP status, when an answer came.
    pub response_code: Option<i32>,
    /// Time to the answer (or the failure).
    pub response_time_ms: i32,
    /// Up to 4 KiB of the answer's body.
    pub response_body: Option<String>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

/// Records attempts (one `webhook_attempts` row each) and their deliveries'
/// new states in one statement: a first attempt from the fan-out creates
/// its delivery row in that state, any other updates it and releases its
/// claim. A `retrying` delivery is left unqueued: the caller queues its next
/// attempt. Returns the ids of the deliveries written; not written are a
/// delivery whose attempt number moved on, one that was deleted, and a new
/// one whose row exists already (the sweeper made it after the first
/// attempt's lease ran out), though the attempt is logged all the same.
pub async fn finish_attempts(
    conn: &mut PgConnection,
    finished: &[&FinishedAttempt],
) -> Result<Vec<Uuid>> {
    if finished.is_empty() {
        return Ok(Vec::new());
    }
    let attempt_ids: Vec<Uuid> = finished.iter().map(|_| tickiti_domain::new_id()).collect();
    let delivery_ids: Vec<Uuid> = finished.iter().map(|f| f.delivery_id).collect();
    let attempts: Vec<i32> = finished.iter().map(|f| f.attempt).collect();
    let statuses: Vec<String> = finished.iter().map(|f| f.status.clone()).collect();
    let next: Vec<Option<OffsetDateTime>> = finished.iter().map(|f| f.next_attempt_at).collect();
    let codes: Vec<Option<i32>> = finished.iter().map(|f| f.response_code).collect();
    let times: Vec<i32> = finished.iter().map(|f| f.response_time_ms).collect();
    let bodies: Vec<Option<String>> = finished.iter().map(|f| f.response_body.clone()).collect();
    let errors: Vec<Option<String>> = finished.iter().map(|f| f.error.clone()).collect();
    // A new delivery's columns; None for attempts of existing ones.
    fn new_column<T>(
        finished: &[&FinishedAttempt],
        field: impl Fn(&NewDelivery) -> T,
    ) -> Vec<Option<T>> {
        finished
            .iter()
            .map(|f| f.new_delivery.as_ref().map(&field))
            .collect()
    }
    let endpoint_ids = new_column(finished, |n| n.endpoint_id);
    let organization_ids = new_column(finished, |n| n.organization_id);
    let event_ids = new_column(finished, |n| n.event_id);
    let event_types = new_column(finished, |n| n.event_type.clone());
    let written = sqlx::query_scalar!(
        r#"WITH input AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::text[], $5::timestamptz[],
                 $6::int[], $7::int[], $8::text[], $9::text[], $10::uuid[], $11::uuid[], $12::uuid[],
                 $13::text[])
             AS i(attempt_id, delivery_id, attempt, status, next_attempt_at, response_code,
                 response_time_ms, response_body, error, endpoint_id, organization_id, event_id,
                 event_type)
           ), created AS (
             INSERT INTO webhook_deliveries (id, endpoint_id, organization_id, event_id, event_type,
                 status, attempt, next_attempt_at, response_code, response_time_ms, error)
             SELECT i.delivery_id, i.endpoint_id, i.organization_id, i.event_id, i.event_type,
                 i.status, i.attempt, i.next_attempt_at, i.response_code, i.response_time_ms, i.error
             FROM input i
             WHERE i.event_id IS NOT NULL
               AND EXISTS (SELECT 1 FROM webhook_endpoints ep WHERE ep.id = i.endpoint_id)
             ON CONFLICT DO NOTHING
             RETURNING id
           ), updated AS (
             UPDATE webhook_deliveries d SET status = i.status, next_attempt_at = i.next_attempt_at,
                 locked_until = NULL, queued_at = NULL, response_code = i.response_code,
                 response_time_ms = i.response_time_ms, error = i.error, updated_at = now()
             FROM input i
             WHERE i.event_id IS NULL AND d.id = i.delivery_id AND d.attempt = i.attempt
             RETURNING d.id
           ), logged AS (
             INSERT INTO webhook_attempts (id, delivery_id, attempt, response_code, response_time_ms, response_body, error)
             SELECT i.attempt_id, i.delivery_id, i.attempt, i.response_code, i.response_time_ms, i.response_body, i.error
             FROM input i WHERE i.delivery_id IN (SELECT id FROM created)
             UNION ALL
             SELECT i.attempt_id, i.delivery_id, i.attempt, i.response_code, i.response_time_ms, i.response_body, i.error
             FROM input i JOIN webhook_deliveries d ON d.id = i.delivery_id
             WHERE i.delivery_id NOT IN (SELECT id FROM created)
           )
         SELECT id AS "id!" FROM created UNION ALL SELECT id FROM updated"#,
        &attempt_ids,
        &delivery_ids,
        &attempts,
        &statuses,
        &next as &[Option<OffsetDateTime>],
        &codes as &[Option<i32>],
        &times,
        &bodies as &[Option<String>],
        &errors as &[Option<String>],
        &endpoint_ids as &[Option<Uuid>],
        &organization_ids as &[Option<Uuid>],
        &event_ids as &[Option<Uuid>],
        &event_types as &[Option<String>]
    )
    .fetch_all(conn)
    .await?;
    Ok(written)
}

/// Ends a delivery without an attempt (its endpoint is gone, disabled or failed).
pub async fn abandon(conn: &mut PgConnection, id: Uuid, attempt: i32, reason: &str) -> Result<()> {
    sqlx::query!(
        "UPDATE webhook_deliveries SET status = 'failed', locked_until = NULL, attempt = $2 - 1,
             next_attempt_at = NULL, error = $3, updated_at = now()
         WHERE id = $1 AND attempt = $2",
        id,
        attempt,
        reason
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One attempt as logged.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// Attempt number (1-based).
    pub attempt: i32,
    /// HTTP status.
    pub response_code: Option<i32>,
    /// Duration.
    pub response_time_ms: Option<i32>,
    /// Up to 4 KiB of the answer.
    pub response_body: Option<String>,
    /// Error.
    pub error: Option<String>,
    /// When.
    pub created_at: OffsetDateTime,
}

/// The attempts of a delivery, oldest first.
pub async fn attempts(conn: &mut PgConnection, delivery_id: Uuid) -> Result<Vec<Attempt>> {
    let rows = sqlx::query_as!(
        Attempt,
        "SELECT attempt, response_code, response_time_ms, response_body, error, created_at
         FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id",
        delivery_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}
