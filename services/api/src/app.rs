//! Building the router and running the server with its background tasks.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::{from_fn, from_fn_with_state};
use sqlx::PgPool;
use tickiti_bus::{Bus, BusConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{Config, WebhookConfig};
use crate::http::extract::{BODY_LIMIT, limit_body};
use crate::http::{ApiError, guard, idempotency};
use crate::routes;
use crate::state::AppState;
use crate::web::{self, WebApp};

/// The router and the OpenAPI document generated from it.
pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (api, openapi) = OpenApiRouter::with_openapi(routes::openapi())
        .nest("/api/v1", routes::api_v1())
        .route_layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .split_for_parts();
    let spec = openapi.clone();
    let app = api
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || std::future::ready(axum::Json(spec.clone()))),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND", "no such route")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                "this route does not take this method",
            )
        })
        .layer(from_fn_with_state(state.clone(), guard::authenticate))
        .layer(from_fn_with_state(
            state.config.request_timeout,
            guard::time_limit,
        ))
        .layer(from_fn(guard::no_store))
        // Probes are neither authenticated nor rate limited: a busy sign-in
        // page must not make the orchestrator think the api is down.
        .merge(routes::health::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(from_fn(limit_body))
        .layer(from_fn_with_state(
            WebApp::new(&state.config.realtime.public_url),
            web::serve,
        ))
        .layer(from_fn(guard::request_id))
        .with_state(state);
    (app, openapi)
}

/// Opens the database pool, retrying for a short window (CONTRACT §1: a
/// database that stays unreachable is a clear start-up error).
pub async fn connect_database(config: &Config) -> anyhow::Result<PgPool> {
    tickiti_store::connect(
        &config.database_url,
        config.database_max_connections,
        Some(config.database_statement_timeout),
    )
    .await
    .map_err(|error| anyhow::anyhow!("database unreachable at start-up: {error}"))
}

/// A running api: its address and the handle to stop it.
pub struct Api {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Cancel to shut down gracefully.
    pub shutdown: CancellationToken,
    /// Resolves when the server and its background tasks have stopped.
    pub finished: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the api on an already-bound listener with a migrated database:
/// the HTTP server, the outbox relay and housekeeping, all stopped by `shutdown`.
pub fn serve(
    listener: TcpListener,
    db: PgPool,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Api> {
    serve_with(listener, db, config, WebhookConfig::default(), shutdown)
}

/// [`serve`] with webhook settings other than the defaults.
pub fn serve_with(
    listener: TcpListener,
    db: PgPool,
    config: Config,
    webhooks: WebhookConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<Api> {
    let addr = listener.local_addr()?;
    let master_key = config.master_key_bytes()?;
    let bus = Bus::start(
        BusConfig {
            amqp_url: config.amqp_url.clone(),
            prefix: config.bus_prefix.clone(),
            connection_name: "tickiti-api".into(),
        },
        shutdown.clone(),
    );
    let state = AppState::new(db, bus, config, master_key, webhooks);
    let relay = tokio::spawn(crate::relay::run(
        state.db.clone(),
        state.bus.clone(),
        state.outbox_signal.clone(),
        shutdown.clone(),
    ));
    let housekeeping = tokio::spawn(housekeeping(state.clone(), shutdown.clone()));
    tokio::spawn(crate::counts::perspective_counts(
        state.clone(),
        shutdown.clone(),
    ));
    tokio::spawn(crate::worker_health::run(state.clone(), shutdown.clone()));
    let (app, _) = router(state);
    let stop = shutdown.clone();
    let finished = tokio::spawn(async move {
        tickiti_telemetry::listening("http", addr);
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
        // In-flight requests are done; let the relay finish its batch.
        let _ = relay.await;
        housekeeping.abort();
        served.map_err(Into::into)
    });
    Ok(Api {
        addr,
        shutdown,
        finished,
    })
}

/// Periodic clean-up: expired sessions, old idempotency keys, published
/// outbox rows, old sign-in attempts, idle rate-limit buckets.
async fn housekeeping(state: AppState, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        state.rate_limiter.forget_idle_keys();
        let pruned = async {
            // Background work, not a request: the pool's statement time-out
            // must not cut off a large prune (it would fail every minute).
            let mut tx = state.db.begin().await?;
            tickiti_store::unbounded_statements(&mut tx).await?;
            tickiti_store::sessions::prune_expired(&mut tx).await?;
            tickiti_store::idempotency::prune(&mut tx).await?;
            tickiti_store::outbox::prune_published(&mut tx, 24).await?;
            tickiti_store::worker_health::prune(&mut tx, 7 * 24).await?;
            tickiti_store::login_attempts::prune(&mut tx, crate::http::sign_in::WINDOW_SECS)
                .await?;
            tx.commit().await?;
            Ok::<_, tickiti_store::StoreError>(())
        };
        if let Err(error) = pruned.await {
            tracing::warn!(%error, "housekeeping failed; will retry");
        }
    }
}
