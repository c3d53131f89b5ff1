//! Emitting events: every change appends its events to the outbox inside the
//! change's own transaction, so an event exists exactly when its change
//! committed (the relay publishes it afterwards). A change that emits
//! several events collects them in an [`EventBatch`] and writes them in one
//! statement.

use serde::Serialize;
use sqlx::PgConnection;
use tickiti_domain::{EventEnvelope, EventType};
use uuid::Uuid;

use crate::http::{ApiError, ApiResult, Principal};

/// Events of one change, written together.
#[derive(Debug)]
pub struct EventBatch {
    organization_id: Uuid,
    /// Who makes the change: never notified of it.
    actor: Uuid,
    events: Vec<EventEnvelope>,
}

impl EventBatch {
    /// An empty batch for a change `principal` makes in their organization.
    pub fn new(principal: &Principal) -> Self {
        Self {
            organization_id: principal.org(),
            actor: principal.user.id,
            events: Vec::new(),
        }
    }

    /// Adds an event about `data` (the resource as the API returns it).
    pub fn push(&mut self, event: EventType, data: &impl Serialize) -> ApiResult<()> {
        let data = serde_json::to_value(data).map_err(|e| ApiError::internal(&e))?;
        self.events
            .push(EventEnvelope::new(event, self.organization_id, data));
        Ok(())
    }

    /// Adds events built elsewhere (by the store, for the organization).
    pub fn extend(&mut self, events: impl IntoIterator<Item = EventEnvelope>) {
        self.events.extend(events);
    }

    /// The events so far (for a statement that writes them with its change).
    pub fn as_slice(&self) -> &[EventEnvelope] {
        &self.events
    }

    /// Appends the batch to the outbox, with the notifications it causes.
    pub async fn append(self, conn: &mut PgConnection) -> ApiResult<()> {
        if !self.events.is_empty() {
            tickiti_store::outbox::append(conn, &self.events, Some(self.actor)).await?;
        }
        Ok(())
    }
}

/// Appends one event about `data` (the resource as the API returns it)
/// for a change `principal` makes.
pub async fn emit(
    conn: &mut PgConnection,
    principal: &Principal,
    event: EventType,
    data: &impl Serialize,
) -> ApiResult<()> {
    let mut batch = EventBatch::new(principal);
    batch.push(event, data)?;
    batch.append(conn).await
}
