//! `/webhooks`: endpoint management, the delivery log, `test`, `resend` and
//! `recover` (CONTRACT §3, seed 002).
//!
//! The api never calls a receiver itself: `test`, `resend` and `recover`
//! write delivery rows and, in the same transaction, a dispatch command to
//! the outbox; `tickiti-dispatcher` queues and sends them. Secrets are stored
//! sealed (AES-256-GCM under `TICKITI_MASTER_KEY`) and shown only at creation.
//!
//! [`endpoints`]: managing endpoints (with their checks); [`deliveries`]:
//! the delivery log, `test`, `resend` and `recover`.

mod deliveries;
mod endpoints;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use deliveries::*;
pub use endpoints::*;
use tickiti_domain::webhook::EndpointStatus;
use tickiti_store::webhooks::{self, Endpoint};

use crate::http::extract::parse_id;
use crate::http::{ApiError, ApiResult};
use crate::state::AppState;

/// The webhook routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(resend_delivery))
        .routes(routes!(recover_webhook))
}

const NOT_FOUND: &str = "WEBHOOK_NOT_FOUND";
const DELIVERY_NOT_FOUND: &str = "DELIVERY_NOT_FOUND";

async fn find_endpoint(state: &AppState, org: Uuid, raw_id: &str) -> ApiResult<Endpoint> {
    let id = parse_id(raw_id, NOT_FOUND, "webhook")?;
    let mut conn = state.db.acquire().await?;
    webhooks::get(&mut conn, org, id)
        .await?
        .ok_or_else(|| ApiError::not_found(NOT_FOUND, "webhook"))
}

fn refuse_disabled(endpoint: &Endpoint) -> ApiResult<()> {
    if endpoint.status == EndpointStatus::Disabled.as_str() {
        return Err(ApiError::conflict(
            "WEBHOOK_DISABLED",
            "the webhook is disabled; enable it with PATCH {\"active\": true} first",
        ));
    }
    Ok(())
}
