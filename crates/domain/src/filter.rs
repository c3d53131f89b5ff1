//! The ticket filter: one set of names for the ticket list's query string and
//! for saved perspectives (CONTRACT §2), parsed once into [`TicketFilter`].

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{FieldError, Priority, TicketStatus, Validation};

/// Longest full-text query accepted.
pub const QUERY_MAX: usize = 200;

/// A ticket filter as written by a client: in a query string or a perspective.
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema, utoipa::IntoParams,
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicketFilterParams {
    /// Comma-separated statuses, e.g. `new,open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Comma-separated priorities, e.g. `high,urgent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// A queue id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// A user id, `me`, or `none` for unassigned tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_id: Option<String>,
    /// A contact id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    /// Tickets carrying this tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Full text over the subject and the messages (web-search syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Tickets changed at or after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_since: Option<String>,
    /// `true`: only tickets with a breached service-level target not yet
    /// met (CONTRACT §7); `false` or absent: no condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = "^(true|false)$")]
    #[schema(pattern = "^(true|false)$")]
    pub escalated: Option<String>,
    /// Order: `-updated_at` (the default: last activity first),
    /// `-created_at`, `created_at` or `-priority` (then newest first).
    /// Cursors follow it; counts ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = "^(-updated_at|-created_at|created_at|-priority)$")]
    #[schema(pattern = "^(-updated_at|-created_at|created_at|-priority)$")]
    pub sort: Option<String>,
}

crate::string_enum!(
    /// The order of a ticket list (the `sort` parameter).
    TicketOrder {
        LastActivity => "-updated_at",
        Newest => "-created_at",
        Oldest => "created_at",
        Priority => "-priority",
    }
);

impl Default for TicketOrder {
    /// Last activity first, as staff expect.
    fn default() -> Self {
        TicketOrder::LastActivity
    }
}

/// Which assignee a filter wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssigneeFilter {
    /// Any, assigned or not.
    #[default]
    Any,
    /// Assigned to whoever is asking.
    Me,
    /// Not assigned.
    Unassigned,
    /// Assigned to this user.
    User(Uuid),
}

/// A parsed ticket filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TicketFilter {
    /// Any of these statuses.
    pub status: Option<Vec<TicketStatus>>,
    /// Any of these priorities.
    pub priority: Option<Vec<Priority>>,
    /// In this queue.
    pub queue_id: Option<Uuid>,
    /// Assigned like this.
    pub assignee: AssigneeFilter,
    /// Of this contact.
    pub contact_id: Option<Uuid>,
    /// Carrying this tag (lower-case).
    pub tag: Option<String>,
    /// Matching this full-text query.
    pub q: Option<String>,
    /// Changed at or after this time.
    pub updated_since: Option<OffsetDateTime>,
    /// Only tickets with a breached target not yet met.
    pub escalated: bool,
    /// The list's order (not a condition: counts ignore it).
    pub order: TicketOrder,
}

impl TicketFilterParams {
    /// Parses the raw filter, reporting every bad field at once.
    pub fn parse(&self) -> Result<TicketFilter, Vec<FieldError>> {
        let mut v = Validation::new();
        let filter = TicketFilter {
            status: parse_list(&mut v, "status", self.status.as_deref()),
            priority: parse_list(&mut v, "priority", self.priority.as_deref()),
            queue_id: parse_uuid(&mut v, "queue_id", self.queue_id.as_deref()),
            assignee: match self.assignee_id.as_deref().map(str::trim) {
                None | Some("") => AssigneeFilter::Any,
                Some("me") => AssigneeFilter::Me,
                Some("none") => AssigneeFilter::Unassigned,
                Some(other) => parse_uuid(&mut v, "assignee_id", Some(other))
                    .map_or(AssigneeFilter::Any, AssigneeFilter::User),
            },
            contact_id: parse_uuid(&mut v, "contact_id", self.contact_id.as_deref()),
            tag: self
                .tag
                .as_deref()
                .map(|t| t.trim().to_lowercase())
                .filter(|t| !t.is_empty()),
            q: self
                .q
                .as_deref()
                .map(str::trim)
                .filter(|q| !q.is_empty())
                .map(str::to_owned),
            updated_since: self.updated_since.as_deref().and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| v.error("updated_since", "must be an RFC 3339 time"))
                    .ok()
            }),
            escalated: match self.escalated.as_deref().map(str::trim) {
                None | Some("" | "false") => false,
                Some("true") => true,
                Some(_) => {
                    v.error("escalated", "must be true or false");
                    false
                }
            },
            order: match self.sort.as_deref().map(str::trim) {
                None | Some("") => TicketOrder::default(),
                Some(raw) => raw
                    .parse()
                    .map_err(|e: crate::UnknownValue| v.error("sort", e.to_string()))
                    .unwrap_or_default(),
            },
        };
        if let Some(tag) = &filter.tag {
            v.text("tag", tag, 1, crate::ticket::TAG_MAX);
        }
        if let Some(q) = &filter.q {
            v.text("q", q, 1, QUERY_MAX);
        }
        v.finish().map(|()| filter)
    }
}

fn parse_list<T: std::str::FromStr<Err = crate::UnknownValue>>(
    v: &mut Validation,
    field: &str,
    raw: Option<&str>,
) -> Option<Vec<T>> {
    let raw = raw?.trim();
    if raw.is_empty() {
        return None;
    }
    let mut values = Vec::new();
    for part in raw.split(',') {
        match part.trim().parse::<T>() {
            Ok(value) => values.push(value),
            Err(e) => v.error(field, e.to_string()),
        }
    }
    Some(values)
}

fn parse_uuid(v: &mut Validation, field: &str, raw: Option<&str>) -> Option<Uuid> {
    let raw = raw?.trim();
    if raw.is_empty() {
        return None;
    }
    Uuid::parse_str(raw)
        .map_err(|_| v.error(field, "must be a UUID"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_assignee_words() {
        let params = TicketFilterParams {
            status: Some("new, open".into()),
            assignee_id: Some("me".into()),
            tag: Some(" VIP ".into()),
            ..Default::default()
        };
        let filter = params.parse().unwrap();
        assert_eq!(
            filter.status,
            Some(vec![TicketStatus::New, TicketStatus::Open])
        );
        assert_eq!(filter.assignee, AssigneeFilter::Me);
        assert_eq!(filter.tag.as_deref(), Some("vip"));
    }

    #[test]
    fn reports_every_bad_field() {
        let params = TicketFilterParams {
            status: Some("open,shut".into()),
            queue_id: Some("x".into()),
            updated_since: Some("yesterday".into()),
            ..Default::default()
        };
        let errors = params.parse().unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["status", "queue_id", "updated_since"]);
    }
}
