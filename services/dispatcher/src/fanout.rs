//! Events in: fan out to the subscribed endpoints and send their first
//! attempts from this process at once. The events of many concurrent
//! handlers are written together (see [`crate::batch`]): one transaction
//! stores the batch's events, and their messages are acked after that
//! commit. No delivery row is written yet: a first attempt creates its row
//! with its answer ([`crate::deliver`]). An event stays unsettled until the
//! sweeper ([`redo_unsettled_events`]), once the first attempts' lease has
//! run out, has found every delivery it stands for written, creating and
//! queueing the ones whose sender died; their ids are derived from (event,
//! endpoint), so nothing is lost and a redone delivery keeps its id.
//! Dispatch commands from the api (`test`, `resend`, `recover`) queue rows
//! the api already wrote on the work queue.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use tickiti_bus::{IncomingMessage, Outcome};
use tickiti_domain::webhook::delivery_id;
use tickiti_domain::{EventEnvelope, EventType};
use tickiti_store::webhooks::{
    self, DISPATCH_COMMAND, Delivery, DeliveryColumns, Endpoint, EventColumns, Queueable,
};
use time::OffsetDateTime;
use tokio::time::Instant;
use uuid::Uuid;

use crate::Ctx;
use crate::batch::Batcher;
use crate::metrics::Unhandled;
use crate::topology::{WorkMessage, now_ms};

/// Events written in one fan-out transaction at most.
const FANOUT_BATCH: usize = 256;

/// A first attempt this process sends now; its delivery row is written
/// with its answer.
pub struct FirstAttempt {
    /// The delivery as it will be created.
    pub delivery: Delivery,
    /// Its endpoint as read in the fan-out transaction.
    pub endpoint: Arc<Endpoint>,
    /// The request body, rendered once per event and format and shared.
    pub body: Bytes,
    /// When its event was stored (the lease counts from then).
    pub stored_at: Instant,
}

/// The fan-out writer: events in, each event's first attempts out.
pub type FanOut = Batcher<EventEnvelope, Result<Vec<FirstAttempt>, String>>;

/// Starts the fan-out writers on `db`.
pub fn start_fan_out(db: PgPool) -> FanOut {
    Batcher::start(2, FANOUT_BATCH, move |events: Vec<EventEnvelope>| {
        let db = db.clone();
        async move {
            let count = events.len();
            match fan_out_batch(&db, events).await {
                Ok(per_event) => per_event.into_iter().map(Ok).collect(),
                Err(error) => {
                    let error = format!("{error:#}");
                    (0..count).map(|_| Err(error.clone())).collect()
                }
            }
        }
    })
}

/// The api's dispatch command (written to its outbox by `request_dispatch`).
#[derive(Debug, Deserialize)]
struct DispatchCommand {
    delivery_ids: Vec<Uuid>,
}

/// Handles one message of `<prefix>.dispatcher.events`.
pub async fn handle(ctx: &Arc<Ctx>, message: IncomingMessage) -> Outcome {
    let result = if message.routing_key == DISPATCH_COMMAND {
        match serde_json::from_slice::<DispatchCommand>(&message.payload) {
            Ok(command) => queue_deliveries(ctx, Select::Ids(&command.delivery_ids)).await,
            Err(error) => {
                tracing::warn!(%error, "malformed dispatch command");
                return ctx.park(&message, Unhandled::MalformedCommand).await;
            }
        }
    } else {
        match serde_json::from_slice::<EventEnvelope>(&message.payload) {
            // test.ping goes only where `POST /webhooks/{id}/test` asked for it.
            Ok(event) if event.event.is_webhook_event() && event.event != EventType::TestPing => {
                fan_out(ctx, event).await
            }
            // A known event that is not for webhooks (or test.ping).
            Ok(_) => Ok(()),
            // An event type newer than this dispatcher, or not an event at
            // all: kept for after the upgrade, never acked away.
            Err(error) => {
                tracing::warn!(%error, routing_key = %message.routing_key, "event not understood");
                return ctx.park(&message, Unhandled::UnknownEvent).await;
            }
        }
    };
    match result {
        Ok(()) => {
            if message.routing_key != DISPATCH_COMMAND {
                ctx.metrics.event();
            }
            Outcome::Ack
        }
        Err(error) => {
            tracing::warn!(error = %error, routing_key = %message.routing_key, "fan-out failed; the message is requeued");
            // A short pause so a database or broker outage does not spin.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            Outcome::Requeue
        }
    }
}

