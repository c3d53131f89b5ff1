//! `/system/health` (CONTRACT §8): the dispatcher and realtime processes
//! that reported in, and when each did last.

use axum::extract::State;
use tickiti_domain::Ability;
use tickiti_domain::worker::WorkerOut;
use tickiti_store::worker_health;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::{ApiResult, ListOut, Principal};
use crate::state::AppState;

/// The system routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(system_health))
}

/// Every dispatcher and realtime process known: `up`, or `down` once
/// silent past `WORKER_SILENCE` (one that stopped on purpose is not
/// listed). One page: `next_cursor` is always null.
#[utoipa::path(get, path = "/system/health", tag = "system",
    responses((status = 200, body = ListOut<WorkerOut>), (status = 403, body = crate::http::error::Problem)),
    security(("bearer" = []), ("session" = [])))]
#[tracing::instrument(skip_all)]
pub async fn system_health(
    State(state): State<AppState>,
    principal: Principal,
) -> ApiResult<axum::Json<ListOut<WorkerOut>>> {
    principal.require(Ability::Admin)?;
    let mut conn = state.db.acquire().await?;
    let silence = state.config.worker_silence;
    let workers = worker_health::list(&mut conn).await?;
    Ok(axum::Json(ListOut {
        data: workers.into_iter().map(|w| w.out(silence)).collect(),
        next_cursor: None,
    }))
}
