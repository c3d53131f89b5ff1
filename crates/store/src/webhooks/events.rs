//! Webhook events: each event's payload stored once, and its fan-out settled.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;

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
