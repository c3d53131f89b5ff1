//! Service-level clocks and the escalations they fired (CONTRACT §7).
//!
//! A ticket change moves its clocks through [`track`], in the change's
//! transaction: the policy that applies now is read, the clocks are brought
//! up to date by the domain's rules ([`tickiti_domain::sla::track`]) and
//! written back. The dispatcher finds clocks whose next stage came due with
//! [`claim_due`] and fires each stage once with [`record_escalation`].

use std::time::Duration;

use serde_json::json;
use sqlx::PgConnection;
use tickiti_domain::calendar::{BusinessCalendar, from_timestamp, to_timestamp, written};
use tickiti_domain::sla::{
    self, Clock, ClockView, Happening, MetricClock, Policy, Stage, Target, TicketState,
};
use tickiti_domain::ticket::TicketOut;
use tickiti_domain::{EventEnvelope, EventType, Priority, TicketStatus};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Result;
use crate::tickets::Ticket;

/// A clock row.
#[derive(Debug, Clone, sqlx::FromRow)]
struct ClockRow {
    metric: String,
    cycle: i32,
    policy_id: Option<Uuid>,
    within_ms: i64,
    warn_before_ms: Option<i64>,
    spent_ms: i64,
    running_since: Option<OffsetDateTime>,
    due_at: Option<OffsetDateTime>,
    warn_at: Option<OffsetDateTime>,
    warned_at: Option<OffsetDateTime>,
    breached_at: Option<OffsetDateTime>,
    fulfilled_at: Option<OffsetDateTime>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl ClockRow {
    /// The domain clock (None: a metric this build does not know).
    fn into_clock(self) -> Option<MetricClock> {
        let ts = |t: Option<OffsetDateTime>| t.map(to_timestamp);
        Some(MetricClock {
            metric: self.metric.parse().ok()?,
            cycle: self.cycle,
            policy_id: self.policy_id,
            clock: Clock {
                target: Target {
                    within: duration(self.within_ms),
                    warn_before: self.warn_before_ms.map(duration),
                },
                spent: duration(self.spent_ms),
                running_since: ts(self.running_since),
                due_at: ts(self.due_at),
                warn_at: ts(self.warn_at),
                warned_at: ts(self.warned_at),
                breached_at: ts(self.breached_at),
                fulfilled_at: ts(self.fulfilled_at),
            },
        })
    }
}

/// How a clock shows in ticket answers.
pub fn view(c: &MetricClock) -> ClockView {
    let t = |t: Option<jiff::Timestamp>| t.map(from_timestamp);
    ClockView {
        metric: c.metric,
        due_at: t(c.clock.due_at),
        state: c.clock.state(),
        warned_at: t(c.clock.warned_at),
        breached_at: t(c.clock.breached_at),
        fulfilled_at: t(c.clock.fulfilled_at),
    }
}

/// The policy that applies to tickets of this queue: the first by position
/// naming the queue or no queue, with its calendar.
pub async fn applicable_policy(
    conn: &mut PgConnection,
    organization_id: Uuid,
    queue_id: Option<Uuid>,
) -> Result<Option<Policy>> {
    let row = sqlx::query!(
        r#"SELECT p.id, p.pause_statuses, p.targets,
                  c.time_zone AS "time_zone?", c.hours AS "hours?", c.holidays AS "holidays?"
           FROM sla_policies p LEFT JOIN business_calendars c ON c.id = p.calendar_id
           WHERE p.organization_id = $1
             AND (cardinality(p.queue_ids) = 0 OR $2::uuid = ANY(p.queue_ids))
           ORDER BY p.position, p.id
           LIMIT 1"#,
        organization_id,
        queue_id
    )
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let calendar = match (&row.time_zone, &row.hours, &row.holidays) {
        (Some(zone), Some(hours), Some(holidays)) => {
            match written::from_stored(zone, hours, holidays) {
                Some(calendar) => calendar,
                None => {
                    tracing::warn!(policy.id = %row.id, "the policy's calendar no longer reads; its clocks stay as they are");
                    return Ok(None);
                }
            }
        }
        _ => BusinessCalendar::always(),
    };
    let policy = Policy::from_stored(row.id, &row.pause_statuses, &row.targets, calendar);
    if policy.is_none() {
        tracing::warn!(policy.id = %row.id, "the policy no longer reads; skipped");
    }
    Ok(policy)
}

/// The ticket's clocks, locked until the transaction ends.
async fn load(conn: &mut PgConnection, ticket_id: Uuid) -> Result<Vec<MetricClock>> {
    let rows = sqlx::query_as!(
        ClockRow,
        "SELECT metric, cycle, policy_id, within_ms, warn_before_ms, spent_ms, running_since,
                due_at, warn_at, warned_at, breached_at, fulfilled_at
         FROM sla_clocks WHERE ticket_id = $1 ORDER BY metric FOR UPDATE",
        ticket_id
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().filter_map(ClockRow::into_clock).collect())
}

/// Whether staff answered the ticket publicly.
async fn staff_replied(conn: &mut PgConnection, ticket_id: Uuid) -> Result<bool> {
    let replied = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM messages
                          WHERE ticket_id = $1 AND author_user_id IS NOT NULL AND visibility = 'public') AS "e!""#,
        ticket_id
    )
    .fetch_one(conn)
    .await?;
    Ok(replied)
}

