//! The supervised consumer: declare, consume with manual ack, resume after reconnects.

use std::{
    collections::{BTreeMap, HashMap},
    future::Future,
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use lapin::{
    Acker, Channel,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
        BasicRejectOptions, QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable},
};
use tokio::{sync::watch, task::JoinHandle, task::JoinSet};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::{
    Bus, BusError,
    supervisor::{self, Link},
    topology::{close_quietly, short},
};

/// What to consume: the queue (declared again on every reconnect), its bindings and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// Queue name; empty lets the broker name it (only sensible with `exclusive`).
    pub queue: String,
    /// Survives a broker restart (AMQP 0-9-1 queue.declare `durable`).
    pub durable: bool,
    /// Used by this connection only and deleted when it closes (one queue per realtime process).
    pub exclusive: bool,
    /// Deleted by the broker once its last consumer goes away.
    pub auto_delete: bool,
    /// Optional queue arguments, e.g. `x-message-ttl`, `x-dead-letter-exchange`, `x-queue-type`.
    pub arguments: Vec<(String, QueueArgument)>,
    /// `(exchange, binding key)` pairs; topic patterns such as `ticket.*` or `#`.
    pub bindings: Vec<(String, String)>,
    /// Unacked deliveries the broker may hand this consumer at once (basic.qos).
    pub prefetch: u16,
    /// Consumer tag shown in the management UI; empty lets the broker pick one.
    pub consumer_tag: String,
    /// Handlers run at most this many at once; 1 keeps the queue's order.
    pub concurrency: usize,
}

impl Default for ConsumerSpec {
    fn default() -> Self {
        Self {
            queue: String::new(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: Vec::new(),
            bindings: Vec::new(),
            prefetch: 32,
            consumer_tag: String::new(),
            concurrency: 1,
        }
    }
}

/// A queue argument value (RabbitMQ `x-` arguments are strings or integers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueArgument {
    /// e.g. `x-dead-letter-exchange`, `x-queue-type`.
    String(String),
    /// e.g. `x-message-ttl` in milliseconds, `x-max-length`.
    Int(i64),
}

/// One delivered message, as the handler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingMessage {
    /// The `message-id` property parsed as a UUID (None when absent or not a UUID).
    pub id: Option<Uuid>,
    /// Exchange it was published to.
    pub exchange: String,
    /// Routing key it was published with (the event type for events).
    pub routing_key: String,
    /// The body.
    pub payload: Vec<u8>,
    /// String-valued application headers, e.g. `traceparent`.
    pub headers: Vec<(String, String)>,
    /// The broker delivered it before (AMQP 0-9-1 `redelivered`): maybe already handled.
    pub redelivered: bool,
}

