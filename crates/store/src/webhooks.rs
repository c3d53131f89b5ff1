//! Webhooks: endpoints, their deliveries (one per endpoint and event) and
//! every attempt. Written by the api (management, test, resend, recover) and
//! by the dispatcher (fan-out, claiming and finishing attempts).
//!
//! A delivery's life: `pending` (created, `queued_at` NULL) → its work
//! message is handed to the broker (`queued_at` set) → a worker claims attempt
//! N (`attempt` = N, `locked_until` set) → `success`, `retrying` (queued again
//! for attempt N+1) or `failed`. Claiming compares the attempt number, so a
//! duplicate work message never makes a second attempt on purpose.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{Page, Result};

/// An endpoint row (the secrets stay sealed here; the crypto crate opens them).
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Where deliveries go.
    pub url: String,
    /// Subscribed event types, or `*`.
    pub events: Vec<String>,
    /// The current secret, sealed.
    pub secret_sealed: Vec<u8>,
    /// The secret before the last rotation, sealed.
    pub previous_secret_sealed: Option<Vec<u8>>,
    /// When the secret was last rotated.
    pub secret_rotated_at: Option<OffsetDateTime>,
    /// `active`, `disabled` or `failed`.
    pub status: String,
    /// Why the dispatcher changed the status.
    pub status_reason: Option<String>,
    /// `nested` or `flat`.
    pub payload_format: String,
    /// Free text.
    pub description: Option<String>,
    /// Seconds before each attempt; `None`: the dispatcher's default.
    pub retry_schedule: Option<Vec<i32>>,
    /// Deliveries per second at most.
    pub rate_limit_per_second: Option<i32>,
    /// Extra static headers (`{"Name": "value"}`).
    pub headers: serde_json::Value,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// A new endpoint.
#[derive(Debug)]
pub struct NewEndpoint<'a> {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// URL.
    pub url: &'a str,
    /// Event types.
    pub events: &'a [String],
    /// Sealed secret.
    pub secret_sealed: &'a [u8],
    /// `active` or `disabled`.
    pub status: &'a str,
    /// `nested` or `flat`.
    pub payload_format: &'a str,
    /// Description.
    pub description: Option<&'a str>,
    /// Retry schedule in seconds.
    pub retry_schedule: Option<&'a [i32]>,
    /// Rate limit.
    pub rate_limit_per_second: Option<i32>,
    /// Extra headers.
    pub headers: &'a serde_json::Value,
}

/// The organization's endpoints, counted under a lock of the organization's
/// endpoint list held until the transaction ends: two creates racing for
/// the last place under a cap cannot both see room.
pub async fn count_for_insert(conn: &mut PgConnection, organization_id: Uuid) -> Result<i64> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended('webhook_endpoints:' || $1::uuid, 0))",
        organization_id
    )
    .execute(&mut *conn)
    .await?;
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM webhook_endpoints WHERE organization_id = $1"#,
        organization_id
    )
    .fetch_one(conn)
    .await?;
    Ok(count)
}

/// Inserts an endpoint.
pub async fn insert(conn: &mut PgConnection, new: &NewEndpoint<'_>) -> Result<Endpoint> {
    let row = sqlx::query_as!(
        Endpoint,
        "INSERT INTO webhook_endpoints (id, organization_id, url, events, secret_sealed, status,
             payload_format, description, retry_schedule, rate_limit_per_second, headers)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING id, organization_id, url, events, secret_sealed, previous_secret_sealed,
             secret_rotated_at, status, status_reason, payload_format, description, retry_schedule,
             rate_limit_per_second, headers, created_at, updated_at",
        new.id,
        new.organization_id,
        new.url,
        new.events,
        new.secret_sealed,
        new.status,
        new.payload_format,
        new.description,
        new.retry_schedule,
        new.rate_limit_per_second,
        new.headers
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}

