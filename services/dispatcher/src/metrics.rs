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
    events: AtomicU64,
    epilog_commands: AtomicU64,
    scan_passes: [AtomicU64; Scan::ALL.len()],
}

/// A Postgres scan of the dispatcher (the `scan` label of
/// `tickiti_scan_passes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Service-level warnings and breaches coming due.
    Escalations,
    /// Notification e-mail to send.
    NotificationEmail,
}

impl Scan {
    const ALL: [Scan; 2] = [Scan::Escalations, Scan::NotificationEmail];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scan::Escalations => "escalations",
            Scan::NotificationEmail => "notification-email",
        }
    }
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

    /// Counts an event taken from the bus and settled: its deliveries
    /// stored (or none due), the message acked.
    pub fn event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an epilog command handled (its due attempts made, or none due).
    pub fn epilog_command(&self) {
        self.epilog_commands.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one finished pass of a scan, whatever it found.
    pub fn scan_pass(&self, scan: Scan) {
        self.scan_passes[scan as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a message moved to the parking queue.
    pub fn unhandled(&self, reason: Unhandled) {
        self.unhandled[reason as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The text exposition.
pub async fn render(State(ctx): State<Arc<Ctx>>) -> String {
    let m = &ctx.metrics;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut out = String::new();
    counter(
        &mut out,
        "tickiti_webhook_attempts_total",
        "Delivery attempts by outcome.",
        [
            ("outcome=\"success\"".to_owned(), load(&m.success)),
            ("outcome=\"failure\"".to_owned(), load(&m.failure)),
        ],
    );
    counter(
        &mut out,
        "tickiti_webhook_parked_total",
        "Messages parked because their endpoint was busy.",
        [(String::new(), load(&m.parked))],
    );
    counter(
        &mut out,
        "tickiti_bus_parked_total",
        "Messages moved to the install's parking queue because this version cannot handle them.",
        Unhandled::ALL.map(|reason| {
            (
                format!("reason=\"{}\"", reason.as_str()),
                load(&m.unhandled[reason as usize]),
            )
        }),
    );
    counter(
        &mut out,
        "tickiti_dispatcher_events_total",
        "Events taken from the bus and settled (deliveries stored, message acked).",
        [(String::new(), load(&m.events))],
    );
    counter(
        &mut out,
        "tickiti_epilog_commands_total",
        "Epilog commands handled.",
        [(String::new(), load(&m.epilog_commands))],
    );
    counter(
        &mut out,
        "tickiti_scan_passes_total",
        "Finished passes of each Postgres scan.",
        Scan::ALL.map(|scan| {
            (
                format!("scan=\"{}\"", scan.as_str()),
                load(&m.scan_passes[scan as usize]),
            )
        }),
    );
    out
}

/// One counter family: its help and type lines, then a line per series
/// (`labels` without braces, empty for none).
fn counter(
    out: &mut String,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (labels, value) in series {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}