/// Writes the event's deliveries (with the batch it joins), then sends
/// their first attempts from this process; waits while too many are in flight.
async fn fan_out(ctx: &Arc<Ctx>, event: EventEnvelope) -> anyhow::Result<()> {
    let attempts = ctx
        .fan_out
        .submit(event)
        .await
        .ok_or_else(|| anyhow::anyhow!("the fan-out writers stopped"))?
        .map_err(anyhow::Error::msg)?;
    for first in attempts {
        let permit = ctx.in_flight.clone().acquire_owned().await?;
        let ctx = ctx.clone();
        // Boxed: an attempt's future (request, signing, logging) is large,
        // and spawning it unboxed copies it into the task.
        tokio::spawn(Box::pin(async move {
            crate::deliver::first_attempt(&ctx, first).await;
            drop(permit);
        }));
    }
    Ok(())
}

/// One transaction for a batch of events: their organizations' active
/// endpoints, then the events that have any, stored unsettled.
async fn fan_out_batch(
    db: &PgPool,
    events: Vec<EventEnvelope>,
) -> anyhow::Result<Vec<Vec<FirstAttempt>>> {
    let organizations = distinct(events.iter().map(|e| e.organization_id));
    let mut tx = db.begin().await?;
    let endpoints: Vec<Arc<Endpoint>> = webhooks::active_of_organizations(&mut tx, &organizations)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    let mut columns = EventColumns::default();
    let mut planned: Vec<(usize, Arc<Endpoint>)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let before = planned.len();
        for endpoint in &endpoints {
            if endpoint.organization_id == event.organization_id
                && endpoint.subscribes_to(event.event.as_str())
            {
                planned.push((index, endpoint.clone()));
            }
        }
        if planned.len() > before {
            columns.ids.push(event.id);
            columns.organization_ids.push(event.organization_id);
            columns.payloads.push(serde_json::to_value(event)?);
        }
    }
    let stored_at = Instant::now();
    // An event stored before (its message came again) was fanned out then.
    let stored: HashSet<Uuid> = webhooks::insert_events(&mut tx, &columns)
        .await?
        .into_iter()
        .collect();
    tx.commit().await?;
    let stored_payloads: HashMap<Uuid, &serde_json::Value> = columns
        .ids
        .iter()
        .copied()
        .zip(&columns.payloads)
        .filter(|(id, _)| stored.contains(id))
        .collect();
    tracing::debug!(
        events = events.len(),
        stored = stored.len(),
        "fan-out batch"
    );
    let now = OffsetDateTime::now_utc();
    let mut per_event: Vec<Vec<FirstAttempt>> = events.iter().map(|_| Vec::new()).collect();
    // (event index, payload format) → body; an event's endpoints mostly share one format.
    let mut bodies: HashMap<(usize, String), Bytes> = HashMap::new();
    for (index, endpoint) in planned {
        let Some(event) = events.get(index) else {
            continue;
        };
        let Some(payload) = stored_payloads.get(&event.id) else {
            continue;
        };
        let key = (index, endpoint.payload_format.clone());
        let body = match bodies.get(&key) {
            Some(body) => body.clone(),
            None => {
                let body = crate::deliver::render_body(&endpoint.payload_format, payload)?;
                bodies.insert(key, body.clone());
                body
            }
        };
        let delivery = Delivery {
            id: delivery_id(event.id, endpoint.id),
            endpoint_id: endpoint.id,
            organization_id: event.organization_id,
            event_id: event.id,
            event_type: event.event.as_str().to_owned(),
            status: "pending".into(),
            attempt: 1,
            manual: false,
            next_attempt_at: Some(now),
            response_code: None,
            response_time_ms: None,
            error: None,
            created_at: now,
        };
        if let Some(list) = per_event.get_mut(index) {
            list.push(FirstAttempt {
                delivery,
                endpoint,
                body,
                stored_at,
            });
        }
    }
    Ok(per_event)
}

