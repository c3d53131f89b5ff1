//! `tickiti-dispatcher`: delivers webhooks (CONTRACT §3), makes
//! intervention epilog calls (CONTRACT §4, see [`epilog`]) and fires
//! service-level escalations (CONTRACT §7, see [`escalate`]).
//!
//! It consumes `<prefix>.dispatcher.events` (bound to `<prefix>.events`),
//! writes one delivery row per subscribed endpoint, queues each attempt on
//! the durable work queue `<prefix>.dispatcher.deliveries`, and sends them,
//! signed, through an SSRF-safe client, retrying on the schedule through
//! RabbitMQ delay tiers (see [`topology`]). Several dispatchers share the
//! queues as competing consumers. The api owns the schema: the dispatcher
//! waits for its migrations instead of running them.
//!
//! `main.rs` parses the command line and calls [`serve`], so tests start the
//! very same dispatcher in-process.

pub mod batch;
pub mod client;
pub mod config;
pub mod deliver;
pub mod epilog;
pub mod escalate;
pub mod fanout;
pub mod gate;
pub mod metrics;
pub mod notify;
mod scan;
pub mod topology;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::json;
use sqlx::PgPool;
use tickiti_bus::{Bus, BusConfig};
use tickiti_crypto::SecretBox;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;

/// What every handler shares.
pub struct Ctx {
    /// Postgres (the api's database).
    pub db: PgPool,
    /// RabbitMQ.
    pub bus: Bus,
    /// Settings.
    pub config: Config,
    /// Queue names.
    pub queues: topology::Queues,
    /// Opens the stored webhook secrets.
    pub secrets: SecretBox,
    /// The one outbound client.
    pub client: client::SafeClient,
    /// Fairness gates.
    pub gates: Arc<gate::Gates>,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Writes fan-out batches.
    pub fan_out: fanout::FanOut,
    /// Writes the attempt log in batches.
    pub recorder: deliver::Recorder,
    /// First attempts sent from this process at once, waiting ones included.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Sends notification e-mail (None: no `SMTP_URL`).
    pub mailer: Option<notify::Mailer>,
    /// Set once the api's schema is there.
    pub schema_ready: std::sync::atomic::AtomicBool,
    /// Set once the queues are declared.
    pub queues_ready: std::sync::atomic::AtomicBool,
}

impl Ctx {
    /// Moves a message this version cannot handle to the install's parking
    /// queue and counts it; `Requeue` when the broker did not take the copy.
    pub async fn park(
        &self,
        message: &tickiti_bus::IncomingMessage,
        reason: metrics::Unhandled,
    ) -> tickiti_bus::Outcome {
        let outcome = self.bus.park(message, reason.as_str()).await;
        if outcome == tickiti_bus::Outcome::Ack {
            self.metrics.unhandled(reason);
        }
        outcome
    }
}

/// Event handlers running at once: their events are written together.
const FAN_OUT_HANDLERS: usize = 256;

/// Opens the database pool, retrying for a short window (CONTRACT §1).
pub async fn connect_database(config: &Config) -> anyhow::Result<PgPool> {
    // Unbounded statements: the dispatcher's pruning and sweeps are its own
    // background work, not a client's request.
    tickiti_store::connect(&config.database_url, config.database_max_connections, None)
        .await
        .map_err(|error| anyhow::anyhow!("database unreachable at start-up: {error}"))
}

/// A running dispatcher.
pub struct Dispatcher {
    /// Where the health listener is.
    pub addr: SocketAddr,
    /// Cancel to stop.
    pub shutdown: CancellationToken,
    /// Resolves when everything has stopped.
    pub finished: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The shared context (tests look at it).
    pub ctx: Arc<Ctx>,
}

