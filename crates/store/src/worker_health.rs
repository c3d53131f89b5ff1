//! Worker health (CONTRACT §8): the last report of each dispatcher and
//! realtime process, and the moments one goes silent or comes back.

use sqlx::PgConnection;
use tickiti_domain::worker::{Heartbeat, WorkerOut, WorkerStatus};
use time::OffsetDateTime;

use crate::Result;

/// A process's row.
#[derive(Debug, Clone)]
pub struct Worker {
    /// `service@host:port`.
    pub process_id: String,
    /// Service.
    pub service: String,
    /// Host.
    pub hostname: String,
    /// Version.
    pub version: String,
    /// Start.
    pub started_at: OffsetDateTime,
    /// Last report.
    pub last_seen_at: OffsetDateTime,
    /// Reported down (and not back since).
    pub reported_down: bool,
}

impl Worker {
    /// As the API shows it: down once reported down or silent past `silence`.
    pub fn out(self, silence: std::time::Duration) -> WorkerOut {
        let silent = OffsetDateTime::now_utc() - self.last_seen_at > silence;
        WorkerOut {
            status: if self.reported_down || silent {
                WorkerStatus::Down
            } else {
                WorkerStatus::Up
            },
            process_id: self.process_id,
            service: self.service,
            hostname: self.hostname,
            version: self.version,
            started_at: self.started_at,
            last_seen_at: self.last_seen_at,
        }
    }
}

/// What a report tells of its process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// First heard of (a new process, or one forgotten after a clean stop).
    New,
    /// It had been reported down and is back.
    Back,
    /// Still running.
    Running,
}

/// Records a report (its time is the database's).
pub async fn report(conn: &mut PgConnection, beat: &Heartbeat) -> Result<(Worker, Reported)> {
    let row = sqlx::query!(
        r#"WITH before AS (
               SELECT reported_down FROM worker_heartbeats WHERE process_id = $1 FOR UPDATE
           )
           INSERT INTO worker_heartbeats (process_id, service, hostname, version, started_at, last_seen_at)
           VALUES ($1, $2, $3, $4, $5, now())
           ON CONFLICT (process_id) DO UPDATE
           SET service = EXCLUDED.service, hostname = EXCLUDED.hostname, version = EXCLUDED.version,
               started_at = EXCLUDED.started_at, last_seen_at = now(), reported_down = false
           RETURNING process_id, service, hostname, version, started_at, last_seen_at, reported_down,
                     (SELECT reported_down FROM before) AS was_down"#,
        beat.process_id,
        beat.service,
        beat.hostname,
        beat.version,
        beat.started_at
    )
    .fetch_one(conn)
    .await?;
    let reported = match row.was_down {
        None => Reported::New,
        Some(true) => Reported::Back,
        Some(false) => Reported::Running,
    };
    Ok((
        Worker {
            process_id: row.process_id,
            service: row.service,
            hostname: row.hostname,
            version: row.version,
            started_at: row.started_at,
            last_seen_at: row.last_seen_at,
            reported_down: row.reported_down,
        },
        reported,
    ))
}

/// Forgets a process that stopped on purpose.
pub async fn forget(conn: &mut PgConnection, process_id: &str) -> Result<()> {
    sqlx::query!(
        "DELETE FROM worker_heartbeats WHERE process_id = $1",
        process_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks down every process silent for longer than `silence` and not yet
/// reported; returns them (each exactly once, whoever runs this).
pub async fn mark_silent(
    conn: &mut PgConnection,
    silence: std::time::Duration,
) -> Result<Vec<Worker>> {
    let rows = sqlx::query_as!(
        Worker,
        "UPDATE worker_heartbeats SET reported_down = true
         WHERE NOT reported_down AND last_seen_at < now() - make_interval(secs => $1)
         RETURNING process_id, service, hostname, version, started_at, last_seen_at, reported_down",
        silence.as_secs_f64()
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Every known process, by service and id.
pub async fn list(conn: &mut PgConnection) -> Result<Vec<Worker>> {
    let rows = sqlx::query_as!(
        Worker,
        "SELECT process_id, service, hostname, version, started_at, last_seen_at, reported_down
         FROM worker_heartbeats ORDER BY service, process_id"
    )
    .fetch_all(conn)
    .await?;
    Ok(rows)
}

/// Forgets processes down for longer than `hours`; how many.
pub async fn prune(conn: &mut PgConnection, hours: i32) -> Result<u64> {
    let done = sqlx::query!(
        "DELETE FROM worker_heartbeats
         WHERE reported_down AND last_seen_at < now() - make_interval(hours => $1)",
        hours
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
