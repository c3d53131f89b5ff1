//! `/metrics` in the Prometheus text format: a few counters.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;

use crate::Ctx;
use crate::client::Answer;

/// Counters of this process.
#[derive(Debug, Default)]
pub struct Metrics {
    success: AtomicU64,
    failure: AtomicU64,
    parked: AtomicU64,
    unhandled: [AtomicU64; Unhandled::ALL.len()],
}

/// Why a message went to the install's parking queue (the `reason` label
/// of `tickiti_bus_parked_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unhandled {
    /// An event whose type this version does not know, or not an event.
    UnknownEvent,
    /// A command from the api that does not parse.
    MalformedCommand,
    /// A work-queue message that does not parse.
    MalformedWork,
}

impl Unhandled {
    const ALL: [Unhandled; 3] = [
        Unhandled::UnknownEvent,
        Unhandled::MalformedCommand,
        Unhandled::MalformedWork,
    ];

    /// The label value, also the parked message's reason header.
    pub fn as_str(self) -> &'static str {
        match self {
            Unhandled::UnknownEvent => "unknown-event",
            Unhandled::MalformedCommand => "malformed-command",
            Unhandled::MalformedWork => "malformed-work",
        }
    }
}

impl Metrics {
    /// Counts one attempt.
    pub fn attempted(&self, answer: &Answer) {
        let ok = matches!(answer.status, Some(200..=299));
        let counter = if ok { &self.success } else { &self.failure };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message parked by the fairness gates.
    pub fn parked(&self) {
        self.parked.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message moved to the parking queue.
    pub fn unhandled(&self, reason: Unhandled) {
        self.unhandled[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The text exposition.
pub async fn render(State(ctx): State<Arc<Ctx>>) -> String {
    let m = &ctx.metrics;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP tickiti_webhook_attempts_total Delivery attempts by outcome.\n# TYPE tickiti_webhook_attempts_total counter"
    );
    let _ = writeln!(
        out,
        "tickiti_webhook_attempts_total{{outcome=\"success\"}} {}",
        m.success.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "tickiti_webhook_attempts_total{{outcome=\"failure\"}} {}",
        m.failure.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP tickiti_webhook_parked_total Messages parked because their endpoint was busy.\n# TYPE tickiti_webhook_parked_total counter\ntickiti_webhook_parked_total {}",
        m.parked.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP tickiti_bus_parked_total Messages moved to the install's parking queue because this version cannot handle them.\n# TYPE tickiti_bus_parked_total counter"
    );
    for reason in Unhandled::ALL {
        let _ = writeln!(
            out,
            "tickiti_bus_parked_total{{reason=\"{}\"}} {}",
            reason.as_str(),
            m.unhandled[reason as usize].load(Ordering::Relaxed)
        );
    }
    out
}
