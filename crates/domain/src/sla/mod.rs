//! Service-level clocks (CONTRACT §7): one per ticket, metric and cycle.
//!
//! A clock keeps the business time already spent (while it ran before) and,
//! while it runs, since when; its due and warning times follow from the
//! target and the calendar. Every change of a ticket that touches a clock
//! (a pause status, a reply, a new priority) is one of the transitions
//! here, applied in the transaction of that change; the dispatcher only
//! looks for due times that have passed. Pure: no I/O, no clock reads.

pub mod policy;
pub mod tracker;

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use policy::{Policy, SlaTarget};
pub use tracker::{Happening, MetricClock, TicketState, needs_reply_history, track};

use crate::calendar::BusinessCalendar;
use crate::string_enum;

string_enum!(
    /// What a clock measures.
    Metric {
        FirstResponse => "first_response",
        NextResponse => "next_response",
        Resolution => "resolution",
    }
);

/// A target: the metric is due `within` of business time; a warning
/// `warn_before` that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Business time allowed.
    pub within: Duration,
    /// How long before due the warning comes (None: no warning).
    pub warn_before: Option<Duration>,
}

string_enum!(
    /// Where a clock stands: counting, stopped by a pause status, met
    /// before it was due, or past due (it may still be met later; the
    /// breach stays on record).
    State {
        Running => "running",
        Paused => "paused",
        Fulfilled => "fulfilled",
        Breached => "breached",
    }
);

/// One clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clock {
    /// Its target.
    pub target: Target,
    /// Business time spent in earlier running stretches.
    pub spent: Duration,
    /// Start of the current running stretch (None: not running).
    pub running_since: Option<Timestamp>,
    /// When the current running stretch is due (None: not running, or
    /// the calendar never opens).
    pub due_at: Option<Timestamp>,
    /// When the warning is due (None: none asked for, or not running).
    pub warn_at: Option<Timestamp>,
    /// Set once the warning fired.
    pub warned_at: Option<Timestamp>,
    /// Set once the breach fired.
    pub breached_at: Option<Timestamp>,
    /// Set when met.
    pub fulfilled_at: Option<Timestamp>,
}

impl Clock {
    /// A clock that starts running at `now`.
    pub fn start(target: Target, now: Timestamp, calendar: &BusinessCalendar) -> Self {
        let mut clock = Clock {
            target,
            spent: Duration::ZERO,
            running_since: Some(now),
            due_at: None,
            warn_at: None,
            warned_at: None,
            breached_at: None,
            fulfilled_at: None,
        };
        clock.schedule(calendar);
        clock
    }

    /// Where it stands.
    pub fn state(&self) -> State {
        if self.fulfilled_at.is_some() {
            State::Fulfilled
        } else if self.breached_at.is_some() {
            State::Breached
        } else if self.running_since.is_some() {
            State::Running
        } else {
            State::Paused
        }
    }

    /// Due and warning times of the current stretch, from what is left.
    fn schedule(&mut self, calendar: &BusinessCalendar) {
        let Some(since) = self.running_since else {
            self.due_at = None;
            self.warn_at = None;
            return;
        };
        let left = self.target.within.saturating_sub(self.spent);
        self.due_at = calendar.add(since, left);
        self.warn_at = match (self.target.warn_before, self.warned_at) {
            (Some(before), None) => calendar.add(since, left.saturating_sub(before)),
            _ => None,
        };
    }

    /// A pause status began at `now`: the spent time is kept, nothing is due.
    pub fn pause(&mut self, now: Timestamp, calendar: &BusinessCalendar) {
        if let Some(since) = self.running_since.take() {
            self.spent += calendar.between(since, now);
            self.schedule(calendar);
        }
    }

    /// The pause ended at `now` (or a resolved ticket reopened): it runs on
    /// from what was spent.
    pub fn resume(&mut self, now: Timestamp, calendar: &BusinessCalendar) {
        if self.running_since.is_none() && self.fulfilled_at.is_none() {
            self.running_since = Some(now);
            self.schedule(calendar);
        }
    }

    /// A new target (priority or queue changed) from `now`: the time spent
    /// so far counts against it.
    pub fn retarget(&mut self, target: Target, now: Timestamp, calendar: &BusinessCalendar) {
        if let Some(since) = self.running_since {
            self.spent += calendar.between(since, now);
            self.running_since = Some(now);
        }
        self.target = target;
        self.schedule(calendar);
    }

    /// Met at `now`: it stops for good (for resolution, until a reopen
    /// calls [`Clock::reopen`]).
    pub fn fulfil(&mut self, now: Timestamp, calendar: &BusinessCalendar) {
        self.pause(now, calendar);
        self.fulfilled_at = Some(now);
    }

    /// A resolved ticket reopened at `now`: resolution runs on.
    pub fn reopen(&mut self, now: Timestamp, calendar: &BusinessCalendar) {
        self.fulfilled_at = None;
        self.resume(now, calendar);
    }

    /// The stage due at `now`, if one is: the breach first (a warning
    /// whose time also passed is then moot), else the warning. Firing it
    /// is the caller's, exactly once, with [`Clock::fired`].
    pub fn due_stage(&self, now: Timestamp) -> Option<Stage> {
        if self.state() != State::Running {
            return None;
        }
        if self.due_at.is_some_and(|due| due <= now) {
            return Some(Stage::Breach);
        }
        if self.warn_at.is_some_and(|warn| warn <= now) {
            return Some(Stage::Warning);
        }
        None
    }