/// Clock rows as the parallel arrays an `UNNEST` write takes.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    pub metrics: Vec<String>,
    pub cycles: Vec<i32>,
    pub policy_ids: Vec<Option<Uuid>>,
    pub within_ms: Vec<i64>,
    pub warn_before_ms: Vec<Option<i64>>,
    pub spent_ms: Vec<i64>,
    pub running_since: Vec<Option<OffsetDateTime>>,
    pub due_at: Vec<Option<OffsetDateTime>>,
    pub warn_at: Vec<Option<OffsetDateTime>>,
    pub warned_at: Vec<Option<OffsetDateTime>>,
    pub breached_at: Vec<Option<OffsetDateTime>>,
    pub fulfilled_at: Vec<Option<OffsetDateTime>>,
    pub fire_at: Vec<Option<OffsetDateTime>>,
    pub views: Vec<serde_json::Value>,
}

impl Rows {
    pub(crate) fn of(clocks: &[MetricClock]) -> Rows {
        let mut rows = Rows::default();
        let t = |t: Option<jiff::Timestamp>| t.map(from_timestamp);
        for c in clocks {
            let k = &c.clock;
            rows.metrics.push(c.metric.as_str().to_owned());
            rows.cycles.push(c.cycle);
            rows.policy_ids.push(c.policy_id);
            rows.within_ms.push(millis(k.target.within));
            rows.warn_before_ms.push(k.target.warn_before.map(millis));
            rows.spent_ms.push(millis(k.spent));
            rows.running_since.push(t(k.running_since));
            rows.due_at.push(t(k.due_at));
            rows.warn_at.push(t(k.warn_at));
            rows.warned_at.push(t(k.warned_at));
            rows.breached_at.push(t(k.breached_at));
            rows.fulfilled_at.push(t(k.fulfilled_at));
            rows.fire_at.push(t(k.next_stage_at()));
            rows.views
                .push(serde_json::to_value(view(c)).unwrap_or_default());
        }
        rows
    }
}

/// Writes the ticket's clocks: these, and no others.
async fn save(
    conn: &mut PgConnection,
    organization_id: Uuid,
    ticket_id: Uuid,
    clocks: &[MetricClock],
) -> Result<()> {
    let r = Rows::of(clocks);
    sqlx::query!(
        "WITH gone AS (
             DELETE FROM sla_clocks WHERE ticket_id = $1 AND metric <> ALL($3::text[])
         )
         INSERT INTO sla_clocks (ticket_id, organization_id, metric, cycle, policy_id, within_ms,
                                 warn_before_ms, spent_ms, running_since, due_at, warn_at,
                                 warned_at, breached_at, fulfilled_at, fire_at, view)
         SELECT $1, $2, * FROM UNNEST($3::text[], $4::int[], $5::uuid[], $6::bigint[], $7::bigint[],
                                      $8::bigint[], $9::timestamptz[], $10::timestamptz[],
                                      $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
                                      $14::timestamptz[], $15::timestamptz[], $16::jsonb[])
         ON CONFLICT (ticket_id, metric) DO UPDATE SET
             cycle = EXCLUDED.cycle, policy_id = EXCLUDED.policy_id, within_ms = EXCLUDED.within_ms,
             warn_before_ms = EXCLUDED.warn_before_ms, spent_ms = EXCLUDED.spent_ms,
             running_since = EXCLUDED.running_since, due_at = EXCLUDED.due_at,
             warn_at = EXCLUDED.warn_at, warned_at = EXCLUDED.warned_at,
             breached_at = EXCLUDED.breached_at, fulfilled_at = EXCLUDED.fulfilled_at,
             fire_at = EXCLUDED.fire_at, view = EXCLUDED.view",
        ticket_id,
        organization_id,
        &r.metrics,
        &r.cycles,
        &r.policy_ids as &[Option<Uuid>],
        &r.within_ms,
        &r.warn_before_ms as &[Option<i64>],
        &r.spent_ms,
        &r.running_since as &[Option<OffsetDateTime>],
        &r.due_at as &[Option<OffsetDateTime>],
        &r.warn_at as &[Option<OffsetDateTime>],
        &r.warned_at as &[Option<OffsetDateTime>],
        &r.breached_at as &[Option<OffsetDateTime>],
        &r.fulfilled_at as &[Option<OffsetDateTime>],
        &r.fire_at as &[Option<OffsetDateTime>],
        &r.views
    )
    .execute(conn)
    .await?;
    Ok(())
}

