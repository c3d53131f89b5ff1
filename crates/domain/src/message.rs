//! A ticket's message as the API returns it and message events carry it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ticket::Visibility;

/// A message as the API returns it (and as message events carry it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageOut {
    /// Id.
    pub id: Uuid,
    /// Ticket.
    pub ticket_id: Uuid,
    /// `public` (the contact sees it) or `internal` (staff only).
    pub visibility: Visibility,
    /// Text.
    pub body: String,
    /// Staff author.
    pub author_user_id: Option<Uuid>,
    /// Contact author.
    pub author_contact_id: Option<Uuid>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}