impl IncomingMessage {
    /// The first header called `name` (ASCII case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Splits a lapin delivery into the handler's view and the acker we keep.
    fn from_delivery(delivery: Delivery) -> (Self, Acker) {
        let Delivery {
            exchange,
            routing_key,
            redelivered,
            properties,
            data,
            acker,
            ..
        } = delivery;
        let id = properties
            .message_id()
            .as_ref()
            .and_then(|id| Uuid::parse_str(id.as_str()).ok());
        let headers = properties
            .headers()
            .as_ref()
            .map(|table| {
                table
                    .inner()
                    .iter()
                    .filter_map(|(key, value)| {
                        let value = match value {
                            AMQPValue::LongString(s) => {
                                String::from_utf8(s.as_bytes().to_vec()).ok()?
                            }
                            AMQPValue::ShortString(s) => s.as_str().to_owned(),
                            _ => return None,
                        };
                        Some((key.as_str().to_owned(), value))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let message = Self {
            id,
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            payload: data,
            headers,
            redelivered,
        };
        (message, acker)
    }
}

/// What the handler decided; the consumer tells the broker only after the handler returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done and durable: `basic.ack`, the broker forgets the message.
    Ack,
    /// Try again later: `basic.nack` with requeue, the broker delivers it again.
    Requeue,
    /// Never processable: `basic.reject` without requeue (dead-lettered if the queue has a DLX).
    Reject,
}

impl Bus {
    /// Spawns a supervised consumer that runs `handler` per message until the bus is cancelled.
    ///
    /// On every (re)connect it declares the queue and its bindings, sets the
    /// prefetch and consumes with manual acks. When the bus's cancel token
    /// fires, unfinished handlers are dropped and nothing unfinished is acked;
    /// the broker requeues their messages. Handlers must be idempotent: a
    /// message whose ack was lost to a reconnect comes back.
    pub fn consume<H, Fut>(&self, spec: ConsumerSpec, handler: H) -> JoinHandle<()>
    where
        H: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let bus = self.clone();
        tokio::spawn(run(bus, spec, Arc::new(handler)))
    }

    /// Declares a queue and its bindings once, without consuming (e.g. TTL retry tiers).
    ///
    /// Returns the queue name (the broker's choice when `spec.queue` is empty).
    /// Consumer-only fields of `spec` are ignored.
    pub async fn declare_queue(&self, spec: &ConsumerSpec) -> Result<String, BusError> {
        let channel = self.admin_channel().await?;
        let name = declare_queue_on(&channel, spec).await?;
        close_quietly(channel).await;
        Ok(name)
    }
}

/// queue.declare + queue.bind on `channel`; both are idempotent when the
/// arguments match (AMQP 0-9-1 §1.7.2.1, §1.7.2.3).
pub(crate) async fn declare_queue_on(
    channel: &Channel,
    spec: &ConsumerSpec,
) -> Result<String, BusError> {
    let mut arguments = FieldTable::default();
    for (key, value) in &spec.arguments {
        let value = match value {
            QueueArgument::String(s) => AMQPValue::LongString(s.as_str().into()),
            QueueArgument::Int(i) => AMQPValue::LongLongInt(*i),
        };
        arguments.insert(short("queue argument", key)?, value);
    }
    let queue = channel
        .queue_declare(
            short("queue", &spec.queue)?,
            QueueDeclareOptions {
                durable: spec.durable,
                exclusive: spec.exclusive,
                auto_delete: spec.auto_delete,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .map_err(BusError::Topology)?;
    for (exchange, binding_key) in &spec.bindings {
        channel
            .queue_bind(
                queue.name().clone(),
                short("exchange", exchange)?,
                short("binding key", binding_key)?,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BusError::Topology)?;
    }
    Ok(queue.name().as_str().to_owned())
}

/// Why a consuming session ended.
enum SessionEnd {
    /// The bus was cancelled: stop for good.
    Cancelled,
    /// The supervisor withdrew or replaced the connection: resume on the next one.
    LinkChanged,
    /// Something failed on a live connection: back off, then try again.
    Failed(SessionError),
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("consuming failed")]
    Consume(#[source] lapin::Error),
    #[error("acknowledging a delivery failed")]
    Ack(#[source] lapin::Error),
    #[error("the broker cancelled the consumer (queue deleted?)")]
    CancelledByBroker,
}

/// Longest wait for a channel, its queue and its consumer to be set up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for lapin to take one ack, nack or reject. lapin can leave
/// the ack of a connection that died at that moment unresolved forever, and
/// the session would then never see the link change (the dispatcher's events
/// consumer stayed detached after a broker restart this way).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

async fn run<H, Fut>(bus: Bus, spec: ConsumerSpec, handler: Arc<H>)
where
    H: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let cancel = bus.cancel_token().clone();
    let mut links = bus.inner.consume_link.clone();
    let mut backoff = supervisor::reconnect_backoff();
    loop {
        let link = tokio::select! {
            () = cancel.cancelled() => return,
            link = wait_for_link(&mut links) => match link {
                Some(link) => link,
                None => return, // the supervisor is gone: the bus was cancelled
            },
        };
        match session(&bus, &spec, &handler, &link, &mut links, &mut backoff).await {
            SessionEnd::Cancelled => return,
            SessionEnd::LinkChanged => {
                info!(queue = %spec.queue, "consumer connection changed; resuming on the next one");
            }
            SessionEnd::Failed(error) => {
                let delay = supervisor::next_delay(&mut backoff);
                warn!(
                    queue = %spec.queue,
                    error = %error,
                    source = ?std::error::Error::source(&error),
                    ?delay,
                    "consumer failed; retrying"
                );
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The next live link, or None once the supervisor has stopped.
async fn wait_for_link(links: &mut watch::Receiver<Option<Link>>) -> Option<Link> {
    let link = links
        .wait_for(|link| link.as_ref().is_some_and(Link::is_up))
        .await
        .ok()?;
    link.clone()
}

/// Consumes on one connection until it goes away, the bus is cancelled or something fails.
async fn session<H, Fut>(
    bus: &Bus,
    spec: &ConsumerSpec,
    handler: &Arc<H>,
    link: &Link,
    links: &mut watch::Receiver<Option<Link>>,
    backoff: &mut backon::ExponentialBackoff,
) -> SessionEnd
where
    H: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let cancel = bus.cancel_token();
    let setup = async {
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(BusError::Channel)?;
        // Per-consumer prefetch (global=false): RabbitMQ applies it to each
        // new consumer on the channel, https://www.rabbitmq.com/docs/consumer-prefetch
        channel
            .basic_qos(spec.prefetch, BasicQosOptions { global: false })
            .await
            .map_err(BusError::Channel)?;
        let queue = declare_queue_on(&channel, spec).await?;
        let consumer = channel
            .basic_consume(
                short("queue", &queue)?,
                short("consumer tag", &spec.consumer_tag)?,
                // no_ack=false: manual acknowledgement mode (AMQP 0-9-1 §1.8.3.3).
                BasicConsumeOptions {
                    no_ack: false,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(SessionError::Consume)?;
        Ok::<_, SessionError>((channel, queue, consumer))
    };
    // A broker that accepted the connection but never answers (one still
    // booting after a restart, or a connection that died without lapin
    // noticing) must not wedge the consumer: give up and retry instead.
    let (channel, queue, mut consumer) = tokio::select! {
        () = cancel.cancelled() => return SessionEnd::Cancelled,
        setup = tokio::time::timeout(SETUP_TIMEOUT, setup) => match setup {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => return SessionEnd::Failed(error),
            Err(_) => return SessionEnd::Failed(BusError::Timeout(SETUP_TIMEOUT).into()),
        },
    };
    // Consuming started: the next failure deserves a short delay again.
    *backoff = supervisor::reconnect_backoff();
    debug!(%queue, generation = link.generation, "consuming");

    // Handlers run as tasks so a slow or CPU-heavy one does not stall the
    // loop; the JoinSet aborts them all when dropped, which is how a
    // cancelled or broken session leaves its unfinished work unacked.
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, InFlight> = HashMap::new();
    let mut acks = AckWindow::default();
    let concurrency = spec.concurrency.max(1);

    let end = loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break SessionEnd::Cancelled,
            changed = links.changed() => {
                if changed.is_err() {
                    break SessionEnd::Cancelled;
                }
                let same = links
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(|l| l.generation == link.generation);
                if !same {
                    break SessionEnd::LinkChanged;
                }
            }
            Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                // Handlers woken together (a batch written at once) finish
                // together: let them, and settle them all in one go.
                tokio::task::yield_now().await;
                let mut finished = vec![joined];
                while let Some(joined) = tasks.try_join_next_with_id() {
                    finished.push(joined);
                }
                let mut refusals = Vec::new();
                for joined in finished {
                    let (id, outcome) = match joined {
                        Ok((id, outcome)) => (id, outcome),
                        Err(join_error) => {
                            let id = join_error.id();
                            let redelivered = in_flight.get(&id).is_some_and(|f| f.redelivered);
                            // A panicking handler must not cause a redelivery
                            // storm: requeue once, reject (dead-letter) the
                            // second time.
                            let outcome = if redelivered { Outcome::Reject } else { Outcome::Requeue };
                            error!(%queue, ?outcome, error = %join_error, "message handler panicked");
                            (id, outcome)
                        }
                    };
                    if let Some(done) = in_flight.remove(&id) {
                        refusals.extend(acks.finished(done.tag, done.acker, outcome));
                    }
                }
                let ready = acks.take_ready();
                let settled = async {
                    // Requeues and rejects first: a multiple ack that reached
                    // the broker before them would ack their deliveries too.
                    futures::future::try_join_all(refusals.iter().map(|(a, s)| s.send(a))).await?;
                    futures::future::try_join_all(ready.iter().map(|(a, s)| s.send(a))).await
                };
                match tokio::time::timeout(SETTLE_TIMEOUT, settled).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => break SessionEnd::Failed(SessionError::Ack(error)),
                    // The messages come back once the broker drops the channel.
                    Err(_) => break SessionEnd::Failed(BusError::Timeout(SETTLE_TIMEOUT).into()),
                }
            }
            next = consumer.next(), if tasks.len() < concurrency => match next {
                Some(Ok(delivery)) => {
                    let tag = delivery.delivery_tag;
                    let (message, acker) = IncomingMessage::from_delivery(delivery);
                    let redelivered = message.redelivered;
                    let handler = Arc::clone(handler);
                    // Boxed: the task then holds a pointer, and the handler's
                    // (often large) future is not copied again on its way in.
                    let task = tasks.spawn(Box::pin(handler(message)));
                    acks.started(tag);
                    in_flight.insert(task.id(), InFlight { acker, tag, redelivered });
                }
                Some(Err(error)) => break SessionEnd::Failed(SessionError::Consume(error)),
                None => break SessionEnd::Failed(SessionError::CancelledByBroker),
            },
        }
    };
    tasks.abort_all();
    drop(in_flight);
    // Closing the channel makes the broker requeue every unacked delivery
    // (https://www.rabbitmq.com/docs/confirms#automatic-requeueing).
    if link.is_up() {
        let _ = tokio::time::timeout(Duration::from_secs(2), close_quietly(channel)).await;
    }
    end
}

/// A delivery whose handler runs.
struct InFlight {
    acker: Acker,
    tag: u64,
    redelivered: bool,
}

/// How one or more deliveries are settled with the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    /// This delivery and every unsettled one before it on the channel.
    AckUpTo,
    /// This delivery alone.
    Ack,
    Requeue,
    Reject,
}

impl Settle {
    async fn send(self, acker: &Acker) -> lapin::Result<bool> {
        match self {
            Settle::AckUpTo => acker.ack(BasicAckOptions { multiple: true }).await,
            Settle::Ack => acker.ack(BasicAckOptions { multiple: false }).await,
            Settle::Requeue => {
                acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
            }
            Settle::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
        }
    }
}

/// The channel's unsettled deliveries by delivery tag, so acks go out as
/// few frames: the oldest run of finished ones is acked with one
/// `multiple` ack (AMQP 0-9-1 basic.ack) instead of one frame each. A
/// finished delivery behind one still running is acked alone at once, so
/// a slow handler never holds others' acks (nor the prefetch window) back.
/// (Generic over the acker only so its tests need no broker.)
struct AckWindow<A> {
    /// `None` while its handler runs; the acker once it asked for an ack.
    unsettled: BTreeMap<u64, Option<A>>,
}

impl<A> Default for AckWindow<A> {
    fn default() -> Self {
        Self {
            unsettled: BTreeMap::new(),
        }
    }
}

impl<A> AckWindow<A> {
    fn started(&mut self, tag: u64) {
        self.unsettled.insert(tag, None);
    }

    /// Notes a handler's outcome; what to send now for it, if anything
    /// (an ack waits for [`AckWindow::take_ready`]).
    fn finished(&mut self, tag: u64, acker: A, outcome: Outcome) -> Option<(A, Settle)> {
        let settle = match outcome {
            Outcome::Ack => {
                self.unsettled.insert(tag, Some(acker));
                return None;
            }
            Outcome::Requeue => Settle::Requeue,
            Outcome::Reject => Settle::Reject,
        };
        self.unsettled.remove(&tag);
        Some((acker, settle))
    }

    /// The acks to send: one `multiple` ack for the oldest run of finished
    /// deliveries, and one each for finished ones behind a running one.
    fn take_ready(&mut self) -> Vec<(A, Settle)> {
        let mut ready = Vec::new();
        let mut newest_of_run = None;
        while let Some(entry) = self.unsettled.first_entry() {
            if entry.get().is_none() {
                break;
            }
            newest_of_run = entry.remove();
        }
        if let Some(acker) = newest_of_run {
            ready.push((acker, Settle::AckUpTo));
        }
        let behind: Vec<u64> = self
            .unsettled
            .iter()
            .filter(|(_, acker)| acker.is_some())
            .map(|(tag, _)| *tag)
            .collect();
        for tag in behind {
            if let Some(Some(acker)) = self.unsettled.remove(&tag) {
                ready.push((acker, Settle::Ack));
            }
        }
        ready
    }
}

#[cfg(test)]
mod ack_window_tests {
    use super::*;

    #[test]
    fn the_oldest_finished_run_goes_as_one_ack_and_nothing_waits_behind_a_running_one() {
        let mut window = AckWindow::default();
        for tag in 1..=6 {
            window.started(tag);
        }
        // 2 and 1 finish: one multiple ack up to 2.
        assert!(window.finished(2, 2, Outcome::Ack).is_none());
        assert!(window.finished(1, 1, Outcome::Ack).is_none());
        assert_eq!(window.take_ready(), vec![(2, Settle::AckUpTo)]);
        // 5 finishes while 3 runs: acked alone at once.
        assert!(window.finished(5, 5, Outcome::Ack).is_none());
        assert_eq!(window.take_ready(), vec![(5, Settle::Ack)]);
        // A requeue goes out at once and alone.
        assert_eq!(
            window.finished(3, 3, Outcome::Requeue),
            Some((3, Settle::Requeue))
        );
        // 4 finishes: 3 and 5 are settled, so 4 heads the run; 6 still runs.
        assert!(window.finished(4, 4, Outcome::Ack).is_none());
        assert_eq!(window.take_ready(), vec![(4, Settle::AckUpTo)]);
        assert_eq!(
            window.finished(6, 6, Outcome::Reject),
            Some((6, Settle::Reject))
        );
        assert!(window.take_ready().is_empty());
        assert!(window.unsettled.is_empty());
    }
}
