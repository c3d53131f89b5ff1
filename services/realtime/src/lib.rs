//! `tickiti-realtime` ("Tonic", CONTRACT §5): keeps staff browsers live.
//!
//! - [`store`]: the service's own database (pairings), every statement.
//! - [`pairing`]: the api pairs with this service by node key and pin; the
//!   bound node key verifies the browser tokens the api signs.
//! - [`ws`]: one task per browser socket: hello/welcome, limits, close codes.
//! - [`hub`]: sockets by organization, the per-organization [`ring`] for
//!   resume, the replicated [`locks`] table.
//! - [`fanout`]: one exclusive queue per process on `<prefix>.events` and
//!   `<prefix>.realtime`, so any number of processes can stand behind one
//!   load balancer and every browser gets every event of its organization.
//!
//! Two listeners: browsers on `REALTIME_LISTEN` (`/ws`, health), and the
//! private `REALTIME_ADMIN_LISTEN` (pairing, health, metrics). `main.rs`
//! parses the command line and calls [`serve`], so tests start the very
//! same service in-process.

pub mod admin;
pub mod config;
pub mod fanout;
pub mod hub;
pub mod limits;
pub mod locks;
pub mod pairing;
pub mod protocol;
pub mod ring;
pub mod store;
pub mod ws;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::PgPool;
use tickiti_bus::{Bus, BusConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use store::migrator;

/// How often every process re-reads the pairing.
const PAIRING_POLL: Duration = Duration::from_secs(1);
use hub::{Hub, RingLimits};

/// Opens (creating it when missing) the service's database, retrying for a
/// short window (CONTRACT §1), and runs the migrations.
pub async fn connect_database(config: &Config) -> anyhow::Result<PgPool> {
    store::connect(&config.database_url).await
}

/// What every task and handler shares.
pub struct Ctx {
    /// The service's own database (pairings).
    pub db: PgPool,
    /// RabbitMQ.
    pub bus: Bus,
    /// Settings.
    pub config: Config,
    /// Sockets, rings, locks, pairing.
    pub hub: Hub,
    /// Every socket and background publish, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Fires when the service stops.
    pub shutdown: CancellationToken,
    /// True once this process's queue is declared and bound (events flow).
    pub subscribed: watch::Sender<bool>,
    me: Weak<Ctx>,
}

/// A running realtime service.
pub struct Realtime {
    /// The browsers' listener.
    pub addr: SocketAddr,
    /// The private listener.
    pub admin_addr: SocketAddr,
    /// Cancel to stop gracefully.
    pub shutdown: CancellationToken,
    /// Resolves when everything has stopped.
    pub finished: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The shared context (tests look at it).
    pub ctx: Arc<Ctx>,
}

impl Realtime {
    /// Waits until this process receives events (its queue is bound); whether it does.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.ctx.subscribed.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The websocket URL of this process.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The private listener's base URL (the api's `REALTIME_ADMIN_URL`).
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr)
    }
}

/// Reloads the pairing from the database into the hub.
pub async fn reload_binding(ctx: &Ctx) {
    match pairing::current(&ctx.db).await {
        Ok(binding) => ctx.hub.set_binding(binding),
        Err(error) => tracing::warn!(%error, "could not read the pairing; keeping the current one"),
    }
}

