//! Webhook endpoints: management by the api, status changes by the dispatcher.

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

/// Moves an endpoint from one of `from` to `to` with a reason (the
/// dispatcher: retries used up → `failed`; 410 Gone → `disabled`); the
/// endpoint's organization and URL when it changed.
pub async fn change_status(
    conn: &mut PgConnection,
    id: Uuid,
    from: &[String],
    to: &str,
    reason: &str,
) -> Result<Option<(Uuid, String)>> {
    let row = sqlx::query!(
        "UPDATE webhook_endpoints SET status = $3, status_reason = $4, updated_at = now()
         WHERE id = $1 AND status = ANY($2)
         RETURNING organization_id, url",
        id,
        from,
        to,
        reason
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.organization_id, r.url)))
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
