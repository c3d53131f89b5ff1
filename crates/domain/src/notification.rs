//! Notifications (CONTRACT §8): which events tell which staff member of what.
//!
//! The rules are here, free of I/O: an event names a ticket and whom to
//! tell (a user, the ticket's assignee, its queue's managers); the store
//! resolves those against the ticket as committed, drops the person who made
//! the change, applies each person's preferences and keeps one notification
//! per person and ticket for a change (the most specific kind).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::{EventEnvelope, EventType};
use crate::string_enum;

string_enum!(
    /// What a notification is about; the order is the precedence when one
    /// change gives a person several (a mention says more than a message).
    NotificationKind {
        MentionCreated => "mention.created",
        EscalationBreach => "escalation.breach",
        EscalationWarning => "escalation.warning",
        InterventionCreated => "intervention.created",
        TicketAssigned => "ticket.assigned",
        TicketCreated => "ticket.created",
        MessageCreated => "message.created",
    }
);

impl NotificationKind {
    /// Precedence: lower wins when one change yields several kinds for a person.
    pub fn rank(self) -> i32 {
        NotificationKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(usize::MAX) as i32
    }

    /// The words before the ticket in a title or an e-mail subject.
    pub fn headline(self) -> &'static str {
        match self {
            NotificationKind::MentionCreated => "You were mentioned",
            NotificationKind::EscalationBreach => "Service level breached",
            NotificationKind::EscalationWarning => "Service level due soon",
            NotificationKind::InterventionCreated => "New intervention in your queue",
            NotificationKind::TicketAssigned => "Assigned to you",
            NotificationKind::TicketCreated => "New ticket in your queue",
            NotificationKind::MessageCreated => "New message",
        }
    }
}

/// A notification's one-line title: what happened and on which ticket.
pub fn title(kind: NotificationKind, code: &str, subject: &str) -> String {
    format!("{}: {code} {subject}", kind.headline())
}

/// Whom an event's notification goes to, before the store resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The event that causes it.
    pub event_id: Uuid,
    /// What it is about.
    pub kind: NotificationKind,
    /// The ticket.
    pub ticket_id: Uuid,
    /// A named person (the mentioned user).
    pub user_id: Option<Uuid>,
    /// The ticket's assignee, as committed.
    pub to_assignee: bool,
    /// The managers of the ticket's queue, as committed.
    pub to_managers: bool,
    /// A message's staff author: the assignee is not told of their own
    /// message, whoever posted it.
    pub not_user: Option<Uuid>,
}

/// The fields of an event's `data` the rules read.
#[derive(Debug, Default, Deserialize)]
struct Facts {
    id: Option<Uuid>,
    ticket_id: Option<Uuid>,
    user_id: Option<Uuid>,
    author_user_id: Option<Uuid>,
    assignee_id: Option<Uuid>,
    stage: Option<crate::sla::Stage>,
}

/// The notification an event asks for, if any (CONTRACT §8's matrix).
pub fn candidate(event: &EventEnvelope) -> Option<Candidate> {
    // Every change passes here: events outside the matrix cost a match, and
    // the others are read in place (no copy of their data).
    let in_matrix = matches!(
        event.event,
        EventType::TicketAssigned
            | EventType::TicketCreated
            | EventType::MessageCreated
            | EventType::MentionCreated
            | EventType::SystemEscalation
            | EventType::InterventionCreated
    );
    if !in_matrix {
        return None;
    }
    let facts = Facts::deserialize(&event.data).unwrap_or_default();
    let to = |kind, ticket_id: Option<Uuid>| {
        Some(Candidate {
            event_id: event.id,
            kind,
            ticket_id: ticket_id?,
            user_id: None,
            to_assignee: false,
            to_managers: false,
            not_user: None,
        })
    };
    match event.event {
        EventType::TicketAssigned => to(NotificationKind::TicketAssigned, facts.id).map(|c| {
            // The assignee the event names (a later change may move it).
            Candidate {
                user_id: facts.assignee_id,
                ..c
            }
        }),
        EventType::TicketCreated => {
            to(NotificationKind::TicketCreated, facts.id).map(|c| Candidate {
                to_managers: true,
                ..c
            })
        }
        EventType::MessageCreated => {
            to(NotificationKind::MessageCreated, facts.ticket_id).map(|c| Candidate {
                to_assignee: true,
                not_user: facts.author_user_id,
                ..c
            })
        }
        EventType::MentionCreated => {
            to(NotificationKind::MentionCreated, facts.ticket_id).map(|c| Candidate {
                user_id: facts.user_id,
                ..c
            })
        }
        EventType::SystemEscalation => {
            let kind = match facts.stage? {
                crate::sla::Stage::Warning => NotificationKind::EscalationWarning,
                crate::sla::Stage::Breach => NotificationKind::EscalationBreach,
                // Raised with its intervention, which notifies the managers.
                crate::sla::Stage::ManagerAttention => return None,
            };
            to(kind, facts.ticket_id).map(|c| Candidate {
                to_assignee: true,
                to_managers: true,
                ..c
            })
        }
        EventType::InterventionCreated => {
            to(NotificationKind::InterventionCreated, facts.ticket_id).map(|c| Candidate {
                to_managers: true,
                ..c
            })
        }
        _ => None,
    }
}

