//! Escalations (CONTRACT §7): a scan, at least once a second, for
//! service-level clocks whose next stage (warning or breach) came due.
//!
//! Due times live in Postgres, not in broker delays: a reply, a pause or a
//! new priority moves a deadline in the change's own transaction, and a
//! delayed message could not be moved with it. Each scan claims due clocks
//! with `FOR UPDATE SKIP LOCKED` (several dispatchers take different ones)
//! and fires each stage in one transaction with its unique escalation row,
//! its events and the clock's new state: a stage fires exactly once however
//! many dispatchers run, and one that came due while every dispatcher was
//! down fires at the first scan after one is back.

use std::sync::Arc;
use std::time::Duration;

use tickiti_domain::calendar::{from_timestamp, to_timestamp};
use tickiti_domain::{EventEnvelope, EventType};
use tickiti_store::outbox;
use tickiti_store::sla_clocks::{self, DueClock, Escalation};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::metrics::Scan;

/// How often due clocks are looked for (a `"2s"` target fires within
/// about 3 s).
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Clocks fired per transaction.
const BATCH: i64 = 100;

/// Scans until `shutdown`.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    crate::scan::every(
        Scan::Escalations,
        &ctx.metrics,
        SCAN_INTERVAL,
        BATCH,
        shutdown,
        || scan(&ctx),
    )
    .await;
}

/// Fires what is due in one transaction; how many clocks it looked at.
pub async fn scan(ctx: &Ctx) -> anyhow::Result<usize> {
    let mut tx = ctx.db.begin().await?;
    let due = sla_clocks::claim_due(&mut tx, BATCH).await?;
    if due.is_empty() {
        return Ok(0);
    }
    let claimed = due.len();
    let now = OffsetDateTime::now_utc();
    let mut events = Vec::new();
    for mut clock in due {
        fire(&mut tx, &mut clock, now, &mut events).await?;
    }
    if !events.is_empty() {
        outbox::append(&mut tx, &events, None).await?;
    }
    tx.commit().await?;
    let fired = events
        .iter()
        .filter(|e| e.event == EventType::SystemEscalation)
        .count();
    if fired > 0 {
        tracing::info!(fired, "escalation stages fired");
    }
    Ok(claimed)
}

/// Fires the stage due on one clock (if its unique row is new) and writes
/// the clock back.
async fn fire(
    conn: &mut sqlx::PgConnection,
    due: &mut DueClock,
    now: OffsetDateTime,
    events: &mut Vec<EventEnvelope>,
) -> anyhow::Result<()> {
    let stage = due.clock.clock.due_stage(to_timestamp(now));
    let Some(stage) = stage else {
        // Nothing due after all (its fire time was stale): just reschedule.
        sla_clocks::save_fired(conn, due).await?;
        return Ok(());
    };
    let escalation = Escalation {
        id: tickiti_domain::new_id(),
        organization_id: due.organization_id,
        ticket_id: due.ticket_id,
        metric: due.clock.metric.as_str().to_owned(),
        cycle: due.clock.cycle,
        stage,
        policy_id: due.clock.policy_id,
        due_at: due.clock.clock.due_at.map(from_timestamp),
        fired_at: now,
    };
    let first_time = sla_clocks::record_escalation(conn, &escalation).await?;
    due.clock.clock.fired(stage, to_timestamp(now));
    sla_clocks::save_fired(conn, due).await?;
    if first_time {
        events.extend(sla_clocks::escalation_events(conn, &escalation).await?);
    }
    Ok(())
}
