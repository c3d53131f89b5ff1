//! An SLA policy as the clocks use it: the targets per priority and metric,
//! the pause statuses and the calendar, read from what the API stored.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Metric, Target};
use crate::calendar::BusinessCalendar;
use crate::duration::parse_duration;
use crate::{Priority, TicketStatus};

/// One target as the API takes and stores it: `metric` within `within` for
/// tickets of `priority`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlaTarget {
    /// The tickets' priority.
    pub priority: Priority,
    /// What is measured.
    pub metric: Metric,
    /// Business time allowed, more than zero and at most 366 days, e.g.
    /// `"90s"`, `"4h"`, `"2d"`.
    #[schema(
        example = "4h",
        pattern = r"^([1-9][0-9]{0,2}(s|m|h)|[1-9][0-9]?d|[12][0-9]{2}d|3[0-5][0-9]d|36[0-6]d)$"
    )]
    pub within: String,
    /// How long before due the warning comes, shorter than `within`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(
        example = "30m",
        pattern = r"^([1-9][0-9]{0,2}(s|m|h)|[1-9][0-9]?d|[12][0-9]{2}d|3[0-5][0-9]d|36[0-6]d)$"
    )]
    pub warn_before: Option<String>,
}

/// The policy that applies to a ticket.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Its id (clocks remember which policy set them).
    pub id: Uuid,
    /// Statuses in which every clock stops.
    pub pause_statuses: Vec<TicketStatus>,
    /// The targets, by priority and metric.
    pub targets: Vec<(Priority, Metric, Target)>,
    /// Business hours (or around the clock).
    pub calendar: BusinessCalendar,
}

impl Policy {
    /// Reads a stored policy (its targets and statuses were checked when
    /// written; one that no longer reads is skipped, not half applied).
    pub fn from_stored(
        id: Uuid,
        pause_statuses: &[String],
        targets: &serde_json::Value,
        calendar: BusinessCalendar,
    ) -> Option<Policy> {
        let written: Vec<SlaTarget> = serde_json::from_value(targets.clone()).ok()?;
        let mut targets = Vec::with_capacity(written.len());
        for t in written {
            let within = parse_duration(&t.within).ok()?;
            let warn_before = match t.warn_before.as_deref() {
                Some(text) => Some(parse_duration(text).ok()?),
                None => None,
            };
            targets.push((
                t.priority,
                t.metric,
                Target {
                    within,
                    warn_before,
                },
            ));
        }
        let pause_statuses = pause_statuses
            .iter()
            .map(|s| s.parse().ok())
            .collect::<Option<Vec<TicketStatus>>>()?;
        Some(Policy {
            id,
            pause_statuses,
            targets,
            calendar,
        })
    }

    /// The target of `metric` for tickets of `priority`, if the policy sets one.
    pub fn target(&self, priority: Priority, metric: Metric) -> Option<Target> {
        self.targets
            .iter()
            .find(|(p, m, _)| *p == priority && *m == metric)
            .map(|(.., target)| *target)
    }

    /// Whether clocks stop in `status`.
    pub fn pauses(&self, status: TicketStatus) -> bool {
        self.pause_statuses.contains(&status)
    }
}