fn ticket_state(ticket: &Ticket, staff_replied: bool) -> TicketState {
    TicketState {
        // The database's CHECK constraints admit only these spellings.
        status: ticket.status.parse().unwrap_or(TicketStatus::Open),
        priority: ticket.priority.parse().unwrap_or(Priority::Normal),
        staff_replied,
    }
}

/// The clocks a ticket about to be opened starts with (written by
/// [`crate::tickets::open`] with the ticket).
pub async fn opening(conn: &mut PgConnection, ticket: &Ticket) -> Result<Vec<MetricClock>> {
    let policy = applicable_policy(conn, ticket.organization_id, ticket.queue_id).await?;
    let mut clocks = Vec::new();
    sla::track(
        &mut clocks,
        policy.as_ref(),
        ticket_state(ticket, false),
        Happening::Opened,
        to_timestamp(ticket.created_at),
    );
    Ok(clocks)
}

/// Moves the clocks of `ticket` (as it is after the change, locked by the
/// caller's transaction) for what happened, and returns how they show.
pub async fn track(
    conn: &mut PgConnection,
    ticket: &Ticket,
    happening: Happening,
) -> Result<Vec<ClockView>> {
    let before = load(conn, ticket.id).await?;
    let policy = applicable_policy(conn, ticket.organization_id, ticket.queue_id).await?;
    if before.is_empty() && policy.is_none() {
        return Ok(Vec::new());
    }
    let state = ticket_state(ticket, false);
    let staff_replied = match happening {
        Happening::StaffReply => true,
        _ if sla::needs_reply_history(&before, policy.as_ref(), state.priority, happening) => {
            staff_replied(conn, ticket.id).await?
        }
        _ => false,
    };
    let mut clocks = before.clone();
    sla::track(
        &mut clocks,
        policy.as_ref(),
        ticket_state(ticket, staff_replied),
        happening,
        to_timestamp(OffsetDateTime::now_utc()),
    );
    if clocks != before {
        save(conn, ticket.organization_id, ticket.id, &clocks).await?;
    }
    Ok(clocks.iter().map(view).collect())
}

/// A clock whose next stage came due, locked for the firing transaction.
#[derive(Debug, Clone)]
pub struct DueClock {
    /// The ticket.
    pub ticket_id: Uuid,
    /// Its organization.
    pub organization_id: Uuid,
    /// The clock.
    pub clock: MetricClock,
}

/// Up to `limit` clocks whose next stage is due by now, earliest first,
/// locked; `SKIP LOCKED` lets several dispatchers take different ones, and
/// skips clocks a ticket change holds (it moves them; the next scan sees
/// where they ended up).
pub async fn claim_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<DueClock>> {
    let rows = sqlx::query!(
        "SELECT ticket_id, organization_id, metric, cycle, policy_id, within_ms, warn_before_ms,
                spent_ms, running_since, due_at, warn_at, warned_at, breached_at, fulfilled_at
         FROM sla_clocks
         WHERE fire_at <= now()
         ORDER BY fire_at
         LIMIT $1
         FOR UPDATE SKIP LOCKED",
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let clock = ClockRow {
                metric: r.metric,
                cycle: r.cycle,
                policy_id: r.policy_id,
                within_ms: r.within_ms,
                warn_before_ms: r.warn_before_ms,
                spent_ms: r.spent_ms,
                running_since: r.running_since,
                due_at: r.due_at,
                warn_at: r.warn_at,
                warned_at: r.warned_at,
                breached_at: r.breached_at,
                fulfilled_at: r.fulfilled_at,
            }
            .into_clock()?;
            Some(DueClock {
                ticket_id: r.ticket_id,
                organization_id: r.organization_id,
                clock,
            })
        })
        .collect())
}