/// An endpoint of the organization.
pub async fn get(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
) -> Result<Option<Endpoint>> {
    let row = sqlx::query_as!(
        Endpoint,
        "SELECT id, organization_id, url, events, secret_sealed, previous_secret_sealed,
             secret_rotated_at, status, status_reason, payload_format, description, retry_schedule,
             rate_limit_per_second, headers, created_at, updated_at
         FROM webhook_endpoints WHERE organization_id = $1 AND id = $2",
        organization_id,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// An endpoint by id alone (the dispatcher, which acts for every organization).
pub async fn get_by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Endpoint>> {
    let row = sqlx::query_as!(
        Endpoint,
        "SELECT id, organization_id, url, events, secret_sealed, previous_secret_sealed,
             secret_rotated_at, status, status_reason, payload_format, description, retry_schedule,
             rate_limit_per_second, headers, created_at, updated_at
         FROM webhook_endpoints WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// A page of endpoints, newest first.
pub async fn list(
    conn: &mut PgConnection,
    organization_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Page<Endpoint>> {
    let rows = sqlx::query_as!(
        Endpoint,
        "SELECT id, organization_id, url, events, secret_sealed, previous_secret_sealed,
             secret_rotated_at, status, status_reason, payload_format, description, retry_schedule,
             rate_limit_per_second, headers, created_at, updated_at
         FROM webhook_endpoints
         WHERE organization_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        organization_id,
        before,
        limit + 1
    )
    .fetch_all(conn)
    .await?;
    Ok(Page::from_rows(rows, limit, |e| e.id))
}

/// Changes to an endpoint: outer `None` keeps a field, inner `None` clears it.
#[derive(Debug, Default)]
pub struct EndpointChanges<'a> {
    /// New URL.
    pub url: Option<&'a str>,
    /// New event types.
    pub events: Option<&'a [String]>,
    /// New sealed secret; the current one becomes the previous one (24 h of dual signing).
    pub secret_sealed: Option<&'a [u8]>,
    /// New status (`active` also clears the reason).
    pub status: Option<&'a str>,
    /// New payload format.
    pub payload_format: Option<&'a str>,
    /// New description.
    pub description: Option<Option<&'a str>>,
    /// New retry schedule.
    pub retry_schedule: Option<Option<&'a [i32]>>,
    /// New rate limit.
    pub rate_limit_per_second: Option<Option<i32>>,
    /// New extra headers.
    pub headers: Option<&'a serde_json::Value>,
}

/// Applies changes; `None` when there is no such endpoint.
pub async fn update(
    conn: &mut PgConnection,
    organization_id: Uuid,
    id: Uuid,
    changes: &EndpointChanges<'_>,
) -> Result<Option<Endpoint>> {
    let row = sqlx::query_as!(
        Endpoint,
        "UPDATE webhook_endpoints SET
            url = COALESCE($3, url),
            events = COALESCE($4, events),
            previous_secret_sealed = CASE WHEN $5::bytea IS NULL THEN previous_secret_sealed ELSE secret_sealed END,
            secret_rotated_at = CASE WHEN $5::bytea IS NULL THEN secret_rotated_at ELSE now() END,
            secret_sealed = COALESCE($5, secret_sealed),
            status = COALESCE($6, status),
            status_reason = CASE WHEN $6::text IS NULL THEN status_reason ELSE NULL END,
            payload_format = COALESCE($7, payload_format),
            description = CASE WHEN $8 THEN $9 ELSE description END,
            retry_schedule = CASE WHEN $10 THEN $11 ELSE retry_schedule END,
            rate_limit_per_second = CASE WHEN $12 THEN $13 ELSE rate_limit_per_second END,
            headers = COALESCE($14, headers),
            updated_at = now()
         WHERE organization_id = $1 AND id = $2
         RETURNING id, organization_id, url, events, secret_sealed, previous_secret_sealed,
             secret_rotated_at, status, status_reason, payload_format, description, retry_schedule,
             rate_limit_per_second, headers, created_at, updated_at",
        organization_id,
        id,
        changes.url,
        changes.events,
        changes.secret_sealed,
        changes.status,
        changes.payload_format,
        changes.description.is_some(),
        changes.description.flatten(),
        changes.retry_schedule.is_some(),
        changes.retry_schedule.flatten(),
        changes.rate_limit_per_second.is_some(),
        changes.rate_limit_per_second.flatten(),
        changes.headers
    )
    .fetch_optional(conn)
    .await?;
    Ok(row)
}

/// Deletes an endpoint and its deliveries; whether it existed.
pub async fn delete(conn: &mut PgConnection, organization_id: Uuid, id: Uuid) -> Result<bool> {
    // With its delivery log (no foreign keys cascade there, see migration 000007).
    let deleted = sqlx::query_scalar!(
        r#"WITH endpoint AS (
             DELETE FROM webhook_endpoints WHERE organization_id = $1 AND id = $2 RETURNING id
           ), deliveries AS (
             DELETE FROM webhook_deliveries WHERE endpoint_id IN (SELECT id FROM endpoint) RETURNING id
           ), attempts AS (
             DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM deliveries)
           )
         SELECT count(*) AS "count!" FROM endpoint"#,
        organization_id,
        id
    )
    .fetch_one(conn)
    .await?;
    Ok(deleted > 0)
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

/// Moves an endpoint from one of `from` to `to` with a reason (the
/// dispatcher: retries used up → `failed`; 410 Gone → `disabled`). Whether it changed.
pub async fn change_status(
    conn: &mut PgConnection,
    id: Uuid,
    from: &[String],
    to: &str,
    reason: &str,
) -> Result<bool> {
    let done = sqlx::query!(
        "UPDATE webhook_endpoints SET status = $3, status_reason = $4, updated_at = now()
         WHERE id = $1 AND status = ANY($2)",
        id,
        from,
        to,
        reason
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// The active endpoints of these organizations (the dispatcher matches
/// their `events` to each event of a batch).
pub async fn active_of_organizations(
    conn: &mut PgConnection,
    organization_ids: &[Uuid],
) -> Result<Vec<Endpoint>> {
    let rows = sqlx::query_as!(
        Endpoint,
        "SELECT id, organization_id, url, events, secret_sealed, previous_secret_sealed,
             secret_rotated_at, status, status_reason, payload_format, description, retry_schedule,
             rate_limit_per_second, headers, created_at, updated_at
         FROM webhook_endpoints WHERE organization_id = ANY($1) AND status = 'active'",
        organization_ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

impl Endpoint {
    /// Whether events of `event_type` go to this endpoint.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == event_type || e == "*")
    }
}

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

/// Events of a fan-out batch, as parallel arrays (index = position).
#[derive(Debug, Default)]
pub struct EventColumns {
    /// Event ids.
    pub ids: Vec<Uuid>,
    /// Their organizations.
    pub organization_ids: Vec<Uuid>,
    /// Their envelopes.
    pub payloads: Vec<serde_json::Value>,
}

/// Stores the events of a fan-out batch, unsettled: until the sweeper
/// settles them (see [`unsettled_events`]), they stand for the deliveries
/// their first attempts will write. An event stored before (its message
/// came again) is skipped. Returns the ids stored now.
pub async fn insert_events(conn: &mut PgConnection, events: &EventColumns) -> Result<Vec<Uuid>> {
    if events.ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = sqlx::query_scalar!(
        r#"WITH stored AS (
             INSERT INTO webhook_events (id, organization_id, payload)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[])
             ON CONFLICT (id) DO NOTHING
             RETURNING id
           ), unsettled AS (
             INSERT INTO webhook_fanouts (event_id) SELECT id FROM stored
           )
         SELECT id AS "id!" FROM stored"#,
        &events.ids,
        &events.organization_ids,
        &events.payloads
    )
    .fetch_all(conn)
    .await?;
    Ok(ids)
}

/// An event whose fan-out the sweeper checks.
#[derive(Debug, Clone)]
pub struct UnsettledEvent {
    /// Event id.
    pub id: Uuid,
    /// Its organization.
    pub organization_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// When it was fanned out.
    pub created_at: OffsetDateTime,
}

/// Locks up to `limit` events fanned out more than `lease_ms` ago and not
/// settled yet, oldest first: every first attempt of theirs has been
/// recorded by now, unless its sender died.
pub async fn unsettled_events(
    conn: &mut PgConnection,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<UnsettledEvent>> {
    let rows = sqlx::query_as!(
        UnsettledEvent,
        r#"SELECT e.id, e.organization_id, e.payload->>'event' AS "event_type!", f.created_at
         FROM webhook_fanouts f JOIN webhook_events e ON e.id = f.event_id
         WHERE f.created_at < now() - make_interval(secs => $1::bigint / 1000.0)
         ORDER BY f.created_at LIMIT $2
         FOR UPDATE OF f SKIP LOCKED"#,
        lease_ms,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Marks events settled: each has its delivery rows.
pub async fn settle_events(conn: &mut PgConnection, events: &[UnsettledEvent]) -> Result<()> {
    let fanned_out: Vec<OffsetDateTime> = events.iter().map(|e| e.created_at).collect();
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    sqlx::query!(
        "DELETE FROM webhook_fanouts
         WHERE (created_at, event_id) IN (SELECT * FROM unnest($1::timestamptz[], $2::uuid[]))",
        &fanned_out,
        &ids
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
    let id = tickiti_domain::new_id();
    let payload = serde_json::json!({
        "id": id,
        "command": DISPATCH_COMMAND,
        "organization_id": organization_id,
        "delivery_ids": delivery_ids,
    });
    sqlx::query!(
        "INSERT INTO outbox (id, organization_id, event_type, payload) VALUES ($1, $2, $3, $4)",
        id,
        organization_id,
        DISPATCH_COMMAND,
        payload
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A delivery waiting for its work message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queueable {
    /// Delivery id.
    pub id: Uuid,
    /// Its endpoint.
    pub endpoint_id: Uuid,
    /// Its organization.
    pub organization_id: Uuid,
    /// The attempt its next work message is for.
    pub attempt: i32,
    /// When that attempt is due.
    pub due_at: Option<OffsetDateTime>,
}

/// Locks the not-yet-queued deliveries among `ids`.
pub async fn unqueued_by_ids(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Queueable>> {
    let rows = sqlx::query_as!(
        Queueable,
        r#"SELECT id, endpoint_id, organization_id, attempt + 1 AS "attempt!", next_attempt_at AS due_at FROM webhook_deliveries
         WHERE id = ANY($1) AND queued_at IS NULL AND status IN ('pending', 'retrying')
         FOR UPDATE SKIP LOCKED"#,
        ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Locks deliveries left unqueued for longer than `grace_ms` (a dispatcher
/// died between its commit and its publish): the sweeper queues them.
pub async fn unqueued_stale(
    conn: &mut PgConnection,
    grace_ms: i64,
    limit: i64,
) -> Result<Vec<Queueable>> {
    let rows = sqlx::query_as!(
        Queueable,
        r#"SELECT id, endpoint_id, organization_id, attempt + 1 AS "attempt!", next_attempt_at AS due_at FROM webhook_deliveries
         WHERE queued_at IS NULL AND status IN ('pending', 'retrying')
           AND updated_at < now() - make_interval(secs => $1::bigint / 1000.0)
         ORDER BY created_at LIMIT $2
         FOR UPDATE SKIP LOCKED"#,
        grace_ms,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Locks deliveries whose claim ran out without an answer being recorded
/// and that were not queued since (their sender died mid-attempt): the
/// sweeper queues the same attempt again, which a worker may take over.
pub async fn expired_claims(conn: &mut PgConnection, limit: i64) -> Result<Vec<Queueable>> {
    let rows = sqlx::query_as!(
        Queueable,
        r#"SELECT id, endpoint_id, organization_id, attempt AS "attempt!", now() AS due_at FROM webhook_deliveries
         WHERE locked_until < now() AND status IN ('pending', 'retrying')
           AND (queued_at IS NULL OR queued_at < locked_until)
         ORDER BY locked_until LIMIT $1
         FOR UPDATE SKIP LOCKED"#,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Notes that the work messages of these deliveries were confirmed by the broker.
pub async fn mark_queued(conn: &mut PgConnection, ids: &[Uuid]) -> Result<()> {
    sqlx::query!(
        "UPDATE webhook_deliveries SET queued_at = now() WHERE id = ANY($1)",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}

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

/// Deletes finished deliveries (with their attempts and, once unreferenced,
/// their events) last changed before `retention_secs` ago, at most `limit`
/// per call; how many deliveries. Delivery ids are UUID v7, ordered by
/// creation time, and a delivery is created before it last changes: the
/// scan walks the primary key up to the cut-off instead of reading the
/// whole table.
pub async fn prune(conn: &mut PgConnection, retention_secs: i64, limit: i64) -> Result<u64> {
    let cutoff_ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000
        - i128::from(retention_secs) * 1000;
    let cutoff = first_v7_of_millisecond(cutoff_ms);
    let pruned = sqlx::query_scalar!(
        r#"WITH gone AS (
             DELETE FROM webhook_deliveries WHERE id IN (
                 SELECT id FROM webhook_deliveries
                 WHERE id < $3 AND status IN ('success', 'failed')
                   AND updated_at < now() - make_interval(secs => $1::bigint)
                 LIMIT $2)
             RETURNING id
           ), attempts AS (
             DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM gone)
           )
         SELECT count(*) AS "count!" FROM gone"#,
        retention_secs,
        limit,
        cutoff
    )
    .fetch_one(&mut *conn)
    .await?;
    // Then the events no delivery refers to any more (those just pruned, and
    // those whose endpoint was deleted). Event ids are UUID v7 too.
    sqlx::query!(
        "DELETE FROM webhook_events WHERE id IN (
             SELECT e.id FROM webhook_events e
             WHERE e.id < $1
               AND NOT EXISTS (SELECT 1 FROM webhook_fanouts f WHERE f.event_id = e.id)
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id)
             LIMIT $2)",
        cutoff,
        limit
    )
    .execute(conn)
    .await?;
    Ok(u64::try_from(pruned).unwrap_or(0))
}

/// The smallest UUID v7 of Unix millisecond `ms` (every id made at or after
/// that millisecond sorts after it).
fn first_v7_of_millisecond(ms: i128) -> Uuid {
    let ms = u64::try_from(ms.max(0)).unwrap_or(u64::MAX) & 0xFFFF_FFFF_FFFF;
    let mut bytes = [0u8; 16];
    if let Some(head) = bytes.get_mut(..6) {
        head.copy_from_slice(ms.to_be_bytes().get(2..).unwrap_or(&[0; 6]));
    }
    bytes[6] = 0x70; // version 7
    bytes[8] = 0x80; // RFC 9562 variant
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_bounds_order_like_time() {
        let now = Uuid::now_v7();
        let ms = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        assert!(first_v7_of_millisecond(ms - 1_000) < now);
        assert!(first_v7_of_millisecond(ms + 1_000) > now);
        assert_eq!(first_v7_of_millisecond(ms).get_version_num(), 7);
    }
}
