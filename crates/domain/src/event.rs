//! The event catalog (CONTRACT §3) and the envelope every event travels in.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::string_enum;

string_enum!(
    /// Every event Tickiti emits. The routing key on `<prefix>.events` is its spelling.
    EventType {
        TicketCreated => "ticket.created",
        TicketUpdated => "ticket.updated",
        TicketDeleted => "ticket.deleted",
        TicketAssigned => "ticket.assigned",
        TicketStatusChanged => "ticket.status_changed",
        TicketClosed => "ticket.closed",
        TicketEscalated => "ticket.escalated",
        MessageCreated => "message.created",
        MessageDeleted => "message.deleted",
        TicketMessageCreated => "ticket.message.created",
        ContactCreated => "contact.created",
        ContactUpdated => "contact.updated",
        ContactDeleted => "contact.deleted",
        TimeEntryCreated => "time_entry.created",
        TimeEntryUpdated => "time_entry.updated",
        TimeEntryDeleted => "time_entry.deleted",
        InterventionCreated => "intervention.created",
        InterventionSubmitted => "intervention.submitted",
        InterventionAccepted => "intervention.accepted",
        MentionCreated => "mention.created",
        MentionAcknowledged => "mention.acknowledged",
        SystemEscalation => "system.escalation",
        SystemWorkerHealth => "system.worker_health",
        SystemEndpointFailed => "system.endpoint_failed",
        NotificationCreated => "notification.created",
        NotificationRead => "notification.read",
        TestPing => "test.ping",
    }
);

impl EventType {
    /// Whether webhook endpoints may subscribe to it (mentions and
    /// notifications are for their person's browsers only, `system.*` for
    /// staff browsers; an integrator hears of a breach through
    /// `ticket.escalated`).
    pub fn is_webhook_event(self) -> bool {
        !matches!(
            self,
            EventType::MentionCreated
                | EventType::MentionAcknowledged
                | EventType::SystemEscalation
                | EventType::SystemWorkerHealth
                | EventType::SystemEndpointFailed
                | EventType::NotificationCreated
                | EventType::NotificationRead
        )
    }
}

/// An event as it is stored in the outbox and published to the broker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Unique, time-ordered id: consumers deduplicate on it.
    pub id: Uuid,
    /// What happened.
    pub event: EventType,
    /// Whose data it is; consumers never cross organizations.
    pub organization_id: Uuid,
    /// When the change was made (RFC 3339 UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The resource as the API returns it.
    pub data: serde_json::Value,
}

impl EventEnvelope {
    /// A new event about `data`, stamped now.
    pub fn new(event: EventType, organization_id: Uuid, data: serde_json::Value) -> Self {
        Self {
            id: crate::new_id(),
            event,
            organization_id,
            occurred_at: OffsetDateTime::now_utc(),
            data,
        }
    }
}
