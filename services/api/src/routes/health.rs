//! `/healthz` (the process answers) and `/readyz` (its database and broker are reachable).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;

use crate::state::AppState;

/// The health routes (outside `/api/v1`, unauthenticated).
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
}

/// 200 when Postgres answers and RabbitMQ is connected, else 503. While the
/// broker is down the api still accepts writes: the outbox holds the events.
async fn readyz(State(state): State<AppState>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let database = tickiti_store::answers(&state.db, std::time::Duration::from_secs(2)).await;
    let broker = state.bus.is_connected();
    let status = if database && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |ok: bool| if ok { "up" } else { "down" };
    (
        status,
        axum::Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "database": word(database),
            "broker": word(broker),
        })),
    )
}