/// Writes one clock back after a stage fired.
pub async fn save_fired(conn: &mut PgConnection, due: &DueClock) -> Result<()> {
    let k = &due.clock.clock;
    let t = |t: Option<jiff::Timestamp>| t.map(from_timestamp);
    sqlx::query!(
        "UPDATE sla_clocks SET warn_at = $3, warned_at = $4, breached_at = $5, fire_at = $6, view = $7
         WHERE ticket_id = $1 AND metric = $2",
        due.ticket_id,
        due.clock.metric.as_str(),
        t(k.warn_at),
        t(k.warned_at),
        t(k.breached_at),
        t(k.next_stage_at()),
        serde_json::to_value(view(&due.clock)).unwrap_or_default()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// An escalation that fired.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub organization_id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// The metric (`intervention` for a manager-attention stage).
    pub metric: String,
    /// The metric's cycle.
    pub cycle: i32,
    /// Stage.
    pub stage: Stage,
    /// The policy it counted against.
    pub policy_id: Option<Uuid>,
    /// When the target was due.
    pub due_at: Option<OffsetDateTime>,
    /// When it fired.
    pub fired_at: OffsetDateTime,
}

/// Records that a stage fired; `false` when it fired already for this
/// ticket, metric and cycle (the caller then sends nothing). This unique
/// key is what makes each stage fire exactly once, however many
/// dispatchers run.
pub async fn record_escalation(conn: &mut PgConnection, escalation: &Escalation) -> Result<bool> {
    let inserted = sqlx::query_scalar!(
        "INSERT INTO sla_escalations (id, organization_id, ticket_id, metric, cycle, stage, policy_id,
                                      due_at, fired_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (ticket_id, metric, cycle, stage) DO NOTHING
         RETURNING id",
        escalation.id,
        escalation.organization_id,
        escalation.ticket_id,
        escalation.metric,
        escalation.cycle,
        escalation.stage.as_str(),
        escalation.policy_id,
        escalation.due_at,
        escalation.fired_at
    )
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some())
}

/// The events of a stage that fired: `system.escalation` for the browsers
/// of admins, the assignee and the queue's managers, and for a breach
/// `ticket.escalated` for webhooks.
pub async fn escalation_events(
    conn: &mut PgConnection,
    escalation: &Escalation,
) -> Result<Vec<EventEnvelope>> {
    let mut events = Vec::new();
    let org = escalation.organization_id;
    // Read after the clock was written: the ticket shows the breach.
    let Some(ticket) = crate::tickets::get(conn, org, escalation.ticket_id, false).await? else {
        return Ok(events);
    };
    let managers = match ticket.queue_id {
        Some(queue) => crate::queues::get(conn, org, queue)
            .await?
            .map(|q| q.manager_ids)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let rfc3339 = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let due_at = escalation.due_at.map(rfc3339);
    events.push(EventEnvelope::new(
        EventType::SystemEscalation,
        org,
        json!({
            "escalation_id": escalation.id,
            "ticket_id": ticket.id,
            "code": ticket.code,
            "subject": ticket.subject,
            "metric": escalation.metric,
            "stage": escalation.stage,
            "due_at": due_at,
            "assignee_id": ticket.assignee_id,
            "queue_id": ticket.queue_id,
            "manager_ids": managers,
        }),
    ));
    if escalation.stage == Stage::Breach {
        let mut data = serde_json::to_value(TicketOut::from(ticket))
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        data["escalation"] = json!({
            "id": escalation.id,
            "metric": escalation.metric,
            "stage": escalation.stage,
            "due_at": due_at,
            "fired_at": rfc3339(escalation.fired_at),
            "policy_id": escalation.policy_id,
        });
        events.push(EventEnvelope::new(EventType::TicketEscalated, org, data));
    }
    Ok(events)
}