/// Each id once.
fn distinct(ids: impl Iterator<Item = Uuid>) -> Vec<Uuid> {
    ids.collect::<HashSet<_>>().into_iter().collect()
}

/// Events settled in one sweeper transaction at most.
const SETTLE_BATCH: i64 = 500;

/// The sweeper's check of the fan-out: events older than `lease` and not
/// settled get the delivery rows they still lack (their first attempt's
/// sender died before writing it) and are settled, one transaction per
/// batch; then those rows are queued like any retry (should that fail, the
/// sweep of unqueued deliveries does it). Returns how many events it settled.
pub async fn redo_unsettled_events(ctx: &Ctx, lease: Duration) -> anyhow::Result<usize> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
    let mut settled = 0;
    loop {
        let mut tx = ctx.db.begin().await?;
        let events = webhooks::unsettled_events(&mut tx, lease_ms, SETTLE_BATCH).await?;
        if events.is_empty() {
            return Ok(settled);
        }
        let organizations = distinct(events.iter().map(|e| e.organization_id));
        let endpoints = webhooks::active_of_organizations(&mut tx, &organizations).await?;
        // (delivery id, endpoint, event) for the endpoints the fan-out saw:
        // active then, and already there.
        let planned: Vec<(Uuid, &Endpoint, &webhooks::UnsettledEvent)> = events
            .iter()
            .flat_map(|event| {
                endpoints
                    .iter()
                    .filter(|e| {
                        e.organization_id == event.organization_id
                            && e.subscribes_to(&event.event_type)
                            && e.created_at <= event.created_at
                    })
                    .map(move |endpoint| (delivery_id(event.id, endpoint.id), endpoint, event))
            })
            .collect();
        let ids: Vec<Uuid> = planned.iter().map(|(id, _, _)| *id).collect();
        let written: HashSet<Uuid> = webhooks::existing_deliveries(&mut tx, &ids)
            .await?
            .into_iter()
            .collect();
        let mut rows = DeliveryColumns::default();
        for (id, endpoint, event) in planned
            .into_iter()
            .filter(|(id, _, _)| !written.contains(id))
        {
            rows.push(
                id,
                endpoint.id,
                event.organization_id,
                event.id,
                &event.event_type,
            );
        }
        let missing = webhooks::insert_pending(&mut tx, &rows).await?;
        webhooks::settle_events(&mut tx, &events).await?;
        tx.commit().await?;
        if !missing.is_empty() {
            tracing::info!(
                deliveries = missing.len(),
                "first attempts whose sender died are queued again"
            );
            queue_deliveries(ctx, Select::Ids(&missing)).await?;
        }
        settled += events.len();
        if events.len() < usize::try_from(SETTLE_BATCH).unwrap_or(usize::MAX) {
            return Ok(settled);
        }
    }
}

/// Creates the delivery row of a first attempt that goes to the work queue
/// instead of being sent now, and queues it.
pub async fn hand_over(ctx: &Ctx, delivery: &Delivery) -> anyhow::Result<()> {
    let mut rows = DeliveryColumns::default();
    rows.push(
        delivery.id,
        delivery.endpoint_id,
        delivery.organization_id,
        delivery.event_id,
        &delivery.event_type,
    );
    let mut conn = ctx.db.acquire().await?;
    let created = webhooks::insert_pending(&mut conn, &rows).await?;
    drop(conn);
    queue_deliveries(ctx, Select::Ids(&created)).await
}

/// Which deliveries to queue.
pub enum Select<'a> {
    /// These (a command, or a retry just recorded).
    Ids(&'a [Uuid]),
    /// Those whose claim ran out unanswered (the sweeper).
    ExpiredClaims,
    /// Those left unqueued for a while (the sweeper).
    Stale,
}

/// Locks the selected unqueued deliveries, publishes their work messages
/// (confirmed) and marks them queued, in one transaction.
pub async fn queue_deliveries(ctx: &Ctx, select: Select<'_>) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let rows = match select {
        Select::Ids(ids) => webhooks::unqueued_by_ids(&mut tx, ids).await?,
        Select::ExpiredClaims => webhooks::expired_claims(&mut tx, 500).await?,
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
            organization_id: Some(row.organization_id),
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
