//! Reporting in (CONTRACT §8 `system.worker_health`): a process publishes a
//! report to `<prefix>.realtime` every interval and a last one, marked
//! stopping, when it shuts down on purpose. The api keeps the reports and
//! tells admins when a process falls silent. Reports are live-only: with no
//! api listening they are dropped, and the next one says the same.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use tickiti_domain::worker::{HEARTBEAT_ROUTING_KEY, Heartbeat};

use crate::{Bus, OutgoingMessage};

/// Reports `service`, listening on `port` of this host, every `every`
/// until `shutdown`, then once more marked stopping.
pub async fn report_in(
    bus: Bus,
    service: &str,
    port: u16,
    every: Duration,
    shutdown: CancellationToken,
) {
    let beat = Heartbeat::new(service, &hostname(), port);
    let report = |stopping| {
        serde_json::to_vec(&Heartbeat {
            stopping,
            ..beat.clone()
        })
        .unwrap_or_default()
    };
    let exchange = bus.realtime_exchange();
    let send = |payload: Vec<u8>| {
        let bus = &bus;
        let exchange = &exchange;
        async move {
            let message = OutgoingMessage {
                id: uuid::Uuid::now_v7(),
                routing_key: HEARTBEAT_ROUTING_KEY.into(),
                payload,
                headers: Vec::new(),
            };
            if let Err(error) = bus.publish_to_listeners(exchange, &[message]).await {
                tracing::debug!(%error, "report not sent; the next one follows");
            }
        }
    };
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => send(report(false)).await,
        }
    }
    // The broker may already be gone at shutdown: a second at most.
    let _ = tokio::time::timeout(Duration::from_secs(1), send(report(true))).await;
}

/// This host's name (a container's name in compose), for reports.
pub fn hostname() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
