//! The connection supervisor: connect, declare, watch, reconnect.

use std::{
    pin::pin,
    sync::Arc,
    time::{Duration, Instant},
};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::StreamExt;
use lapin::{Connection, ConnectionProperties, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{BusConfig, BusError, topology};

/// Gives up on one connection attempt (connect + declare) after this long: a
/// black-holed host would otherwise hang the TCP connect for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the supervisor double-checks the connection state. lapin sends
/// an `Event::Error` for I/O errors, but a broker-initiated `connection.close`
/// only changes the status, so this poll is the safety net.
const STATUS_POLL: Duration = Duration::from_millis(500);

/// A connection that stayed up this long resets the backoff; one that dies
/// sooner keeps backing off, so a flapping broker is not hammered.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Which of the two connections a supervisor owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Carries the confirm-mode publisher channel.
    Publish,
    /// Carries consumer channels and declare/delete work.
    Consume,
}

impl Role {
    fn suffix(self) -> &'static str {
        match self {
            Role::Publish => "publish",
            Role::Consume => "consume",
        }
    }
}

/// One established connection; `generation` changes on every reconnect.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) generation: u64,
    pub(crate) conn: Arc<Connection>,
}

impl Link {
    pub(crate) fn is_up(&self) -> bool {
        self.conn.status().connected()
    }
}

/// Reconnect delays: 100 ms doubling to 10 s, with jitter, forever.
///
/// Jitter keeps every Tickiti process from reconnecting in the same instant
/// after a broker restart (the "thundering herd" RabbitMQ's connection docs
/// warn about: <https://www.rabbitmq.com/docs/connections#automatic-recovery>).
pub(crate) fn reconnect_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .with_jitter()
        .without_max_times()
        .build()
}

/// The next delay; the iterator is infinite, the fallback only satisfies the type.
pub(crate) fn next_delay(backoff: &mut ExponentialBackoff) -> Duration {
    backoff.next().unwrap_or(Duration::from_secs(10))
}

/// Runs until `cancel`: keeps one connection of `role` up and publishes it on `tx`.
pub(crate) async fn supervise(
    role: Role,
    config: BusConfig,
    cancel: CancellationToken,
    tx: watch::Sender<Option<Link>>,
) {
    let mut generation: u64 = 0;
    let mut backoff = reconnect_backoff();
    loop {
        let attempt = tokio::select! {
            () = stop_requested(&cancel, &tx) => break,
            attempt = tokio::time::timeout(CONNECT_TIMEOUT, connect_and_declare(&config, role)) => {
                attempt.unwrap_or(Err(BusError::Timeout(CONNECT_TIMEOUT)))
            }
        };
        match attempt {
            Ok(conn) => {
                generation += 1;
                let conn = Arc::new(conn);
                info!(
                    connection = role.suffix(),
                    generation, "connected to the message broker"
                );
                let connected_at = Instant::now();
                tx.send_replace(Some(Link {
                    generation,
                    conn: conn.clone(),
                }));
                let cancelled = watch_connection(&conn, &cancel, &tx).await;
                // Withdraw the link first so nobody starts new work on a dead connection.
                tx.send_replace(None);
                if cancelled {
                    close_connection(&conn).await;
                    break;
                }
                warn!(
                    connection = role.suffix(),
                    generation, "lost the message broker connection; reconnecting"
                );
                if connected_at.elapsed() >= STABLE_AFTER {
                    backoff = reconnect_backoff();
                }
            }
            Err(error) => {
                warn!(
                    connection = role.suffix(),
                    error = %error,
                    source = ?std::error::Error::source(&error),
                    "cannot connect to the message broker; will retry"
                );
            }
        }
        let delay = next_delay(&mut backoff);
        tokio::select! {
            () = stop_requested(&cancel, &tx) => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    tx.send_replace(None);
}

/// Resolves when the bus is cancelled or every `Bus` handle (and with them
/// every consumer) is gone, so a forgotten bus does not keep a connection open.
async fn stop_requested(cancel: &CancellationToken, tx: &watch::Sender<Option<Link>>) {
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tx.closed() => {}
    }
}

/// Connects and declares the exchanges (and, for publishing, the install's
/// durable queues); a connection is only handed out once its topology
/// exists, so nobody publishes into a missing exchange or an unbound one.
async fn connect_and_declare(config: &BusConfig, role: Role) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("{}.{}", config.connection_name, role.suffix()).into());
    // Default ConnectionProperties keep lapin's auto-recovery off; we supervise ourselves.
    let conn = Connection::connect(&config.amqp_url, properties)
        .await
        .map_err(BusError::Connect)?;
    let channel = conn.create_channel().await.map_err(BusError::Connect)?;
    topology::declare_exchanges(&channel, &config.prefix).await?;
    if role == Role::Publish {
        topology::declare_durable_queues(&channel, &config.prefix).await?;
    }
    topology::close_quietly(channel).await;
    Ok(conn)
}

/// Returns when the connection is lost (false) or a stop is requested (true).
async fn watch_connection(
    conn: &Connection,
    cancel: &CancellationToken,
    tx: &watch::Sender<Option<Link>>,
) -> bool {
    let mut events = pin!(conn.events_listener());
    let mut poll = tokio::time::interval(STATUS_POLL);
    loop {
        tokio::select! {
            () = stop_requested(cancel, tx) => return true,
            event = events.next() => match event {
                // Channel-level errors (e.g. a publish to a missing exchange,
                // AMQP 0-9-1 channel exceptions) arrive here too but leave the
                // connection usable, so only the connection status decides.
                Some(Event::Error(error)) => {
                    if !conn.status().connected() {
                        warn!(%error, "message broker connection error");
                        return false;
                    }
                }
                Some(Event::ConnectionBlocked(reason)) => {
                    // https://www.rabbitmq.com/docs/connection-blocked
                    warn!(%reason, "the broker blocked this connection (resource alarm)");
                }
                Some(Event::ConnectionUnblocked) => info!("the broker unblocked this connection"),
                Some(_) => {}
                None => return false,
            },
            _ = poll.tick() => {
                if !conn.status().connected() {
                    return false;
                }
            }
        }
    }
}

/// Graceful close on shutdown: `connection.close` with reply code 200, so the
/// broker requeues whatever this process had not acked (AMQP 0-9-1 §1.4.2.8).
async fn close_connection(conn: &Connection) {
    if !conn.status().connected() {
        return;
    }
    match tokio::time::timeout(Duration::from_secs(5), conn.close(200, "shutdown".into())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "closing the broker connection failed"),
        Err(_) => tracing::debug!("closing the broker connection timed out"),
    }
}
