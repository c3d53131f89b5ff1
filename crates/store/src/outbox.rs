//! The transactional outbox: events written in the same transaction as the
//! change they describe, published by the relay after commit.

use sqlx::PgConnection;
use tickiti_domain::EventEnvelope;
use uuid::Uuid;

use crate::Result;

/// Appends a change's events, with the notifications they cause
/// ([`crate::notifications::derive`]; none for `actor`, who made the change)
/// and those notifications' own events. They become visible to the relay
/// when the transaction commits.
pub async fn append(
    conn: &mut PgConnection,
    events: &[EventEnvelope],
    actor: Option<Uuid>,
) -> Result<()> {
    let notified = crate::notifications::derive(conn, events, actor).await?;
    let rows = Rows::of(events.iter().chain(&notified))?;
    sqlx::query!(
        "INSERT INTO outbox (id, organization_id, event_type, payload)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[])",
        &rows.ids,
        &rows.organization_ids,
        &rows.types,
        &rows.payloads
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends a command for a worker (`command.*`, relayed to
/// `<prefix>.commands` like any event): `fields` plus the command's `id`,
/// `command` and `organization_id`. Visible to the relay at commit.
pub async fn append_command(
    conn: &mut PgConnection,
    organization_id: Uuid,
    command: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let id = tickiti_domain::new_id();
    let mut payload = fields;
    payload.insert("id".into(), id.to_string().into());
    payload.insert("command".into(), command.into());
    payload.insert("organization_id".into(), organization_id.to_string().into());
    sqlx::query!(
        "INSERT INTO outbox (id, organization_id, event_type, payload) VALUES ($1, $2, $3, $4)",
        id,
        organization_id,
        command,
        serde_json::Value::Object(payload)
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Outbox rows as the parallel arrays an `UNNEST` insert takes (also used
/// by statements that write a change and its events together).
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub ids: Vec<Uuid>,
    pub organization_ids: Vec<Uuid>,
    pub types: Vec<String>,
    pub payloads: Vec<serde_json::Value>,
}

impl Rows {
    pub(crate) fn of<'a>(events: impl IntoIterator<Item = &'a EventEnvelope>) -> Result<Rows> {
        let mut rows = Rows::default();
        for event in events {
            rows.ids.push(event.id);
            rows.organization_ids.push(event.organization_id);
            rows.types.push(event.event.as_str().to_owned());
            rows.payloads
                .push(serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
        }
        Ok(rows)
    }
}

/// An event waiting to be published.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Event id (also the AMQP message id).
    pub id: Uuid,
    /// Routing key.
    pub event_type: String,
    /// The envelope as JSON.
    pub payload: serde_json::Value,
}

/// Claims up to `limit` unpublished events, oldest first. Rows stay locked
/// until the transaction ends, so several relays never publish the same
/// batch at once (`SKIP LOCKED` lets each take a different one).
pub async fn claim_batch(conn: &mut PgConnection, limit: i64) -> Result<Vec<Pending>> {
    let rows = sqlx::query_as!(
        Pending,
        "SELECT id, event_type, payload FROM outbox
         WHERE published_at IS NULL
         ORDER BY id
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Marks events published (after the broker confirmed them), in the
/// transaction that claimed them, and lets that transaction commit without
/// waiting for its WAL flush: a mark lost in a crash only publishes the
/// batch again, which consumers deduplicate anyway, while waiting on the
/// disk would hold up the next batch (and every event in it) for a flush.
pub async fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> Result<()> {
    sqlx::query!("SET LOCAL synchronous_commit = off")
        .execute(&mut *conn)
        .await?;
    sqlx::query!(
        "UPDATE outbox SET published_at = now() WHERE id = ANY($1)",
        ids
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes published events older than `hours`; how many.
pub async fn prune_published(conn: &mut PgConnection, hours: i32) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM outbox WHERE published_at < now() - make_interval(hours => $1)",
        hours
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// How many events wait to be published (for `/readyz` detail and metrics).
pub async fn backlog(conn: &mut PgConnection) -> Result<i64> {
    let n =
        sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox WHERE published_at IS NULL"#)
            .fetch_one(conn)
            .await?;
    Ok(n)
}