/// Starts the dispatcher on an already-bound health listener.
pub fn serve(
    listener: TcpListener,
    db: PgPool,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Dispatcher> {
    let addr = listener.local_addr()?;
    let master_key = config.master_key_bytes()?;
    let mailer = match &config.smtp_url {
        Some(url) => Some(notify::Mailer::new(
            url,
            &config.smtp_from,
            &config.public_url,
        )?),
        None => {
            tracing::warn!("SMTP_URL is not set: notifications are in-app only, no e-mail is sent");
            None
        }
    };
    // The broker outlives shutdown by the last report ("stopping"), so a
    // deliberate stop is not taken for a crash.
    let bus_stop = CancellationToken::new();
    let bus = Bus::start(
        BusConfig {
            amqp_url: config.amqp_url.clone(),
            prefix: config.bus_prefix.clone(),
            connection_name: "tickiti-dispatcher".into(),
        },
        bus_stop.clone(),
    );
    let ctx = Arc::new(Ctx {
        queues: topology::Queues::new(&config.bus_prefix),
        secrets: SecretBox::new(master_key),
        client: client::SafeClient::new(
            config.timeout,
            config.allow_private_networks,
            config.concurrency,
        )?,
        gates: gate::Gates::new(
            config.concurrency,
            config.org_concurrency,
            config.endpoint_concurrency,
        ),
        metrics: metrics::Metrics::default(),
        fan_out: fanout::start_fan_out(db.clone()),
        recorder: deliver::start_recorder(db.clone()),
        in_flight: Arc::new(tokio::sync::Semaphore::new(
            deliver::FIRST_ATTEMPTS_IN_FLIGHT,
        )),
        mailer,
        schema_ready: std::sync::atomic::AtomicBool::new(false),
        queues_ready: std::sync::atomic::AtomicBool::new(false),
        db,
        bus,
        config,
    });
    let workers = tokio::spawn(run(ctx.clone(), shutdown.clone()));
    // Reporting in (worker health) starts at once: a dispatcher waiting
    // for the api's migrations is alive, and says so.
    let reports = tokio::spawn(tickiti_bus::heartbeat::report_in(
        ctx.bus.clone(),
        "dispatcher",
        addr.port(),
        ctx.config.heartbeat_interval,
        shutdown.clone(),
    ));
    let bus_closer = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            let _ = reports.await;
            bus_stop.cancel();
        })
    };
    let app = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .with_state(ctx.clone());
    let stop = shutdown.clone();
    let finished = tokio::spawn(async move {
        tickiti_telemetry::listening("health", addr);
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        let _ = workers.await;
        let _ = bus_closer.await;
        served.map_err(Into::into)
    });
    Ok(Dispatcher {
        addr,
        shutdown,
        finished,
        ctx,
    })
}

async fn readyz(State(ctx): State<Arc<Ctx>>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let database = tickiti_store::answers(&ctx.db, Duration::from_secs(2)).await;
    let broker = ctx.bus.is_connected();
    let schema = ctx.schema_ready.load(std::sync::atomic::Ordering::Relaxed);
    let queues = ctx.queues_ready.load(std::sync::atomic::Ordering::Relaxed);
    let ready = database && broker && schema && queues;
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
            "schema": if schema { "ready" } else { "waiting for the api's migrations" },
        })),
    )
}

/// Waits for the api's schema, then consumes until `shutdown`.
async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    // The newest migration this build knows: its queries need that schema
    // (an older api may still be running during an upgrade).
    let needed = tickiti_store::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    loop {
        let present = tickiti_store::schema_version(&ctx.db).await;
        if matches!(present, Ok(Some(version)) if version >= needed) {
            break;
        }
        tracing::info!(needed, "waiting for the api's migrations");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
    ctx.schema_ready
        .store(true, std::sync::atomic::Ordering::Relaxed);

    // The tiers must exist before anything is parked in them (publishing to
    // a missing queue through the default exchange is silently dropped).
    declare_until_done(&ctx, &shutdown).await;
    if shutdown.is_cancelled() {
        return;
    }
    let events = {
        let ctx = ctx.clone();
        ctx.bus
            .clone()
            .consume(ctx.queues.events_spec(FAN_OUT_HANDLERS), move |message| {
                let ctx = ctx.clone();
                async move { fanout::handle(&ctx, message).await }
            })
    };
    // Handlers beyond the global request limit wait in the gates; the
    // per-endpoint waiting cap parks the rest, so others still get through.
    let slots = ctx.config.concurrency * 2 + 64;
    let deliveries = {
        let ctx = ctx.clone();
        ctx.bus
            .clone()
            .consume(ctx.queues.deliveries_spec(slots), move |message| {
                let ctx = ctx.clone();
                async move { deliver::handle(&ctx, message).await }
            })
    };
    let epilogs = epilog::start(ctx.clone(), shutdown.clone());
    let escalations = tokio::spawn(escalate::run(ctx.clone(), shutdown.clone()));
    let emails = tokio::spawn(notify::run(ctx.clone(), shutdown.clone()));
    housekeeping(&ctx, &shutdown).await;
    let _ = epilogs.await;
    let _ = escalations.await;
    let _ = emails.await;
    let _ = events.await;
    let _ = deliveries.await;
    // First attempts already under way may finish and be logged (one
    // request time-out at most); otherwise their deliveries wait for the
    // lease to run out before a sweeper sends them again.
    let all = u32::try_from(deliver::FIRST_ATTEMPTS_IN_FLIGHT).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(
        ctx.config.timeout + Duration::from_secs(2),
        ctx.in_flight.acquire_many(all),
    )
    .await;
    if drained.is_err() {
        tracing::warn!(
            "stopping with first attempts still in flight; once their lease runs out a sweeper sends them again"
        );
    }
}

