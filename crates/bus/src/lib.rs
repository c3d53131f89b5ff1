//! tickiti-bus: the RabbitMQ layer shared by every Tickiti service.
//!
//! Policy this crate enforces for all of them:
//! - Connections are supervised by hand and re-established with exponential
//!   backoff + jitter. lapin's auto-recovery is deliberately not used: after a
//!   reconnect, delivery tags from the old channel are meaningless (AMQP 0-9-1
//!   §1.8.3.13 "delivery tags are scoped per channel"), so acks from before a
//!   reconnect fail anyway and every consumer must be idempotent.
//! - Topology (exchanges, queues, bindings) is declared again on every
//!   (re)connect, so a broker that lost its definitions heals itself.
//! - Publishing uses publisher confirms
//!   (<https://www.rabbitmq.com/docs/confirms#publisher-confirms>): a message
//!   counts as sent only once the broker acked it.
//! - Consuming uses manual acknowledgements: a message is acked only after its
//!   handler says so; anything unacked is requeued by the broker when the
//!   channel closes (<https://www.rabbitmq.com/docs/confirms#automatic-requeueing>).
//! - Publishing and consuming use two separate connections, as RabbitMQ
//!   recommends: a connection that publishes can be blocked by a resource
//!   alarm, and consumers sharing it would then stop acking, so the queues
//!   that would relieve the alarm never drain
//!   (<https://www.rabbitmq.com/docs/alarms#effects>).

mod consumer;
mod error;
pub mod heartbeat;
mod parking;
mod publisher;
mod supervisor;
mod topology;

use std::{fmt, sync::Arc, time::Duration};

use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

pub use consumer::{ConsumerSpec, IncomingMessage, Outcome, QueueArgument};
pub use error::BusError;
pub use parking::{PARKED_EXCHANGE, PARKED_REASON, PARKED_ROUTING_KEY};
pub use publisher::OutgoingMessage;
pub use topology::{
    commands_exchange, dispatcher_epilog_queue, dispatcher_epilog_spec, dispatcher_events_queue,
    dispatcher_events_spec, durable_queues, events_exchange, parked_queue, realtime_exchange,
};

use supervisor::{Link, Role};

/// Default broker URL (the contract's `AMQP_URL` default).
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Default name prefix (the contract's `TICKITI_BUS_PREFIX` default).
pub const DEFAULT_PREFIX: &str = "tickiti";

/// How to reach the broker and which names this install uses.
#[derive(Clone)]
pub struct BusConfig {
    /// AMQP 0-9-1 URI, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (`TICKITI_BUS_PREFIX`).
    pub prefix: String,
    /// Name shown for this process's connections in the RabbitMQ management UI.
    pub connection_name: String,
}

impl fmt::Debug for BusConfig {
    // Hand-written so that a logged config never shows the broker password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusConfig")
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("prefix", &self.prefix)
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

/// `amqp://user:secret@host/vhost` → `amqp://user:***@host/vhost`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Handle to the supervised broker connections; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

struct Inner {
    config: BusConfig,
    cancel: CancellationToken,
    /// Current publishing connection (None while reconnecting).
    publish_link: watch::Receiver<Option<Link>>,
    /// Current consuming connection (None while reconnecting).
    consume_link: watch::Receiver<Option<Link>>,
    /// The confirm-mode channel shared by every publisher of this process.
    publisher: Mutex<publisher::PublisherSlot>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("config", &self.inner.config)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// A bus for one short job (declaring queues, cleaning up after a test or a
/// benchmark): its connections close when it is dropped.
#[derive(Debug)]
pub struct BriefBus {
    bus: Bus,
}

impl std::ops::Deref for BriefBus {
    type Target = Bus;

    fn deref(&self) -> &Bus {
        &self.bus
    }
}

impl Drop for BriefBus {
    fn drop(&mut self) {
        self.bus.inner.cancel.cancel();
    }
}

impl Bus {
    /// Connects for one short job; `None` when the broker is not reachable
    /// within `timeout`.
    pub async fn connect_briefly(config: BusConfig, timeout: Duration) -> Option<BriefBus> {
        let brief = BriefBus {
            bus: Bus::start(config, CancellationToken::new()),
        };
        brief.wait_connected(timeout).await.then_some(brief)
    }

    /// Spawns the connection supervisors and returns at once; must run inside a tokio runtime.
    ///
    /// The broker does not need to be up: the supervisors retry forever (with
    /// backoff) until `cancel` fires, and `is_connected` reports the state.
    pub fn start(config: BusConfig, cancel: CancellationToken) -> Bus {
        let (publish_tx, publish_link) = watch::channel(None);
        let (consume_tx, consume_link) = watch::channel(None);
        tokio::spawn(supervisor::supervise(
            Role::Publish,
            config.clone(),
            cancel.clone(),
            publish_tx,
        ));
        tokio::spawn(supervisor::supervise(
            Role::Consume,
            config.clone(),
            cancel.clone(),
            consume_tx,
        ));
        Bus {
            inner: Arc::new(Inner {
                config,
                cancel,
                publish_link,
                consume_link,
                publisher: Mutex::new(publisher::PublisherSlot::default()),
            }),
        }
    }

    /// The configuration this bus was started with.
    pub fn config(&self) -> &BusConfig {
        &self.inner.config
    }

    /// Name of this install's events exchange (`<prefix>.events`).
    pub fn events_exchange(&self) -> String {
        events_exchange(&self.inner.config.prefix)
    }

    /// Name of this install's commands exchange (`<prefix>.commands`).
    pub fn commands_exchange(&self) -> String {
        commands_exchange(&self.inner.config.prefix)
    }

    /// Name of this install's realtime exchange (`<prefix>.realtime`).
    pub fn realtime_exchange(&self) -> String {
        realtime_exchange(&self.inner.config.prefix)
    }

    /// True when both the publishing and the consuming connection are up (for `/readyz`).
    pub fn is_connected(&self) -> bool {
        link_is_up(&self.inner.publish_link) && link_is_up(&self.inner.consume_link)
    }

    /// Waits until `is_connected` holds or `timeout` passes; returns the final state.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut publish = self.inner.publish_link.clone();
        let mut consume = self.inner.consume_link.clone();
        let both_up = async {
            // `wait_for` returns Err only when the supervisor is gone (cancelled).
            let up = |link: &Option<Link>| link.as_ref().is_some_and(Link::is_up);
            publish.wait_for(up).await.is_ok() && consume.wait_for(up).await.is_ok()
        };
        match tokio::time::timeout(timeout, both_up).await {
            Ok(true) => self.is_connected(),
            Ok(false) | Err(_) => false,
        }
    }

    /// The cancellation token every task of this bus stops on.
    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// The current link of `role`, if that connection is up.
    pub(crate) fn current_link(&self, role: Role) -> Option<Link> {
        let rx = match role {
            Role::Publish => &self.inner.publish_link,
            Role::Consume => &self.inner.consume_link,
        };
        rx.borrow().as_ref().filter(|link| link.is_up()).cloned()
    }
}

fn link_is_up(rx: &watch::Receiver<Option<Link>>) -> bool {
    rx.borrow().as_ref().is_some_and(Link::is_up)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqp://127.0.0.1:5672/%2f"),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("amqps://user@host/vhost"),
            "amqps://user@host/vhost"
        );
    }

    #[test]
    fn debug_hides_password() {
        let config = BusConfig {
            amqp_url: "amqp://u:topsecret@h/%2f".into(),
            prefix: "p".into(),
            connection_name: "c".into(),
        };
        assert!(!format!("{config:?}").contains("topsecret"));
    }
}
