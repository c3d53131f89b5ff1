//! The loop of the dispatcher's Postgres scans (escalations, notification
//! e-mail): a pass every interval, passes back to back while each comes
//! back full (more is due now), a failed pass retried at the next tick.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::metrics::{Metrics, Scan};

/// Runs `pass` (which returns how many rows it claimed, at most `batch`)
/// every `interval` until `shutdown`, counting each pass.
pub(crate) async fn every<F, Fut>(
    what: Scan,
    metrics: &Metrics,
    interval: Duration,
    batch: i64,
    shutdown: CancellationToken,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<usize>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        loop {
            let passed = pass().await;
            metrics.scan_pass(what);
            match passed {
                Ok(n) if n as i64 == batch && !shutdown.is_cancelled() => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, scan = what.as_str(), "scan failed; retried at the next tick");
                    break;
                }
            }
        }
    }
}
