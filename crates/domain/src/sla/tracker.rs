//! What a ticket change does to the ticket's clocks (CONTRACT §7).
//!
//! Every change that could move a clock (opening, a status, priority or
//! queue change, a public message) calls [`track`] with the clocks as stored
//! and the policy that applies now; the result is written back in the same
//! transaction. The rules:
//! - first response: runs from the opening, met by the first public staff
//!   message;
//! - next response: each public contact message after a staff reply starts a
//!   cycle (unless one is running), the next public staff message meets it;
//! - resolution: met when the ticket is solved or closed, runs on when it
//!   reopens;
//! - every clock stops in a pause status (and while solved or closed), and
//!   runs on from what it had spent when the status ends;
//! - a new priority or queue re-evaluates the policy: a new target counts
//!   the time spent, a metric without a target loses its clock, a target
//!   that newly applies starts counting at the change.

use jiff::Timestamp;
use uuid::Uuid;

use super::{Clock, Metric, Policy};
use crate::{Priority, TicketStatus};

/// One of a ticket's clocks, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricClock {
    /// What it measures.
    pub metric: Metric,
    /// Which cycle of the metric on this ticket (from 1; next response has
    /// one per contact message after a staff reply). Each stage fires once
    /// per cycle.
    pub cycle: i32,
    /// The policy whose target it counts against.
    pub policy_id: Option<Uuid>,
    /// The clock.
    pub clock: Clock,
}

/// What happened to the ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happening {
    /// It was opened.
    Opened,
    /// A field changed (status, priority, queue, ...).
    Changed,
    /// A colleague posted a public message.
    StaffReply,
    /// The contact posted a public message.
    ContactMessage,
}

/// The ticket as the clocks see it, after the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TicketState {
    /// Status.
    pub status: TicketStatus,
    /// Priority.
    pub priority: Priority,
    /// Whether staff had replied publicly before this change (a
    /// [`Happening::StaffReply`] counts as one). Only read where
    /// [`needs_reply_history`] says so.
    pub staff_replied: bool,
}

/// Whether [`track`] will read [`TicketState::staff_replied`] (finding it
/// costs the caller a query, so it is looked up only then).
pub fn needs_reply_history(
    clocks: &[MetricClock],
    policy: Option<&Policy>,
    priority: Priority,
    happening: Happening,
) -> bool {
    let Some(policy) = policy else {
        return false;
    };
    let has = |metric| clocks.iter().any(|c| c.metric == metric);
    match happening {
        Happening::Opened | Happening::StaffReply => false,
        Happening::ContactMessage => policy.target(priority, Metric::NextResponse).is_some(),
        Happening::Changed => {
            policy.target(priority, Metric::FirstResponse).is_some() && !has(Metric::FirstResponse)
        }
    }
}

