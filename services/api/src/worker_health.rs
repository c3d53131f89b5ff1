//! Worker health (CONTRACT §8): the api keeps each dispatcher's and
//! realtime process's reports and tells admins when one goes silent.
//!
//! Reports arrive on `<prefix>.api.worker-health` (shared by every api
//! process, gone with the last one: reports are live, the next one says the
//! same). A watcher marks silent processes down in one statement that emits
//! `system.worker_health` "down" in its transaction, so each silence is
//! reported once however many api processes watch; the next report of that
//! process emits "up", once. A new process is reported up when first
//! heard; one that stops on purpose says so and is forgotten without
//! alarm; housekeeping forgets one down for a week. The events go to every
//! organization's admins: the processes serve all.

use std::time::Duration;

use tickiti_domain::worker::{HEARTBEAT_ROUTING_KEY, Heartbeat, WorkerOut};
use tickiti_domain::{EventEnvelope, EventType};
use tickiti_store::worker_health::{self, Reported, Worker};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Consumes reports and watches for silence until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let spec = tickiti_bus::ConsumerSpec {
        queue: format!("{}.api.worker-health", state.config.bus_prefix),
        bindings: vec![(state.bus.realtime_exchange(), HEARTBEAT_ROUTING_KEY.into())],
        durable: false,
        auto_delete: true,
        prefetch: 64,
        ..tickiti_bus::ConsumerSpec::default()
    };
    let handler_state = state.clone();
    let consumer = state.bus.consume(spec, move |message| {
        let state = handler_state.clone();
        async move {
            match serde_json::from_slice::<Heartbeat>(&message.payload) {
                Ok(beat) => {
                    if let Err(error) = record(&state, &beat).await {
                        tracing::warn!(%error, process = %beat.process_id, "report not recorded; the next one follows");
                    }
                }
                Err(error) => tracing::warn!(%error, "unreadable worker report dropped"),
            }
            tickiti_bus::Outcome::Ack
        }
    });
    let silence = state.config.worker_silence;
    // Looked for several times within a silence, so a down is seen soon after.
    let mut tick = tokio::time::interval(
        (silence / 4).clamp(Duration::from_millis(200), Duration::from_secs(5)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(error) = watch(&state).await {
            tracing::warn!(%error, "worker health check failed; retried at the next tick");
        }
    }
    let _ = consumer.await;
}

/// Records one report, with its "up" event when it is news.
async fn record(state: &AppState, beat: &Heartbeat) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    if beat.stopping {
        worker_health::forget(&mut tx, &beat.process_id).await?;
        tx.commit().await?;
        tracing::info!(process = %beat.process_id, "worker stopped");
        return Ok(());
    }
    let (worker, reported) = worker_health::report(&mut tx, beat).await?;
    if reported != Reported::Running {
        tracing::info!(process = %worker.process_id, ?reported, "worker up");
        let events = for_admins(&mut tx, &worker.out(state.config.worker_silence)).await?;
        tickiti_store::outbox::append(&mut tx, &events, None).await?;
        tx.commit().await?;
        state.events_written();
        return Ok(());
    }
    tx.commit().await?;
    Ok(())
}

/// Reports the processes that fell silent.
async fn watch(state: &AppState) -> anyhow::Result<()> {
    let mut tx = state.db.begin().await?;
    let silent: Vec<Worker> =
        worker_health::mark_silent(&mut tx, state.config.worker_silence).await?;
    let mut events = Vec::new();
    for worker in silent {
        tracing::warn!(process = %worker.process_id, last_seen_at = %worker.last_seen_at, "worker silent: reported down");
        events.extend(for_admins(&mut tx, &worker.out(state.config.worker_silence)).await?);
    }
    if !events.is_empty() {
        tickiti_store::outbox::append(&mut tx, &events, None).await?;
    }
    tx.commit().await?;
    if !events.is_empty() {
        state.events_written();
    }
    Ok(())
}

/// One `system.worker_health` event per organization.
async fn for_admins(
    conn: &mut sqlx::PgConnection,
    worker: &WorkerOut,
) -> anyhow::Result<Vec<EventEnvelope>> {
    let data = serde_json::to_value(worker)?;
    Ok(tickiti_store::organizations::ids(conn)
        .await?
        .into_iter()
        .map(|org| EventEnvelope::new(EventType::SystemWorkerHealth, org, data.clone()))
        .collect())
}
