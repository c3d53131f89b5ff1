//! The listeners' routes: the private one (pairing requests from the api,
//! health, metrics) and the public one (`/ws` and health).
//!
//! The private listener trusts its network (it binds 127.0.0.1 by default
//! and must never be published), but still never lets a caller bind: only
//! the operator's `tickiti-realtime pair PIN` does that, and unbinding needs
//! proof of the node key.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::Ctx;
use crate::pairing::{self, PairError, Unbound};

/// Header carrying the proof of the node key on `DELETE /pairing/{install_id}`.
pub const UNBIND_PROOF_HEADER: &str = "x-tickiti-unbind-proof";

/// A problem answer (RFC 9457) with a stable code, as the api answers.
fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "code": code,
            "detail": detail,
        })
        .to_string(),
    )
        .into_response()
}

fn internal(error: &dyn std::error::Error) -> Response {
    tracing::error!(%error, "pairing request failed");
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL",
        "an internal error occurred; it has been logged",
    )
}

/// The private listener's routes.
pub fn private_router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/pairing", post(request_pairing).get(pairing_status))
        .route(
            "/pairing/{install_id}",
            get(get_pairing).delete(delete_pairing),
        )
        .route("/metrics", get(metrics))
        .merge(health_routes())
        .with_state(ctx)
}

/// The browsers' listener's routes.
pub fn public_router(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/ws", get(crate::ws::upgrade))
        .merge(health_routes())
        .with_state(ctx)
}

fn health_routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
}

/// 200 when Postgres answers and RabbitMQ is connected, else 503. Whether
/// the service is paired is shown but does not decide readiness.
async fn readyz(State(ctx): State<Arc<Ctx>>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let database = crate::store::answers(&ctx.db, Duration::from_secs(2)).await;
    let broker = ctx.bus.is_connected();
    let ready = database && broker;
    let word = |ok: bool| if ok { "up" } else { "down" };
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        axum::Json(json!({
            "status": if ready { "ready" } else { "not_ready" },
            "database": word(database),
            "broker": word(broker),
            "paired": ctx.hub.binding().is_some(),
        })),
    )
}

/// Prometheus text exposition.
async fn metrics(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    let m = &ctx.hub.metrics;
    let body = format!(
        "# HELP tickiti_realtime_connections Authenticated websockets now.\n\
         # TYPE tickiti_realtime_connections gauge\n\
         tickiti_realtime_connections {}\n\
         # HELP tickiti_realtime_events_total Events taken from the events exchange.\n\
         # TYPE tickiti_realtime_events_total counter\n\
         tickiti_realtime_events_total {}\n\
         # HELP tickiti_realtime_frames_total Frames queued to sockets.\n\
         # TYPE tickiti_realtime_frames_total counter\n\
         tickiti_realtime_frames_total {}\n\
         # HELP tickiti_realtime_server_closes_total Sockets the server closed.\n\
         # TYPE tickiti_realtime_server_closes_total counter\n\
         tickiti_realtime_server_closes_total {}\n\
         # HELP tickiti_realtime_paired Whether a pairing is bound.\n\
         # TYPE tickiti_realtime_paired gauge\n\
         tickiti_realtime_paired {}\n",
        ctx.hub.connections(),
        m.events.load(Ordering::Relaxed),
        m.frames.load(Ordering::Relaxed),
        m.server_closes.load(Ordering::Relaxed),
        u8::from(ctx.hub.binding().is_some()),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// A pairing request from the api.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairingIn {
    /// The install (pairing) id the api chose.
    pub install_id: Uuid,
    /// The node key, base64 of 32 bytes.
    pub node_key: String,
    /// argon2id PHC hash of the pin.
    pub pin_hash: String,
    /// Until when the pin may be entered (at most 10 minutes away).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

async fn request_pairing(
    State(ctx): State<Arc<Ctx>>,
    body: Result<axum::Json<PairingIn>, JsonRejection>,
) -> Response {
    let axum::Json(input) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                "VALIDATION_FAILED",
                &rejection.body_text(),
            );
        }
    };
    let Some(key) = tickiti_crypto::realtime::decode_node_key(&input.node_key) else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            "node_key must be base64 of 32 bytes",
        );
    };
    if !input.pin_hash.starts_with("$argon2") || input.pin_hash.len() > 512 {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            "pin_hash must be an argon2 PHC string",
        );
    }
    match pairing::request(
        &ctx.db,
        input.install_id,
        &key,
        &input.pin_hash,
        input.expires_at,
    )
    .await
    {
        Ok(expires_at) => {
            tracing::info!(install_id = %input.install_id, "pairing requested; waiting for `tickiti-realtime pair PIN`");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({
                    "install_id": input.install_id,
                    "status": "pending",
                    "expires_at": expires_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                })),
            )
                .into_response()
        }
        Err(PairError::Duplicate) => problem(
            StatusCode::CONFLICT,
            "PAIRING_EXISTS",
            "a pairing with this install id exists",
        ),
        Err(error) => internal(&error),
    }
}

async fn pairing_status(State(ctx): State<Arc<Ctx>>) -> Response {
    match pairing::current(&ctx.db).await {
        Ok(Some(binding)) => axum::Json(json!({
            "status": "bound",
            "install_id": binding.install_id,
        }))
        .into_response(),
        Ok(None) => axum::Json(json!({ "status": "unbound" })).into_response(),
        Err(error) => internal(&error),
    }
}

async fn get_pairing(State(ctx): State<Arc<Ctx>>, Path(install_id): Path<Uuid>) -> Response {
    match pairing::view(&ctx.db, install_id).await {
        Ok(Some(view)) => axum::Json(view).into_response(),
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            "PAIRING_NOT_FOUND",
            "no pairing with this install id",
        ),
        Err(error) => internal(&error),
    }
}

async fn delete_pairing(
    State(ctx): State<Arc<Ctx>>,
    Path(install_id): Path<Uuid>,
    headers: HeaderMap,
) -> Response {
    let proof = headers
        .get(UNBIND_PROOF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match pairing::unbind(&ctx.db, install_id, proof).await {
        Ok(Unbound::Done) => {
            // Apply at once here, and tell the other processes.
            crate::reload_binding(&ctx).await;
            crate::fanout::announce_pairing_change(&ctx);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(Unbound::NotFound) => problem(
            StatusCode::NOT_FOUND,
            "PAIRING_NOT_FOUND",
            "no pairing with this install id",
        ),
        Ok(Unbound::Forbidden) => problem(
            StatusCode::FORBIDDEN,
            "BAD_PROOF",
            "the unbind proof does not match this pairing's node key",
        ),
        Err(error) => internal(&error),
    }
}
