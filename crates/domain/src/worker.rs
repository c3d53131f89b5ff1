//! Worker health (CONTRACT §8): what a dispatcher or realtime process says
//! when it reports in, and what admins are told when one goes silent.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The routing key of reports on `<prefix>.realtime`.
pub const HEARTBEAT_ROUTING_KEY: &str = "worker.heartbeat";

/// One report of a running process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Stable for a process at one address: `service@host:port`, so a
    /// restarted process is the same one coming back up.
    pub process_id: String,
    /// `dispatcher` or `realtime`.
    pub service: String,
    /// The host (a container's name).
    pub hostname: String,
    /// The build's version.
    pub version: String,
    /// When this process started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The last report of a process shutting down on purpose (it is then
    /// forgotten, not reported down).
    #[serde(default)]
    pub stopping: bool,
}

impl Heartbeat {
    /// The report of `service` listening on `port` of this host.
    pub fn new(service: &str, hostname: &str, port: u16) -> Heartbeat {
        Heartbeat {
            process_id: format!("{service}@{hostname}:{port}"),
            service: service.to_owned(),
            hostname: hostname.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: OffsetDateTime::now_utc(),
            stopping: false,
        }
    }
}

crate::string_enum!(
    /// A process as admins see it.
    WorkerStatus {
        Up => "up",
        Down => "down",
    }
);

/// A process as `GET /system/health` lists it and `system.worker_health` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerOut {
    /// `service@host:port`.
    pub process_id: String,
    /// `dispatcher` or `realtime`.
    pub service: String,
    /// Its host.
    pub hostname: String,
    /// Its version.
    pub version: String,
    /// `up`, or `down` once silent for longer than the api's `WORKER_SILENCE`.
    pub status: WorkerStatus,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// Its last report.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen_at: OffsetDateTime,
}