async fn declare_until_done(ctx: &Ctx, shutdown: &CancellationToken) {
    loop {
        if ctx.bus.wait_connected(Duration::from_secs(1)).await {
            let declared = async {
                ctx.queues.declare(&ctx.bus).await?;
                epilog::declare(&ctx.bus).await
            };
            match declared.await {
                Ok(()) => {
                    ctx.queues_ready
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "declaring the dispatcher's queues failed; retrying")
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// The sweeper (events whose fan-out a dead sender left unfinished,
/// deliveries left unqueued, claims run out), re-declaring the tiers after
/// a broker restart, and pruning the delivery log.
async fn housekeeping(ctx: &Ctx, shutdown: &CancellationToken) {
    let mut sweep = tokio::time::interval(Duration::from_secs(2));
    let mut slow = tokio::time::interval(Duration::from_secs(60));
    let mut was_connected = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = sweep.tick() => {
                let connected = ctx.bus.is_connected();
                if connected && !was_connected {
                    declare_until_done(ctx, shutdown).await;
                }
                was_connected = connected;
                if connected {
                    let lease = deliver::first_attempt_lease(ctx.config.timeout);
                    if let Err(error) = fanout::redo_unsettled_events(ctx, lease).await {
                        tracing::warn!(%error, "checking the fan-out of unsettled events failed");
                    }
                    for select in [fanout::Select::Stale, fanout::Select::ExpiredClaims] {
                        if let Err(error) = fanout::queue_deliveries(ctx, select).await {
                            tracing::warn!(%error, "sweeping unqueued deliveries failed");
                        }
                    }
                }
            }
            _ = slow.tick() => {
                match prune_delivery_log(&ctx.db, ctx.config.log_retention, shutdown).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deliveries = n, "pruned the delivery log"),
                    Err(error) => tracing::warn!(%error, "pruning the delivery log failed"),
                }
            }
        }
    }
}

/// Deliveries deleted per statement while pruning (short transactions).
const PRUNE_BATCH: i64 = 5_000;
/// Longest one pruning round goes on; the next round (a minute later) resumes.
const PRUNE_BUDGET: Duration = Duration::from_secs(30);

/// Deletes finished deliveries older than `retention` (with their attempts
/// and unreferenced events), batch after batch until a batch comes back
/// short, the budget is spent or shutdown: so the log keeps up with any
/// delivery rate the database can delete at, not a fixed number a minute.
/// Returns the deliveries deleted.
pub async fn prune_delivery_log(
    db: &sqlx::PgPool,
    retention: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<u64> {
    let retention = i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
    let started = tokio::time::Instant::now();
    let mut total = 0;
    loop {
        let mut conn = db.acquire().await?;
        let pruned = tickiti_store::webhooks::prune(&mut conn, retention, PRUNE_BATCH).await?;
        drop(conn);
        total += pruned;
        if pruned < PRUNE_BATCH.unsigned_abs()
            || started.elapsed() >= PRUNE_BUDGET
            || shutdown.is_cancelled()
        {
            return Ok(total);
        }
        // Let the deliveries being sent have the database between batches.
        tokio::task::yield_now().await;
    }
}