/// Starts the service on already-bound listeners with a migrated database.
pub async fn serve(
    listener: TcpListener,
    admin_listener: TcpListener,
    db: PgPool,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<Realtime> {
    let addr = listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let node = uuid::Uuid::now_v7().simple().to_string();
    // The broker outlives the sockets at shutdown: closing sockets still
    // publishes their lock releases.
    let bus_stop = CancellationToken::new();
    let bus = Bus::start(
        BusConfig {
            amqp_url: config.amqp_url.clone(),
            prefix: config.bus_prefix.clone(),
            connection_name: format!("tickiti-realtime-{node}"),
        },
        bus_stop.clone(),
    );
    let hub = Hub::new(
        node,
        RingLimits {
            frames: config.ring_frames,
            bytes: config.ring_bytes,
        },
    );
    let ctx = Arc::new_cyclic(|me| Ctx {
        db,
        bus,
        config,
        hub,
        tracker: TaskTracker::new(),
        shutdown: shutdown.clone(),
        subscribed: watch::Sender::new(false),
        me: me.clone(),
    });
    reload_binding(&ctx).await;

    let background = vec![
        tokio::spawn(subscribe(ctx.clone())),
        tokio::spawn(watch_pairing(ctx.clone())),
        tokio::spawn(tick(ctx.clone())),
        tokio::spawn(watch_broker(ctx.clone())),
        tokio::spawn(report_in(ctx.clone(), addr.port())),
    ];
    let public = axum::serve(listener, admin::public_router(ctx.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let private = axum::serve(admin_listener, admin::private_router(ctx.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let public = tokio::spawn(async move { public.await });
    let private = tokio::spawn(async move { private.await });
    tickiti_telemetry::listening("websocket", addr);
    tickiti_telemetry::listening("admin", admin_addr);

    let stopping = ctx.clone();
    let finished = tokio::spawn(async move {
        stopping.shutdown.cancelled().await;
        tracing::info!("shutting down: closing sockets");
        stopping.hub.close_all(limits::close::GOING_AWAY);
        stopping.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), stopping.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some sockets did not close in time");
        }
        bus_stop.cancel();
        for task in background {
            let _ = task.await;
        }
        public.await??;
        private.await??;
        Ok(())
    });
    Ok(Realtime {
        addr,
        admin_addr,
        shutdown,
        finished,
        ctx,
    })
}

/// Reports this process in to the api (worker health) until shutdown.
async fn report_in(ctx: Arc<Ctx>, port: u16) {
    let every = ctx.config.heartbeat_interval;
    tickiti_bus::heartbeat::report_in(
        ctx.bus.clone(),
        "realtime",
        port,
        every,
        ctx.shutdown.clone(),
    )
    .await;
}

/// Declares this process's queue (retrying while the broker is away), then consumes it.
async fn subscribe(ctx: Arc<Ctx>) {
    let spec = fanout::queue_spec(&ctx.config.bus_prefix, ctx.hub.node());
    loop {
        if ctx.bus.wait_connected(Duration::from_secs(5)).await {
            match ctx.bus.declare_queue(&spec).await {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "declaring the realtime queue failed; retrying")
                }
            }
        }
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
    let handler_ctx = ctx.clone();
    let consumer = ctx.bus.consume(spec, move |message| {
        let outcome = fanout::handle(&handler_ctx, &message);
        std::future::ready(outcome)
    });
    ctx.subscribed.send_replace(true);
    let _ = consumer.await;
}

/// Follows pairing changes made by another process or by `tickiti-realtime
/// pair` / `unpair`: a poll of one tiny table every second (an unbind on this
/// process's private listener applies at once, and is announced to the
/// other processes over `<prefix>.realtime`).
async fn watch_pairing(ctx: Arc<Ctx>) {
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(PAIRING_POLL) => {}
        }
        reload_binding(&ctx).await;
    }
}

/// Expires locks every second and forgets idle organizations every minute.
async fn tick(ctx: Arc<Ctx>) {
    let mut second = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            _ = second.tick() => {}
        }
        ctx.hub.expire_locks();
        n += 1;
        if n.is_multiple_of(60) {
            ctx.hub.sweep();
        }
    }
}

/// When the broker connection comes back after a loss, this process's
/// exclusive queue was gone meanwhile and events were missed: restart the
/// epochs and close the sockets with 1012, so browsers resume with
/// `"recovered": false` and refetch over REST.
async fn watch_broker(ctx: Arc<Ctx>) {
    let mut was_up = false;
    let mut lost = false;
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let up = ctx.bus.is_connected();
        if was_up && !up {
            tracing::warn!("broker connection lost; events are missed until it is back");
            lost = true;
        }
        if up && lost {
            lost = false;
            // Let the consumer declare its queue again before browsers return.
            tokio::time::sleep(Duration::from_millis(500)).await;
            tracing::info!("broker connection back: new epochs, sockets asked to reconnect");
            ctx.hub.restart_epochs();
        }
        was_up = up;
    }
}