/// One channel choice of a kind (CONTRACT §8; both on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Channels {
    /// Listed in the app and sent to the person's browsers.
    pub in_app: bool,
    /// Sent by e-mail (unless the person's `realtime_notifications` flag is set).
    pub email: bool,
}

impl Default for Channels {
    fn default() -> Self {
        Channels {
            in_app: true,
            email: true,
        }
    }
}

/// A notification as the API returns it and its frame carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationOut {
    /// Id (time-ordered).
    pub id: Uuid,
    /// Whom it tells.
    pub user_id: Uuid,
    /// What it is about.
    pub kind: NotificationKind,
    /// The ticket.
    pub ticket_id: Uuid,
    /// What happened, on which ticket (`Assigned to you: T-7 Printer on fire`).
    pub title: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// When it was read in the app; `null` while unread.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub read_at: Option<OffsetDateTime>,
}

/// What `notification.read` carries: which of a person's notifications
/// were read, so each of their tabs updates its count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationsRead {
    /// Whose.
    pub user_id: Uuid,
    /// Which.
    pub ids: Vec<Uuid>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub read_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(kind: EventType, data: serde_json::Value) -> EventEnvelope {
        EventEnvelope::new(kind, Uuid::nil(), data)
    }

    #[test]
    fn the_matrix_names_whom_each_event_tells() {
        let ticket = Uuid::from_u128(1);
        let someone = Uuid::from_u128(2);
        let assigned = candidate(&event(
            EventType::TicketAssigned,
            json!({ "id": ticket, "assignee_id": someone }),
        ))
        .unwrap();
        assert_eq!(assigned.kind, NotificationKind::TicketAssigned);
        assert_eq!(
            (assigned.ticket_id, assigned.user_id),
            (ticket, Some(someone))
        );

        let created = candidate(&event(EventType::TicketCreated, json!({ "id": ticket }))).unwrap();
        assert!(created.to_managers && !created.to_assignee);

        let message = candidate(&event(
            EventType::MessageCreated,
            json!({ "ticket_id": ticket, "author_user_id": someone }),
        ))
        .unwrap();
        assert!(message.to_assignee && !message.to_managers);
        assert_eq!(message.not_user, Some(someone));

        let breach = candidate(&event(
            EventType::SystemEscalation,
            json!({ "ticket_id": ticket, "stage": "breach" }),
        ))
        .unwrap();
        assert_eq!(breach.kind, NotificationKind::EscalationBreach);
        assert!(breach.to_assignee && breach.to_managers);
    }

    #[test]
    fn events_outside_the_matrix_tell_no_one() {
        let ticket = json!({ "id": Uuid::from_u128(1), "ticket_id": Uuid::from_u128(1) });
        for kind in [
            EventType::TicketUpdated,
            EventType::TicketStatusChanged,
            EventType::ContactCreated,
            EventType::MentionAcknowledged,
            EventType::TicketEscalated,
        ] {
            assert_eq!(candidate(&event(kind, ticket.clone())), None, "{kind}");
        }
        let attention = json!({ "ticket_id": Uuid::from_u128(1), "stage": "manager_attention" });
        assert_eq!(
            candidate(&event(EventType::SystemEscalation, attention)),
            None
        );
        // Data without a ticket asks for nothing (rather than failing the change).
        assert_eq!(
            candidate(&event(EventType::TicketAssigned, json!({}))),
            None
        );
    }

    #[test]
    fn a_mention_outranks_the_message_that_carries_it() {
        assert!(NotificationKind::MentionCreated.rank() < NotificationKind::MessageCreated.rank());
        assert!(NotificationKind::TicketAssigned.rank() < NotificationKind::TicketCreated.rank());
        assert_eq!(
            title(NotificationKind::TicketAssigned, "T-7", "Printer on fire"),
            "Assigned to you: T-7 Printer on fire"
        );
    }
}