    /// When the next stage comes due, while one still can (the
    /// dispatcher's scan looks for these).
    pub fn next_stage_at(&self) -> Option<Timestamp> {
        if self.state() != State::Running {
            return None;
        }
        match (self.warn_at, self.due_at) {
            (Some(warn), Some(due)) => Some(warn.min(due)),
            (warn, due) => warn.or(due),
        }
    }

    /// Records that `stage` fired at `now`.
    pub fn fired(&mut self, stage: Stage, now: Timestamp) {
        match stage {
            Stage::ManagerAttention => {}
            Stage::Warning => {
                self.warned_at = Some(now);
                self.warn_at = None;
            }
            Stage::Breach => {
                // A warning that never fired stays unfired: it is moot.
                self.breached_at = Some(now);
                self.warn_at = None;
            }
        }
    }
}

string_enum!(
    /// An escalation stage: a clock's `warn_before` its due time, its due
    /// time passed, or (not a clock's) an intervention ticket raised to the
    /// queue's managers at once (`fma_inbox_managers`).
    Stage {
        Warning => "warning",
        Breach => "breach",
        ManagerAttention => "manager_attention",
    }
);

/// A clock as ticket answers show it (`sla` items).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ClockView {
    /// What it measures.
    pub metric: Metric,
    /// When it is due (null while paused or met).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<OffsetDateTime>,
    /// Where it stands.
    pub state: State,
    /// When its warning fired.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub warned_at: Option<OffsetDateTime>,
    /// When its breach fired.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub breached_at: Option<OffsetDateTime>,
    /// When it was met.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub fulfilled_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|_| unreachable!("{text}"))
    }

    fn target(mins: u64, warn: Option<u64>) -> Target {
        Target {
            within: Duration::from_secs(mins * 60),
            warn_before: warn.map(|m| Duration::from_secs(m * 60)),
        }
    }

    #[test]
    fn a_pause_keeps_the_spent_time_and_moves_the_due_time() {
        let cal = BusinessCalendar::always();
        let mut clock = Clock::start(target(60, Some(10)), ts("2026-12-01T10:00:00Z"), &cal);
        assert_eq!(clock.due_at, Some(ts("2026-12-01T11:00:00Z")));
        assert_eq!(clock.warn_at, Some(ts("2026-12-01T10:50:00Z")));
        clock.pause(ts("2026-12-01T10:20:00Z"), &cal);
        assert_eq!((clock.state(), clock.due_at), (State::Paused, None));
        assert_eq!(
            clock.due_stage(ts("2026-12-02T00:00:00Z")),
            None,
            "paused: nothing fires"
        );
        clock.resume(ts("2026-12-01T15:00:00Z"), &cal);
        assert_eq!(
            clock.due_at,
            Some(ts("2026-12-01T15:40:00Z")),
            "40 minutes were left"
        );
        assert_eq!(clock.warn_at, Some(ts("2026-12-01T15:30:00Z")));
    }

    #[test]
    fn stages_fire_once_each_breach_before_a_passed_warning() {
        let cal = BusinessCalendar::always();
        let mut clock = Clock::start(target(60, Some(10)), ts("2026-12-01T10:00:00Z"), &cal);
        assert_eq!(clock.due_stage(ts("2026-12-01T10:49:59Z")), None);
        assert_eq!(
            clock.due_stage(ts("2026-12-01T10:50:00Z")),
            Some(Stage::Warning)
        );
        clock.fired(Stage::Warning, ts("2026-12-01T10:50:00Z"));
        assert_eq!(
            clock.due_stage(ts("2026-12-01T10:55:00Z")),
            None,
            "the warning fired already"
        );
        assert_eq!(
            clock.due_stage(ts("2026-12-01T11:00:00Z")),
            Some(Stage::Breach)
        );
        clock.fired(Stage::Breach, ts("2026-12-01T11:00:01Z"));
        assert_eq!(
            (clock.state(), clock.due_stage(ts("2026-12-09T00:00:00Z"))),
            (State::Breached, None)
        );

        // Every dispatcher was down past both: the breach fires, alone.
        let late = Clock::start(target(60, Some(10)), ts("2026-12-01T10:00:00Z"), &cal);
        assert_eq!(
            late.due_stage(ts("2026-12-01T13:00:00Z")),
            Some(Stage::Breach)
        );
    }

    #[test]
    fn a_new_priority_counts_the_time_spent_and_a_reopen_resumes_resolution() {
        let cal = BusinessCalendar::always();
        let mut clock = Clock::start(target(240, None), ts("2026-12-01T10:00:00Z"), &cal);
        clock.retarget(target(60, None), ts("2026-12-01T10:45:00Z"), &cal);
        assert_eq!(
            clock.due_at,
            Some(ts("2026-12-01T11:00:00Z")),
            "45 of the new 60 minutes are gone"
        );
        clock.fulfil(ts("2026-12-01T10:50:00Z"), &cal);
        assert_eq!((clock.state(), clock.due_at), (State::Fulfilled, None));
        clock.resume(ts("2026-12-01T12:00:00Z"), &cal);
        assert_eq!(
            clock.state(),
            State::Fulfilled,
            "a fulfilled clock does not resume"
        );
        clock.reopen(ts("2026-12-01T12:00:00Z"), &cal);
        assert_eq!(
            clock.due_at,
            Some(ts("2026-12-01T12:10:00Z")),
            "10 minutes were left"
        );
    }

    #[test]
    fn metrics_parse_and_print() {
        for metric in Metric::ALL {
            assert_eq!(metric.as_str().parse::<Metric>().ok(), Some(*metric));
        }
        assert!("response".parse::<Metric>().is_err());
    }
}