/// Brings the clocks up to date with the change at `now`.
pub fn track(
    clocks: &mut Vec<MetricClock>,
    policy: Option<&Policy>,
    ticket: TicketState,
    happening: Happening,
    now: Timestamp,
) {
    let Some(policy) = policy else {
        // No policy applies (any more): no targets, no clocks. Stages that
        // fired stay on record with their escalations.
        clocks.clear();
        return;
    };
    let calendar = &policy.calendar;
    let target = |metric| policy.target(ticket.priority, metric);

    // The targets of the policy that applies now.
    clocks.retain(|c| target(c.metric).is_some());
    for c in clocks.iter_mut() {
        if let Some(t) = target(c.metric)
            && (c.clock.target != t || c.policy_id != Some(policy.id))
        {
            c.clock.retarget(t, now, calendar);
            c.policy_id = Some(policy.id);
        }
    }

    // What this change meets or starts.
    let position = |clocks: &[MetricClock], metric| clocks.iter().position(|c| c.metric == metric);
    match happening {
        Happening::StaffReply => {
            for c in clocks.iter_mut() {
                if matches!(c.metric, Metric::FirstResponse | Metric::NextResponse)
                    && c.clock.fulfilled_at.is_none()
                {
                    c.clock.fulfil(now, calendar);
                }
            }
        }
        Happening::ContactMessage => {
            if let Some(t) = target(Metric::NextResponse)
                && ticket.staff_replied
            {
                let fresh = |cycle| MetricClock {
                    metric: Metric::NextResponse,
                    cycle,
                    policy_id: Some(policy.id),
                    clock: Clock::start(t, now, calendar),
                };
                match position(clocks, Metric::NextResponse) {
                    // One is waiting for an answer already: it keeps running.
                    Some(i) if clocks[i].clock.fulfilled_at.is_none() => {}
                    Some(i) => clocks[i] = fresh(clocks[i].cycle + 1),
                    None => clocks.push(fresh(1)),
                }
            }
        }
        Happening::Opened | Happening::Changed => {}
    }

    // Targets that newly apply start counting now.
    let solved = matches!(ticket.status, TicketStatus::Solved | TicketStatus::Closed);
    let answered = happening == Happening::StaffReply
        || (happening == Happening::Changed && ticket.staff_replied);
    for (metric, wanted) in [
        (Metric::FirstResponse, !answered),
        (Metric::Resolution, !solved),
    ] {
        if let Some(t) = target(metric)
            && wanted
            && position(clocks, metric).is_none()
        {
            clocks.push(MetricClock {
                metric,
                cycle: 1,
                policy_id: Some(policy.id),
                clock: Clock::start(t, now, calendar),
            });
        }
    }

    // Where each clock stands in the ticket's status.
    let stopped = solved || policy.pauses(ticket.status);
    for c in clocks.iter_mut() {
        if c.metric == Metric::Resolution {
            match (solved, c.clock.fulfilled_at.is_some()) {
                (true, false) => c.clock.fulfil(now, calendar),
                (false, true) => c.clock.reopen(now, calendar),
                _ => {}
            }
        }
        if c.clock.fulfilled_at.is_some() {
            continue;
        }
        match (stopped, c.clock.running_since.is_some()) {
            (true, true) => c.clock.pause(now, calendar),
            (false, false) => c.clock.resume(now, calendar),
            _ => {}
        }
    }
    clocks.sort_by_key(|c| c.metric.as_str());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::calendar::BusinessCalendar;
    use crate::sla::{State, Target};

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|_| unreachable!("{text}"))
    }

    fn policy() -> Policy {
        let minutes = |m: u64| Target {
            within: Duration::from_secs(m * 60),
            warn_before: None,
        };
        Policy {
            id: Uuid::from_u128(1),
            pause_statuses: vec![TicketStatus::Pending, TicketStatus::OnHold],
            targets: vec![
                (Priority::Normal, Metric::FirstResponse, minutes(60)),
                (Priority::Normal, Metric::NextResponse, minutes(120)),
                (Priority::Normal, Metric::Resolution, minutes(480)),
                (Priority::Urgent, Metric::FirstResponse, minutes(15)),
            ],
            calendar: BusinessCalendar::always(),
        }
    }

    fn state(status: TicketStatus, priority: Priority, staff_replied: bool) -> TicketState {
        TicketState {
            status,
            priority,
            staff_replied,
        }
    }

    fn find(clocks: &[MetricClock], metric: Metric) -> &MetricClock {
        clocks
            .iter()
            .find(|c| c.metric == metric)
            .unwrap_or_else(|| unreachable!("no {metric} clock"))
    }

    #[test]
    fn an_opening_starts_first_response_and_resolution() {
        let p = policy();
        let mut clocks = Vec::new();
        let open = state(TicketStatus::New, Priority::Normal, false);
        track(
            &mut clocks,
            Some(&p),
            open,
            Happening::Opened,
            ts("2026-12-01T10:00:00Z"),
        );
        let metrics: Vec<_> = clocks.iter().map(|c| c.metric).collect();
        assert_eq!(metrics, [Metric::FirstResponse, Metric::Resolution]);
        assert_eq!(
            find(&clocks, Metric::FirstResponse).clock.due_at,
            Some(ts("2026-12-01T11:00:00Z"))
        );
    }

    #[test]
    fn replies_meet_first_and_next_response_and_contacts_start_cycles() {
        let p = policy();
        let mut clocks = Vec::new();
        let open = state(TicketStatus::Open, Priority::Normal, false);
        let t0 = ts("2026-12-01T10:00:00Z");
        track(&mut clocks, Some(&p), open, Happening::Opened, t0);
        // The contact writes again before anyone answered: no next response yet.
        track(
            &mut clocks,
            Some(&p),
            open,
            Happening::ContactMessage,
            ts("2026-12-01T10:05:00Z"),
        );
        assert!(clocks.iter().all(|c| c.metric != Metric::NextResponse));

        let replied = state(TicketStatus::Open, Priority::Normal, true);
        track(
            &mut clocks,
            Some(&p),
            replied,
            Happening::StaffReply,
            ts("2026-12-01T10:30:00Z"),
        );
        assert_eq!(
            find(&clocks, Metric::FirstResponse).clock.state(),
            State::Fulfilled
        );
        track(
            &mut clocks,
            Some(&p),
            replied,
            Happening::ContactMessage,
            ts("2026-12-01T11:00:00Z"),
        );
        let next = find(&clocks, Metric::NextResponse);
        assert_eq!((next.cycle, next.clock.state()), (1, State::Running));
        assert_eq!(next.clock.due_at, Some(ts("2026-12-01T13:00:00Z")));
        // A second contact message while it waits: the same cycle runs on.
        track(
            &mut clocks,
            Some(&p),
            replied,
            Happening::ContactMessage,
            ts("2026-12-01T11:30:00Z"),
        );
        assert_eq!(find(&clocks, Metric::NextResponse).cycle, 1);
        track(
            &mut clocks,
            Some(&p),
            replied,
            Happening::StaffReply,
            ts("2026-12-01T12:00:00Z"),
        );
        assert_eq!(
            find(&clocks, Metric::NextResponse).clock.state(),
            State::Fulfilled
        );
        track(
            &mut clocks,
            Some(&p),
            replied,
            Happening::ContactMessage,
            ts("2026-12-01T12:10:00Z"),
        );
        let next = find(&clocks, Metric::NextResponse);
        assert_eq!((next.cycle, next.clock.state()), (2, State::Running));
    }

    #[test]
    fn pause_statuses_and_solving_stop_the_clocks_and_a_reopen_resumes() {
        let p = policy();
        let mut clocks = Vec::new();
        let at = |s: TicketStatus| state(s, Priority::Normal, false);
        track(
            &mut clocks,
            Some(&p),
            at(TicketStatus::New),
            Happening::Opened,
            ts("2026-12-01T10:00:00Z"),
        );
        track(
            &mut clocks,
            Some(&p),
            at(TicketStatus::Pending),
            Happening::Changed,
            ts("2026-12-01T10:20:00Z"),
        );
        assert!(clocks.iter().all(|c| c.clock.state() == State::Paused));
        track(
            &mut clocks,
            Some(&p),
            at(TicketStatus::Open),
            Happening::Changed,
            ts("2026-12-01T15:00:00Z"),
        );
        assert_eq!(
            find(&clocks, Metric::FirstResponse).clock.due_at,
            Some(ts("2026-12-01T15:40:00Z")),
            "the pending hours did not count"
        );
        track(
            &mut clocks,
            Some(&p),
            at(TicketStatus::Solved),
            Happening::Changed,
            ts("2026-12-01T16:00:00Z"),
        );
        assert_eq!(
            find(&clocks, Metric::Resolution).clock.state(),
            State::Fulfilled
        );
        assert_eq!(
            find(&clocks, Metric::FirstResponse).clock.state(),
            State::Paused
        );
        track(
            &mut clocks,
            Some(&p),
            at(TicketStatus::Open),
            Happening::Changed,
            ts("2026-12-02T09:00:00Z"),
        );
        let resolution = find(&clocks, Metric::Resolution);
        assert_eq!(resolution.clock.state(), State::Running);
        // 8 h target: 20 min before the pause, 1 h after it, then reopened.
        assert_eq!(resolution.clock.due_at, Some(ts("2026-12-02T15:40:00Z")));
    }

    #[test]
    fn a_new_priority_retargets_and_a_lost_policy_drops_the_clocks() {
        let p = policy();
        let mut clocks = Vec::new();
        track(
            &mut clocks,
            Some(&p),
            state(TicketStatus::New, Priority::Normal, false),
            Happening::Opened,
            ts("2026-12-01T10:00:00Z"),
        );
        track(
            &mut clocks,
            Some(&p),
            state(TicketStatus::New, Priority::Urgent, false),
            Happening::Changed,
            ts("2026-12-01T10:10:00Z"),
        );
        let metrics: Vec<_> = clocks.iter().map(|c| c.metric).collect();
        assert_eq!(
            metrics,
            [Metric::FirstResponse],
            "urgent tickets have no resolution target here"
        );
        assert_eq!(
            clocks[0].clock.due_at,
            Some(ts("2026-12-01T10:15:00Z")),
            "10 of the 15 minutes are spent"
        );
        track(
            &mut clocks,
            None,
            state(TicketStatus::New, Priority::Urgent, false),
            Happening::Changed,
            ts("2026-12-01T10:12:00Z"),
        );
        assert!(clocks.is_empty());
    }

    #[test]
    fn a_policy_that_newly_applies_starts_what_is_still_owed() {
        let p = policy();
        let mut clocks = Vec::new();
        let now = ts("2026-12-01T10:00:00Z");
        let replied = state(TicketStatus::Open, Priority::Normal, true);
        assert!(needs_reply_history(
            &clocks,
            Some(&p),
            Priority::Normal,
            Happening::Changed
        ));
        track(&mut clocks, Some(&p), replied, Happening::Changed, now);
        let metrics: Vec<_> = clocks.iter().map(|c| c.metric).collect();
        assert_eq!(
            metrics,
            [Metric::Resolution],
            "staff had answered: no first response is owed"
        );
    }
}
