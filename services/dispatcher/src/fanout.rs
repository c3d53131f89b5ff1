//! Events in: fan out to the subscribed endpoints (one delivery row each,
//! idempotent on (endpoint, event)), then queue their first attempts. The
//! event is acked only after the rows are committed and the work messages
//! confirmed by the broker. Dispatch commands from the api (`test`,
//! `resend`, `recover`) queue rows the api already wrote.

use serde::Deserialize;
use sqlx::PgConnection;
use tickiti_bus::{IncomingMessage, Outcome};
use tickiti_domain::{EventEnvelope, EventType};
use tickiti_store::webhooks::{self, DISPATCH_COMMAND, Queueable};
use uuid::Uuid;

use crate::Ctx;
use crate::topology::{WorkMessage, now_ms};

/// The api's dispatch command (written to its outbox by `request_dispatch`).
#[derive(Debug, Deserialize)]
struct DispatchCommand {
    delivery_ids: Vec<Uuid>,
}

/// Handles one message of `<prefix>.dispatcher.events`.
pub async fn handle(ctx: &Ctx, message: IncomingMessage) -> Outcome {
    let result = if message.routing_key == DISPATCH_COMMAND {
        match serde_json::from_slice::<DispatchCommand>(&message.payload) {
            Ok(command) => queue_deliveries(ctx, Select::Ids(&command.delivery_ids)).await,
            Err(error) => {
                tracing::warn!(%error, "malformed dispatch command; dropped");
                return Outcome::Reject;
            }
        }
    } else {
        match serde_json::from_slice::<EventEnvelope>(&message.payload) {
            Ok(event) => fan_out(ctx, &event).await,
            // Not an event this version knows (or not an event at all): not ours.
            Err(_) => return Outcome::Ack,
        }
    };
    match result {
        Ok(()) => Outcome::Ack,
        Err(error) => {
            tracing::warn!(error = %error, routing_key = %message.routing_key, "fan-out failed; the message is requeued");
            // A short pause so a database or broker outage does not spin.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Outcome::Requeue
        }
    }
}

async fn fan_out(ctx: &Ctx, event: &EventEnvelope) -> anyhow::Result<()> {
    // test.ping goes only where `POST /webhooks/{id}/test` asked for it.
    if !event.event.is_webhook_event() || event.event == EventType::TestPing {
        return Ok(());
    }
    let mut tx = ctx.db.begin().await?;
    let endpoints =
        webhooks::subscribed(&mut tx, event.organization_id, event.event.as_str()).await?;
    tracing::debug!(event.id = %event.id, event.kind = %event.event, endpoints = endpoints.len(), "fan-out");
    if endpoints.is_empty() {
        return Ok(());
    }
    let payload = serde_json::to_value(event)?;
    webhooks::insert_for_event(
        &mut tx,
        event.organization_id,
        event.id,
        event.event.as_str(),
        &payload,
        &endpoints,
    )
    .await?;
    // Committed before any work message names them: a worker must find the
    // rows (while the queueing transaction below holds them, its claim waits).
    tx.commit().await?;
    // Rows from an earlier, unacked try of this event are queued too.
    queue_deliveries(ctx, Select::Event(event.id)).await
}

/// Which deliveries to queue.
pub enum Select<'a> {
    /// These (a command, or a retry just recorded).
    Ids(&'a [Uuid]),
    /// Those of one event (fan-out).
    Event(Uuid),
    /// Those left unqueued for a while (the sweeper).
    Stale,
}

/// Locks the selected unqueued deliveries, publishes their work messages
/// (confirmed) and marks them queued, in one transaction.
pub async fn queue_deliveries(ctx: &Ctx, select: Select<'_>) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let rows = match select {
        Select::Ids(ids) => webhooks::unqueued_by_ids(&mut tx, ids).await?,
        Select::Event(id) => webhooks::unqueued_for_event(&mut tx, id).await?,
        Select::Stale => webhooks::unqueued_stale(&mut tx, 5_000, 500).await?,
    };
    if rows.is_empty() {
        return Ok(());
    }
    publish_and_mark(ctx, &mut tx, &rows).await?;
    tx.commit().await?;
    Ok(())
}

async fn publish_and_mark(
    ctx: &Ctx,
    conn: &mut PgConnection,
    rows: &[Queueable],
) -> anyhow::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let work: Vec<WorkMessage> = rows
        .iter()
        .map(|row| WorkMessage {
            delivery_id: row.id,
            endpoint_id: row.endpoint_id,
            attempt: row.attempt,
            due_at_ms: row.due_at.map_or(now, |due| {
                i64::try_from(due.unix_timestamp_nanos() / 1_000_000).unwrap_or(now)
            }),
        })
        .collect();
    ctx.queues.publish_work(&ctx.bus, &work).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    webhooks::mark_queued(conn, &ids).await?;
    Ok(())
}
