//! Ticket vocabulary: statuses, priorities, message visibility, and the
//! ticket as the API returns it (and as ticket events carry it, whichever
//! service writes them).

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::string_enum;

string_enum!(
    /// Where a ticket stands in its life.
    TicketStatus {
        New => "new",
        Open => "open",
        Pending => "pending",
        OnHold => "on_hold",
        Solved => "solved",
        Closed => "closed",
    }
);

impl TicketStatus {
    /// Statuses of tickets that still need work (the "All open" perspective).
    pub const OPEN_SET: &'static [TicketStatus] = &[
        TicketStatus::New,
        TicketStatus::Open,
        TicketStatus::Pending,
        TicketStatus::OnHold,
    ];
}

string_enum!(
    /// How urgent a ticket is.
    Priority {
        Low => "low",
        Normal => "normal",
        High => "high",
        Urgent => "urgent",
    }
);

string_enum!(
    /// Who may read a message: the contact too, or staff only.
    Visibility {
        Public => "public",
        Internal => "internal",
    }
);

/// Longest ticket subject accepted.
pub const SUBJECT_MAX: usize = 500;
/// Longest message body accepted (the request body limit is 1 MiB).
pub const BODY_MAX: usize = 200_000;
/// Longest tag accepted.
pub const TAG_MAX: usize = 64;
/// Most tags on one ticket.
pub const TAGS_MAX: usize = 50;

/// Normalises tags: trimmed, lower-case, without duplicates, order kept.
pub fn normalize_tags(tags: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if !tag.is_empty() && !out.contains(&tag) {
            out.push(tag);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_spelling() {
        for status in TicketStatus::ALL {
            assert_eq!(status.as_str().parse::<TicketStatus>().ok(), Some(*status));
        }
        assert!("OPEN".parse::<TicketStatus>().is_err());
    }

    #[test]
    fn tags_are_trimmed_lowercased_and_deduplicated() {
        let tags = vec![" VIP ".into(), "vip".into(), "".into(), "billing".into()];
        assert_eq!(normalize_tags(&tags), vec!["vip", "billing"]);
    }
}

/// A ticket's contact, as embedded in the ticket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ContactRef {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: Option<String>,
    /// Address.
    pub email: String,
}

/// A ticket as the API returns it (and as ticket events carry it).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketOut {
    /// Id.
    pub id: Uuid,
    /// Per-organization number.
    pub number: i64,
    /// Code, e.g. `ACME-42`.
    pub code: String,
    /// Subject.
    pub subject: String,
    /// Status.
    pub status: TicketStatus,
    /// Priority.
    pub priority: Priority,
    /// Queue.
    pub queue_id: Option<Uuid>,
    /// Assigned user.
    pub assignee_id: Option<Uuid>,
    /// Contact id.
    pub contact_id: Uuid,
    /// Contact.
    pub contact: ContactRef,
    /// Tags.
    pub tags: Vec<String>,
    /// Changes with every change; also the `ETag`.
    pub version: i32,
    /// Service-level clocks (CONTRACT §7), by metric; empty when no policy applies.
    pub sla: Vec<crate::sla::ClockView>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}
