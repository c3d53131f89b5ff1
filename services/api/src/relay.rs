//! The outbox relay: publishes committed events to `<prefix>.events` (and
//! commands to `<prefix>.commands`) and
//! marks them published only after the broker confirmed them (publisher
//! confirms, RabbitMQ docs "Consumer Acknowledgements and Publisher
//! Confirms"). Woken in-process after each commit of this api, and polls so
//! that events of other api processes (or of one that crashed) go out too.
//! Delivery is at least once: a crash between the confirm and the mark
//! publishes a batch again, and consumers deduplicate on the event id.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use sqlx::PgPool;
use tickiti_bus::{Bus, OutgoingMessage};
use tickiti_store::outbox;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Outbox rows of this type prefix are commands, published to `<prefix>.commands`.
pub const COMMAND_PREFIX: &str = "command.";

/// Events published per round trip.
const BATCH: i64 = 256;
/// Poll interval when no signal arrives (events of other processes).
const POLL: Duration = Duration::from_millis(1000);

/// Runs until `shutdown`; never gives up on failures, backing off instead.
pub async fn run(db: PgPool, bus: Bus, signal: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = new_backoff();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        match relay_batch(&db, &bus).await {
            // A full batch: more may be waiting.
            Ok(n) if n as i64 == BATCH => continue,
            Ok(_) => backoff = new_backoff(),
            Err(error) => {
                let delay = backoff.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(%error, ?delay, "outbox relay could not publish; events stay in the outbox");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => continue,
                }
            }
        }
        // Wait for a commit's signal, the poll interval, or shutdown.
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = signal.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

fn new_backoff() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Publishes one batch; how many events it published.
async fn relay_batch(db: &PgPool, bus: &Bus) -> anyhow::Result<usize> {
    let mut tx = db.begin().await?;
    let batch = outbox::claim_batch(&mut tx, BATCH).await?;
    if batch.is_empty() {
        return Ok(0);
    }
    // Rows whose type starts with `command.` are commands for another
    // service (e.g. `command.webhook.dispatch`) and go to `<prefix>.commands`;
    // the rest are events for `<prefix>.events`.
    let (commands, events): (Vec<OutgoingMessage>, Vec<OutgoingMessage>) = batch
        .iter()
        .map(|row| OutgoingMessage {
            id: row.id,
            routing_key: row.event_type.clone(),
            payload: row.payload.to_string().into_bytes(),
            headers: Vec::new(),
        })
        .partition(|message| message.routing_key.starts_with(COMMAND_PREFIX));
    if !events.is_empty() {
        bus.publish_confirmed(&bus.events_exchange(), &events)
            .await?;
    }
    if !commands.is_empty() {
        bus.publish_confirmed(&bus.commands_exchange(), &commands)
            .await?;
    }
    let ids: Vec<_> = batch.iter().map(|e| e.id).collect();
    outbox::mark_published(&mut tx, &ids).await?;
    tx.commit().await?;
    tracing::debug!(count = ids.len(), "outbox events published");
    Ok(ids.len())
}
