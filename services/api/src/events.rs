//! Emitting events: every change appends its event to the outbox inside the
//! change's own transaction, so an event exists exactly when its change
//! committed (the relay publishes it afterwards).

use serde::Serialize;
use sqlx::PgConnection;
use tickiti_domain::{EventEnvelope, EventType};
use uuid::Uuid;

use crate::http::ApiResult;

/// Appends an event about `data` (the resource as the API returns it).
pub async fn emit(
    conn: &mut PgConnection,
    organization_id: Uuid,
    event: EventType,
    data: &impl Serialize,
) -> ApiResult<()> {
    let data = serde_json::to_value(data).map_err(|e| crate::http::ApiError::internal(&e))?;
    tickiti_store::outbox::append(conn, &EventEnvelope::new(event, organization_id, data)).await?;
    Ok(())
}
